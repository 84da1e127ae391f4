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

from prefect_etl_blocks.core.engines import (
    DUCKDB_VERSION,
    Float16,
    Int128,
    UInt128,
    collect_batches,
)
from prefect_etl_blocks.core.errors import (
    CorruptParquetError,
    PrefectETLBlocksError,
    SourceUnavailableError,
    UnsupportedDtypeError,
    first_line,
    is_transient,
)
from prefect_etl_blocks.core.identifiers import quote_identifier
from prefect_etl_blocks.core.loading.boundary import NETWORK
from prefect_etl_blocks.core.loading.contracts import check_column_names
from prefect_etl_blocks.core.loading.sources import FileSource

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


def _arrow_register(
    obj: Any, casts: dict[str, str] | None = None
) -> Callable[[duckdb.DuckDBPyConnection, str], None]:
    def register(con: duckdb.DuckDBPyConnection, name: str) -> None:
        data = obj() if callable(obj) else obj
        if casts:
            data = _cast_relation(con.from_arrow(data), casts)
        con.register(name, data)

    return register


# ----------------------------------------------------------------------- Polars dtypes
# Every Polars dtype reaches DuckDB through Arrow. Most map one to one; a few need help:
#
# * Int128 / UInt128 have no Arrow type (Polars exports them as its own '_pli128' format,
#   which pyarrow refuses), so they travel as decimal text and are cast to HUGEINT / UHUGEINT
#   in DuckDB: exact over the whole range (DECIMAL(38) would miss the last digit).
# * Float16 travels as Float32 (DuckDB reads no half floats; every half is a float exactly).
# * Object columns holding only strings travel as String (Polars would export raw pointers).
#
# Dtypes without a faithful DuckDB type are refused before anything is written.
_INT_SQL = {
    pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT",
    Int128: "HUGEINT", pl.UInt8: "UTINYINT", pl.UInt16: "USMALLINT", pl.UInt32: "UINTEGER",
    pl.UInt64: "UBIGINT", UInt128: "UHUGEINT",
}
_TS_SQL = {"ms": "TIMESTAMP_MS", "us": "TIMESTAMP", "ns": "TIMESTAMP_NS"}
#: DuckDB 2.0 added TIMESTAMPTZ_NS; before it a zoned timestamp holds microseconds.
_ZONED_NS = DUCKDB_VERSION >= (2,)
_MAX_DECIMAL = 38


def _refuse(where: str, column: str, dtype: Any, why: str, fix: str) -> UnsupportedDtypeError:
    return UnsupportedDtypeError(
        f"{where} column {column!r} has dtype {dtype}, which DuckDB cannot hold exactly: {why}. "
        f"{fix}. Nothing was written."
    )


def _wire(dtype: Any, column: str, where: str) -> tuple[Any, bool]:
    """``(dtype to send through Arrow or None when unchanged, whether DuckDB must cast it)``;
    refuses dtypes with no faithful DuckDB type."""
    if dtype in (Int128, UInt128):
        return pl.String, True
    if dtype == Float16:
        return pl.Float32, False
    if isinstance(dtype, pl.Decimal):
        if (dtype.precision or _MAX_DECIMAL) > _MAX_DECIMAL:
            raise _refuse(
                where, column, dtype, f"DuckDB decimals have at most {_MAX_DECIMAL} digits",
                f"Cast it first: pl.col({column!r}).cast(pl.Decimal({_MAX_DECIMAL}, {dtype.scale})) "
                "if its values fit, else pl.Float64 (approximate) or pl.String (exact text)",
            )
        return None, False
    if isinstance(dtype, pl.Duration) and dtype.time_unit == "ns":
        raise _refuse(
            where, column, dtype, "DuckDB's INTERVAL counts whole microseconds",
            f'Cast it first: pl.col({column!r}).dt.cast_time_unit("us") (drops the sub-microsecond '
            f"part) or .dt.total_nanoseconds() to keep nanoseconds as an integer",
        )
    if isinstance(dtype, pl.Datetime) and dtype.time_zone and dtype.time_unit == "ns" and not _ZONED_NS:
        raise _refuse(
            where, column, dtype,
            f"DuckDB {'.'.join(map(str, DUCKDB_VERSION))} keeps microseconds in TIMESTAMP WITH TIME ZONE",
            f'Cast it first: pl.col({column!r}).dt.cast_time_unit("us") (drops the sub-microsecond '
            "part), or .dt.replace_time_zone(None) to keep nanoseconds as a naive TIMESTAMP_NS (in "
            "UTC), or use DuckDB 2, which has TIMESTAMPTZ_NS",
        )
    if dtype == pl.Object:
        raise _refuse(
            where, column, dtype, "a LazyFrame's Object column cannot be checked before it is read",
            f"Cast it first, for example pl.col({column!r}).map_elements(str, return_dtype=pl.String)",
        )
    if isinstance(dtype, pl.List | pl.Array):
        inner, cast = _wire(dtype.inner, column, where)
        if inner is None:
            return None, cast
        return (pl.List(inner) if isinstance(dtype, pl.List) else pl.Array(inner, dtype.size)), cast
    if isinstance(dtype, pl.Struct):
        fields, changed, cast = [], False, False
        for f in dtype.fields:
            inner, c = _wire(f.dtype, column, where)
            fields.append(pl.Field(f.name, inner if inner is not None else f.dtype))
            changed, cast = changed or inner is not None, cast or c
        return (pl.Struct(fields) if changed else None), cast
    return None, False


def sql_type(dtype: Any) -> str:
    """The DuckDB type a Polars dtype loads as (see the table in the DuckDBConnection docs)."""
    if dtype in _INT_SQL:
        return _INT_SQL[dtype]
    if dtype in (Float16, pl.Float32):
        return "FLOAT"
    if dtype == pl.Float64:
        return "DOUBLE"
    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision or _MAX_DECIMAL},{dtype.scale})"
    if dtype == pl.Boolean:
        return "BOOLEAN"
    if dtype in (pl.String, pl.Categorical, pl.Object) or isinstance(dtype, pl.Categorical | pl.Enum):
        return "VARCHAR"
    if dtype == pl.Binary:
        return "BLOB"
    if dtype == pl.Date:
        return "DATE"
    if dtype == pl.Time:
        return "TIME_NS"
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return "TIMESTAMPTZ_NS" if dtype.time_unit == "ns" and _ZONED_NS else "TIMESTAMP WITH TIME ZONE"
        return _TS_SQL[dtype.time_unit]
    if isinstance(dtype, pl.Duration):
        return "INTERVAL"
    if dtype == pl.Null:
        return '"NULL"' if _ZONED_NS else "INTEGER"
    if isinstance(dtype, pl.List):
        return f"{sql_type(dtype.inner)}[]"
    if isinstance(dtype, pl.Array):
        return f"{sql_type(dtype.inner)}[{dtype.size}]"
    if isinstance(dtype, pl.Struct):
        return "STRUCT(" + ", ".join(f"{quote_identifier(f.name)} {sql_type(f.dtype)}" for f in dtype.fields) + ")"
    raise TypeError(f"no DuckDB type is known for the Polars dtype {dtype}")


def _object_as_string(series: pl.Series, where: str) -> pl.Series:
    """An Object column whose values are all ``str`` (or None) as a String column."""
    values = series.to_list()
    bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
    if bad is not None:
        raise _refuse(
            where, series.name, series.dtype,
            f"it holds Python objects such as {type(bad).__name__} {_short(bad)}",
            f"Convert them to a Polars dtype first, for example pl.col({series.name!r})"
            ".map_elements(str, return_dtype=pl.String), or a pl.Struct / pl.List of their fields",
        )
    return pl.Series(series.name, values, dtype=pl.String)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def polars_wire(frame: Any, where: str, schema: Any = None) -> tuple[Any, dict[str, str]]:
    """``frame`` (a DataFrame or LazyFrame, with its ``schema`` when known) ready for Arrow, and
    the DuckDB casts to apply after it is read (column -> SQL type). Raises
    :class:`UnsupportedDtypeError` for a column with no faithful DuckDB type, before anything
    is read or written."""
    if schema is None:
        schema = frame.schema if isinstance(frame, pl.DataFrame) else frame.collect_schema()
    exprs: list[Any] = []
    casts: dict[str, str] = {}
    for name, dtype in schema.items():
        if dtype == pl.Object and isinstance(frame, pl.DataFrame):
            exprs.append(pl.lit(_object_as_string(frame.get_column(name), where)).alias(name))
            continue
        wire, cast = _wire(dtype, name, where)
        if wire is not None:
            exprs.append(pl.col(name).cast(wire))
        if cast:
            casts[name] = sql_type(dtype)
    return (frame.with_columns(exprs) if exprs else frame), casts


def _cast_relation(relation: duckdb.DuckDBPyRelation, casts: dict[str, str]) -> duckdb.DuckDBPyRelation:
    columns = [
        f"CAST({quote_identifier(c)} AS {casts[c]}) AS {quote_identifier(c)}" if c in casts else quote_identifier(c)
        for c in relation.columns
    ]
    return relation.project(", ".join(columns))


def lazy_relation(con: duckdb.DuckDBPyConnection, frame: pl.LazyFrame, where: str) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation streaming ``frame`` in batches, every dtype exact (or refused)."""
    wired, casts = polars_wire(frame, where)
    relation = con.from_arrow(stream_lazy(wired, wired.collect_schema()))
    return _cast_relation(relation, casts) if casts else relation


def as_source(obj: Any) -> Source:
    """Describe ``obj`` as a :class:`Source`, checking its column names first.

    Raises:
        InvalidIdentifierError: a column name DuckDB would change (see
            :func:`~prefect_etl_blocks.core.loading.contracts.check_column_names`).
        TypeError: an object that is not a supported frame or stream.
    """
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, pl.DataFrame):
        names = check_column_names(obj.columns, "the DataFrame")
        frame, casts = polars_wire(obj, "the DataFrame")
        return Source(names, "DataFrame", _arrow_register(frame.to_arrow(), casts), in_memory=True)
    if isinstance(obj, pl.LazyFrame):
        schema = obj.collect_schema()
        names = check_column_names(schema.names(), "the LazyFrame")
        lazy, casts = polars_wire(obj, "the LazyFrame", schema)
        schema = lazy.collect_schema() if lazy is not obj else schema
        return Source(names, "LazyFrame", _arrow_register(lambda: stream_lazy(lazy, schema), casts))
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


def parquet_source(source: FileSource) -> Source:
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
        where = f"ParquetSource {source.path!r}"
        _, casts = polars_wire(pl.LazyFrame(schema=schema), where)  # refuses before any read

        def open_stream() -> pa.RecordBatchReader:
            lazy, _ = polars_wire(source.scan(validate=False), where)
            return stream_lazy(lazy, lazy.collect_schema())

        return Source(names, where, _arrow_register(open_stream, casts), remote=True)

    def register(con: duckdb.DuckDBPyConnection, name: str) -> None:
        con.register(name, parquet_relation(con, source, names))

    return Source(names, f"ParquetSource {source.path!r}", register)


def parquet_relation(con: duckdb.DuckDBPyConnection, source: FileSource, columns: list[str]) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation scanning a local ``ParquetSource`` with its filter and columns."""
    files = source.files()
    hive = source.hive_partitioning
    if hive is None:
        hive = source._hive_default(files)
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
        for chunk in collect_batches(frame, STREAM_ROWS):
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
