"""Write-audit-publish checks for loads: the new data must pass them before it is published.

Pass checks to a load (``DuckDBConnection.load_frame(..., checks=[...])``, ``load_parquet`` or
the ``load_to_duckdb`` task). They run inside the load's transaction, after the data is staged
and written but before COMMIT; when any fails the load raises
:class:`~prefect_etl_blocks.core.errors.DataCheckError` naming the check, the number of failing rows
and a sample of them, and the table is left exactly as it was.

A check is either a SQL predicate written by the flow author (a string such as
``"qty >= 0"``, which must hold for every loaded row; a NULL result counts as passing, as in a
``CHECK`` constraint) or one of the built-ins below. Row checks (``not_null``,
``accepted_values``, predicates) look at the rows being loaded; table checks (``unique``,
``row_count``, ``freshness``) look at the table as it will be after the load.

Example:
    ```python
    import datetime as dt
    import polars as pl
    from prefect_etl_blocks import DuckDBConnection
    from prefect_etl_blocks.core.checks import accepted_values, freshness, not_null, row_count, unique

    db = DuckDBConnection()
    orders = pl.DataFrame({"id": [1, 2], "status": ["new", "paid"], "qty": [3, 1],
                           "at": [dt.datetime.now(), dt.datetime.now()]})
    db.load_frame(orders, "orders", checks=[
        "qty > 0",
        not_null("id", "status"),
        unique("id"),
        accepted_values("status", ["new", "paid", "shipped"]),
        row_count(min=1),
        freshness("at", max_age=dt.timedelta(days=1)),
    ])
    ```
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from prefect_etl_blocks.core.errors import DataCheckError
from prefect_etl_blocks.core.identifiers import quote_identifier

Scope = Literal["data", "table"]
SAMPLE_ROWS = 5

__all__ = [
    "Check",
    "CheckResult",
    "accepted_values",
    "freshness",
    "not_null",
    "predicate",
    "row_count",
    "unique",
]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``failing`` rows (0 when it passed) and a sample of them."""

    name: str
    scope: Scope
    failing: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.failing == 0

    @property
    def outcome(self) -> str:
        """``passed`` or ``<n> failing``, as the ledger, the reports and the log say it."""
        return "passed" if self.passed else f"{self.failing} failing"


class Check:
    """Base class of the built-in checks: a ``name``, a ``scope`` and :meth:`evaluate`."""

    name: str = "check"
    scope: Scope = "data"

    def validate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Refuse a check that cannot run, before anything is written (default: nothing)."""

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        """Run the check against ``relation`` (a quoted table name) on ``con``."""
        raise NotImplementedError

    def row_condition(self) -> tuple[str, list[Any]] | None:
        """A SQL condition (and its parameters) that is true for each row of the loaded data
        this check rejects, which ``on_check_failure="quarantine"`` sets aside; ``None`` for a
        check on the whole table or data (``row_count``, ``freshness``), which fails the load."""
        return None

    def _rows(
        self, con: duckdb.DuckDBPyConnection, relation: str, where: str, params: list[Any] | None = None
    ) -> CheckResult:
        query = f"SELECT * FROM {relation} WHERE {where}"
        return CheckResult(self.name, self.scope, *_count_and_sample(con, query, "", params))

    def __repr__(self) -> str:
        return f"<check {self.name}>"


class _Predicate(Check):
    def __init__(self, sql: str, name: str | None = None) -> None:
        if not isinstance(sql, str) or not sql.strip():
            raise DataCheckError(f"check {sql!r} is not a SQL predicate; write one such as 'qty >= 0'.")
        self.sql = sql.strip()
        self.name = name or self.sql
        self.scope = "data"

    def validate(self, con: duckdb.DuckDBPyConnection) -> None:
        validate_predicate(con, self.sql, self.name)

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        return self._rows(con, relation, f"NOT ({self.sql})")

    def row_condition(self) -> tuple[str, list[Any]]:
        return f"NOT ({self.sql})", []


class _OnColumns(Check):
    """A check on a list of columns, named ``kind(a, b)``."""

    kind = "check"

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = _column_list(columns, self.kind)
        self.name = f"{self.kind}({', '.join(self.columns)})"


class _NotNull(_OnColumns):
    kind, scope = "not_null", "data"

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        return self._rows(con, relation, self.row_condition()[0])

    def row_condition(self) -> tuple[str, list[Any]]:
        return " OR ".join(f"{quote_identifier(c)} IS NULL" for c in self.columns), []


class _Unique(_OnColumns):
    kind, scope = "unique", "table"

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        cols = ", ".join(quote_identifier(c) for c in self.columns)
        not_null = " AND ".join(f"{quote_identifier(c)} IS NOT NULL" for c in self.columns)
        dupes = (
            f"SELECT {cols}, count(*) AS occurrences FROM {relation} WHERE {not_null} "
            f"GROUP BY ALL HAVING count(*) > 1"
        )
        count, sample = _count_and_sample(con, dupes, " ORDER BY occurrences DESC")
        return CheckResult(self.name, self.scope, count, sample, "duplicated values")

    def row_condition(self) -> tuple[str, list[Any]]:
        """Every row of the loaded data whose values of ``columns`` occur in more than one of
        its rows (all of them: which one is right cannot be told)."""
        cols = ", ".join(quote_identifier(c) for c in self.columns)
        not_null = " AND ".join(f"{quote_identifier(c)} IS NOT NULL" for c in self.columns)
        return f"({not_null}) AND count(*) OVER (PARTITION BY {cols}) > 1", []


def _count_and_sample(
    con: duckdb.DuckDBPyConnection, query: str, order: str, params: list[Any] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """How many rows ``query`` returns, and the first :data:`SAMPLE_ROWS` of them (in ``order``)."""
    count = int(con.execute(f"SELECT count(*) FROM ({query})", params).fetchall()[0][0])
    if not count:
        return 0, []
    cursor = con.execute(f"{query}{order} LIMIT {SAMPLE_ROWS}", params)
    names = [d[0] for d in cursor.description]
    return count, [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class _RowCount(Check):
    def __init__(self, min: int | None, max: int | None, on: Scope) -> None:  # noqa: A002
        if min is None and max is None:
            raise DataCheckError("row_count() needs min=, max= or both.")
        if on not in ("data", "table"):
            raise DataCheckError(f"row_count(on={on!r}): use on='table' or on='data'.")
        self.min, self.max = min, max
        bounds = ", ".join(f"{k}={v}" for k, v in (("min", min), ("max", max)) if v is not None)
        self.name = f"row_count({bounds})" + ("" if on == "table" else ", on='data'")
        self.scope = on

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        rows = int(con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0])
        ok = (self.min is None or rows >= self.min) and (self.max is None or rows <= self.max)
        what = "the table would have" if self.scope == "table" else "the data has"
        return CheckResult(
            self.name, self.scope, 0 if ok else 1, [] if ok else [{"rows": rows}], f"{what} {rows} rows"
        )


class _AcceptedValues(Check):
    def __init__(self, column: str, values: Sequence[Any]) -> None:
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise DataCheckError(
                f"accepted_values({column!r}, ...) needs a non-empty list of values, such as "
                "['new', 'paid']."
            )
        self.column = _column_list([column], "accepted_values")[0]
        self.values = list(values)
        shown = ", ".join(repr(v) for v in self.values[:5]) + (", ..." if len(self.values) > 5 else "")
        self.name = f"accepted_values({self.column}, [{shown}])"
        self.scope = "data"

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        return self._rows(con, relation, *self.row_condition())

    def row_condition(self) -> tuple[str, list[Any]]:
        col = quote_identifier(self.column)
        # Values are bound as one list parameter, never pasted into SQL.
        return f"{col} IS NOT NULL AND NOT list_contains(?, {col})", [self.values]


class _Freshness(Check):
    def __init__(self, column: str, max_age: dt.timedelta) -> None:
        if not isinstance(max_age, dt.timedelta) or max_age.total_seconds() < 0:
            raise DataCheckError(f"freshness({column!r}, max_age=...) needs a non-negative timedelta.")
        self.column = _column_list([column], "freshness")[0]
        self.max_age = max_age
        self.name = f"freshness({self.column}, max_age={max_age})"
        self.scope = "table"

    def evaluate(self, con: duckdb.DuckDBPyConnection, relation: str) -> CheckResult:
        newest = con.execute(f"SELECT max({quote_identifier(self.column)}) FROM {relation}").fetchall()[0][0]
        now = dt.datetime.now(dt.timezone.utc)
        if newest is None:
            return CheckResult(self.name, self.scope, 1, [{self.column: None}], "no values at all")
        if isinstance(newest, dt.datetime):
            stamp = newest if newest.tzinfo else newest.replace(tzinfo=dt.timezone.utc)
        elif isinstance(newest, dt.date):
            stamp = dt.datetime.combine(newest, dt.time(), dt.timezone.utc)
        else:
            raise DataCheckError(
                f"freshness check on column {self.column!r} needs a date or timestamp column; "
                f"its newest value is {newest!r}."
            )
        age = now - stamp
        ok = age <= self.max_age
        return CheckResult(
            self.name, self.scope, 0 if ok else 1, [] if ok else [{self.column: newest}],
            f"newest value {newest} is {age} old",
        )


def predicate(sql: str, name: str | None = None) -> Check:
    """A SQL predicate that every loaded row must satisfy, for example ``"qty >= 0"``.

    Same as passing the string itself; ``name`` labels it in errors and artifacts. The text is
    the flow author's code, but it must still be one expression: ``;`` and anything other
    than a single predicate (a statement, a FROM clause) are refused before the load starts.
    """
    return _Predicate(sql, name)


def not_null(*columns: str) -> Check:
    """Every loaded row has a value in each of ``columns``."""
    return _NotNull(columns)


def unique(*columns: str) -> Check:
    """No two rows of the resulting table share the values of ``columns`` (NULLs are ignored,
    as in a SQL UNIQUE constraint)."""
    return _Unique(columns)


def row_count(min: int | None = None, max: int | None = None, on: Scope = "table") -> Check:  # noqa: A002
    """The resulting table (``on="table"``) or the loaded data (``on="data"``) has between
    ``min`` and ``max`` rows (inclusive)."""
    return _RowCount(min, max, on)


def accepted_values(column: str, values: Sequence[Any]) -> Check:
    """Every non-null value of ``column`` in the loaded rows is one of ``values``."""
    return _AcceptedValues(column, values)


def freshness(column: str, max_age: dt.timedelta) -> Check:
    """The newest value of ``column`` (date or timestamp; naive values are read as UTC) in the
    resulting table is at most ``max_age`` old."""
    return _Freshness(column, max_age)


def as_check(value: Check | str) -> Check:
    """A built-in as is; a string as a :func:`predicate`."""
    if isinstance(value, Check):
        return value
    if isinstance(value, str):
        return _Predicate(value)
    raise DataCheckError(
        f"checks=[...] takes SQL predicate strings or built-ins from prefect_etl_blocks.core.checks, "
        f"not {type(value).__name__}."
    )


def validate_predicate(con: duckdb.DuckDBPyConnection, text: str, name: str) -> None:
    """Refuse anything but one SQL expression (no ``;``, no statement, no FROM)."""
    import json

    if ";" in text:
        raise DataCheckError(f"check {name!r}: ';' is not allowed in a predicate; write one expression.")
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [f"SELECT ({text})"]).fetchall()[0][0])
    except duckdb.Error as exc:  # pragma: no cover - json is bundled with DuckDB
        raise DataCheckError(f"check {name!r} could not be parsed: {exc}") from exc
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    if (
        tree.get("error")
        or node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or any(node.get(k) for k in ("where_clause", "having", "qualify", "group_expressions", "modifiers"))
    ):
        detail = tree.get("error_message", "not a single expression")
        raise DataCheckError(
            f"check {name!r} is not one SQL predicate ({detail}). Write a boolean expression over "
            "the loaded columns, for example \"qty >= 0 AND status <> 'void'\"."
        )


def _column_list(columns: Sequence[str], what: str) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise DataCheckError(f"{what}() needs one or more column names, for example {what}('id').")
    for name in names:
        quote_identifier(name)
    return names
