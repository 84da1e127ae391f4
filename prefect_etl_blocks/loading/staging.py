"""Staging: every source is read exactly once, inside the load's transaction.

A source (Polars frame or LazyFrame, Arrow table or reader, pandas frame, a DuckDB relation,
a local or ``s3://`` ``ParquetSource``) is first described by its column names, which are
checked before any conversion. Inside the transaction it is registered under a
connection-local name (never a persistent view) and copied once, either straight into a new
target table or into a TEMP table that strategies, contracts and checks then read as often as
they need. Temp tables and registrations live only in the connection, so a crash (even
SIGKILL) leaves nothing behind in the database file, and a one-shot stream is never read twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from prefect_etl_blocks.errors import (
    CorruptParquetError,
    PrefectETLBlocksError,
    SourceUnavailableError,
    first_line,
    is_transient,
)
from prefect_etl_blocks.identifiers import quote_identifier
from prefect_etl_blocks.loading.boundary import NETWORK
from prefect_etl_blocks.loading.contracts import check_column_names

STREAM_ROWS = 256 * 1024


@dataclass
class Source:
    """A source ready to be registered on a connection: its column names (already checked),
    a description for messages, and how to expose it to SQL under a name."""

    names: list[str]
    description: str
    _register: Callable[[duckdb.DuckDBPyConnection, str], None]
    remote: bool = False
    #: Data already in memory (a DataFrame, an Arrow table) that DuckDB can scan again at no
    #: cost: strategies read it in place instead of copying it into a temp table first.
    in_memory: bool = False

    def register(self, con: duckdb.DuckDBPyConnection) -> str:
        """Expose the source on ``con`` under a fresh connection-local name (quoted)."""
        name = f"__petl_src_{uuid.uuid4().hex}"
        self._register(con, name)
        return name


def _arrow_register(obj: Any) -> Callable[[duckdb.DuckDBPyConnection, str], None]:
    def register(con: duckdb.DuckDBPyConnection, name: str) -> None:
        con.register(name, obj() if callable(obj) else obj)

    return register


def as_source(obj: Any) -> Source:
    """Describe ``obj`` as a :class:`Source`, checking its column names first.

    Raises:
        InvalidIdentifierError: a column name DuckDB would change (see
            :func:`~prefect_etl_blocks.loading.contracts.check_column_names`).
        TypeError: an object that is not a supported frame or stream.
    """
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, pl.DataFrame):
        names = check_column_names(obj.columns, "the DataFrame")
        return Source(names, "DataFrame", _arrow_register(obj.to_arrow()), in_memory=True)
    if isinstance(obj, pl.LazyFrame):
        schema = obj.collect_schema()
        names = check_column_names(schema.names(), "the LazyFrame")
        return Source(names, "LazyFrame", _arrow_register(lambda: stream_lazy(obj, schema)))
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    if isinstance(obj, pa.Table | pa.RecordBatchReader):
        names = check_column_names(obj.schema.names, f"the Arrow {type(obj).__name__}")
        return Source(names, f"Arrow {type(obj).__name__}", _arrow_register(obj), in_memory=isinstance(obj, pa.Table))
    if isinstance(obj, duckdb.DuckDBPyRelation):
        names = check_column_names(obj.columns, "the relation")
        return Source(names, "DuckDB relation", _arrow_register(obj))
    try:  # pandas, without importing it when absent
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            names = check_column_names(list(obj.columns), "the pandas DataFrame")
            table = pa.Table.from_pandas(obj, preserve_index=False)
            return Source(names, "pandas DataFrame", _arrow_register(table), in_memory=True)
    except ImportError:  # pragma: no cover - pandas is optional
        pass
    raise TypeError(
        f"load_frame() takes a pl.DataFrame, pl.LazyFrame, pyarrow Table/RecordBatchReader or "
        f"pandas DataFrame, not {type(obj).__name__}."
    )


def parquet_source(source: Any) -> Source:
    """A :class:`Source` over a ``ParquetSource``: DuckDB's own reader for local files (columns
    and the compiled filter pushed into the scan), Polars' object-store reader streamed batch
    by batch for ``s3://``. The source's ``expected_schema`` and columns are checked first."""
    try:
        schema = source.validate_data()
    except Exception as exc:
        # A listing or footer read that failed on the network is not bad data (parquet.py
        # reports a failed footer read as CorruptParquetError): a retry can help.
        cause = exc.__cause__ if isinstance(exc, CorruptParquetError) else exc
        if (
            source.is_remote
            and cause is not None
            and not isinstance(cause, PrefectETLBlocksError)
            and (is_transient(cause) or NETWORK.search(str(cause)))
        ):
            raise SourceUnavailableError(
                f"ParquetSource {source.path!r} could not be read: {first_line(cause)}. The "
                "object store or network did not answer; a retry may succeed."
            ) from exc
        raise
    names = check_column_names(list(schema.names()), f"ParquetSource {source.path!r}")
    if source.is_remote:
        return Source(
            names,
            f"ParquetSource {source.path!r}",
            _arrow_register(lambda: stream_lazy(source.scan(validate=False), schema)),
            remote=True,
        )

    def register(con: duckdb.DuckDBPyConnection, name: str) -> None:
        con.register(name, parquet_relation(con, source, names))

    return Source(names, f"ParquetSource {source.path!r}", register)


def parquet_relation(con: duckdb.DuckDBPyConnection, source: Any, columns: list[str]) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation scanning a local ``ParquetSource`` with its filter and columns."""
    files = source.files()
    hive = source.hive_partitioning
    if hive is None:
        hive = len(files) > 1 or source.path.rstrip("/") != files[0]
    relation = con.read_parquet(files, hive_partitioning=bool(hive))
    compiled = getattr(source, "filter_sql", None)
    predicate = compiled() if callable(compiled) else source.filter
    if predicate:
        # DuckDB parses this as one expression (never as a statement).
        relation = relation.filter(predicate)
    return relation.project(", ".join(quote_identifier(c) for c in columns))


def stream_lazy(frame: pl.LazyFrame, schema: pl.Schema) -> pa.RecordBatchReader:
    """A RecordBatchReader over a LazyFrame, collected in batches (bounded memory)."""
    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema

    def batches() -> Iterable[pa.RecordBatch]:
        for chunk in frame.collect_batches(chunk_size=STREAM_ROWS):
            yield from chunk.to_arrow().cast(arrow_schema).to_batches()

    return pa.RecordBatchReader.from_batches(arrow_schema, batches())


def stage(con: duckdb.DuckDBPyConnection, view: str) -> str:
    """Copy the registered source ``view`` once into a TEMP table; return its quoted name."""
    name = f"temp.main.{quote_identifier('__petl_stage_' + uuid.uuid4().hex)}"
    con.execute(f"CREATE TEMP TABLE {name.split('.', 2)[2]} AS SELECT * FROM {quote_identifier(view)}").fetchall()
    return name


def unregister(con: duckdb.DuckDBPyConnection, view: str) -> None:
    try:
        con.unregister(view)
    except duckdb.Error:  # pragma: no cover - already gone with a failed transaction
        pass
