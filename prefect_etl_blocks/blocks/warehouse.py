"""What :class:`~prefect_etl_blocks.DuckDBConnection` and
:class:`~prefect_etl_blocks.DuckLakeConnection` share, written once: Prefect's ``DatabaseBlock``
methods, Polars queries, loads through :mod:`prefect_etl_blocks.core.loading` and the load ledger,
as thin delegations to the block's :class:`~prefect_etl_blocks.core.warehouse.session.Session`.

A block holds one session (created at first use, never shared by a copy or an unpickled block);
the session holds the connection, its lock and the remembered fetch results, and a
:class:`~prefect_etl_blocks.core.warehouse.session.Backend` that the block names in :meth:`_backend` says
what is its own (a DuckDB file: :class:`~prefect_etl_blocks.core.warehouse.duckdb_file.FileBackend`; a
DuckLake: :class:`~prefect_etl_blocks.core.warehouse.lake.LakeBackend`).

Sync and async (the one pattern of the library): every I/O method ``X`` has an async twin
``aX`` and is decorated with Prefect's ``@async_dispatch(aX)``, as Prefect's own blocks are.
Called from sync code ``X`` runs and returns its result; called from an async flow or task it
returns the coroutine of ``aX``, which runs the same work in a worker thread, so
``await db.fetch_one(...)`` works there. Pass ``_sync=True`` to force the sync path anywhere.

Connections: outside ``with block:`` every call takes a connection for itself and gives it
back (a file's lock is released in between); inside ``with block:`` (or :meth:`get_connection`)
one connection is kept for the body.

Results (Prefect's ``DatabaseBlock`` convention, as prefect-sqlalchemy implements it): the
fetch methods called again with the same operation and parameters continue one result, an
exhausted result keeps returning ``[]`` / ``None`` until :meth:`~WarehouseMethods.reset_connections`,
``close()`` or the end of ``with block:``. A result being read keeps its connection (a file
stays locked) until it is read to the end; an exhausted one holds nothing. Leaving ``with``
closes every result, read or not.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import duckdb
import polars as pl

from prefect_etl_blocks.blocks.loads import LoadMethods
from prefect_etl_blocks.core.errors import QueryError
from prefect_etl_blocks.core.loading.strategies import LoadMode
from prefect_etl_blocks.core.warehouse.session import Backend, Session
from prefect_etl_blocks.runtime.compat import async_dispatch
from prefect_etl_blocks.runtime.runs import prefect_run_ids
from prefect_etl_blocks.runtime.transactions import ambient

_CREATE_GUARD = threading.Lock()
_EXTENSION_NAME = re.compile(r"[A-Za-z0-9_]+")

__all__ = ["LoadMode", "WarehouseMethods", "check_extension_names"]


class WarehouseMethods(LoadMethods):
    """The shared public methods of the DuckDB-backed blocks (see the module docstring). A block
    class mixes it in before ``DatabaseBlock``, declares ``_session_obj`` as a private
    attribute, and names its backend in :meth:`_backend`. The loads are
    :class:`~prefect_etl_blocks.blocks.loads.LoadMethods`."""

    if TYPE_CHECKING:
        read_only: bool
        database_path: str
        _session_obj: Session | None

    def _backend(self) -> Backend:
        """What this kind of warehouse does its own way."""
        raise NotImplementedError

    @property
    def _warehouse(self) -> Session:
        """The block's session, created at first use."""
        if self._session_obj is None:
            with _CREATE_GUARD:
                if self._session_obj is None:
                    self._session_obj = Session(self._backend(), run_ids=prefect_run_ids, ambient=ambient)
        return self._session_obj

    # What the session holds, for a look from outside (tests, a debugger).
    @property
    def _connection(self) -> duckdb.DuckDBPyConnection | None:
        return None if self._session_obj is None else self._session_obj.connection

    @property
    def _cursors(self) -> dict[Any, tuple[duckdb.DuckDBPyConnection | None, list[tuple]]]:
        return {} if self._session_obj is None else self._session_obj.results.cursors

    @property
    def _held(self) -> int:
        return 0 if self._session_obj is None else self._session_obj.held

    def _fresh_private(self) -> dict[str, Any]:
        """The private state a copy or an unpickled block starts with: nothing shared."""
        return {"_session_obj": None}

    # ------------------------------------------------------------------ connection handling
    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Keep one DuckDB connection open for the ``with`` body and yield it.

        A DuckDB file stays locked while the body runs and is closed afterwards (an in-memory
        database stays open until :meth:`close`); a DuckLake connection has the lake attached
        and in use.

        Example:
            ```python
            from prefect_etl_blocks import DuckDBConnection

            with DuckDBConnection().get_connection() as con:
                con.execute("CREATE TABLE t AS SELECT 42 AS answer")
                print(con.sql("SELECT * FROM t").fetchall())
            ```
        """
        con = self._warehouse.hold()
        try:
            yield con
        finally:
            self._warehouse.release()

    async def areset_connections(self) -> None:
        """Async twin of :meth:`reset_connections`."""
        await self._in_thread(self.reset_connections)

    @async_dispatch(areset_connections)
    def reset_connections(self) -> None:
        """Forget every cached result of the fetch methods, so the next ``fetch_one``,
        ``fetch_many`` or ``fetch_all`` runs its query anew (prefect-sqlalchemy's
        ``reset_connections``).

        Result sets not read to the end are closed, and so is the connection they kept open
        (a DuckDB file is released). Inside ``with block:`` the block's own connection stays
        open until the ``with`` ends.
        """
        self._warehouse.reset()

    def reset_cursors(self) -> None:
        """The earlier name of :meth:`reset_connections` (always synchronous)."""
        self.reset_connections(_sync=True)

    def close(self) -> None:
        """Forget every cached result (as :meth:`reset_connections`) and close the connection,
        releasing a DuckDB file; an in-memory database is dropped. Safe to call more than once;
        the block opens a new connection when it is used again."""
        self._warehouse.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Any:
        self._warehouse.hold()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._warehouse.leave()

    async def __aenter__(self) -> Any:
        await anyio.to_thread.run_sync(self._warehouse.hold)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await anyio.to_thread.run_sync(self._warehouse.leave)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        private = dict(state.get("__pydantic_private__") or {})
        private.update(self._fresh_private())
        state["__pydantic_private__"] = private
        return state

    def __copy__(self) -> Any:
        # model_copy() goes through here: a copy opens its own connections, never shares one.
        new = super().__copy__()  # type: ignore[misc]
        object.__setattr__(new, "__pydantic_private__", dict(self.__getstate__()["__pydantic_private__"]))
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # type: ignore[attr-defined]
        return new

    # ------------------------------------------------------------------ DatabaseBlock
    async def _in_thread(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(method, *args, _sync=True, **kwargs))

    async def afetch_one(self, operation: str, parameters: Any = None, **execution_options: Any) -> tuple | None:
        """Async twin of :meth:`fetch_one`."""
        return await self._in_thread(self.fetch_one, operation, parameters, **execution_options)

    @async_dispatch(afetch_one)
    def fetch_one(self, operation: str, parameters: Any = None, **execution_options: Any) -> tuple | None:
        """The next row of the query's result, or ``None`` once it is exhausted.

        As in Prefect's ``DatabaseBlock`` convention (prefect-sqlalchemy), repeated calls of any
        fetch method with the same ``operation`` and ``parameters`` continue one result: the
        first runs the query, the next ones return the following rows, and an exhausted result
        keeps returning ``None`` until :meth:`reset_connections`, :meth:`close` or the end of
        ``with block:``. For a fresh answer every time, use :meth:`fetch_all` or :meth:`query`.
        """
        rows = self._warehouse.fetch(operation, parameters, 1, streamed=False)
        return rows[0] if rows else None

    async def afetch_many(
        self, operation: str, parameters: Any = None, size: int | None = None, **execution_options: Any
    ) -> list[tuple]:
        """Async twin of :meth:`fetch_many`."""
        return await self._in_thread(self.fetch_many, operation, parameters, size, **execution_options)

    @async_dispatch(afetch_many)
    def fetch_many(
        self, operation: str, parameters: Any = None, size: int | None = None, **execution_options: Any
    ) -> list[tuple]:
        """The next ``size`` rows (default 1) of the query's result; ``[]`` once it is exhausted.

        Repeated calls with the same operation and parameters continue where the last call
        stopped, as Prefect's ``DatabaseBlock`` convention specifies, so
        ``while rows := block.fetch_many(q, size=100): ...`` reads the result once and ends.
        An exhausted result keeps returning ``[]`` until :meth:`reset_connections`,
        :meth:`close` or the end of ``with block:``. A result being read keeps its connection
        (for a file, the file) until it is read to the end; remembering that it is exhausted
        holds nothing.
        """
        if size is not None and size < 0:
            raise QueryError(
                f"fetch_many got size={size}: pass a positive number of rows, or leave it out "
                "for one row."
            )
        return self._warehouse.fetch(operation, parameters, size or 1, streamed=True)

    async def afetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """Async twin of :meth:`fetch_all`."""
        return await self._in_thread(self.fetch_all, operation, parameters, **execution_options)

    @async_dispatch(afetch_all)
    def fetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """All rows of a query as tuples, with bound ``parameters``.

        A result that ``fetch_one`` or ``fetch_many`` started with the same operation and
        parameters is continued: its remaining rows are returned (``[]`` once it is exhausted)
        and it is exhausted afterwards. Otherwise the query runs anew and nothing is cached,
        unlike prefect-sqlalchemy, where a second ``fetch_all`` returns ``[]``.
        """
        return self._warehouse.fetch_all(operation, parameters)

    async def aexecute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Async twin of :meth:`execute`."""
        await self._in_thread(self.execute, operation, parameters, **execution_options)

    @async_dispatch(aexecute)
    def execute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Run one statement (DDL or DML) with bound ``parameters``, committed on return
        (unless inside an open transaction of a held connection)."""
        self._warehouse.execute(operation, parameters)

    async def aexecute_many(
        self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any
    ) -> None:
        """Async twin of :meth:`execute_many`."""
        await self._in_thread(self.execute_many, operation, seq_of_parameters, **execution_options)

    @async_dispatch(aexecute_many)
    def execute_many(self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any) -> None:
        """Run one statement once per parameter set, all in one transaction (it joins an open
        one)."""
        self._warehouse.execute_many(operation, seq_of_parameters)

    # ------------------------------------------------------------------ Polars
    async def aquery(self, sql: str, parameters: Any = None) -> pl.DataFrame:
        """Async twin of :meth:`query`."""
        return await self._in_thread(self.query, sql, parameters)

    @async_dispatch(aquery)
    def query(self, sql: str, parameters: Any = None) -> pl.DataFrame:
        """Run a query and return the result as a ``pl.DataFrame`` (via Arrow).

        Args:
            sql: one SQL statement; use ``?`` or ``$name`` placeholders for values. On a
                DuckLake, time travel works as in DuckLake: ``SELECT * FROM t AT (VERSION => 3)``.
            parameters: a list (for ``?``) or dict (for ``$name``) of bound values.
        """
        return self._warehouse.query(sql, parameters)

    async def atable_exists(self, table: str) -> bool:
        """Async twin of :meth:`table_exists`."""
        return await self._in_thread(self.table_exists, table)

    @async_dispatch(atable_exists)
    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (optionally schema-qualified) exists."""
        return self._warehouse.table_exists(table)


def check_extension_names(names: list[str]) -> list[str]:
    """Refuse an extension name that is not a plain name (it is spliced into ``LOAD``)."""
    for name in names:
        if not _EXTENSION_NAME.fullmatch(name):
            raise ValueError(
                f"extension name {name!r} is not valid: use a plain name such as 'json' or "
                "'spatial' (letters, digits, underscore)."
            )
    return names

