"""The load engine: one function, :func:`load`, over a plain ``duckdb.DuckDBPyConnection``.

Everything a load does happens in one transaction on that connection: stage the source once,
compare schemas, apply the strategy, run the checks, COMMIT. Any failure rolls all of it back,
so the target is exactly as it was. The engine knows nothing about blocks, so
:class:`~prefect_etl_blocks.DuckDBConnection` and a DuckLake block share it unchanged.

Example:
    ```python
    import duckdb
    import polars as pl
    from prefect_etl_blocks.core.loading import load

    con = duckdb.connect()
    load(con, pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "items")
    result = load(con, pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}), "items", mode="upsert", keys="id")
    assert (result.inserted, result.updated) == (1, 1)
    ```
"""

from __future__ import annotations

import datetime as dt
import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from prefect_etl_blocks.core.checks import Check, CheckResult, as_check
from prefect_etl_blocks.core.errors import (
    LoadConfigError,
    PrefectETLBlocksError,
    SchemaMismatchError,
)
from prefect_etl_blocks.core.identifiers import quote_identifier, split_table_name
from prefect_etl_blocks.core.loading import ledger, strategies
from prefect_etl_blocks.core.loading.audit import run_checks
from prefect_etl_blocks.core.loading.boundary import classify_load_error
from prefect_etl_blocks.core.loading.connections import first_row as _first
from prefect_etl_blocks.core.loading.connections import transaction
from prefect_etl_blocks.core.loading.contracts import ON_SCHEMA_CHANGE, key_list
from prefect_etl_blocks.core.loading.staging import Source, as_source, stage, unregister
from prefect_etl_blocks.core.loading.strategies import MODES, SCD2Columns, Target

#: What a load may create: ``if_missing`` (default) creates a missing table (and its schema);
#: ``never`` refuses a missing table, naming the existing tables nearest in name.
CreateMode = Literal["if_missing", "never"]
CREATE_MODES: tuple[str, ...] = ("if_missing", "never")


@dataclass(frozen=True)
class LoadResult:
    """What one load did.

    ``rows`` is the number the block's ``load_frame`` returns: rows inserted, plus rows
    updated for ``upsert``.
    """

    table: str
    mode: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    created: bool = False
    #: The load also created the table's schema (``analytics`` of ``analytics.orders``).
    schema_created: bool = False
    schema_changes: tuple[str, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    seconds: float = 0.0
    on_schema_change: str = "fail"
    keys: tuple[str, ...] = field(default_factory=tuple)
    #: The id of this load's row in the ledger (``_prefect_etl.loads``).
    load_id: str = ""
    #: Files read by a file-incremental load, and files whose rows it deleted.
    files: tuple[str, ...] = ()
    files_deleted: tuple[str, ...] = ()
    #: The cursor range of a cursor load: column, mark before and after (as text).
    cursor: tuple[str, str | None, str | None] | None = None

    @property
    def rows(self) -> int:
        return self.inserted + (self.updated if self.mode == "upsert" else 0)

    @property
    def created_note(self) -> str:
        """What the load created, for a log line or report: ``created analytics.orders``,
        ``created analytcs.orders (new schema analytcs)``; empty when it created nothing."""
        if not self.created:
            return ""
        parts = split_table_name(self.table)
        note = f"created {'.'.join(parts)}"
        if self.schema_created and len(parts) >= 2:
            note += f" (new schema {'.'.join(parts[:-1])})"
        return note


def load(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    *,
    mode: str = "replace",
    keys: str | Sequence[str] | None = None,
    on_schema_change: str = "fail",
    checks: Sequence[Check | str] | None = None,
    scd2_columns: SCD2Columns | Sequence[str] | dict[str, str] | None = None,
    as_of: dt.datetime | None = None,
    ledger_entry: ledger.LedgerEntry | None = None,
    create: CreateMode = "if_missing",
) -> LoadResult:
    """Load ``source`` into ``table`` on ``con`` in one transaction.

    Args:
        con: an open DuckDB connection (the caller owns it and any locking).
        source: a Polars DataFrame/LazyFrame, Arrow table/batch/reader, pandas frame, DuckDB
            relation, or a :class:`~prefect_etl_blocks.core.loading.staging.Source` (see
            :func:`~prefect_etl_blocks.core.loading.staging.parquet_source`).
        table: ``table``, ``schema.table`` or ``catalog.schema.table``; the schema is created.
        mode: one of ``replace``, ``append``, ``upsert``, ``fail``, ``delete-insert``,
            ``insert-only``, ``scd2`` (see :mod:`prefect_etl_blocks.core.loading.strategies`).
        keys: key column(s) for ``upsert``, ``delete-insert``, ``insert-only`` and ``scd2``; a
            string is one column.
        on_schema_change: ``fail`` (default), ``append_new_columns``, ``sync_all_columns`` or
            ``ignore`` (see :mod:`prefect_etl_blocks.core.loading.contracts`).
        checks: SQL predicates and built-ins from :mod:`prefect_etl_blocks.core.checks`, run before
            COMMIT.
        scd2_columns: validity column names for ``scd2``: an :class:`SCD2Columns`, a list of
            three names or a dict with keys ``valid_from``, ``valid_to``, ``is_current``.
        as_of: the validity timestamp of an ``scd2`` load (default: now, UTC, naive).
        ledger_entry: what the ledger row should say beyond the counts (incremental loads
            pass theirs); every load writes its ledger row in its own transaction.
        create: ``if_missing`` (default) creates a missing table and its schema, and says so
            in :attr:`LoadResult.created_note`; ``never`` refuses a missing table with a
            ``LoadConfigError`` naming the existing tables nearest in name, and writes nothing
            (not even a schema).

    Raises:
        DataError: bad names (``InvalidIdentifierError``), options (``LoadConfigError``),
            schemas (``SchemaMismatchError``), checks (``DataCheckError``) or data
            (``LoadError``). The table is exactly as before whenever it raises.
        TransientError: ``TransactionConflictError`` or ``SourceUnavailableError``; a retry
            may succeed.
    """
    started = time.perf_counter()
    check_create(create)
    if mode not in MODES:
        raise LoadConfigError(
            f"mode={mode!r} is not a load mode; use one of {', '.join(repr(m) for m in MODES)}."
        )
    if on_schema_change not in ON_SCHEMA_CHANGE:
        raise LoadConfigError(
            f"on_schema_change={on_schema_change!r} is not valid; use one of "
            f"{', '.join(repr(m) for m in ON_SCHEMA_CHANGE)}."
        )
    written = split_table_name(table)
    ledger.check_user_table(written, table)
    # Bound the way DuckDB binds it (``a.t`` is catalog ``a`` when one is attached under that
    # name, else schema ``a``), so every statement below names one table in full.
    ref = ledger.resolve(con, written)
    parts = [ref.catalog, ref.schema, ref.name]
    entry = ledger_entry or ledger.LedgerEntry()
    target_sql = ".".join(quote_identifier(p) for p in parts)
    src = as_source(source)
    wanted = key_list(keys)
    resolved = _resolve_keys(wanted, src.names, table, mode)
    v = _scd2_columns(scd2_columns)
    if mode == "scd2":
        reserved = {c.casefold() for c in v.names()}
        clash = [n for n in src.names if n.casefold() in reserved]
        if clash:
            raise SchemaMismatchError(
                f'scd2 into "{table}": the data has column(s) {clash}, which the load fills '
                "itself (validity columns). Rename them in the data or pass scd2_columns with "
                "other names. Nothing was written."
            )
    check_list = [as_check(c) for c in (checks or [])]
    for check in check_list:
        check.validate(con)
    stamp = as_of or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    t = Target(con, table, target_sql, mode, resolved, on_schema_change, v, stamp)
    try:
        with transaction(con):
            if create == "never" and not table_exists(con, parts):
                raise LoadConfigError(_missing_table_message(con, written, table))
            schema_created = not _schema_exists(con, parts)
            if schema_created:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {'.'.join(quote_identifier(p) for p in parts[:-1])}").fetchall()
            exists = table_exists(con, parts)
            if mode == "fail" and exists:
                raise LoadConfigError(
                    f'Table "{table}" already exists. Use mode="replace" to replace it or '
                    'mode="append" to add rows.'
                )
            view = src.register(con)
            staged = None
            try:
                if not exists or (mode == "replace" and is_plain(con, parts)):
                    deleted = strategies.count(con, target_sql) if exists else 0
                    counts = strategies.create(t, view)
                    counts.deleted = deleted
                    data_relation = target_sql
                else:
                    if src.in_memory:
                        data_relation = quote_identifier(view)  # scanned in place, read as often as needed
                    else:
                        staged = data_relation = stage(con, view)
                        unregister(con, view)
                    counts = strategies.EXISTING[mode](t, data_relation)
                results = run_checks(con, check_list, data=data_relation, table=target_sql, name=table)
                if staged is not None:
                    con.execute(f"DROP TABLE {staged}").fetchall()
                ledger.record(
                    con, parts, entry, strategy=mode, inserted=counts.inserted,
                    updated=counts.updated, deleted=counts.deleted + entry.extra_deleted,
                    created=not exists, schema_changes=counts.schema_changes, checks=results,
                )
            finally:
                unregister(con, view)
    except PrefectETLBlocksError:
        raise
    except Exception as exc:
        raise classify_load_error(exc, table=table, mode=mode, remote=src.remote) from exc
    return LoadResult(
        table=table,
        mode=mode,
        inserted=counts.inserted,
        updated=counts.updated,
        deleted=counts.deleted + entry.extra_deleted,
        created=not exists,
        schema_created=schema_created,
        schema_changes=tuple(counts.schema_changes),
        checks=tuple(results),
        seconds=time.perf_counter() - started,
        on_schema_change=on_schema_change,
        keys=tuple(resolved),
        load_id=entry.load_id,
        files=tuple(entry.files),
        files_deleted=tuple(entry.files_deleted),
        cursor=(
            (entry.cursor_column, entry.cursor_from, entry.cursor_to)
            if entry.cursor_column
            else None
        ),
    )


def check_create(create: str) -> None:
    """Refuse a ``create=`` value that is not one of :data:`CREATE_MODES`."""
    if create not in CREATE_MODES:
        raise LoadConfigError(
            f"create={create!r} is not valid; use 'if_missing' (create a missing table) or "
            "'never' (refuse a missing table)."
        )


def _schema_exists(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    sql = "SELECT count(*) FROM duckdb_schemas() WHERE lower(schema_name) = lower(?)"
    params: list[Any] = [parts[-2]]
    if len(parts) == 3:
        sql += " AND lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += " AND database_name = current_database()"
    return _first(con.execute(sql, params).fetchall())[0] > 0


def _missing_table_message(con: duckdb.DuckDBPyConnection, parts: list[str], table: str) -> str:
    """Why ``create="never"`` refused ``table``, with the existing tables nearest in name,
    spelled as ``table`` was (``t``, ``schema.t`` or ``db.schema.t``; the current database is
    left out, as callers that qualify names in full did not write it)."""
    current_db = _first(con.execute("SELECT current_database()").fetchall())[0]
    shown = parts[1:] if len(parts) == 3 and parts[0].casefold() == str(current_db).casefold() else parts
    sql = (
        "SELECT database_name, schema_name, table_name, schema_name = current_schema() "
        "FROM duckdb_tables() WHERE NOT internal AND schema_name <> ? AND "
    )
    params: list[Any] = [ledger.STATE_SCHEMA]
    if len(parts) == 3:
        sql += "lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += "database_name = current_database()"
    names = []
    for database, schema, name, current in con.execute(sql, params).fetchall():
        if len(shown) == 3:
            names.append(f"{database}.{schema}.{name}")
        elif len(shown) == 1 and current:
            names.append(name)
        else:
            names.append(f"{schema}.{name}")
    wanted = ".".join(shown)
    by_fold = {n.casefold(): n for n in sorted(names)}
    near = [by_fold[n] for n in difflib.get_close_matches(wanted.casefold(), list(by_fold), n=5, cutoff=0.6)]
    if near:
        hint = f"Existing tables nearest in name: {', '.join(near)}."
    elif names:
        hint = f"No existing table has a similar name ({len(names)} table(s) in the database)."
    else:
        hint = "The database has no tables yet."
    return (
        f'Table "{wanted}" does not exist and create="never" refuses to create it; nothing was '
        f"written. {hint} Fix the name, create the table first, or pass create=\"if_missing\"."
    )


def _resolve_keys(keys: list[str], names: list[str], table: str, mode: str) -> list[str]:
    if mode in strategies.KEYED and not keys:
        raise LoadConfigError(
            f'mode="{mode}" into {table!r} needs keys=[...]: the columns that identify a row '
            '(a string is one column: keys="id").'
        )
    by_fold = {n.casefold(): n for n in names}
    missing = [k for k in keys if k.casefold() not in by_fold]
    if missing:
        raise LoadConfigError(
            f"{mode} keys {missing} are not columns of the data loaded into {table!r}; its "
            f"columns are {names}."
        )
    return [by_fold[k.casefold()] for k in keys]


def _scd2_columns(value: Any) -> SCD2Columns:
    if value is None:
        return SCD2Columns()
    if isinstance(value, SCD2Columns):
        cols = value
    elif isinstance(value, dict):
        cols = SCD2Columns(**value)
    else:
        cols = SCD2Columns(*value)
    for name in cols.names():
        quote_identifier(name)
    if len({n.casefold() for n in cols.names()}) != 3:
        raise LoadConfigError(f"scd2_columns {cols.names()} must be three different names.")
    return cols


def table_exists(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    """Whether the table named by ``parts`` (``[catalog.][schema.]table``) exists."""
    return _table_row(con, parts, "count(*)")[0] > 0


def _table_row(con: duckdb.DuckDBPyConnection, parts: list[str], select: str) -> tuple:
    sql = f"SELECT {select} FROM duckdb_tables() WHERE lower(table_name) = lower(?)"
    params: list[Any] = [parts[-1]]
    if len(parts) >= 2:
        sql += " AND lower(schema_name) = lower(?)"
        params.append(parts[-2])
    else:
        sql += " AND schema_name = current_schema()"
    if len(parts) == 3:
        sql += " AND lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += " AND database_name = current_database()"
    return _first(con.execute(sql, params).fetchall())


def is_plain(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    """A table with no constraints, defaults or comments, which ``replace`` may recreate from
    the data; any other table keeps its definition."""
    oid, comment = _table_row(con, parts, "any_value(table_oid), any_value(comment)")
    if oid is None or comment:
        return oid is None
    constraints = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_oid = ?", [oid]).fetchall()[0][0]
    decorated = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_oid = ? AND (column_default IS NOT NULL "
        "OR comment IS NOT NULL)",
        [oid],
    ).fetchall()[0][0]
    return constraints == 0 and decorated == 0


__all__ = ["CREATE_MODES", "CreateMode", "LoadResult", "SCD2Columns", "Source", "check_create", "load", "table_exists"]
