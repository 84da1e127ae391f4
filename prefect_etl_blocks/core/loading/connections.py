"""Connections and locking: one in-process lock per database file, a bounded wait for the
cross-process file lock, and transactions that loads can join.

DuckDB lets one *process* write a file at a time (it holds an OS lock on the file), but inside
one process every connection to the same path shares one database instance, so two threads
that each open the file with their own block run concurrent transactions on it and fail with
``TransactionContext Error: Conflict on update!``. :func:`file_lock` gives every resolved path
one lock shared by all blocks and threads of the process, held for as long as a block keeps a
connection to the file open: in-process writers then take turns exactly as writers in separate
processes do, and never conflict. Between processes, the lock file of
:mod:`~prefect_etl_blocks.core.loading.process_lock` is taken before DuckDB reads the file.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from prefect_etl_blocks.core.errors import LOCK_CONFLICT, DuckDBLockTimeoutError
from prefect_etl_blocks.core.loading import process_lock

_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")

#: An upper bound (seconds) on lock waits in the current context, set by the library's tasks to
#: stay inside a task's ``timeout_seconds`` so that a busy file is reported as
#: :class:`DuckDBLockTimeoutError` rather than as Prefect's ``TimedOut``.
LOCK_WAIT_CAP: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "petl_lock_wait_cap", default=None
)


class FileLock:
    """A lock on one database path, owned by a *holder* (a block), not by a thread.

    Ownership by holder matters because a block may open its connection in one worker thread
    and close it in another (async twins run in ``anyio`` worker threads). The same holder may
    acquire it again (re-entrant); other holders wait.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._owner: Any = None
        self._count = 0
        self.owner_thread: str | None = None
        #: The lock file between processes, held while the owner holds this lock.
        self.between_processes: process_lock.HeldLock | None = None

    def acquire(self, owner: Any, timeout: float) -> bool:
        """Take the lock for ``owner``; ``False`` when another holder kept it past ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._owner is not None and self._owner is not owner:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._owner = owner
            self._count += 1
            self.owner_thread = threading.current_thread().name
            return True

    def release(self, owner: Any) -> None:
        """Give the lock back (one level of re-entry); a holder that does not own it is ignored."""
        with self._cond:
            if self._owner is not owner:
                return
            self._count -= 1
            if self._count <= 0:
                held, self.between_processes = self.between_processes, None
                if held is not None:
                    held.release()
                self._owner, self._count, self.owner_thread = None, 0, None
                self._cond.notify_all()

    def held_by(self, owner: Any) -> bool:
        with self._cond:
            return self._owner is owner


_REGISTRY: dict[str, FileLock] = {}
_REGISTRY_GUARD = threading.Lock()


def file_lock(path: str) -> FileLock:
    """The process-wide lock of the database file at ``path`` (resolved: symlinks, ``~``, ``..``)."""
    key = os.path.realpath(os.path.expanduser(path))
    with _REGISTRY_GUARD:
        lock = _REGISTRY.get(key)
        if lock is None:
            lock = _REGISTRY[key] = FileLock(key)
        return lock


def lock_wait_seconds(configured: float) -> float:
    """``configured``, capped by :data:`LOCK_WAIT_CAP` when a task set one."""
    cap = LOCK_WAIT_CAP.get()
    return configured if cap is None else max(0.0, min(configured, cap))


def connect_waiting(
    path: str, *, read_only: bool, config: dict[str, Any], timeout: float, owner: Any
) -> duckdb.DuckDBPyConnection:
    """Open ``path`` for ``owner``: take the in-process file lock, then the lock file shared
    with other processes (:mod:`~prefect_etl_blocks.core.loading.process_lock`), then wait out
    DuckDB's own lock (held by a program that does not take the lock file), all within
    ``timeout`` seconds in total.

    The locks stay held after this returns; give them back with :func:`close_connection`
    (or ``file_lock(path).release(owner)``) once the connection is closed.

    Raises:
        DuckDBLockTimeoutError: the file stayed locked (by this or another process) too long.
    """
    started = time.monotonic()
    deadline = started + timeout
    lock = file_lock(path)
    if not lock.acquire(owner, timeout):
        raise DuckDBLockTimeoutError(
            f'DuckDB file "{path}" is in use by another DuckDBConnection in this process '
            f"(thread {lock.owner_thread or 'unknown'}); waited {timeout:g} s for it. Writers "
            "of one file take turns: let the other load finish, raise lock_timeout_seconds, or "
            "share one block inside `with db:`. A block also keeps its file while a fetch_one "
            "or fetch_many result of it is left unread: read it to the end, call its "
            "reset_connections(), or fetch inside `with db:`."
        )
    try:
        if lock.between_processes is None:
            lock.between_processes = process_lock.take(
                path, shared=read_only, deadline=deadline,
                describe=lambda holder: (
                    f'DuckDB file "{path}" is in use by {holder} (it holds '
                    f'"{process_lock.lock_path(path)}"); waited {timeout:g} s for it. Writers '
                    "of one file take turns: let the other process finish, raise "
                    "lock_timeout_seconds, or use read_only=True for readers."
                ),
            )
        delay = 0.02
        while True:
            before = _file_state(path)
            try:
                return duckdb.connect(path, read_only=read_only, config=dict(config))
            except duckdb.IOException as exc:
                if LOCK_CONFLICT not in str(exc):
                    if _being_created(path, exc, before) and time.monotonic() < deadline:
                        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                        delay = min(delay * 1.6, 0.5)
                        continue
                    raise
                if time.monotonic() >= deadline:
                    match = _HOLDER.search(str(exc))
                    holder = (
                        f"process {match['pid']} ({match['exe']})" if match else "another process"
                    )
                    raise DuckDBLockTimeoutError(
                        f'DuckDB file "{path}" is locked by {holder}; waited {timeout:g} s for '
                        "it. DuckDB allows one writing process per file: let the other process "
                        "finish, raise lock_timeout_seconds, or use read_only=True for readers."
                    ) from exc
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 1.6, 0.5)
    except BaseException:
        lock.release(owner)
        raise


#: DuckDB's file header: three 4 KiB blocks, written by the process that creates the file.
_HEADER_BYTES = 3 * 4096
_NOT_A_DATABASE = "not a valid DuckDB database file"
#: Where DuckDB's main header keeps its magic bytes (after an 8-byte checksum).
_MAGIC, _MAGIC_START, _MAGIC_END = b"DUCK", 8, 12


def _file_state(path: str) -> tuple[int, int] | None:
    """``path``'s size and mtime (ns), ``None`` when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _being_created(path: str, exc: BaseException, before: tuple[int, int] | None) -> bool:
    """Whether ``exc`` says ``path`` is not a database because another process is creating
    it: several processes opening a new file at once, one of them still writing the header.

    ``before`` is the file's size and mtime just before the failed attempt. Such a file was
    written moments ago, and has changed since that look (the creator may have finished
    between the failure and now, so what the file holds now says nothing of what the attempt
    read), or is still shorter than the header or without its magic bytes (``DUCK`` after
    the 8-byte checksum: the room may be allocated before it is written). An old file, or a
    complete one that has not moved, is not a database and fails at once."""
    if _NOT_A_DATABASE not in str(exc):
        return False
    now = _file_state(path)
    if now is None:
        return True  # gone again: the creator rolled back; opening anew creates it
    if time.time_ns() - now[1] >= 10 * 1_000_000_000:
        return False
    if now != before:
        return True
    try:
        with open(path, "rb") as f:
            magic = f.read(_MAGIC_END)[_MAGIC_START:]
    except OSError:
        return True
    return now[0] < _HEADER_BYTES or magic != _MAGIC


def close_connection(con: duckdb.DuckDBPyConnection, path: str | None, owner: Any) -> None:
    """Close ``con`` and give back the in-process lock of ``path`` (``None`` for memory)."""
    try:
        con.close()
    finally:
        if path is not None:
            file_lock(path).release(owner)


def in_transaction(con: duckdb.DuckDBPyConnection, txid_before: int | None = None) -> bool:
    """Whether ``con`` is inside an explicit transaction.

    Asked without side effects: a failed ``BEGIN`` would abort the open transaction, but two
    statements outside a transaction each get their own transaction id, and inside one they
    share it. ``txid_before``: the ``txid_current()`` of the statement run on ``con`` just
    before (nothing else in between), which is then the first of the two.
    """
    first = txid_before if txid_before is not None else con.execute("SELECT txid_current()").fetchall()[0][0]
    second = con.execute("SELECT txid_current()").fetchall()[0][0]
    return first == second


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, joined: Callable[[duckdb.DuckDBPyConnection], bool] | None = None,
    *, txid_before: int | None = None,
) -> Iterator[bool]:
    """Run the body in a transaction on ``con``: COMMIT on success, ROLLBACK on any error.

    When ``con`` is already inside a transaction the body joins it (yields ``False``) and the
    outer owner commits or rolls back, so a load can be one step of a larger unit of work.
    ``joined`` asks that question when :func:`in_transaction` cannot (a DuckLake as the
    default catalog). ``txid_before``: the ``txid_current()`` of the statement run on ``con``
    just before (nothing else in between), passed on to :func:`in_transaction`.

    Example:
        ```python
        import duckdb
        import polars as pl
        from prefect_etl_blocks.core.loading import load, transaction

        con = duckdb.connect()
        with transaction(con):  # both loads commit together, or neither does
            load(con, pl.DataFrame({"id": [1]}), "orders")
            load(con, pl.DataFrame({"id": [1], "qty": [2]}), "order_lines")
        ```
    """
    if joined(con) if joined is not None else in_transaction(con, txid_before):
        yield False
        return
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        yield True
    except BaseException:
        try:
            con.execute("ROLLBACK").fetchall()
        except duckdb.Error:
            pass  # DuckDB may already have rolled back a failed transaction itself
        raise
    else:
        con.execute("COMMIT").fetchall()


def first_row(rows: list[tuple]) -> tuple | None:
    """The first of ``rows`` (from ``fetchall()``), or ``None``.

    Results are always fetched to the end: DuckDB 2.0 refuses ``register`` and other work on a
    connection whose last result was not fully read.
    """
    return rows[0] if rows else None
