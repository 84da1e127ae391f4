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
Tables are recorded by a normalised key: ``schema.table`` in lower case (DuckDB identifiers are
case-insensitive), with ``main`` for an unqualified name, and ``catalog.schema.table`` when a
catalog is named.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.identifiers import quote_identifier as q

STATE_SCHEMA = "_prefect_etl"

_DDL = {
    # No PRIMARY KEY or NOT NULL: DuckLake catalogs (which keep their state in the
    # lake) do not support them, and a uuid4 per load is unique anyway.
    "loads": (
        "load_id VARCHAR, table_name VARCHAR, strategy VARCHAR, "
        "incremental VARCHAR, inserted BIGINT, updated BIGINT, "
        "deleted BIGINT, created BOOLEAN, files VARCHAR[], "
        "files_deleted VARCHAR[], cursor_column VARCHAR, cursor_from VARCHAR, "
        "cursor_to VARCHAR, schema_changes VARCHAR[], checks VARCHAR[], flow_run_id VARCHAR, "
        "task_run_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP"
    ),
    "files": (
        "table_name VARCHAR, path VARCHAR, size BIGINT, "
        "version VARCHAR, footer_sha256 VARCHAR, load_id VARCHAR, "
        "loaded_at TIMESTAMP"
    ),
    "cursors": (
        "table_name VARCHAR, cursor_column VARCHAR, mark VARCHAR, "
        "mark_type VARCHAR, load_id VARCHAR, updated_at TIMESTAMP"
    ),
}


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
    #: The state schema when the caller already ensured it in this transaction.
    state: str | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def state_schema(parts: Sequence[str]) -> str:
    """The quoted state schema in the catalog of the table named by ``parts``."""
    if len(parts) == 3:
        return f"{q(parts[0])}.{q(STATE_SCHEMA)}"
    return q(STATE_SCHEMA)


def table_key(parts: Sequence[str]) -> str:
    """The normalised name a table is recorded under (see the module docstring)."""
    names = list(parts)
    if len(names) == 1:
        names = ["main", *names]
    return ".".join(n.casefold() for n in names)


def check_user_table(parts: Sequence[str], table: str) -> None:
    """Refuse a load into the state schema: its tables belong to the library."""
    if len(parts) >= 2 and parts[-2].casefold() == STATE_SCHEMA:
        raise LoadConfigError(
            f"Table {table!r} is in schema {STATE_SCHEMA!r}, which holds prefect-etl-blocks' "
            "load ledger and incremental state; load into another schema. Nothing was written."
        )


def ensure_state(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> str:
    """Create the state schema and tables when missing; return the quoted schema.

    One catalog lookup when they exist, so a plain load pays almost nothing for its ledger row.
    """
    schema = state_schema(parts)
    catalog_filter = "database_name = ?" if len(parts) == 3 else "database_name = current_database()"
    params: list[Any] = [STATE_SCHEMA] + ([parts[0]] if len(parts) == 3 else [])
    present = con.execute(
        f"SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND {catalog_filter}",
        params,
    ).fetchall()[0][0]
    if present < len(_DDL):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()
        for name, columns in _DDL.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{q(name)} ({columns})").fetchall()
    return schema


def prefect_run_ids() -> tuple[str | None, str | None]:
    """The current Prefect flow run and task run ids, or ``None`` outside Prefect."""
    try:
        from prefect.runtime import flow_run, task_run

        flow_id, task_id = flow_run.get_id(), task_run.get_id()
    except Exception:  # noqa: BLE001 - the ledger must never fail a load over run metadata
        return None, None
    return (str(flow_id) if flow_id else None, str(task_id) if task_id else None)


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
) -> None:
    """Insert the ledger row of one load (call it inside the load's transaction)."""
    schema = entry.state or ensure_state(con, parts)
    flow_id, task_id = prefect_run_ids()
    con.execute(
        f"INSERT INTO {schema}.loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry.load_id,
            table_key(parts),
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
            [f"{c.name}: {'passed' if c.passed else f'{c.failing} failing'}" for c in checks],
            flow_id,
            task_id,
            entry.started_at,
            utcnow(),
        ],
    ).fetchall()


def _has_state(con: duckdb.DuckDBPyConnection, catalog: str | None) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'loads'"
    params: list[Any] = [STATE_SCHEMA]
    if catalog:
        sql += " AND database_name = ?"
        params.append(catalog)
    else:
        sql += " AND database_name = current_database()"
    return con.execute(sql, params).fetchall()[0][0] > 0


def history(con: duckdb.DuckDBPyConnection, table: str | None = None) -> pl.DataFrame:
    """The ledger (oldest load first), of one table or all; empty before the first load."""
    from prefect_etl_blocks.identifiers import split_table_name

    parts = split_table_name(table) if table else []
    catalog = parts[0] if len(parts) == 3 else None
    if not _has_state(con, catalog):
        return pl.DataFrame(schema=_history_schema())
    schema = state_schema(parts)
    sql = f"SELECT * FROM {schema}.loads"
    params: list[Any] = []
    if table:
        sql += " WHERE table_name = ?"
        params.append(table_key(parts))
    relation = con.sql(sql + " ORDER BY started_at, finished_at", params=params)
    return pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]


def _history_schema() -> dict[str, Any]:
    text, lst, i64, ts = pl.String, pl.List(pl.String), pl.Int64, pl.Datetime("us")
    return {
        "load_id": text, "table_name": text, "strategy": text, "incremental": text,
        "inserted": i64, "updated": i64, "deleted": i64, "created": pl.Boolean, "files": lst,
        "files_deleted": lst, "cursor_column": text, "cursor_from": text, "cursor_to": text,
        "schema_changes": lst, "checks": lst, "flow_run_id": text, "task_run_id": text,
        "started_at": ts, "finished_at": ts,
    }


def reset(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Forget the incremental state (file manifest and cursor marks) of ``table``, in one
    transaction; the ledger and the table's rows stay. Returns the number of state rows removed."""
    from prefect_etl_blocks.identifiers import split_table_name
    from prefect_etl_blocks.loading.connections import transaction

    parts = split_table_name(table)
    check_user_table(parts, table)
    if not _has_state(con, parts[0] if len(parts) == 3 else None):
        return 0
    schema = state_schema(parts)
    key = table_key(parts)
    removed = 0
    with transaction(con):
        for name in ("files", "cursors"):
            rows = con.execute(f"DELETE FROM {schema}.{q(name)} WHERE table_name = ?", [key]).fetchall()
            removed += int(rows[0][0]) if rows else 0
    return removed
