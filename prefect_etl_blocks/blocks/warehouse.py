"""What :class:`~prefect_etl_blocks.DuckDBConnection` and
:class:`~prefect_etl_blocks.DuckLakeConnection` share, written once: Prefect's ``DatabaseBlock``
methods, Polars queries, loads through :mod:`prefect_etl_blocks.core.loading`, the load ledger, and
the connection handling behind them.

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

A block class mixes :class:`WarehouseMethods` in before ``DatabaseBlock``, declares the private
attributes listed in :meth:`WarehouseMethods._fresh_private`, and supplies ``_open``; the other
hooks (``_close_raw``, ``_keeps_connection``, ``_masking``, ``_session_broken``,
``_in_transaction``, ``_commit``, ``_qualify``, ``_state_scope``) have defaults for a plain
DuckDB connection.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import duckdb
import polars as pl
import pyarrow as pa

from prefect_etl_blocks.core.checks import Check
from prefect_etl_blocks.core.engines import finish_result, query_polars
from prefect_etl_blocks.core.errors import LoadConfigError, QueryError
from prefect_etl_blocks.core.identifiers import quote_identifier, split_table_name
from prefect_etl_blocks.core.loading.boundary import classify_query_error
from prefect_etl_blocks.core.loading.connections import in_transaction, transaction
from prefect_etl_blocks.core.loading.contracts import OnSchemaChange
from prefect_etl_blocks.core.loading.engine import (
    CreateMode,
    LoadResult,
    check_create,
    load,
    table_exists,
)
from prefect_etl_blocks.core.loading.incremental import (
    load_cursor,
    load_new_files,
    no_cursor_options,
    reset_incremental,
)
from prefect_etl_blocks.core.loading.ledger import history as ledger_history
from prefect_etl_blocks.core.loading.staging import as_source, parquet_source
from prefect_etl_blocks.core.loading.strategies import LoadMode
from prefect_etl_blocks.runtime import lineage
from prefect_etl_blocks.runtime.compat import async_dispatch

if TYPE_CHECKING:
    from prefect_etl_blocks.blocks.parquet import ParquetSource

_CREATE_GUARD = threading.Lock()
_EXTENSION_NAME = re.compile(r"[A-Za-z0-9_]+")
_BROKEN = (duckdb.IOException, duckdb.ConnectionException, duckdb.FatalException)
#: What a cursor must share with its connection to run a fetch's query in its place.
_SESSION = (
    "SELECT current_database(), current_schema(), current_setting('search_path'), "
    "current_setting('TimeZone'), (SELECT count(*) FROM duckdb_variables()), "
    "(SELECT count(*) FROM duckdb_tables() WHERE temporary)"
)

__all__ = ["LoadMode", "WarehouseMethods", "check_extension_names"]


class WarehouseMethods:
    """The shared methods of the DuckDB-backed blocks (see the module docstring)."""

    if TYPE_CHECKING:
        read_only: bool
        database_path: str
        _connection: duckdb.DuckDBPyConnection | None
        _guard: threading.RLock | None
        _cursors: dict[Any, tuple[duckdb.DuckDBPyConnection | None, list[tuple]]]
        _held: int
        _last_load: LoadResult | None

    # ------------------------------------------------------------------ hooks
    def _open(self) -> duckdb.DuckDBPyConnection:
        """A new connection, ready for work."""
        raise NotImplementedError

    def _close_raw(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close one connection that :meth:`_open` gave."""
        con.close()

    @property
    def _keeps_connection(self) -> bool:
        """Whether the connection stays open between calls (an in-memory database would lose
        its data otherwise)."""
        return False

    def _masking(self) -> contextlib.AbstractContextManager[None]:
        """Around every public call: turns what escapes into what the caller may see."""
        return contextlib.nullcontext()

    def _session_broken(self) -> None:
        """Called when a short-lived connection failed with a connection-level error."""

    def _in_transaction(self, con: duckdb.DuckDBPyConnection) -> bool:
        return in_transaction(con)

    def _commit(
        self, runner: Callable[..., LoadResult], source: Any, table: str, replayable: bool, options: dict[str, Any]
    ) -> LoadResult:
        """Run one load as one transaction and return what it did."""
        with self._session() as con:
            return runner(con, source=source, table=table, **options)

    def _qualify(self, con: duckdb.DuckDBPyConnection, table: str) -> str:
        """``table`` as the ledger and state functions should name it."""
        return table

    def _state_scope(self, con: duckdb.DuckDBPyConnection) -> contextlib.AbstractContextManager[None]:
        """Around changes to the incremental state."""
        return contextlib.nullcontext()

    def _fresh_private(self) -> dict[str, Any]:
        """The private state a copy or an unpickled block starts with: nothing shared."""
        return {"_connection": None, "_guard": None, "_cursors": {}, "_held": 0, "_last_load": None}

    # ------------------------------------------------------------------ connection handling
    def _lock(self) -> threading.RLock:
        if self._guard is None:
            with _CREATE_GUARD:
                if self._guard is None:
                    self._guard = threading.RLock()
        return self._guard

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation: the held one, or a short-lived one."""
        with self._lock():
            if self._connection is not None:
                self._park()
                try:
                    yield self._connection
                finally:
                    self._close_if_idle()  # kept only for a result that is now read
                return
            if self._keeps_connection:
                self._connection = self._open()
                yield self._connection
                return
            con = self._open()
            try:
                yield con
            except _BROKEN:
                self._session_broken()
                raise
            finally:
                self._close_raw(con)

    @contextmanager
    def _statement(self, sql: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A session for one statement, whose DuckDB refusals become library errors."""
        with self._masking(), self._session() as con, _classified(sql):
            yield con

    def _hold(self) -> duckdb.DuckDBPyConnection:
        with self._masking(), self._lock():
            if self._connection is None:
                self._connection = self._open()
            self._park()  # the caller may run anything on it now
            self._held += 1
            return self._connection

    def _release(self) -> None:
        with self._lock():
            self._held = max(0, self._held - 1)
            self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self._held == 0 and not self._reading() and not self._keeps_connection:
            self._close_connection()

    def _reading(self) -> bool:
        """Whether a cached result still reads from its cursor (and so needs the connection)."""
        return any(cursor is not None for cursor, _ in self._cursors.values())

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
        con = self._hold()
        try:
            yield con
        finally:
            self._release()

    def _forget_results(self) -> None:
        """Forget every cached result of the fetch methods, closing the unread ones."""
        for cursor, _ in self._cursors.values():
            self._drop_cursor(cursor)
        self._cursors.clear()

    def _drop_cursor(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        """Close a result's own cursor; a result read on the block's connection is finished
        (DuckDB 2.0 refuses other work on a connection with an unfinished result)."""
        if cursor is None:
            return
        if cursor is not self._connection:
            _close_quietly(cursor)
            return
        try:
            finish_result(cursor)
        except duckdb.Error:
            pass

    def _park(self) -> None:
        """Read into memory what is left of a result that is being read on the block's own
        connection (see :meth:`_run_cached`), so that connection can run something else."""
        for key, (cursor, ahead) in list(self._cursors.items()):
            if cursor is not None and cursor is self._connection:
                try:
                    rest = cursor.fetchall()
                except duckdb.Error:
                    del self._cursors[key]  # it failed while reading: the next fetch runs anew
                    continue
                self._cursors[key] = (None, ahead + rest)

    def _close_connection(self) -> None:
        # A result still being read dies with its connection: forgotten, so the next fetch of
        # it runs anew. Exhausted results hold no connection and stay remembered.
        for key, (cursor, _) in list(self._cursors.items()):
            if cursor is not None:
                self._drop_cursor(cursor)
                del self._cursors[key]
        if self._connection is not None:
            try:
                self._close_raw(self._connection)
            finally:
                self._connection = None

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
        with self._lock():
            self._forget_results()
            self._close_if_idle()

    def reset_cursors(self) -> None:
        """The earlier name of :meth:`reset_connections` (always synchronous)."""
        self.reset_connections(_sync=True)

    def close(self) -> None:
        """Forget every cached result (as :meth:`reset_connections`) and close the connection,
        releasing a DuckDB file; an in-memory database is dropped. Safe to call more than once;
        the block opens a new connection when it is used again."""
        with self._lock():
            self._held = 0
            self._forget_results()
            self._close_connection()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Any:
        self._hold()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._leave()

    async def __aenter__(self) -> Any:
        await anyio.to_thread.run_sync(self._hold)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await anyio.to_thread.run_sync(self._leave)

    def _leave(self) -> None:
        """The end of ``with block:`` / ``async with block:``. Leaving the outermost one
        forgets every cached result, closing those left unread, and closes the connection, so
        a DuckDB file is released whatever the body left unread, as prefect-sqlalchemy's
        ``__exit__`` (``close()``) does. An in-memory database keeps its connection and data."""
        with self._lock():
            self._held = max(0, self._held - 1)
            if self._held == 0:
                self._forget_results()
            self._close_if_idle()

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

    def _read(
        self, operation: str, parameters: Any, size: int | None, *, start: bool, streamed: bool = False
    ) -> list[tuple] | None:
        """The next ``size`` rows (``None``: all that are left) of the cached result of
        ``operation`` with ``parameters``, ``[]`` once it is exhausted. Without a cached result
        the query is run and cached when ``start`` (see :meth:`_run_cached` for ``streamed``),
        else ``None`` is returned.

        ``self._cursors`` maps each result to ``(cursor, rows read ahead)``. One row is read
        ahead, so the call that returns the last rows already knows the result is exhausted:
        the cursor is closed then, and with it the connection it kept (a file is released).
        An exhausted result stays as ``(None, [])``, holding nothing.
        """
        key = (operation, repr(parameters))
        with self._masking(), self._lock():
            entry = self._cursors.get(key)
            if entry is None:
                if not start:
                    return None
                entry = self._cursors[key] = self._run_cached(operation, parameters, streamed)
            cursor, ahead = entry
            if cursor is None:  # exhausted, or read at once (see _run_cached)
                rows, rest = (ahead, []) if size is None else (ahead[:size], ahead[size:])
                self._cursors[key] = (None, rest)
                self._close_if_idle()
                return rows
            try:
                with _classified(operation):
                    more = cursor.fetchall() if size is None else cursor.fetchmany(size + 1 - len(ahead))
            except BaseException:
                # A failure while reading (a cast error of a later row, say): forget the result.
                del self._cursors[key]
                self._drop_cursor(cursor)
                self._close_if_idle()
                raise
            rows = ahead + more
            if size is not None and len(rows) > size:
                self._cursors[key] = (cursor, rows[size:])
                return rows[:size]
            self._cursors[key] = (None, [])
            self._drop_cursor(cursor)
            self._close_if_idle()
            return rows

    def _run_cached(
        self, operation: str, parameters: Any, streamed: bool
    ) -> tuple[duckdb.DuckDBPyConnection | None, list[tuple]]:
        """Run a fetch's query for the cache.

        ``fetch_one`` (``streamed=False``) runs it on the block's own connection, as any other
        statement: usually the first rows are all there is, and nothing is left open. So does
        ``fetch_many`` when that connection has state a cursor would not see (an open
        transaction, temporary tables, variables, a time zone or search path from ``init_sql``).
        What is left of such a result is read into memory as soon as another statement needs
        the connection (:meth:`_park`). Otherwise ``fetch_many`` runs it on a cursor of its own
        (a DuckDB connection of its own), so statements can run through the block between two
        pages while the result streams.
        """
        opened = self._connection is None
        if opened:
            self._connection = self._open()
        con = self._connection
        try:
            self._park()
            source = con.cursor() if streamed else con
            try:
                if source is not con and (
                    (not opened and self._in_transaction(con)) or not _same_session(con, source)
                ):
                    _close_quietly(source)
                    source = con
                with _classified(operation):
                    source.execute(operation, parameters)
            except BaseException:
                self._drop_cursor(source)
                raise
            return source, []
        except BaseException:
            self._close_if_idle()  # a failed query must not keep a file locked
            raise

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
        rows = self._read(operation, parameters, 1, start=True)
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
        return self._read(operation, parameters, size or 1, start=True, streamed=True) or []

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
        rows = self._read(operation, parameters, None, start=False)
        if rows is not None:
            return rows
        with self._statement(operation) as con:
            return con.execute(operation, parameters).fetchall()

    async def aexecute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Async twin of :meth:`execute`."""
        await self._in_thread(self.execute, operation, parameters, **execution_options)

    @async_dispatch(aexecute)
    def execute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Run one statement (DDL or DML) with bound ``parameters``, committed on return
        (unless inside an open transaction of a held connection)."""
        with self._statement(operation) as con:
            con.execute(operation, parameters)
            finish_result(con)

    async def aexecute_many(
        self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any
    ) -> None:
        """Async twin of :meth:`execute_many`."""
        await self._in_thread(self.execute_many, operation, seq_of_parameters, **execution_options)

    @async_dispatch(aexecute_many)
    def execute_many(self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any) -> None:
        """Run one statement once per parameter set, all in one transaction (it joins an open
        one)."""
        with self._statement(operation) as con, transaction(con, joined=self._in_transaction):
            con.executemany(operation, list(seq_of_parameters))
            finish_result(con)

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
        with self._statement(sql) as con:
            return query_polars(con, sql, parameters)

    async def atable_exists(self, table: str) -> bool:
        """Async twin of :meth:`table_exists`."""
        return await self._in_thread(self.table_exists, table)

    @async_dispatch(atable_exists)
    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (optionally schema-qualified) exists."""
        parts = split_table_name(table)
        with self._masking(), self._session() as con:
            return table_exists(con, parts)

    # ------------------------------------------------------------------ loads
    async def aload_frame(
        self,
        df: Any,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
    ) -> Any:
        """Async twin of :meth:`load_frame`."""
        return await self._in_thread(
            self.load_frame, df, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, cursor=cursor, initial_value=initial_value, lag=lag, create=create,
        )

    @async_dispatch(aload_frame)
    def load_frame(
        self,
        df: Any,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
    ) -> Any:
        """Write a Polars ``DataFrame``/``LazyFrame``, an Arrow table or reader, or a pandas frame
        into ``table``, in one transaction: the data is never changed on the way in, and
        whatever is raised, the table is exactly as it was before the load.

        On a DuckLake the load is one commit; a commit that conflicts with another writer's
        is run again from the start, with back-off, up to ``commit_retries`` times within
        ``lock_timeout_seconds``. A one-shot ``pa.RecordBatchReader`` cannot be read twice, so
        its conflict is raised at once as
        :class:`~prefect_etl_blocks.core.errors.TransactionConflictError` (a task retry re-runs it).

        Args:
            df: a ``pl.DataFrame``, ``pl.LazyFrame`` (streamed in batches), ``pa.Table``,
                ``pa.RecordBatchReader`` or pandas ``DataFrame``. It is read exactly once.
            table: target table, optionally schema-qualified (``analytics.daily``); the schema is
                created when missing. Names are quoted, never pasted into SQL.
            mode: ``replace`` (the default; atomic; a table with constraints or comments keeps them),
                ``append``, ``upsert`` (one ``MERGE INTO`` on ``keys``), ``delete-insert``
                (replace the rows whose ``keys`` occur in the data, e.g. whole days),
                ``insert-only`` (new keys only), ``scd2`` (history in validity columns) or
                ``fail`` (error if the table exists).
            keys: key column(s) for the keyed modes; a string is one column.
            on_schema_change: what new or missing columns do: ``fail`` (default, an error
                naming them), ``append_new_columns`` (add them; may widen a column's type),
                ``sync_all_columns`` (also drop the missing ones) or ``ignore`` (load only the
                table's columns). Values are never converted across kinds (40.7 never becomes
                41, "41" never becomes a number).
            checks: write-audit-publish checks run before COMMIT: SQL predicates such as
                ``"qty >= 0"`` and built-ins from :mod:`prefect_etl_blocks.core.checks`.
            scd2_columns: validity column names for ``scd2`` (default ``valid_from``,
                ``valid_to``, ``is_current``).
            return_result: return the :class:`~prefect_etl_blocks.core.loading.LoadResult` (rows
                inserted, updated and deleted, schema changes, checks) instead of the row count.
                The last result is also kept in :attr:`last_load`.
            cursor: load incrementally on this column: only rows past the table's
                high-water mark load, and the mark advances in the same transaction (see
                :func:`prefect_etl_blocks.core.loading.incremental.load_cursor`). The mode is then
                ``append`` without ``keys`` and ``upsert`` (or ``insert-only``) with them.
            initial_value: the cursor mark before the first load.
            lag: re-read this far below the mark for late rows (needs ``keys``); a number,
                or a ``timedelta`` for date/time cursors.
            create: ``if_missing`` (default) creates a missing table (and its schema); the
                result's ``created_note`` (``created analytics.orders``) and the
                ``load_to_duckdb`` log line and artifact say so. ``never`` refuses a missing
                table with a ``LoadConfigError`` naming the existing tables nearest in name;
                nothing is written, not even a schema.

        Returns:
            The number of rows written (for ``upsert``: updated plus inserted), or the
            ``LoadResult`` with ``return_result=True``.

        Raises:
            SchemaMismatchError: columns or types the table cannot take as they are.
            InvalidIdentifierError: a table or column name DuckDB would change or cannot use.
            DataCheckError: a check failed.
            LoadConfigError: an unknown mode, missing keys, ``fail`` on an existing table, a
                missing table with ``create="never"``.
            LoadError: any other failure of the data (constraints, duplicate keys).
            TransactionConflictError: (DuckLake) another writer kept conflicting.

        Example:
            ```python
            import polars as pl
            from prefect_etl_blocks import DuckDBConnection

            db = DuckDBConnection()
            db.load_frame(pl.DataFrame({"id": [1, 2], "qty": [5, 7]}), "stock")
            result = db.load_frame(pl.DataFrame({"id": [2, 3], "qty": [8, 1]}), "stock",
                                   mode="upsert", keys="id", checks=["qty >= 0"],
                                   return_result=True)
            assert (result.inserted, result.updated) == (1, 1)
            ```
        """
        replayable = not isinstance(df, pa.RecordBatchReader)
        if cursor is not None:
            return self._load(
                load_cursor, df, table, return_result, replayable=replayable, cursor=cursor,
                initial_value=initial_value, lag=lag, keys=keys, mode=mode,
                on_schema_change=on_schema_change, checks=checks, create=create,
            )
        no_cursor_options(initial_value, lag)
        return self._load(
            load, as_source(df), table, return_result, replayable=replayable, mode=mode or "replace",
            keys=keys, on_schema_change=on_schema_change, checks=checks, scd2_columns=scd2_columns,
            create=create,
        )

    async def aload_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        incremental: bool = False,
        on_missing_file: Literal["keep", "delete"] = "keep",
        lineage_column: str | None = None,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
    ) -> Any:
        """Async twin of :meth:`load_parquet`."""
        return await self._in_thread(
            self.load_parquet, source, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, incremental=incremental, on_missing_file=on_missing_file,
            lineage_column=lineage_column, cursor=cursor, initial_value=initial_value, lag=lag,
            create=create,
        )

    @async_dispatch(aload_parquet)
    def load_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        incremental: bool = False,
        on_missing_file: Literal["keep", "delete"] = "keep",
        lineage_column: str | None = None,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
    ) -> Any:
        """Stream a Parquet dataset into ``table`` without materialising it in memory.

        Local files are read by DuckDB's own Parquet reader (columns and ``filter`` applied in
        the scan); ``s3://`` sources are streamed batch by batch from Polars' object-store
        reader. Either is read exactly once, inside the load's transaction, so a crash leaves
        nothing behind. The source's ``expected_schema`` is checked before the table is touched.
        A Parquet source can be read again, so on a DuckLake a commit conflict re-runs the load.

        Args:
            source: a :class:`~prefect_etl_blocks.ParquetSource` or a path / glob / ``s3://`` URI.
            table: the target table, as for :meth:`load_frame`.
            mode: as for :meth:`load_frame`; defaults to ``replace``, or ``append`` with
                ``incremental=True``.
            keys: as for :meth:`load_frame`.
            on_schema_change: as for :meth:`load_frame`.
            checks: as for :meth:`load_frame`.
            scd2_columns: as for :meth:`load_frame`.
            return_result: as for :meth:`load_frame`.
            incremental: read only the files not yet loaded into ``table`` (see
                :func:`prefect_etl_blocks.core.loading.incremental.load_new_files`). The file
                manifest is written in the same transaction as the rows, so a crash or a retry
                never loads a file twice. A file whose content changed after it was loaded
                fails the load, unless the table has a lineage column: then its earlier rows
                are replaced.
            on_missing_file: with ``incremental``: ``keep`` (default) the rows of a file that
                disappeared, or ``delete`` them (needs the lineage column).
            lineage_column: with ``incremental``, opt-in: a column recording each row's file,
                usually ``"_prefect_etl_file"``, chosen when the table is created (a table that
                has ``_prefect_etl_file`` keeps using it). Default: the source's columns only.
            cursor: a cursor load as for :meth:`load_frame`; the predicate ``cursor > mark`` is
                pushed into the Parquet scan, so old row groups are skipped.
            initial_value: as for :meth:`load_frame`.
            lag: as for :meth:`load_frame`.
            create: as for :meth:`load_frame` (``never`` refuses a missing table).

        Returns:
            The number of rows written, or the ``LoadResult`` with ``return_result=True``.

        Example:
            ```python
            import tempfile
            from pathlib import Path

            import polars as pl
            from prefect_etl_blocks import DuckDBConnection, ParquetSource

            folder = Path(tempfile.mkdtemp())
            pl.DataFrame({"id": [1, 2]}).write_parquet(folder / "day1.parquet")
            db = DuckDBConnection()
            source = ParquetSource(path=str(folder))
            assert db.load_parquet(source, "raw", incremental=True) == 2
            assert db.load_parquet(source, "raw", incremental=True) == 0  # nothing new
            pl.DataFrame({"id": [3]}).write_parquet(folder / "day2.parquet")
            assert db.load_parquet(source, "raw", incremental=True) == 1
            print(db.load_history("raw"))
            ```
        """
        from prefect_etl_blocks.blocks.parquet import ParquetSource

        if isinstance(source, str | os.PathLike):
            source = ParquetSource(path=os.fspath(source))
        if incremental and cursor is not None:
            raise LoadConfigError(
                "load_parquet takes incremental=True (new files) or cursor=... (new rows), not "
                "both."
            )
        if incremental:
            no_cursor_options(initial_value, lag)
            return self._load(
                load_new_files, source, table, return_result, origin=source, mode=mode or "append",
                keys=keys, on_schema_change=on_schema_change, checks=checks,
                on_missing_file=on_missing_file, lineage_column=lineage_column, create=create,
            )
        if cursor is not None:
            return self._load(
                load_cursor, source, table, return_result, origin=source, cursor=cursor,
                initial_value=initial_value, lag=lag, keys=keys, mode=mode,
                on_schema_change=on_schema_change, checks=checks, create=create,
            )
        no_cursor_options(initial_value, lag)
        return self._load(
            load, parquet_source(source), table, return_result, origin=source, mode=mode or "replace",
            keys=keys, on_schema_change=on_schema_change, checks=checks, scd2_columns=scd2_columns,
            create=create,
        )

    @property
    def last_load(self) -> LoadResult | None:
        """What the last load through this block did (rows inserted, updated, deleted, schema
        changes, checks), or ``None`` before the first load."""
        return self._last_load

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise LoadConfigError(f"Cannot {what}: {self!r} is read_only. Use a block with read_only=False.")

    def _load(
        self,
        runner: Callable[..., LoadResult],
        source: Any,
        table: str,
        return_result: bool,
        *,
        replayable: bool = True,
        origin: Any = None,
        **options: Any,
    ) -> Any:
        """Run one load (``runner(con, source=, table=, **options)``) and report it as lineage."""
        with self._masking():
            self._refuse_if_read_only(f"load into {table!r}")
            check_create(options.get("create", "if_missing"))
            try:
                result = self._commit(runner, source, table, replayable, options)
            except Exception as exc:
                if lineage.in_prefect_run():
                    lineage.emit_load_failed(
                        self.database_path, table, options.get("mode"), exc, lineage.source_fingerprint(origin)
                    )
                raise
        self._last_load = result
        if lineage.in_prefect_run():
            fingerprint = None if result.files else lineage.source_fingerprint(origin)
            lineage.emit_load_succeeded(self.database_path, result, fingerprint)
        return result if return_result else result.rows

    # ------------------------------------------------------------------ ledger and state
    async def aload_history(self, table: str | None = None) -> pl.DataFrame:
        """Async twin of :meth:`load_history`."""
        return await self._in_thread(self.load_history, table)

    @async_dispatch(aload_history)
    def load_history(self, table: str | None = None) -> pl.DataFrame:
        """The load ledger: one row per committed load, oldest first, of ``table`` or of all.

        Columns: ``load_id``, ``table_name`` (``schema.table``, lower case), ``strategy``,
        ``incremental`` (``files``, ``cursor`` or null), ``inserted``, ``updated``,
        ``deleted``, ``created``, ``files`` (read), ``files_deleted`` (whose rows were
        deleted), ``cursor_column``, ``cursor_from``, ``cursor_to``, ``schema_changes``,
        ``checks``, ``flow_run_id``, ``task_run_id`` (null outside Prefect), ``started_at``,
        ``finished_at`` (UTC). Every load writes its row in the same transaction as its data,
        so the ledger lists exactly the loads that committed. Empty before the first load.
        A DuckLake keeps it in the lake's ``_prefect_etl`` schema.

        Example:
            ```python
            import polars as pl
            from prefect_etl_blocks import DuckDBConnection

            db = DuckDBConnection()
            db.load_frame(pl.DataFrame({"id": [1]}), "items")
            history = db.load_history("items")
            assert history["inserted"].to_list() == [1]
            ```
        """
        with self._masking(), self._session() as con:
            return ledger_history(con, self._qualify(con, table) if table else None)

    async def areset_incremental(self, table: str) -> int:
        """Async twin of :meth:`reset_incremental`."""
        return await self._in_thread(self.reset_incremental, table)

    @async_dispatch(areset_incremental)
    def reset_incremental(self, table: str) -> int:
        """Forget ``table``'s incremental state (its file manifest and cursor marks).

        Warning:
            After a reset the next incremental load reads **every** file again (or every row
            past ``initial_value``): with ``append`` the rows already in the table are loaded a
            second time. Empty or replace the table first unless that is what you want. The
            table's rows and the load history are not touched.

        Returns:
            The number of state rows removed.
        """
        with self._masking():
            self._refuse_if_read_only(f"reset {table!r}")
            with self._session() as con:
                qualified = self._qualify(con, table)
                with self._state_scope(con):
                    return reset_incremental(con, qualified)


def check_extension_names(names: list[str]) -> list[str]:
    """Refuse an extension name that is not a plain name (it is spliced into ``LOAD``)."""
    for name in names:
        if not _EXTENSION_NAME.fullmatch(name):
            raise ValueError(
                f"extension name {name!r} is not valid: use a plain name such as 'json' or "
                "'spatial' (letters, digits, underscore)."
            )
    return names


def _close_quietly(cursor: duckdb.DuckDBPyConnection) -> None:
    try:
        cursor.close()
    except duckdb.Error:
        pass


def _same_session(con: duckdb.DuckDBPyConnection, cursor: duckdb.DuckDBPyConnection) -> bool:
    """Give ``cursor`` the default catalog and schema of ``con`` (a DuckDB cursor starts from
    the database's defaults, not from ``con``'s ``USE``; a DuckLake connection uses the lake),
    and tell whether it now sees what ``con`` sees: no temporary tables, variables or
    connection settings of ``con`` that ``cursor`` lacks. When that cannot be told, it is not."""
    try:
        mine = con.execute(_SESSION).fetchall()[0]
        if cursor.execute(_SESSION).fetchall()[0][:2] != mine[:2]:
            cursor.execute(f"USE {quote_identifier(mine[0])}.{quote_identifier(mine[1])}").fetchall()
        return cursor.execute(_SESSION).fetchall()[0] == mine
    except duckdb.Error:
        return False


@contextmanager
def _classified(sql: str) -> Iterator[None]:
    """Raise DuckDB's own refusals of ``sql`` as library errors (see
    :func:`prefect_etl_blocks.core.loading.boundary.classify_query_error`)."""
    try:
        yield
    except duckdb.Error as exc:
        classified = classify_query_error(exc, sql)
        if classified is exc:
            raise
        raise classified from exc
