"""Incremental loads, exactly once: file manifests and cursors kept with the data.

Two kinds, both built on :func:`prefect_etl_blocks.core.loading.load`, and both writing their state
(``_prefect_etl.files`` or ``_prefect_etl.cursors``, see :mod:`~prefect_etl_blocks.core.loading.ledger`)
in the *same transaction* as the rows, so a crash or a retry at any point leaves data and state
agreeing: every row is loaded exactly once.

**File-incremental** (:func:`load_new_files`): only the Parquet files of a
``ParquetSource`` not yet loaded into the table are read. A file is identified by its path,
size, version marker (mtime in ns locally, the ETag on ``s3://``) and, for local files, the
SHA-256 of its Parquet footer (one small read at the file's end, which catches a rewrite that
kept size and mtime, as ``cp -p`` does). A file that disappeared is kept
(``on_missing_file="keep"``) or its rows are deleted (``"delete"``).

Lineage is opt-in and visible. By default the table holds only the source's columns; a file
that changes after it was loaded then **fails the load** (its old rows cannot be told apart, so
loading it again would duplicate them) and nothing is written. With
``lineage_column="_prefect_etl_file"`` (:data:`LINEAGE_COLUMN`) every row also records its file
in that column, and a changed file has its earlier rows deleted by it and is read again, in the
same transaction. DuckDB has no hidden columns and its row ids are not stable enough to key
lineage on, hence a real column. The choice is made when the table is created: a table that has
the column keeps it on later loads without being asked again, and asking for it on a table that
already holds rows without it is refused. A run that finds nothing new reads no Parquet data: it
lists the files, reads the footers' last bytes (local), compares with the manifest and records
a ledger row with 0 rows.

**Cursor loads** (:func:`load_cursor`): only rows whose ``cursor`` column is past the table's
high-water mark load. Without ``keys`` the filter is ``cursor > mark`` and rows append. With
``keys`` it is ``cursor >= mark - lag`` and rows are upserted, so rows at the boundary (equal
cursor) and late rows within ``lag`` that were already loaded update in place rather than
duplicate; within one batch the row with the greatest cursor per key wins. The mark never
moves back. It is stored as DuckDB's text of a value of the cursor column's own type and
compared in SQL (``cursor > CAST(mark AS TIMESTAMP_NS)``), so nanoseconds, 128-bit integers and
decimals are never rounded through Python values. A ``ParquetSource`` gets the predicate pushed into its scan (DuckDB's reader for
local files, Polars' for ``s3://``), so row groups whose statistics are all below the mark are
skipped.

The two kinds live in their own modules, this one names them together:
:mod:`~prefect_etl_blocks.core.loading.incremental_files` (with
:mod:`~prefect_etl_blocks.core.loading.file_manifest`) and
:mod:`~prefect_etl_blocks.core.loading.incremental_cursor` (with
:mod:`~prefect_etl_blocks.core.loading.cursor_values`).
"""

from __future__ import annotations

import duckdb

from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.file_manifest import file_identity
from prefect_etl_blocks.core.loading.incremental_cursor import load_cursor, load_cursor_with
from prefect_etl_blocks.core.loading.incremental_files import (
    LINEAGE_COLUMN,
    load_files_with,
    load_new_files,
)
from prefect_etl_blocks.core.loading.options import FILE_MODES, ON_MISSING_FILE, no_cursor_options


def reset_incremental(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Forget ``table``'s incremental state: its file manifest and cursor marks.

    Warning:
        The next incremental load reads **every** file again (or every row past
        ``initial_value``) and, with ``append``, loads rows that are already in the table a
        second time. Empty or replace the table first unless that is what you want. The rows
        and the ledger are left as they are.

    Returns:
        The number of state rows removed.
    """
    return ledger.reset(con, table)


__all__ = [
    "FILE_MODES",
    "LINEAGE_COLUMN",
    "ON_MISSING_FILE",
    "file_identity",
    "load_cursor",
    "load_cursor_with",
    "load_files_with",
    "load_new_files",
    "no_cursor_options",
    "reset_incremental",
]
