"""The values of a cursor load, exact in the cursor column's own DuckDB type: which types may
be cursors (and their family), the stored high-water mark, ``initial_value`` converted
exactly, ``mark - lag`` and the filter past it. Values travel as DuckDB's text of a value of
the column's type, never through a Python value, so nanoseconds, 128-bit integers and
decimals are never rounded.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.core.errors import LoadConfigError, first_line

# Type names DuckDB's typeof() gives a cursor column (stored with the mark, cast back on read).
_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?( WITH TIME ZONE)?")

# What a cursor may be, by DuckDB type id, and its family: marks convert only within a family
# (numbers among themselves), and the family says what ``lag`` means.
_CURSOR_FAMILY = {
    **dict.fromkeys(
        ("tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
         "ubigint", "uhugeint"),
        "integer",
    ),
    "decimal": "decimal", "float": "float", "double": "float",
    **dict.fromkeys(("date", "timestamp_s", "timestamp_ms", "timestamp", "timestamp_ns"), "datetime"),
    "timestamp with time zone": "instant", "timestamptz_ns": "instant",
    "time": "time", "time_ns": "time",  # not TIME WITH TIME ZONE: DuckDB 1.5's max() and < disagree on it
    "varchar": "string", "uuid": "uuid",
}
_NUMBERS = ("integer", "decimal", "float")
_TEMPORAL = ("datetime", "instant", "time")
_MAX_LAG_US = 2**63 - 1


@dataclass(frozen=True)
class Bound:
    """A cursor filter ``column > text`` (or ``>=``), the text being a value of ``sql_type``."""

    text: str
    sql_type: str
    inclusive: bool

    def expression(self, con: duckdb.DuckDBPyConnection, cursor: str) -> Any:
        column = duckdb.ColumnExpression(cursor)
        value = duckdb.ConstantExpression(self.text).cast(con.type(self.sql_type))
        return (column >= value) if self.inclusive else (column > value)


def cursor_type(relation: duckdb.DuckDBPyRelation, cursor: str, table: str) -> Any:
    """The DuckDB type of the cursor column, refused when it cannot be a cursor."""
    if cursor not in relation.columns:
        raise LoadConfigError(
            f"cursor column {cursor!r} is not a column of the data loaded into {table!r}; its "
            f"columns are {relation.columns}."
        )
    ctype = dict(zip(relation.columns, relation.types, strict=True))[cursor]
    if ctype.id not in _CURSOR_FAMILY:
        raise LoadConfigError(
            f"cursor column {cursor!r} of the data loaded into {table!r} is {ctype}, which cannot "
            "be a cursor: a cursor needs values in an order that only grows (a number, date, "
            "time, timestamp, string or UUID). Use another column as cursor, or cast this one in "
            f"the data (for example pl.col({cursor!r}).cast(pl.Int64)). Nothing was written."
        )
    return ctype


def read_mark(
    con: duckdb.DuckDBPyConnection, state: str, key: str, cursor: str
) -> tuple[str | None, str | None]:
    """The stored mark as ``(text, DuckDB type name)``; never turned into a Python value."""
    row = con.execute(
        f"SELECT mark, mark_type FROM {state}.cursors WHERE table_name = ? AND cursor_column = ?",
        [key, cursor.casefold()],
    ).fetchall()
    if not row or row[0][0] is None:
        return None, None
    mark, mark_type = row[0]
    if not _TYPE_NAME.fullmatch(mark_type or ""):
        raise LoadConfigError(
            f"The cursor state of {key!r} has an unexpected type {mark_type!r}; run "
            "reset_incremental on the table to start over."
        )
    return mark, mark_type


def as_column_value(
    con: duckdb.DuckDBPyConnection, value: Any, value_type: str | None, column: Any, what: str, fix: str
) -> str:
    """``value`` as the exact text of a value of the cursor's type ``column``: the text of a
    ``value_type`` value (a stored mark), or a Python value bound as a parameter (``value_type``
    None). Only exact conversions within one family pass (TIMESTAMP to TIMESTAMP_NS, INTEGER to
    BIGINT, 5.0 to 5); text is parsed as a value of the column's type."""
    col = str(column)
    try:
        if value_type is None:
            value_type = con.execute("SELECT typeof(?)", [value]).fetchall()[0][0]
            expr = "?"
        else:
            expr = f"CAST(? AS {value_type})"
        source_family = _CURSOR_FAMILY.get(con.type(value_type).id)
    except duckdb.Error as exc:
        raise LoadConfigError(f"{what} {value!r} cannot be a {col} cursor value: {first_line(exc)}. {fix}.") from exc
    family = _CURSOR_FAMILY[column.id]
    parse = source_family == "string" and family != "string"
    if not parse and source_family != family and not (source_family in _NUMBERS and family in _NUMBERS):
        raise LoadConfigError(
            f"{what} {value!r} is a {value_type} value, but the cursor is {col}: they do not "
            f"compare exactly. {fix}."
        )
    text, exact = con.execute(
        f"SELECT CAST(TRY_CAST(v AS {col}) AS VARCHAR), CAST(TRY_CAST(v AS {col}) AS {value_type}) = v "
        f"FROM (SELECT {expr} AS v)",
        [value],
    ).fetchall()[0]
    if text is None or not (parse or exact):
        nearest = "" if text is None else f" (the nearest is {text})"
        raise LoadConfigError(f"{what} {value!r} has no exact {col} value{nearest}. {fix}.")
    return text


def _ceil_decimal(value: decimal.Decimal, scale: int) -> decimal.Decimal:
    with decimal.localcontext() as ctx:
        ctx.prec = 200
        return value.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_CEILING)


def minus_lag(
    con: duckdb.DuckDBPyConnection, mark: str, column: Any, lag: Any, cursor: str
) -> tuple[str | None, str]:
    """The lower bound ``mark - lag`` as ``(text, type)``, exact: text None when it lies below
    the type's range (every row is within ``lag``).

    Numbers are subtracted exactly in Python (integers and decimals are exact there, and a
    double's text round-trips) and, for integers and decimals, rounded up to the column's
    precision, which selects the same rows. Dates and times are subtracted in SQL, in the
    column's own type: a ``timedelta`` is a whole number of microseconds, taken as a fixed
    length (never a calendar day), and nanoseconds are kept.
    """
    col = str(column)
    family = _CURSOR_FAMILY[column.id]
    if lag is None:
        return mark, col
    if family not in (*_NUMBERS, *_TEMPORAL):
        raise LoadConfigError(
            f"lag={lag!r} has no meaning on the {col} cursor {cursor!r}: there is no distance "
            "between its values. Drop lag (with keys, rows at the mark are still upserted), or "
            "use a numeric or date/time cursor."
        )
    temporal = family in _TEMPORAL
    if temporal and not isinstance(lag, dt.timedelta):
        raise LoadConfigError(
            f"lag={lag!r} on a date/time cursor must be a datetime.timedelta, e.g. timedelta(hours=1)."
        )
    if not temporal and isinstance(lag, dt.timedelta):
        raise LoadConfigError(f"lag={lag!r} on the {col} cursor {cursor!r} must be a number, not a timedelta.")
    if family == "float":
        # The FLOAT mark "0.1" is not the double 0.1: take its exact double first.
        exact = con.execute(f"SELECT CAST(CAST(CAST(? AS {col}) AS DOUBLE) AS VARCHAR)", [mark]).fetchall()[0][0]
        return repr(float(exact) - float(lag)), "DOUBLE"
    if family in ("integer", "decimal"):
        scale = dict(column.children)["scale"] if family == "decimal" else 0
        with decimal.localcontext() as ctx:
            ctx.prec = 200
            exact = decimal.Decimal(mark) - decimal.Decimal(str(lag) if isinstance(lag, float) else lag)
        text = str(_ceil_decimal(exact, scale))
        fits = con.execute(f"SELECT TRY_CAST(? AS {col}) IS NOT NULL", [text]).fetchall()[0][0]
        return (text if fits else None), col
    lag_us = (lag.days * 86_400 + lag.seconds) * 1_000_000 + lag.microseconds
    if lag_us > _MAX_LAG_US:
        return None, col
    if family == "time":
        ns = "epoch_ns(CAST($mark AS TIME_NS))" if column.id == "time_ns" else "epoch_us(CAST($mark AS TIME)) * 1000"
        sql = (
            "SELECT CASE WHEN n >= 0 THEN printf('%02d:%02d:%02d.%09d', n // 3600000000000, "
            "n // 60000000000 % 60, n // 1000000000 % 60, n % 1000000000) END "
            f"FROM (SELECT CAST({ns} AS HUGEINT) - CAST($lag AS HUGEINT) * 1000 AS n)"
        )
        return con.execute(sql, {"mark": mark, "lag": lag_us}).fetchall()[0][0], col
    if column.id == "date":
        # A date d is at or past mark - lag exactly when d >= mark - floor(lag / 1 day); staying in
        # DATE also covers dates beyond TIMESTAMP's range.
        lag_us //= 86_400_000_000
        expr = "CAST($mark AS DATE) - CAST($lag AS INTEGER)"
    elif column.id == "timestamp_ns":
        expr = "make_timestamp_ns(CAST(epoch_ns(CAST($mark AS TIMESTAMP_NS)) - CAST($lag AS HUGEINT) * 1000 AS BIGINT))"
    else:  # TIMESTAMP_S/_MS, TIMESTAMP, TIMESTAMPTZ and (DuckDB 2) TIMESTAMPTZ_NS keep their precision
        expr = f"CAST($mark AS {col}) - to_microseconds(CAST($lag AS BIGINT))"
    text, sql_type = con.execute(
        f"SELECT CAST(b AS VARCHAR), typeof(b) FROM (SELECT TRY({expr}) AS b)", {"mark": mark, "lag": lag_us}
    ).fetchall()[0]
    return text, (sql_type if text is not None else col)


def polars_prefilter(con: duckdb.DuckDBPyConnection, bound: Bound, column: Any, cursor: str) -> Any:
    """A Polars predicate selecting a superset of the rows past ``bound`` (so that the scan of an
    ``s3://`` source skips row groups below it), or None; the exact filter is DuckDB's."""
    family = _CURSOR_FAMILY[column.id]
    if family in ("integer", "float", "string"):
        sql = f"SELECT CAST(? AS {bound.sql_type})"
    elif family == "datetime" and column.id == "date":
        sql = f"SELECT CAST(TRY(CAST(? AS {bound.sql_type}) - INTERVAL 1 DAY) AS DATE)"
    elif family == "datetime":  # a second below: unit casts in Polars may truncate the literal
        sql = f"SELECT TRY(CAST(CAST(? AS {bound.sql_type}) AS TIMESTAMP) - INTERVAL 1 SECOND)"
    else:
        return None
    value = con.execute(sql, [bound.text]).fetchall()[0][0]
    return None if value is None else pl.col(cursor) >= value


__all__ = ["Bound", "as_column_value", "cursor_type", "minus_lag", "polars_prefilter", "read_mark"]
