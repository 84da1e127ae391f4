"""Roll a DuckLake table back to just before one load. Prefect-free; the block method
:meth:`~prefect_etl_blocks.DuckLakeConnection.rollback` runs :func:`rollback_work` as a load.

DuckLake has no rollback of its own; it keeps snapshots. A load committed snapshot ``C`` (the
first snapshot at which its ledger row exists, :mod:`~prefect_etl_blocks.core.warehouse.lake_snapshots`),
so the table as it was just before the load is the table at ``C - 1``. The rollback writes
that state as a NEW commit: nothing is lost, the rollback has a ledger row of its own
(strategy ``rollback``, ``rollback_of`` the load id) and rolling *that* back restores the load.

How the table is written back, in one transaction:

* same columns then and now: only the difference. Rows (with their DuckLake row id) present now
  but not then are deleted, rows present then but not now are inserted again; a rollback of a
  small load into a large table writes a small commit. Both sides are staged in temp tables
  before the first write: inside a transaction that deleted rows from a table, DuckLake 1.5.5
  hides those rows from ``AT (VERSION => n)`` reads of the same table too.
* other columns (the load added, dropped or widened some): the table is re-created from the old
  snapshot (``CREATE OR REPLACE TABLE ... AS SELECT * ... AT (VERSION => n)``).
* the load created the table: it is dropped; a table dropped since is re-created.
* the table's incremental state (file manifest, cursor marks) is put back too, so the next
  incremental load reads again what the rolled-back load had read.

Refused (``LoadConfigError``, nothing written) when the load is unknown or loaded another
table, when the snapshot before it was expired, and, unless ``force``, when a later commit
changed the table (found in ``ducklake_snapshots()``'s changes, so writes that bypass the
ledger count too) or when another load into the same table committed in the same snapshot.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import duckdb

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import quote_parts, split_table_name
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.catalog import table_exists
from prefect_etl_blocks.core.loading.connections import in_transaction, transaction
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.ledger import STATE_SCHEMA, TableRef
from prefect_etl_blocks.core.warehouse.lake_snapshots import (
    available_snapshots,
    first_with_row,
    is_lake,
    row_at,
)
from prefect_etl_blocks.core.warehouse.session import Work

#: Keys of ``ducklake_snapshots().changes`` that list table ids whose contents or columns a
#: commit changed. Compaction (``merge_adjacent``), ``flushed_inlined`` and
#: ``rewrite_delete`` move rows between files without changing them, so they do not count.
CHANGED = (
    "tables_inserted_into", "tables_deleted_from", "inlined_insert", "inlined_delete",
    "tables_altered", "tables_dropped",
)

__all__ = ["CHANGED", "rollback", "rollback_work"]


@dataclass(frozen=True)
class _Undo:
    """The load to undo: its id, the snapshot it committed and the one before it."""

    load_id: str
    committed: int
    before: int


def rollback_work(table: str, load_id: str, *, force: bool = False) -> Work:
    """:func:`rollback` of ``table`` as a block's load work (given the target as the backend
    spells it; the backend retries it on a commit conflict)."""
    return lambda con, target: rollback(con, target, load_id, force=force, shown=table)


def rollback(
    con: duckdb.DuckDBPyConnection, table: str, load_id: str, *, force: bool = False, shown: str | None = None
) -> LoadResult:
    """Put ``table`` back as it was just before load ``load_id``, as a new commit recorded in
    the ledger; returns what the rollback did (``mode="rollback"``; ``inserted``: rows put
    back, ``deleted``: rows taken out). ``shown`` is the name messages use (default ``table``).
    See the module docstring for what is refused."""
    started = time.perf_counter()
    target, table = table, shown or table
    if in_transaction(con):
        raise LoadConfigError(
            f"Cannot roll back {table!r} inside an open transaction (an explicit BEGIN, or a "
            "Prefect transaction its loads join): a rollback is a commit of its own. Call it "
            "outside the transaction."
        )
    parts = split_table_name(target)
    ledger.check_user_table(parts, table)
    ref = ledger.resolve(con, parts)
    if not is_lake(con, ref.catalog):
        raise LoadConfigError(
            f"Cannot roll back {table!r}: it is not in a DuckLake (catalog {ref.catalog!r}), "
            "and only a DuckLake keeps the snapshots a rollback restores."
        )
    undo = _find(con, ref, table, load_id)
    if not force:
        _refuse_shared_commit(con, ref, table, undo)
    entry = ledger.LedgerEntry(rollback_of=load_id)
    with transaction(con):
        if not force:
            _refuse_later_changes(con, ref, table, undo)
        created, inserted, deleted, changes = _restore(con, ref, undo.before)
        _restore_state(con, ref, undo.before)
        ledger.record(
            con, [ref.catalog, ref.schema, ref.name], entry, strategy="rollback", inserted=inserted,
            updated=0, deleted=deleted, created=created, schema_changes=changes, checks=(),
        )
    return LoadResult(
        table=table, mode="rollback", inserted=inserted, deleted=deleted, created=created,
        schema_changes=tuple(changes), seconds=time.perf_counter() - started, load_id=entry.load_id,
    )


# ---------------------------------------------------------------------- which snapshot
def _find(con: duckdb.DuckDBPyConnection, ref: TableRef, table: str, load_id: str) -> _Undo:
    """The load's ledger row and commit snapshot, or a refusal that says why there is none."""
    listing = f"load_history({table!r}) lists the loads into it with their load_id"
    known = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = 'loads'",
        [ref.catalog, STATE_SCHEMA],
    ).fetchall()[0][0]
    row = None
    if known:
        # By name: a ledger from before snapshot ids has no read_snapshot_id column until its next load.
        result = con.execute(f"SELECT * FROM {ref.state}.loads WHERE load_id = ?", [load_id])
        names = [d[0] for d in result.description]
        found = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        row = (found[0]["table_name"], found[0].get("read_snapshot_id")) if found else None
    if row is None:
        raise LoadConfigError(f"Cannot roll back {table!r}: no load {load_id!r} is recorded in the lake's ledger; {listing}.")
    if row[0] != ref.key:
        raise LoadConfigError(
            f"Cannot roll back {table!r} to before load {load_id}: that load went into {row[0]!r}. "
            f"Pass the table it loaded, or pick a load of {table!r} ({listing})."
        )
    first = first_with_row(con, ref.state, load_id, available_snapshots(con, ref.catalog, row[1]))
    kept = set(available_snapshots(con, ref.catalog))
    if first is None or first - 1 not in kept or row_at(con, ref.state, load_id, first - 1):
        where = f"snapshot {first - 1}" if first is not None else "the snapshot"
        raise LoadConfigError(
            f"Cannot roll back load {load_id} of {table!r}: {where}, the table as it was just "
            "before that load, has been expired (ducklake_expire_snapshots), so that state is "
            "gone. Load the wanted data again or restore it from a backup; to keep loads "
            "undoable, expire snapshots only older than you may need to roll back."
        )
    return _Undo(load_id, first, first - 1)


def _refuse_shared_commit(con: duckdb.DuckDBPyConnection, ref: TableRef, table: str, undo: _Undo) -> None:
    """Loads into the same table committed in one transaction can only be undone together."""
    sql = f"SELECT load_id FROM {ref.state}.loads AT (VERSION => {undo.committed}) WHERE table_name = ? AND load_id <> ?"
    try:
        rows = con.execute(
            f"{sql} EXCEPT SELECT load_id FROM {ref.state}.loads AT (VERSION => {undo.before})",
            [ref.key, undo.load_id],
        ).fetchall()
    except duckdb.Error:  # the ledger did not exist before the load
        rows = con.execute(sql, [ref.key, undo.load_id]).fetchall()
    if rows:
        others = ", ".join(sorted(r[0] for r in rows))
        raise LoadConfigError(
            f"Refused to roll back load {undo.load_id} of {table!r}: it committed in snapshot "
            f"{undo.committed} together with load(s) {others} into the same table (one "
            "transaction), and the table can only be put back as it was before that snapshot. "
            "Pass force=True (prefect-etl rollback --force) to undo them all."
        )


def _versions(con: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str) -> list[tuple[int, int, int | None]]:
    """Every version of the table named ``schema.name`` in the lake's catalog: (table id, first
    snapshot, snapshot that ended it or ``None``). Read from the catalog tables of the DuckLake
    specification (``ducklake_table``, ``ducklake_schema``)."""
    meta = q(f"__ducklake_metadata_{catalog}")
    rows = con.execute(
        f"SELECT t.table_id, t.begin_snapshot, t.end_snapshot FROM {meta}.ducklake_table t "
        f"JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id "
        "WHERE lower(s.schema_name) = lower(?) AND lower(t.table_name) = lower(?)",
        [schema, name],
    ).fetchall()
    return [(int(i), int(b), None if e is None else int(e)) for i, b, e in rows]


def _alive(versions: list[tuple[int, int, int | None]], snapshot: int) -> bool:
    return any(b <= snapshot and (e is None or e > snapshot) for _, b, e in versions)


def _changed_after(
    con: duckdb.DuckDBPyConnection, catalog: str, versions: list[tuple[int, int, int | None]], after: int
) -> list[int]:
    """The snapshots after ``after`` that changed the table whose ``versions`` are given: its
    rows or columns (by table id, in ``ducklake_snapshots().changes``), or the table itself
    (a version begun or ended)."""
    ids = {str(i) for i, _, _ in versions}
    bounds = {s for _, b, e in versions for s in (b, e) if s is not None and s > after}
    snapshots = con.execute(
        "SELECT snapshot_id, changes FROM ducklake_snapshots(?) WHERE snapshot_id > ? ORDER BY 1", [catalog, after]
    ).fetchall()
    return [
        s for s, changes in snapshots
        if s in bounds or any(ids.intersection((changes or {}).get(key) or ()) for key in CHANGED)
    ]


def _refuse_later_changes(con: duckdb.DuckDBPyConnection, ref: TableRef, table: str, undo: _Undo) -> None:
    """Refuse when a commit after the load changed the table: its rows, its columns, or the
    table itself (created or dropped under that name), by a load or by anything else."""
    later = _changed_after(con, ref.catalog, _versions(con, ref.catalog, ref.schema, ref.name), undo.committed)
    if not later:
        return
    loads = con.execute(
        f"SELECT load_id FROM {ref.state}.loads WHERE table_name = ? EXCEPT "
        f"SELECT load_id FROM {ref.state}.loads AT (VERSION => {undo.committed})",
        [ref.key],
    ).fetchall()
    outside = max(len(later) - len(loads), 0)
    what = [f"{len(loads)} later load(s) ({', '.join(sorted(r[0] for r in loads))})"] if loads else []
    if outside:
        what.append(f"{outside} commit(s) outside prefect-etl-blocks' ledger")
    raise LoadConfigError(
        f"Refused to roll back load {undo.load_id} of {table!r}: the table changed after it, in "
        f"snapshot(s) {', '.join(map(str, later))} ({' and '.join(what)}). Rolling back puts the "
        f"table as it was before load {undo.load_id}, which would undo those too. Roll the later "
        "loads back first (newest first), or pass force=True (prefect-etl rollback --force) to "
        "discard them as well."
    )


# ---------------------------------------------------------------------- writing it back
def _temp(con: duckdb.DuckDBPyConnection, select: str) -> str:
    name = q("__petl_rollback_" + uuid.uuid4().hex)
    con.execute(f"CREATE TEMP TABLE {name} AS {select}").fetchall()
    return f"temp.main.{name}"


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0])


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def _restore(con: duckdb.DuckDBPyConnection, ref: TableRef, before: int) -> tuple[bool, int, int, list[str]]:
    """Write the table as it was at snapshot ``before``; returns whether it was created, the
    rows inserted and deleted, and the column changes."""
    target = quote_parts((ref.catalog, ref.schema, ref.name))
    old = f"{target} AT (VERSION => {before})"
    existed = _alive(_versions(con, ref.catalog, ref.schema, ref.name), before)
    exists = table_exists(con, [ref.catalog, ref.schema, ref.name])
    if not existed:
        if not exists:
            return False, 0, 0, []
        deleted = _count(con, target)
        con.execute(f"DROP TABLE {target}").fetchall()
        return False, 0, deleted, [f"dropped table {ref.schema}.{ref.name}"]
    if not exists:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_parts((ref.catalog, ref.schema))}").fetchall()
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM {old}").fetchall()
        return True, _count(con, target), 0, []
    then, now = _columns(con, old), _columns(con, target)
    # A column named rowid hides DuckLake's row id, which the difference is taken by.
    if then != now or any(c.lower() == "rowid" for c, _ in now):
        deleted = _count(con, target)
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {old}").fetchall()
        return False, _count(con, target), deleted, _column_changes(then, now) if then != now else []
    rid = q("__petl_rowid")
    put_back = _temp(con, f"SELECT rowid AS {rid}, * FROM {old} EXCEPT ALL SELECT rowid, * FROM {target}")
    take_out = _temp(con, f"SELECT {rid} FROM (SELECT rowid AS {rid}, * FROM {target} EXCEPT ALL SELECT rowid, * FROM {old})")
    try:
        deleted, inserted = _count(con, take_out), _count(con, put_back)
        if deleted:
            con.execute(f"DELETE FROM {target} WHERE rowid IN (SELECT {rid} FROM {take_out})").fetchall()
        if inserted:
            con.execute(f"INSERT INTO {target} SELECT * EXCLUDE ({rid}) FROM {put_back}").fetchall()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {put_back}").fetchall()
        con.execute(f"DROP TABLE IF EXISTS {take_out}").fetchall()
    return False, inserted, deleted, []


def _column_changes(then: list[tuple[str, str]], now: list[tuple[str, str]]) -> list[str]:
    """What the rollback does to the columns, worded as the loads' schema changes are."""
    before, after = dict(then), dict(now)
    out = [f"added column {c} {t}" for c, t in then if c not in after]
    out += [f"changed column {c} from {after[c]} to {t}" for c, t in then if c in after and after[c] != t]
    out += [f"dropped column {c}" for c in after if c not in before]
    return out or ["reordered columns"]


def _restore_state(con: duckdb.DuckDBPyConnection, ref: TableRef, before: int) -> None:
    """Put the table's incremental state (file manifest, cursor marks) back as it was."""
    for name in ("files", "cursors"):
        table = f"{ref.state}.{q(name)}"
        versions = _versions(con, ref.catalog, STATE_SCHEMA, name)
        if not _changed_after(con, ref.catalog, versions, before):
            continue  # no commit since touched it (a plain load keeps no state): nothing to do
        if not _alive(versions, before):
            con.execute(f"DELETE FROM {table} WHERE table_name = ?", [ref.key]).fetchall()
            continue
        old = _temp(con, f"SELECT * FROM {table} AT (VERSION => {before}) WHERE table_name = {_literal(ref.key)}")
        try:
            differs = con.execute(
                f"SELECT (SELECT count(*) FROM (SELECT * FROM {old} EXCEPT ALL SELECT * FROM {table} "
                f"WHERE table_name = $1)) + (SELECT count(*) FROM (SELECT * FROM {table} WHERE "
                f"table_name = $1 EXCEPT ALL SELECT * FROM {old}))",
                [ref.key],
            ).fetchall()[0][0]
            if differs:
                con.execute(f"DELETE FROM {table} WHERE table_name = ?", [ref.key]).fetchall()
                con.execute(f"INSERT INTO {table} SELECT * FROM {old}").fetchall()
        finally:
            con.execute(f"DROP TABLE IF EXISTS {old}").fetchall()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
