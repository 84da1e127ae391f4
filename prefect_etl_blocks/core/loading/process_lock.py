"""The lock file beside a DuckDB database: processes take turns *before* DuckDB reads the file.

DuckDB 2.0 reads a database file's headers (which say where the current state of the file
is) before it takes its own lock on the file, and does not read them again once it holds
the lock; DuckDB 1.5 read them after taking it. A process that opens the file just as
another one commits and closes it can therefore start from the state *before* that commit:
its own commit then writes over the other's, which is lost, or leaves the file's blocks
inconsistent (``Corrupted bitpacking segment``). Eight processes loading into one file
lost a committed load in about one run in eight on DuckDB 2.0.1, and never on 1.5.

So every connection to a database file first takes an advisory lock on ``<database>.lock``:
exclusive for a writer, shared for a ``read_only`` connection. DuckDB only reads the
database once that lock is held, and the lock is given back after the connection is closed.
The lock is ``flock``, on a file of its own: closing a descriptor of the database (DuckDB
opens and closes several) never drops it, and the kernel drops it when its process dies,
even by SIGKILL. The file is left in place (removing a lock file races with the next
taker); an exclusive holder writes its process id into it, for the error a waiter raises.

Other programs that open the database (the ``duckdb`` shell, dbt-duckdb) do not take this
lock; they are kept out by DuckDB's own lock as before, with DuckDB's race.

Example:
    ```python
    import tempfile, pathlib
    from prefect_etl_blocks.core.loading.process_lock import lock_path, take

    database = pathlib.Path(tempfile.mkdtemp()) / "w.duckdb"
    held = take(str(database), shared=False, deadline=None, describe=str)
    assert held is not None and lock_path(str(database)).endswith("w.duckdb.lock")
    held.release()
    ```
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # Windows: DuckDB's own lock is all there is
    fcntl = None  # type: ignore[assignment]

from prefect_etl_blocks.core.errors import DuckDBLockTimeoutError

#: What is appended to the database path to name its lock file.
SUFFIX = ".lock"


def lock_path(database: str) -> str:
    """The lock file of the database file at ``database`` (resolved: symlinks, ``~``, ``..``)."""
    return os.path.realpath(os.path.expanduser(database)) + SUFFIX


class HeldLock:
    """The lock file of one database, held by this process until :meth:`release`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        _HELD.add(self)

    def release(self) -> None:
        """Give the lock back (closing the descriptor drops it); a second call does nothing."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:  # dropped without release: the lock must not outlive it
        self.release()


#: The locks this process holds, for a forked child to drop.
_HELD: weakref.WeakSet[HeldLock] = weakref.WeakSet()


def _forget_in_child() -> None:
    """In a forked child: close the inherited descriptors (closing drops only the child's
    reference; the lock stays the parent's and ends when the parent releases it, not when
    the last child exits)."""
    for held in list(_HELD):
        held.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _open(path: str) -> int | None:
    """A descriptor of the lock file, created when missing; ``None`` where it cannot be made
    or read (a read-only folder: no process can write the database there either)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        pass
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def take(
    database: str, *, shared: bool, deadline: float | None, describe: Callable[[str], str]
) -> HeldLock | None:
    """Take the lock file of ``database``: shared (readers) or exclusive (a writer), waiting
    until ``deadline`` (a ``time.monotonic()`` value; ``None``: one try, no wait).

    Returns ``None`` where there is no lock file to take (no ``fcntl``; a folder where it
    cannot be created). ``describe(holder)`` words the timeout's message.

    Raises:
        DuckDBLockTimeoutError: another process kept the lock past ``deadline``.
    """
    if fcntl is None:
        return None
    path = lock_path(database)
    fd = _open(path)
    if fd is None:
        return None
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    delay = 0.001
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if deadline is None or now >= deadline:
                    raise DuckDBLockTimeoutError(describe(_holder(fd))) from None
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 1.5, 0.05)
        if not shared:
            try:
                # Padded to a fixed width, it replaces the last holder's pid without a truncate.
                os.pwrite(fd, f"{os.getpid():<20}\n".encode("ascii"), 0)
            except OSError:
                pass  # a lock file opened read-only: the lock holds, the holder goes unnamed
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd)
