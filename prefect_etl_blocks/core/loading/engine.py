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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from prefect_etl_blocks.core.checks import Check, CheckResult, as_check
from prefect_etl_blocks.core.errors import (
    LoadConfigError,
    PrefectETLBlocksError,
    SchemaMismatchError,
)
from prefect_etl_blocks.core.identifiers import quote_identifier, quote_parts, split_table_name
from prefect_etl_blocks.core.loading import ledger, quarantine, strategies
from prefect_etl_blocks.core.loading.audit import run_checks
from prefect_etl_blocks.core.loading.boundary import classify_load_error
from prefect_etl_blocks.core.loading.catalog import (
    Probe,
    is_plain,
    missing_table_message,
    probe,
    table_exists,
)
from prefect_etl_blocks.core.loading.connections import transaction
from prefect_etl_blocks.core.loading.options import (
    CREATE_MODES,
    CreateMode,
    LoadOptions,
    check_create,
)
from prefect_etl_blocks.core.loading.quarantine import QuarantineReport
from prefect_etl_blocks.core.loading.staging import Source, as_source, stage, unregister
from prefect_etl_blocks.core.loading.strategies import SCD2Columns, Target


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
    #: Rows that failed a row-level check and went to ``<table>__quarantine``
    #: (``on_check_failure="quarantine"``).
    quarantined: int = 0
    #: What the quarantine took: its table, the rows per check and a sample (None: nothing).
    quarantine: QuarantineReport | None = None
    #: A dry run: the load ran in full, then nothing was kept.
    dry_run: bool = False
    #: On a DuckLake, the snapshot this load committed (``None`` on a DuckDB file).
    snapshot_id: int | None = None

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
    options = LoadOptions(
        mode=mode, keys=keys, on_schema_change=on_schema_change, checks=checks,
        scd2_columns=scd2_columns, as_of=as_of, create=create,
    )
    return load_with(con, source, table, options, ledger_entry)


@dataclass
class _Plan:
    """What a load settled before its transaction: the target spelled in full, the source,
    its keys, checks and validity stamp."""

    table: str
    written: list[str]  # the name as given, split
    parts: list[str]  # catalog, schema, name as DuckDB binds them
    src: Source
    target: Target
    checks: list[Check]
    ref: ledger.TableRef  # the same, resolved once for the whole load


def load_with(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    options: LoadOptions,
    ledger_entry: ledger.LedgerEntry | None = None,
    ref: ledger.TableRef | None = None,
    found: Probe | None = None,
) -> LoadResult:
    """:func:`load` with its options already built (the path every block and incremental load
    takes): plan, then one transaction that writes, checks and records, then the result.
    ``ref``: ``table`` as :func:`ledger.resolve` resolved it on ``con`` (an incremental load
    resolved it already), not resolved again. ``found``: what :func:`probe` answered for it
    inside the caller's open transaction (an incremental load asked already), which the load
    then joins without asking again."""
    started = time.perf_counter()
    plan = _plan(con, source, table, options, ref)
    entry = ledger_entry or ledger.LedgerEntry()
    try:
        with transaction(con, _joined if found is not None else None):
            exists, schema_created, counts, results, report = _write(con, plan, options, entry, found)
    except PrefectETLBlocksError:
        raise
    except Exception as exc:
        raise classify_load_error(exc, table=table, mode=plan.target.mode, remote=plan.src.remote) from exc
    return LoadResult(
        table=table,
        mode=plan.target.mode,
        inserted=counts.inserted,
        updated=counts.updated,
        deleted=counts.deleted + entry.extra_deleted,
        created=not exists,
        schema_created=schema_created,
        schema_changes=tuple(counts.schema_changes),
        checks=tuple(results),
        seconds=time.perf_counter() - started,
        on_schema_change=options.on_schema_change,
        keys=tuple(plan.target.keys),
        load_id=entry.load_id,
        files=tuple(entry.files),
        files_deleted=tuple(entry.files_deleted),
        cursor=(
            (entry.cursor_column, entry.cursor_from, entry.cursor_to)
            if entry.cursor_column
            else None
        ),
        quarantined=entry.quarantined,
        quarantine=report,
    )


def _plan(
    con: duckdb.DuckDBPyConnection, source: Any, table: str, options: LoadOptions,
    ref: ledger.TableRef | None = None,
) -> _Plan:
    """Everything a load checks before it opens its transaction (nothing is written)."""
    mode = options.strategy
    written = split_table_name(table)
    ledger.check_user_table(written, table)
    # Bound the way DuckDB binds it (``a.t`` is catalog ``a`` when one is attached under that
    # name, else schema ``a``), so every statement below names one table in full.
    ref = ref or ledger.resolve(con, written)
    parts = [ref.catalog, ref.schema, ref.name]
    target_sql = quote_parts(parts)
    src = as_source(source)
    resolved = _resolve_keys(list(options.keys), src.names, table, mode)
    v = options.scd2_columns
    assert isinstance(v, SCD2Columns)  # LoadOptions made it one
    if mode == "scd2":
        reserved = {c.casefold() for c in v.names()}
        clash = [n for n in src.names if n.casefold() in reserved]
        if clash:
            raise SchemaMismatchError(
                f'scd2 into "{table}": the data has column(s) {clash}, which the load fills '
                "itself (validity columns). Rename them in the data or pass scd2_columns with "
                "other names. Nothing was written."
            )
    check_list = [as_check(c) for c in (options.checks or ())]
    for check in check_list:
        check.validate(con)
    stamp = options.as_of or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    t = Target(con, table, target_sql, mode, resolved, options.on_schema_change, v, stamp)
    return _Plan(table, written, parts, src, t, check_list, ref)


def _joined(con: duckdb.DuckDBPyConnection) -> bool:
    """The caller said it holds the transaction open (it passed its :func:`probe`)."""
    return True


def _write(
    con: duckdb.DuckDBPyConnection, plan: _Plan, options: LoadOptions, entry: ledger.LedgerEntry,
    found: Probe | None = None,
) -> tuple[bool, bool, strategies.Counts, list[CheckResult], QuarantineReport | None]:
    """The load's transaction body: the schema, the quarantine, the strategy, the checks, the
    ledger row. Returns whether the table existed, whether its schema was created, counts,
    checks and what was quarantined."""
    con_parts, table, t = plan.parts, plan.table, plan.target
    found = found or probe(con, con_parts)  # schema, table and ledger, in one catalog query
    if options.create == "never" and not found.table_exists:
        raise LoadConfigError(missing_table_message(con, plan.written, table))
    schema_created = not found.schema_exists
    if schema_created:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {'.'.join(quote_identifier(p) for p in con_parts[:-1])}").fetchall()
    exists = found.table_exists
    state = plan.ref.state if found.state_is_current else None
    if t.mode == "fail" and exists:
        raise LoadConfigError(
            f'Table "{table}" already exists. Use mode="replace" to replace it or '
            'mode="append" to add rows.'
        )
    t.columns = found.columns
    view = plan.src.register(con)
    split = None
    try:
        if options.on_check_failure == "quarantine":  # failing rows out before the strategy
            split = quarantine.split(con, view, plan.checks, parts=con_parts, written=plan.written, load_id=entry.load_id)
            entry.quarantined = split.report.rows if split and split.report else 0
        counts, data_relation, staged = _apply(con, plan, split.view if split else view, exists, bool(split))
        results = run_checks(con, plan.checks, data=data_relation, table=t.sql, name=table)
        if staged is not None:
            con.execute(f"DROP TABLE {staged}").fetchall()
        ledger.record(
            con, con_parts, entry, strategy=t.mode, inserted=counts.inserted,
            updated=counts.updated, deleted=counts.deleted + entry.extra_deleted,
            created=not exists, schema_changes=counts.schema_changes, checks=results,
            ref=plan.ref, state=state,
        )
    finally:
        unregister(con, view)
        if split is not None:
            split.close(con)
    return exists, schema_created, counts, results, split.report if split else None


def _apply(
    con: duckdb.DuckDBPyConnection, plan: _Plan, view: str, exists: bool, rescannable: bool = False
) -> tuple[strategies.Counts, str, str | None]:
    """Run the strategy: a new (or plain, replaced) table is created from the data; otherwise
    the data is staged once (unless it is in memory) and the mode's strategy applied. Returns
    the counts, the relation the checks read, and the staged table to drop (if any)."""
    t = plan.target
    if not exists or (t.mode == "replace" and is_plain(con, plan.parts)):
        deleted = strategies.count(con, t.sql) if exists else 0
        counts = strategies.create(t, view)
        counts.deleted = deleted
        return counts, t.sql, None
    if plan.src.in_memory or rescannable:
        data_relation = quote_identifier(view)  # scanned in place, read as often as needed
        return strategies.EXISTING[t.mode](t, data_relation), data_relation, None
    staged = stage(con, view)
    unregister(con, view)
    return strategies.EXISTING[t.mode](t, staged), staged, staged


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


__all__ = [
    "CREATE_MODES",
    "CreateMode",
    "LoadResult",
    "SCD2Columns",
    "Source",
    "check_create",
    "load",
    "load_with",
    "table_exists",
]
