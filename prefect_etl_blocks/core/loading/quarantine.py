"""Quarantine: with ``on_check_failure="quarantine"``, rows that fail a row-level check go to
``<schema>.<table>__quarantine`` and the rest are published, in the load's one transaction.

What the engine does, before the strategy sees the data (so ``upsert``, ``scd2``,
``delete-insert``, ``append``, ``replace`` and ``insert-only`` all see only the good rows):

1. The source is staged once into a TEMP table with one more column: the first check, in the
   order of ``checks=[...]``, that the row fails (NULL when it passes them all). Row-level
   checks are predicates, ``not_null``, ``accepted_values`` and ``unique`` (on the batch: every
   row whose key occurs more than once in it, since which one is right cannot be told).
2. The failing rows are inserted into the quarantine table with the source's columns plus
   ``_load_id`` (the load's row in ``_prefect_etl.loads``), ``_check`` (the name of the first
   check the row failed) and ``_quarantined_at`` (UTC). Each input row is either published or
   quarantined, exactly once.
3. The strategy loads the passing rows; then the checks run as always. Table-level checks
   (``row_count``, ``freshness``, and ``unique`` on the resulting table, say a key already in
   the table that an ``append`` repeats) still fail the whole load, and nothing is kept.

The quarantine table is created by the first load that quarantines a row, next to the target
(same catalog and schema). It follows the source's columns as ``append_new_columns`` would: a
new source column is added, a missing one is NULL, a column widens in place within its kind;
a change across kinds (text where numbers were) is refused, naming the column. A table of that
name that is not a quarantine table (without the three columns) is refused too, and so is a
name longer than 255 bytes (a DuckLake keeps each table's files in a directory of its name).

Example:
    ```python
    import duckdb
    import polars as pl
    from prefect_etl_blocks.core.checks import not_null
    from prefect_etl_blocks.core.loading.options import LoadOptions
    from prefect_etl_blocks.core.loading.run import run_load

    con = duckdb.connect()
    batch = pl.DataFrame({"id": [1, 2, None], "qty": [5, -1, 3]})
    options = LoadOptions(checks=[not_null("id"), "qty >= 0"], on_check_failure="quarantine")
    result = run_load(con, batch, "orders", options)
    assert (result.inserted, result.quarantined) == (1, 2)
    assert con.sql('SELECT id, _check FROM orders__quarantine ORDER BY id').fetchall() == [
        (2, "qty >= 0"), (None, "not_null(id)")]
    ```
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from prefect_etl_blocks.core.checks import Check
from prefect_etl_blocks.core.errors import (
    DataCheckError,
    InvalidIdentifierError,
    SchemaMismatchError,
    first_line,
)
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import quote_parts
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.catalog import table_exists
from prefect_etl_blocks.core.loading.connections import first_row
from prefect_etl_blocks.core.loading.contracts import plan_schema, relation_types
from prefect_etl_blocks.core.loading.staging import unregister

SUFFIX = "__quarantine"
#: The columns the quarantine table adds to the source's.
META_COLUMNS = ("_load_id", "_check", "_quarantined_at")
#: Quarantined rows a :class:`QuarantineReport` keeps as a sample.
SAMPLE_ROWS = 10
#: The longest quarantine table name, in UTF-8 bytes: a DuckLake writes a table's files into a
#: directory named after it, and file systems refuse longer names.
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class QuarantineReport:
    """What one load quarantined: the table (as the load's table was written, plus
    ``__quarantine``), the rows, the rows per check (each row under the first check it failed,
    in the order of ``checks=[...]``) and up to :data:`SAMPLE_ROWS` of them (with ``_check``)."""

    table: str
    rows: int
    by_check: tuple[tuple[str, int], ...] = ()
    sample: tuple[dict[str, Any], ...] = ()


@dataclass
class Split:
    """The source split in two: ``view`` (a connection-local name) holds the passing rows."""

    view: str
    report: QuarantineReport | None
    _stage: str

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        """Drop the registration and the TEMP table (a crash drops them with the connection)."""
        unregister(con, self.view)
        try:
            con.execute(f"DROP TABLE IF EXISTS {self._stage}").fetchall()
        except duckdb.Error:  # pragma: no cover - gone with a failed transaction
            pass


def row_checks(checks: Sequence[Check]) -> list[Check]:
    """The checks that judge single rows (see :meth:`Check.row_condition`)."""
    return [c for c in checks if c.row_condition() is not None]


def quarantine_parts(parts: Sequence[str], written: Sequence[str]) -> tuple[list[str], str]:
    """The quarantine table of the target ``parts`` (catalog, schema, name) and its name as the
    target was written (``analytics.orders`` -> ``analytics.orders__quarantine``).

    Raises:
        InvalidIdentifierError: the name would be longer than :data:`MAX_NAME_BYTES`.
    """
    name = parts[-1] + SUFFIX
    shown = ".".join(p if p.isidentifier() else q(p) for p in [*written[:-1], written[-1] + SUFFIX])
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidIdentifierError(
            f"Table {'.'.join(written)!r} has no room for its quarantine table: {name[:40]!r}... "
            f"would be {len(name.encode())} bytes, and names over {MAX_NAME_BYTES} bytes cannot "
            "be a DuckLake directory. Load into a table with a shorter name, or use "
            'on_check_failure="fail". Nothing was written.'
        )
    return [*parts[:-1], name], shown


def split(
    con: duckdb.DuckDBPyConnection,
    view: str,
    checks: Sequence[Check],
    *,
    parts: Sequence[str],
    written: Sequence[str],
    load_id: str,
) -> Split | None:
    """Stage the registered source ``view`` with each row's first failing check, write the
    failing rows to the quarantine table and register the passing ones. Call it inside the
    load's transaction. ``None`` when no check judges single rows (nothing to split)."""
    judged = row_checks(checks)
    if not judged:
        return None
    qparts, shown = quarantine_parts(parts, written)
    names = [d[0] for d in con.execute(f"SELECT * FROM {q(view)} LIMIT 0").description]
    clash = [n for n in names if n.casefold() in {m.casefold() for m in META_COLUMNS}]
    if clash:
        raise SchemaMismatchError(
            f"The data has column(s) {clash}, which the quarantine table {shown!r} fills itself "
            f"({', '.join(META_COLUMNS)}). Rename them in the data, or use "
            'on_check_failure="fail". Nothing was written.'
        )
    flag = q(f"__petl_failed_{uuid.uuid4().hex}")
    stage = f"temp.main.{q('__petl_quarantine_' + uuid.uuid4().hex)}"
    cases, params = [], []
    for i, check in enumerate(judged):
        sql, bound = check.row_condition() or ("false", [])
        _bind(con, check, sql, bound, view)
        cases.append(f"WHEN {sql} THEN {i}")
        params += bound
    con.execute(
        f"CREATE TEMP TABLE {stage.split('.', 2)[2]} AS SELECT *, CASE {' '.join(cases)} END AS {flag} "
        f"FROM {q(view)}",
        params,
    ).fetchall()
    good = f"__petl_good_{uuid.uuid4().hex}"
    con.register(good, con.sql(f"SELECT * EXCLUDE ({flag}) FROM {stage} WHERE {flag} IS NULL"))
    result = Split(good, None, stage)
    counts = con.execute(
        f"SELECT {flag}, count(*) FROM {stage} WHERE {flag} IS NOT NULL GROUP BY ALL ORDER BY 1"
    ).fetchall()
    if counts:
        check_names = [c.name for c in judged]
        failing = f"(SELECT * EXCLUDE ({flag}) FROM {stage} WHERE {flag} IS NOT NULL)"
        labelled = (
            f"SELECT * EXCLUDE ({flag}), ?::VARCHAR AS _load_id, list_extract(?::VARCHAR[], {flag} + 1) "
            f"AS _check, ?::TIMESTAMP AS _quarantined_at FROM {stage} WHERE {flag} IS NOT NULL"
        )
        _write(con, qparts, shown, failing, labelled, [load_id, check_names, ledger.utcnow()])
        cursor = con.execute(f"{labelled} LIMIT {SAMPLE_ROWS}", [load_id, check_names, ledger.utcnow()])
        columns = [d[0] for d in cursor.description]
        sample = tuple(
            {k: v for k, v in zip(columns, row, strict=True) if k not in ("_load_id", "_quarantined_at")}
            for row in cursor.fetchall()
        )
        result.report = QuarantineReport(
            shown, sum(n for _, n in counts), tuple((check_names[i], n) for i, n in counts), sample
        )
    return result


def _bind(con: duckdb.DuckDBPyConnection, check: Check, sql: str, params: list[Any], view: str) -> None:
    """Refuse a check that cannot be bound to the data (an unknown column, a type error),
    naming it, before anything is read."""
    try:
        # DESCRIBE binds without reading (con.sql with parameters runs the query on DuckDB 1.x,
        # which would use up a one-shot stream).
        con.execute(f"DESCRIBE SELECT {sql} FROM {q(view)}", params or None).fetchall()
    except duckdb.Error as exc:
        raise DataCheckError(
            f"Check {check.name!r} could not run on the data: {first_line(exc)}. Fix the check "
            "(column names, types). Nothing was written."
        ) from exc


def _write(
    con: duckdb.DuckDBPyConnection,
    parts: list[str],
    shown: str,
    failing: str,
    labelled: str,
    params: list[Any],
) -> None:
    """Create the quarantine table from the failing rows, or add them to it (its columns
    evolved as ``append_new_columns`` would)."""
    target = quote_parts(parts)
    if not table_exists(con, parts):
        kind = first_row(con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE lower(view_name) = lower(?) AND "
            "lower(schema_name) = lower(?) AND lower(database_name) = lower(?)",
            [parts[-1], parts[-2], parts[-3]],
        ).fetchall())[0]
        if kind:
            raise _not_quarantine(shown, "it is a view")
        con.execute(f"CREATE TABLE {target} AS {labelled}", params).fetchall()
        return
    have = {c.casefold() for c, _ in relation_types(con, target)}
    lacking = [m for m in META_COLUMNS if m.casefold() not in have]
    if lacking:
        raise _not_quarantine(shown, f"it has no column(s) {lacking}")
    try:
        plan = plan_schema(
            con, table=shown, target=target, staged=failing, on_schema_change="append_new_columns",
            reserved=META_COLUMNS,
        )
    except SchemaMismatchError as exc:
        raise SchemaMismatchError(
            f"{exc} Quarantined rows keep the source's columns, so its columns must take the "
            f"data too: rename the quarantine table {shown!r} to keep it (the next quarantining "
            "load creates a new one), or convert the column in the data."
        ) from exc
    plan.apply(con, target)
    cols = ", ".join([*(q(c) for c, _ in plan.insert), *META_COLUMNS])
    vals = ", ".join([*(f"l.{q(s)}" for _, s in plan.insert), *(f"l.{m}" for m in META_COLUMNS)])
    con.execute(f"INSERT INTO {target} ({cols}) SELECT {vals} FROM ({labelled}) AS l", params).fetchall()


def _not_quarantine(shown: str, why: str) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"{shown!r} exists but is not a quarantine table ({why}); on_check_failure="
        f'"quarantine" keeps failing rows there with the columns {", ".join(META_COLUMNS)}. '
        "Rename or drop that table, or load into another table. Nothing was written."
    )


__all__ = [
    "MAX_NAME_BYTES",
    "META_COLUMNS",
    "SAMPLE_ROWS",
    "SUFFIX",
    "QuarantineReport",
    "Split",
    "quarantine_parts",
    "row_checks",
    "split",
]
