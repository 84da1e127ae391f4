"""Which DuckLake snapshot a load read, and which one it committed. Prefect-free.

A load writes its ledger row inside its own transaction, before DuckLake numbers the commit, so
the row cannot hold the snapshot it commits. It holds the snapshot its transaction *read*
(:func:`read_snapshot`, called by :func:`~prefect_etl_blocks.core.loading.ledger.record` inside
the transaction that commits, so a load that a conflict ran again records the attempt that
committed). The committed snapshot is then found from the ledger row itself: it is the first
snapshot at which the row exists (:func:`commit_snapshot`). That holds whatever happened in
between (other writers' commits, several loads in one transaction, a retried conflict) and for
ledger rows written before snapshot ids were recorded.

The ledger's column is named ``read_snapshot_id``, not ``snapshot_id``: a real ``snapshot_id``
column would hide DuckLake's virtual column of that name on the ledger table (and make
``ducklake_table_changes`` report its values as snapshot ids, DuckLake 1.5.5). Why not ``ducklake_last_committed_snapshot``:
it is kept per DuckDB instance, which the block shares between threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import duckdb

from prefect_etl_blocks.core.loading.ledger import resolve
from prefect_etl_blocks.core.loading.table_keys import state_schema

__all__ = ["available_snapshots", "commit_snapshot", "current_snapshot", "is_lake", "read_snapshot", "row_at"]


def is_lake(con: duckdb.DuckDBPyConnection, catalog: str) -> bool:
    """Whether ``catalog`` is an attached DuckLake."""
    rows = con.execute(
        "SELECT count(*) FROM duckdb_databases() WHERE database_name = ? AND type = 'ducklake'", [catalog]
    ).fetchall()
    return rows[0][0] > 0


def read_snapshot(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> int | None:
    """The snapshot the open transaction on ``con`` reads in the table's catalog (inside a
    transaction ``ducklake_current_snapshot`` answers for the transaction, not the latest
    commit); ``None`` when the table is not in a DuckLake."""
    catalog = resolve(con, parts).catalog
    if not is_lake(con, catalog):
        return None
    return current_snapshot(con, catalog)


def current_snapshot(con: duckdb.DuckDBPyConnection, catalog: str) -> int:
    """The snapshot of the DuckLake attached as ``catalog`` that ``con`` reads: its open
    transaction's, or outside one the newest committed."""
    return int(con.execute("SELECT id FROM ducklake_current_snapshot(?)", [catalog]).fetchall()[0][0])


def row_at(con: duckdb.DuckDBPyConnection, state: str, load_id: str, version: int) -> bool:
    """Whether the ledger row of ``load_id`` exists at snapshot ``version`` (``False`` when
    the ledger did not exist then). Not for use inside a transaction: an error would abort it."""
    try:
        rows = con.execute(
            f"SELECT count(*) FROM {state}.loads AT (VERSION => {int(version)}) WHERE load_id = ?", [load_id]
        ).fetchall()
    except duckdb.Error:
        return False
    return rows[0][0] > 0


def available_snapshots(con: duckdb.DuckDBPyConnection, catalog: str, after: int | None = None) -> list[int]:
    """The ids of the snapshots not expired (after ``after``), oldest first."""
    sql = f"SELECT snapshot_id FROM ducklake_snapshots({_literal(catalog)})"
    params: list[int] = []
    if after is not None:
        sql += " WHERE snapshot_id > ?"
        params.append(int(after))
    return [int(s) for (s,) in con.execute(sql + " ORDER BY snapshot_id", params).fetchall()]


def commit_snapshot(
    con: duckdb.DuckDBPyConnection, catalog: str, load_id: str, read: int | None = None, *, committed: bool = False
) -> int | None:
    """The snapshot that committed the ledger row of ``load_id`` (``read``: the snapshot the
    load read, when known: the commit is later). ``None`` when the row is not committed (a
    dry run, a load inside an open transaction) or its snapshot was expired.

    The row exists from its commit on, so the commit is the first snapshot at which it exists:
    a binary search over the snapshots after ``read``. Without other writers that is the
    newest snapshot, found with one query. ``committed``: the caller saw the load's own
    transaction commit the row on ``con`` just now; then a newest snapshot of ``read + 1``
    can only be that commit, and the row is not looked for (a scan of the ledger, which
    grows with every load: about 1 ms of a fresh-block load on PostgreSQL)."""
    if committed and read is not None:
        with contextlib.suppress(duckdb.Error):  # on failure, the search below answers
            if (newest := current_snapshot(con, catalog)) == read + 1:
                return newest
    state = state_schema(catalog)
    try:
        newest, present = con.execute(
            f"SELECT (SELECT id FROM ducklake_current_snapshot({_literal(catalog)})), "
            f"(SELECT count(*) FROM {state}.loads WHERE load_id = ?)",
            [load_id],
        ).fetchall()[0]
    except duckdb.Error:  # no ledger yet
        return None
    if not present:
        return None
    if read is not None and newest == read + 1:
        return int(newest)  # the only commit since the load read: its own
    first = first_with_row(con, state, load_id, available_snapshots(con, catalog, read))
    if first is None:
        return None
    # The row's commit is ``first`` only when the snapshot before it was kept and lacks the row.
    previous = [s for s in available_snapshots(con, catalog) if s < first][-1:]
    if previous != [first - 1] or row_at(con, state, load_id, first - 1):
        return None
    return first


def first_with_row(con: duckdb.DuckDBPyConnection, state: str, load_id: str, candidates: list[int]) -> int | None:
    """The first of ``candidates`` (ascending) at which the row of ``load_id`` exists."""
    lo, hi, found = 0, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if row_at(con, state, load_id, candidates[mid]):
            found, hi = candidates[mid], mid - 1
        else:
            lo = mid + 1
    return found


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
