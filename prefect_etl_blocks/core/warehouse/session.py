"""One warehouse session: a DuckDB connection, its lock, and the results the fetch methods
remember. Prefect-free; the blocks (:mod:`prefect_etl_blocks.blocks.warehouse`) each hold one
and delegate to it.

What differs between a DuckDB file and a DuckLake is a :class:`Backend`: how a connection is
opened and closed, whether it stays open, how errors are masked, how a load commits. The
session does the rest, the same for both.

Connections: outside :meth:`Session.hold` every call takes a connection for itself and gives
it back (a file's lock is released in between); while held, one connection serves every call.

Units of work: a load inside an outer unit of work (a Prefect transaction, see
:mod:`prefect_etl_blocks.runtime.transactions`) runs on that unit's
:class:`~prefect_etl_blocks.core.warehouse.units.Unit`: one connection
inside one open DuckDB transaction, which the engine joins, so nothing commits until the unit
ends. While a unit holds a database, the session's other calls use its connection too (they see
its uncommitted loads, and do not wait for the file lock it holds). A dry run opens a
transaction of its own and rolls it back (:meth:`Session.commit`).

Results (Prefect's ``DatabaseBlock`` convention, as prefect-sqlalchemy implements it): a fetch
called again with the same operation and parameters continues one result; an exhausted result
keeps returning ``[]`` until :meth:`Session.reset`, :meth:`Session.close` or the end of the
outermost hold. A result being read keeps its connection (a file stays locked) until it is read
to the end; an exhausted one holds nothing. See :mod:`prefect_etl_blocks.core.warehouse.results`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import polars as pl

from prefect_etl_blocks.core.engines import finish_result, query_polars
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import split_table_name
from prefect_etl_blocks.core.loading.connections import in_transaction, transaction
from prefect_etl_blocks.core.loading.engine import LoadResult, table_exists
from prefect_etl_blocks.core.loading.incremental import reset_incremental
from prefect_etl_blocks.core.loading.ledger import history, run_ids
from prefect_etl_blocks.core.warehouse.results import Results, classified

if TYPE_CHECKING:
    from prefect_etl_blocks.core.warehouse.units import Unit

T = TypeVar("T")
#: A connection-level failure: the backend may have to reconnect (:meth:`Backend.broken`).
_BROKEN = (duckdb.IOException, duckdb.ConnectionException, duckdb.FatalException)
#: One load's work on a connection, given the target as the backend names it.
Work = Callable[[duckdb.DuckDBPyConnection, str], LoadResult]

#: The unit a session's calls should use now, if any (the block layer supplies it).
Ambient = Callable[["Session"], "Unit | None"]

__all__ = ["Ambient", "Backend", "Session", "Work", "rehearsal"]


class Backend:
    """What a kind of warehouse does its own way. :meth:`open` is required; the rest default
    to a plain DuckDB connection."""

    #: Whether the connection stays open between calls (an in-memory database would lose its
    #: data otherwise).
    keeps_connection: bool = False

    def open(self) -> duckdb.DuckDBPyConnection:
        """A new connection, ready for work."""
        raise NotImplementedError

    def open_for_load(self) -> tuple[duckdb.DuckDBPyConnection, bool]:
        """A new connection for one load, closed after it, and whether the backend skipped, for
        that load alone, setup that only later work on the connection would need (see
        :meth:`~prefect_etl_blocks.core.warehouse.lake.LakeBackend.open_for_load`)."""
        return self.open(), False

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close one connection that :meth:`open` gave."""
        con.close()

    def masking(self) -> contextlib.AbstractContextManager[None]:
        """Around every call: turns what escapes into what the caller may see."""
        return contextlib.nullcontext()

    def broken(self) -> None:
        """Called when a short-lived connection failed with a connection-level error."""

    def in_transaction(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Whether ``con`` has an open transaction (that a load then joins)."""
        return in_transaction(con)

    def qualify(self, con: duckdb.DuckDBPyConnection, table: str) -> str:
        """``table`` as the ledger and state functions should name it."""
        return table

    def state_scope(self, con: duckdb.DuckDBPyConnection) -> contextlib.AbstractContextManager[None]:
        """Around changes to the incremental state."""
        return contextlib.nullcontext()

    def commit(
        self, session: Session, work: Work, table: str, replayable: bool, *, rolls_back: bool = False
    ) -> tuple[LoadResult, int]:
        """Run one load as one transaction; return what it did and how many attempts it took.
        ``rolls_back``: ``work`` is a dry run's rehearsal (:func:`rehearsal`), which commits
        nothing."""
        with session.connect() as con:
            return work(con, table), 1

    def identity(self) -> str | None:
        """What names this database across blocks of one process (loads into the same one in
        one unit of work share its connection); ``None`` when only this block can reach it."""
        return None

    def joined(self, con: duckdb.DuckDBPyConnection, work: Work, table: str) -> LoadResult:
        """Run ``work`` on ``con``, a connection already inside a transaction (a unit's)."""
        return work(con, table)

    def begin(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("BEGIN TRANSACTION").fetchall()

    def end(self, con: duckdb.DuckDBPyConnection, commit: bool) -> None:
        """COMMIT or ROLLBACK the transaction :meth:`begin` opened on ``con``."""
        con.execute("COMMIT" if commit else "ROLLBACK").fetchall()


class Session:
    """A backend's connection, lock and remembered results (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        run_ids: Callable[[], tuple[str | None, str | None]] | None = None,
        ambient: Ambient | None = None,
    ) -> None:
        self.backend = backend
        self.run_ids = run_ids
        self.ambient = ambient
        self.connection: duckdb.DuckDBPyConnection | None = None
        self.held = 0
        self.lock = threading.RLock()
        self.results = Results(self)
        self.last_load: LoadResult | None = None
        self.last_attempts = 0

    # ------------------------------------------------------------------ connections
    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation: an active unit's, the held one, or a short-lived one."""
        with self._connect(for_load=False) as (con, _):
            yield con

    @contextmanager
    def connect_for_load(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
        """:meth:`connect` for one load, and whether the connection was opened for that load
        alone with setup skipped (:meth:`Backend.open_for_load`); never a unit's or the held one."""
        with self._connect(for_load=True) as pair:
            yield pair

    @contextmanager
    def _connect(self, *, for_load: bool) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
        unit = self.ambient(self) if self.ambient is not None else None
        if unit is not None:
            with unit.lock:
                yield unit.con, False
            return
        with self.lock:
            if self.connection is not None:
                self.results.park()
                try:
                    yield self.connection, False
                finally:
                    self.close_if_idle()  # kept only for a result that is now read
                return
            if self.backend.keeps_connection:
                self.connection = self.backend.open()
                yield self.connection, False
                return
            con, alone = self.backend.open_for_load() if for_load else (self.backend.open(), False)
            try:
                yield con, alone
            except _BROKEN:
                self.backend.broken()
                raise
            finally:
                self.backend.close(con)

    def using(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work(con)`` on a connection, with the backend's masking around it."""
        with self.backend.masking(), self.connect() as con:
            return work(con)

    @contextmanager
    def statement(self, sql: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one statement, whose DuckDB refusals become library errors."""
        with self.backend.masking(), self.connect() as con, classified(sql):
            yield con

    def hold(self) -> duckdb.DuckDBPyConnection:
        """Keep one connection open until the matching :meth:`release` (or :meth:`leave`)."""
        with self.backend.masking(), self.lock:
            if self.connection is None:
                self.connection = self.backend.open()
            self.results.park()  # the caller may run anything on it now
            self.held += 1
            return self.connection

    def release(self) -> None:
        with self.lock:
            self.held = max(0, self.held - 1)
            self.close_if_idle()

    def leave(self) -> None:
        """The end of a ``with block:``. Leaving the outermost one forgets every result, closing
        those left unread, and closes the connection (an in-memory database keeps it)."""
        with self.lock:
            self.held = max(0, self.held - 1)
            if self.held == 0:
                self.results.forget()
            self.close_if_idle()

    def reset(self) -> None:
        """Forget every remembered result; close the connection unless it is held."""
        with self.lock:
            self.results.forget()
            self.close_if_idle()

    def close(self) -> None:
        """Forget every result and close the connection, held or not. Safe to repeat."""
        with self.lock:
            self.held = 0
            self.results.forget()
            self.close_connection()

    def close_if_idle(self) -> None:
        if self.held == 0 and not self.results.reading() and not self.backend.keeps_connection:
            self.close_connection()

    def close_connection(self) -> None:
        # A result still being read dies with its connection; exhausted ones stay remembered.
        self.results.drop_unread()
        if self.connection is not None:
            try:
                self.backend.close(self.connection)
            finally:
                self.connection = None

    # ------------------------------------------------------------------ statements
    def fetch(self, operation: str, parameters: Any, size: int | None, *, streamed: bool) -> list[tuple]:
        """The next ``size`` rows of the remembered result (run now when there is none)."""
        with self.backend.masking():
            return self.results.read(operation, parameters, size, start=True, streamed=streamed) or []

    def fetch_all(self, operation: str, parameters: Any) -> list[tuple]:
        """What is left of a remembered result, or every row of a fresh run."""
        with self.backend.masking():
            rows = self.results.read(operation, parameters, None, start=False)
        if rows is not None:
            return rows
        with self.statement(operation) as con:
            return con.execute(operation, parameters).fetchall()

    def execute(self, operation: str, parameters: Any) -> None:
        with self.statement(operation) as con:
            con.execute(operation, parameters)
            finish_result(con)

    def execute_many(self, operation: str, seq_of_parameters: Sequence[Any]) -> None:
        with self.statement(operation) as con, transaction(con, joined=self.backend.in_transaction):
            con.executemany(operation, list(seq_of_parameters))
            finish_result(con)

    def query(self, sql: str, parameters: Any) -> pl.DataFrame:
        with self.statement(sql) as con:
            return query_polars(con, sql, parameters)

    def table_exists(self, table: str) -> bool:
        parts = split_table_name(table)
        return self.using(lambda con: table_exists(con, parts))

    # ------------------------------------------------------------------ loads and state
    def commit(
        self, work: Work, table: str, replayable: bool, *, dry_run: bool = False, unit: Unit | None = None
    ) -> LoadResult:
        """Run one load through the backend, recording the caller's run ids in the ledger.

        With ``unit`` the load joins that unit's open transaction (it commits when the unit
        does). With ``dry_run`` it runs in a transaction of its own that is rolled back: the
        result says what the load would do, and nothing is kept.
        """
        ids = self.run_ids() if self.run_ids is not None else (None, None)
        with run_ids(*ids):
            if unit is not None:
                result, self.last_attempts = unit.run(work, table), 1
            elif dry_run:
                result, self.last_attempts = self.backend.commit(
                    self, rehearsal(work), table, replayable, rolls_back=True
                )
                result = dataclasses.replace(result, dry_run=True)
            else:
                result, self.last_attempts = self.backend.commit(self, work, table, replayable)
        self.last_load = result
        return result

    def history(self, table: str | None) -> pl.DataFrame:
        return self.using(lambda con: history(con, self.backend.qualify(con, table) if table else None))

    def reset_incremental(self, table: str) -> int:
        def reset(con: duckdb.DuckDBPyConnection) -> int:
            qualified = self.backend.qualify(con, table)
            with self.backend.state_scope(con):
                return reset_incremental(con, qualified)

        return self.using(reset)


def rehearsal(work: Work) -> Work:
    """``work`` run inside a transaction that is always rolled back (a dry run). The engine
    joins it, so schemas, tables, columns, ledger rows and incremental state all vanish."""

    def rehearse(con: duckdb.DuckDBPyConnection, table: str) -> LoadResult:
        if in_transaction(con):
            raise LoadConfigError(
                f"dry_run=True into {table!r}: the connection is already inside a transaction "
                "(an explicit BEGIN inside `with db:`), which a dry run cannot roll back alone. "
                "Run the dry run outside that transaction."
            )
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            return work(con, table)
        finally:
            with contextlib.suppress(duckdb.Error):  # DuckDB may have rolled back itself
                con.execute("ROLLBACK").fetchall()

    return rehearse
