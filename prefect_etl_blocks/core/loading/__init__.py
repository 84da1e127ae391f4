"""The load engine, split by role: ``options`` (:class:`LoadOptions`, checked once),
``connections`` (locks, transactions), ``staging`` (a source read once into a temp table),
``contracts`` (names, types, ``on_schema_change``), ``strategies`` (``mode=``), ``audit``
(write-audit-publish), ``boundary`` (error classification). :func:`load` ties them together.
"""

from prefect_etl_blocks.core.loading.connections import file_lock, in_transaction, transaction
from prefect_etl_blocks.core.loading.engine import LoadResult, load, table_exists
from prefect_etl_blocks.core.loading.incremental import (
    LINEAGE_COLUMN,
    load_cursor,
    load_new_files,
    reset_incremental,
)
from prefect_etl_blocks.core.loading.ledger import STATE_SCHEMA, history
from prefect_etl_blocks.core.loading.options import LoadOptions
from prefect_etl_blocks.core.loading.staging import Source, as_source, parquet_source
from prefect_etl_blocks.core.loading.strategies import MODES, SCD2Columns

__all__ = [
    "LINEAGE_COLUMN",
    "MODES",
    "STATE_SCHEMA",
    "LoadOptions",
    "LoadResult",
    "SCD2Columns",
    "Source",
    "as_source",
    "file_lock",
    "history",
    "in_transaction",
    "load",
    "load_cursor",
    "load_new_files",
    "parquet_source",
    "reset_incremental",
    "table_exists",
    "transaction",
]
