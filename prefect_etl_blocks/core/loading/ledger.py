"""The load ledger and incremental state, kept in the target database itself.

Every load writes one row into ``_prefect_etl.loads`` *inside its own transaction*, so the
ledger says exactly what committed: a rolled-back or killed load leaves no row, a committed
one always has its row. Incremental loads keep their state next to it, in the same
transaction as the data:

* ``_prefect_etl.loads``: one row per load (load id, table, strategy, rows inserted, updated
  and deleted, files or cursor range, schema changes, checks, Prefect flow and task run ids,
  start and end time);
* ``_prefect_etl.files``: the manifest of file-incremental loads, one row per (table, file)
  with the size, version marker (mtime in ns, or the S3 ETag) and Parquet footer SHA-256 the
  file had when it was loaded;
* ``_prefect_etl.cursors``: the high-water mark of cursor loads, one row per (table, cursor).

The state lives in a schema of its own (in the target's catalog, so a DuckLake table keeps its
state in the lake), and loads refuse user tables in that schema (:func:`check_user_table`).

A table is identified as DuckDB resolves its name, and recorded under a key
(:mod:`~prefect_etl_blocks.core.loading.table_keys`).

State written by earlier versions under other keys (``catalog.schema.table``; a dotted name
unquoted) is renamed to the key on first use, in the same transaction as the load.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.loading.table_keys import (  # re-exported: ledger.resolve, ...
    STATE_SCHEMA,
    TableRef,
    is_old_key,
    old_key_sql,
    resolve,
    state_schema,
    table_key,
)

#: Columns later versions added to ``loads`` (at its end, in this order). An older ledger gets
#: them on its first load (:func:`ensure_state`); until then :func:`history` shows them as null.
_ADDED_LOADS_COLUMNS = (
    ("quarantined", "BIGINT"),  # rows that went to <table>__quarantine
    ("read_snapshot_id", "BIGINT"),  # DuckLake: the snapshot the load read (the table before it)
    ("rollback_of", "VARCHAR"),  # a rollback: the load id it undid
)
_LOADS_COLUMNS = 19 + len(_ADDED_LOADS_COLUMNS)
#: The manifest's ``stat_key`` (device, inode and ctime of a file when its footer was read; see
#: :func:`prefect_etl_blocks.core.files.stat_key`) came later too; an older manifest gets it on
#: its first load, and its files are then opened once more.
_FILES_COLUMNS = 8

_DDL = {
    # No PRIMARY KEY or NOT NULL: DuckLake catalogs (which keep their state in the
    # lake) do not support them, and a uuid4 per load is unique anyway.
    "loads": (
        "load_id VARCHAR, table_name VARCHAR, strategy VARCHAR, "
        "incremental VARCHAR, inserted BIGINT, updated BIGINT, "
        "deleted BIGINT, created BOOLEAN, files VARCHAR[], "
        "files_deleted VARCHAR[], cursor_column VARCHAR, cursor_from VARCHAR, "
        "cursor_to VARCHAR, schema_changes VARCHAR[], checks VARCHAR[], flow_run_id VARCHAR, "
        "task_run_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, "
        + ", ".join(f"{name} {kind}" for name, kind in _ADDED_LOADS_COLUMNS)
    ),
    "files": (
        "table_name VARCHAR, path VARCHAR, size BIGINT, "
        "version VARCHAR, footer_sha256 VARCHAR, load_id VARCHAR, "
        "loaded_at TIMESTAMP, stat_key VARCHAR"
    ),
    "cursors": (
        "table_name VARCHAR, cursor_column VARCHAR, mark VARCHAR, "
        "mark_type VARCHAR, load_id VARCHAR, updated_at TIMESTAMP"
    ),
}
#: The state tables a catalog holds when its state is complete (in :data:`STATE_SCHEMA`).
STATE_TABLES = tuple(_DDL)


@dataclass
class LedgerEntry:
    """What the ledger row of one load says beyond the engine's counts."""

    load_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: dt.datetime = field(default_factory=lambda: utcnow())
    incremental: str | None = None  # "files" or "cursor"
    files: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    cursor_column: str | None = None
    cursor_from: str | None = None
    cursor_to: str | None = None
    extra_deleted: int = 0
    #: Rows the load sent to the quarantine table.
    quarantined: int = 0
    #: DuckLake: the snapshot the load's transaction read (the table as it was before the load).
    read_snapshot_id: int | None = None
    #: A rollback's row: the load id it undid.
    rollback_of: str | None = None
    #: The state schema when the caller already ensured it in this transaction.
    state: str | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def migrate_keys(con: duckdb.DuckDBPyConnection, ref: TableRef) -> int:
    """Rename the state an earlier version recorded for ``ref`` under another key to
    :attr:`TableRef.key` (call it inside the load's transaction). Returns the rows renamed.

    Looks at the manifest's and cursors' distinct keys only (one cheap read when there is
    nothing to do, matched here with the predicate of :func:`old_key_sql`); when they held old
    keys, the ledger rows of the table are renamed too. Where a row exists under both keys (an
    earlier version loaded the table under two spellings), the new key's row wins.
    """
    state = ref.state
    keys = con.execute(
        f"SELECT table_name FROM {state}.files UNION SELECT table_name FROM {state}.cursors"
    ).fetchall()
    if not any(is_old_key(ref, key) for (key,) in keys):
        return 0
    where, params = old_key_sql(ref)
    found = con.execute(
        f"SELECT (SELECT count(*) FROM {state}.files WHERE {where}) "
        f"+ (SELECT count(*) FROM {state}.cursors WHERE {where})",
        [*params, *params],
    ).fetchall()[0][0]
    duplicates = {"files": "path", "cursors": "cursor_column"}
    for name, column in duplicates.items():
        con.execute(
            f"DELETE FROM {state}.{q(name)} WHERE {where} AND {q(column)} IN "
            f"(SELECT {q(column)} FROM {state}.{q(name)} WHERE table_name = ?)",
            [*params, ref.key],
        ).fetchall()
    for name in ("files", "cursors", "loads"):
        con.execute(f"UPDATE {state}.{q(name)} SET table_name = ? WHERE {where}", [ref.key, *params]).fetchall()
    return int(found)


def check_user_table(parts: Sequence[str], table: str) -> None:
    """Refuse a load into the state schema: its tables belong to the library."""
    if len(parts) >= 2 and parts[-2].casefold() == STATE_SCHEMA:
        raise LoadConfigError(
            f"Table {table!r} is in schema {STATE_SCHEMA!r}, which holds prefect-etl-blocks' "
            "load ledger and incremental state; load into another schema. Nothing was written."
        )


def ensure_state(
    con: duckdb.DuckDBPyConnection, parts: Sequence[str] | TableRef, *, migrate: bool = True
) -> str:
    """Create the state schema and tables when missing; return the quoted schema.

    With ``migrate`` (incremental loads), state an earlier version recorded for the table under
    another key is renamed to its key (:func:`migrate_keys`), in the caller's transaction.
    One catalog lookup when they exist, so a plain load pays almost nothing for its ledger row.
    """
    ref = parts if isinstance(parts, TableRef) else resolve(con, parts)  # resolved once by the caller
    schema = ref.state
    present, loads_columns, files_columns = con.execute(
        "SELECT count(*), max(column_count) FILTER (WHERE table_name = 'loads'), "
        "max(column_count) FILTER (WHERE table_name = 'files') FROM duckdb_tables() "
        "WHERE schema_name = ? AND database_name = ?",
        [STATE_SCHEMA, ref.catalog],
    ).fetchall()[0]
    if present < len(_DDL):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()
        for name, columns in _DDL.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{q(name)} ({columns})").fetchall()
    if loads_columns is not None and loads_columns < _LOADS_COLUMNS:
        for name, kind in _ADDED_LOADS_COLUMNS:  # a ledger an earlier version created
            con.execute(f"ALTER TABLE {schema}.loads ADD COLUMN IF NOT EXISTS {name} {kind}").fetchall()
    if files_columns is not None and files_columns < _FILES_COLUMNS:
        con.execute(f"ALTER TABLE {schema}.files ADD COLUMN IF NOT EXISTS stat_key VARCHAR").fetchall()
    if present >= len(_DDL) and migrate:
        migrate_keys(con, ref)
    return schema


def state_is_current(state_tables: int, loads_columns: int | None, files_columns: int | None) -> bool:
    """Whether a catalog holding ``state_tables`` state tables, whose ledger has ``loads_columns``
    columns and manifest ``files_columns``, needs nothing from :func:`ensure_state` but the key
    migration (the answer of :func:`~prefect_etl_blocks.core.loading.catalog.probe`)."""
    return (
        state_tables >= len(_DDL)
        and loads_columns is not None
        and loads_columns >= _LOADS_COLUMNS
        and files_columns is not None
        and files_columns >= _FILES_COLUMNS
    )


#: The Prefect flow run and task run ids a load records, supplied from above as data (the core
#: does not import Prefect): the blocks set them around a load with :func:`run_ids`.
RUN_IDS: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "petl_run_ids", default=(None, None)
)


@contextmanager
def run_ids(flow_run_id: str | None, task_run_id: str | None) -> Iterator[None]:
    """Record ``flow_run_id`` and ``task_run_id`` in the ledger rows written in the body."""
    token = RUN_IDS.set((flow_run_id, task_run_id))
    try:
        yield
    finally:
        RUN_IDS.reset(token)


#: Reads the snapshot the open transaction on a connection sees for the table named by ``parts``
#: (a DuckLake's; ``None`` elsewhere). A backend with snapshots sets it around a load with
#: :func:`snapshot_reader`, and :func:`record` writes its answer as ``read_snapshot_id`` (the core
#: knows nothing of DuckLake). Read inside the transaction that commits, so a load that a
#: conflict ran again records the snapshot of the attempt that committed.
SNAPSHOT_READER: contextvars.ContextVar[
    Callable[[duckdb.DuckDBPyConnection, Sequence[str]], int | None] | None
] = contextvars.ContextVar("petl_snapshot_reader", default=None)


@contextmanager
def snapshot_reader(
    reader: Callable[[duckdb.DuckDBPyConnection, Sequence[str]], int | None],
) -> Iterator[None]:
    """Record ``reader(con, parts)`` as the ``read_snapshot_id`` of ledger rows written in the body."""
    token = SNAPSHOT_READER.set(reader)
    try:
        yield
    finally:
        SNAPSHOT_READER.reset(token)


def record(
    con: duckdb.DuckDBPyConnection,
    parts: Sequence[str],
    entry: LedgerEntry,
    *,
    strategy: str,
    inserted: int,
    updated: int,
    deleted: int,
    created: bool,
    schema_changes: Sequence[str],
    checks: Sequence[Any],
    ref: TableRef | None = None,
    state: str | None = None,
) -> None:
    """Insert the ledger row of one load (call it inside the load's transaction). ``ref`` is the
    table as the load resolved ``parts`` on this connection (saves resolving it again);
    ``state`` the state schema when the caller found it up to date in this transaction."""
    schema = entry.state or state or ensure_state(con, ref or parts, migrate=False)
    flow_id, task_id = RUN_IDS.get()
    snapshot, reader = entry.read_snapshot_id, SNAPSHOT_READER.get()
    if snapshot is None and reader is not None:
        snapshot = reader(con, parts)
    columns = ", ".join(_LOADS_ORDER)
    con.execute(
        f"INSERT INTO {schema}.loads ({columns}) VALUES ({', '.join('?' * len(_LOADS_ORDER))})",
        [
            entry.load_id,
            ref.key if ref is not None else table_key(con, parts),
            strategy,
            entry.incremental,
            inserted,
            updated,
            deleted,
            created,
            list(entry.files),
            list(entry.files_deleted),
            entry.cursor_column,
            entry.cursor_from,
            entry.cursor_to,
            list(schema_changes),
            [f"{c.name}: {c.outcome}" for c in checks],
            flow_id,
            task_id,
            entry.started_at,
            utcnow(),
            entry.quarantined,
            snapshot,
            entry.rollback_of,
        ],
    ).fetchall()


#: The ``loads`` columns in the order :func:`record` gives them (by name: an older ledger's
#: added columns may sit elsewhere).
_LOADS_ORDER = (
    "load_id", "table_name", "strategy", "incremental", "inserted", "updated", "deleted",
    "created", "files", "files_deleted", "cursor_column", "cursor_from", "cursor_to",
    "schema_changes", "checks", "flow_run_id", "task_run_id", "started_at", "finished_at",
    *(name for name, _ in _ADDED_LOADS_COLUMNS),
)


def _has_state(con: duckdb.DuckDBPyConnection, catalog: str | None) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'loads'"
    params: list[Any] = [STATE_SCHEMA]
    if catalog:
        sql += " AND database_name = ?"
        params.append(catalog)
    else:
        sql += " AND database_name = current_database()"
    return con.execute(sql, params).fetchall()[0][0] > 0


def _current_state(con: duckdb.DuckDBPyConnection) -> str:
    return state_schema(con.execute("SELECT current_database()").fetchall()[0][0])


def history(con: duckdb.DuckDBPyConnection, table: str | None = None) -> pl.DataFrame:
    """The ledger (oldest load first), of one table or all; empty before the first load."""
    from prefect_etl_blocks.core.identifiers import split_table_name

    ref = resolve(con, split_table_name(table)) if table else None
    if not _has_state(con, ref.catalog if ref else None):
        return pl.DataFrame(schema=_history_schema())
    schema = ref.state if ref else _current_state(con)
    sql = f"SELECT * FROM {schema}.loads"
    params: list[Any] = []
    if ref:
        # Rows an earlier version recorded under another key are the table's too.
        where, params = old_key_sql(ref)
        sql += f" WHERE table_name = ? OR {where}"
        params = [ref.key, *params]
    relation = con.sql(sql + " ORDER BY started_at, finished_at", params=params)
    frame: pl.DataFrame = pl.from_arrow(relation.to_arrow_table())  # type: ignore[assignment]
    full = _history_schema()
    missing = [pl.lit(None, dtype=full[name]).alias(name) for name in full if name not in frame.columns]
    return frame.with_columns(missing).select(list(full)) if missing else frame


def _history_schema() -> dict[str, Any]:
    text, lst, i64, ts = pl.String, pl.List(pl.String), pl.Int64, pl.Datetime("us")
    return {
        "load_id": text, "table_name": text, "strategy": text, "incremental": text,
        "inserted": i64, "updated": i64, "deleted": i64, "created": pl.Boolean, "files": lst,
        "files_deleted": lst, "cursor_column": text, "cursor_from": text, "cursor_to": text,
        "schema_changes": lst, "checks": lst, "flow_run_id": text, "task_run_id": text,
        "started_at": ts, "finished_at": ts, "quarantined": i64, "read_snapshot_id": i64,
        "rollback_of": text,
    }


def reset(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Forget the incremental state (file manifest and cursor marks) of ``table``, in one
    transaction; the ledger and the table's rows stay. Returns the number of state rows removed."""
    from prefect_etl_blocks.core.identifiers import split_table_name
    from prefect_etl_blocks.core.loading.connections import transaction

    parts = split_table_name(table)
    check_user_table(parts, table)
    ref = resolve(con, parts)
    if not _has_state(con, ref.catalog):
        return 0
    where, params = old_key_sql(ref)
    removed = 0
    with transaction(con):
        for name in ("files", "cursors"):
            rows = con.execute(
                f"DELETE FROM {ref.state}.{q(name)} WHERE table_name = ? OR {where}", [ref.key, *params]
            ).fetchall()
            removed += int(rows[0][0]) if rows else 0
    return removed
