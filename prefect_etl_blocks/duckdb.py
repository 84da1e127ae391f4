"""``DuckDBConnection``: a DuckDB database as a Prefect ``DatabaseBlock``, with Polars-native loads.

Sync and async: every I/O method ``X`` has an async twin ``aX`` and is decorated with
Prefect's ``@async_dispatch(aX)`` (the pattern Prefect's own blocks use): called from sync code
``X`` runs and returns its result; called from an async flow or task it returns the coroutine of
``aX`` (which runs the same work in a worker thread), so ``await db.fetch_one(...)`` works there.
Pass ``_sync=True`` to force the sync path anywhere.

Connections and locks: DuckDB lets one process write a database file at a time. Outside a
``with db:`` block every call opens the file, does its work and closes it again, so two flows in
separate processes take turns; a busy file is retried until ``lock_timeout_seconds``, then
:class:`~prefect_etl_blocks.errors.DuckDBLockTimeoutError` names the file and the holder.
Blocks of one process that open the same file share one in-process lock per resolved path
(:func:`prefect_etl_blocks.loading.file_lock`), so threads take turns too instead of failing
with transaction conflicts. Inside ``with db:`` (or :meth:`get_connection`) one connection is
kept open. ``":memory:"`` databases always keep their connection, since closing it would drop
the data.

Loads are a facade over :mod:`prefect_etl_blocks.loading`, which does them on a plain DuckDB
connection: the source is staged once inside one transaction, schema contracts refuse silent
conversions, the strategy runs, checks run before COMMIT. A failure at any point (bad file,
type error, failed check, an exception in a source batch) leaves the table exactly as it was.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import duckdb
import polars as pl
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import DatabaseBlock
from pydantic import Field, PrivateAttr, field_validator

from prefect_etl_blocks import lineage
from prefect_etl_blocks.checks import Check
from prefect_etl_blocks.errors import ExtensionLoadError, LoadConfigError, first_line
from prefect_etl_blocks.identifiers import quote_identifier, quote_table, split_table_name
from prefect_etl_blocks.loading.boundary import classify_query_error
from prefect_etl_blocks.loading.connections import (
    close_connection,
    connect_waiting,
    lock_wait_seconds,
    transaction,
)
from prefect_etl_blocks.loading.contracts import OnSchemaChange
from prefect_etl_blocks.loading.engine import LoadResult, load, table_exists
from prefect_etl_blocks.loading.incremental import (
    LINEAGE_COLUMN,
    load_cursor,
    load_new_files,
    no_cursor_options,
    reset_incremental,
)
from prefect_etl_blocks.loading.ledger import history as ledger_history
from prefect_etl_blocks.loading.staging import as_source, parquet_source

if TYPE_CHECKING:
    from prefect_etl_blocks.parquet import ParquetSource

LoadMode = Literal["replace", "append", "upsert", "fail", "delete-insert", "insert-only", "scd2"]
DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/duckdb_connection/"
_CREATE_GUARD = threading.Lock()

__all__ = [
    "DuckDBConnection",
    "LoadMode",
    "LoadResult",
    "OnSchemaChange",
    "quote_identifier",
    "quote_table",
    "split_table_name",
]


class DuckDBConnection(DatabaseBlock):
    """A DuckDB database file (or in-memory database) with Polars-native queries and loads.

    Implements Prefect's ``DatabaseBlock`` (``fetch_one``, ``fetch_many``, ``fetch_all``,
    ``execute``, ``execute_many``) and adds ``query`` (to a ``pl.DataFrame``), ``load_frame``
    and ``load_parquet`` with the ``replace``, ``append``, ``upsert``, ``delete-insert``,
    ``insert-only``, ``scd2`` and ``fail`` strategies, schema contracts (``on_schema_change``)
    and write-audit-publish ``checks``. Identifiers are always quoted, loads are atomic and
    never convert values silently, and parameters are bound, never pasted into SQL.

    Example:
        Load a saved block:
        ```python
        from prefect_etl_blocks import DuckDBConnection

        db = DuckDBConnection.load("BLOCK_NAME")
        ```

        Use one in code:
        ```python
        import polars as pl
        from prefect_etl_blocks import DuckDBConnection

        db = DuckDBConnection(database=":memory:")
        frame = pl.DataFrame({"id": [1, 2], "value": [9.5, 3.0]})
        db.load_frame(frame, "analytics.scores", mode="replace")
        db.load_frame(pl.DataFrame({"id": [2], "value": [4.0]}), "analytics.scores",
                      mode="upsert", keys=["id"])
        print(db.query("SELECT * FROM analytics.scores WHERE value > ?", [1]))
        print(db.fetch_one("SELECT count(*) FROM analytics.scores"))
        ```
    """

    _block_type_name = "DuckDB Connection"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/duckdb-logo/duckdb.png"
    _documentation_url = DOCS_URL
    _description = (
        "A DuckDB database file with Polars-native queries and atomic loads "
        "(replace, append, upsert, delete-insert, insert-only, scd2) with schema contracts "
        "and checks, that wait for other writers instead of failing."
    )

    database: str = Field(
        default=":memory:",
        description=(
            "Path of the DuckDB database file (parent folders are created), or ':memory:' for an "
            "in-memory database."
        ),
    )
    read_only: bool = Field(
        default=False,
        description=(
            "Open the file read-only; several processes may read a file at once, but not while "
            "another process writes it."
        ),
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "DuckDB configuration applied when connecting, for example "
            "{'threads': 4, 'memory_limit': '2GB', 'temp_directory': '/tmp/duckdb'}."
        ),
    )
    extensions: list[str] = Field(
        default_factory=list,
        description=(
            "DuckDB extensions loaded at connect (installed first when missing); a clear error "
            "names any extension that cannot be loaded, for example when offline."
        ),
    )
    init_sql: list[str] = Field(
        default_factory=list,
        description="SQL statements run on every new connection, for example SET or ATTACH.",
    )
    lock_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "How long to wait for another process that holds the database file's lock before "
            "failing with an error that names the file and the holder."
        ),
    )

    _connection: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _guard: threading.RLock | None = PrivateAttr(default=None)
    _cursors: dict[Any, tuple[duckdb.DuckDBPyConnection, list[tuple]]] = PrivateAttr(default_factory=dict)
    _held: int = PrivateAttr(default=0)
    _last_load: LoadResult | None = PrivateAttr(default=None)

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(
                    f"extension name {name!r} is not valid: use a plain name such as 'json' or "
                    "'spatial' (letters, digits, underscore)."
                )
        return value

    # ------------------------------------------------------------------ connection handling
    @property
    def is_memory(self) -> bool:
        """True for an in-memory database."""
        return self.database in ("", ":memory:") or self.database.startswith(":memory:")

    @property
    def database_path(self) -> str:
        """The database file's absolute path (or ``:memory:``)."""
        return self.database if self.is_memory else os.path.abspath(os.path.expanduser(self.database))

    def _lock(self) -> threading.RLock:
        if self._guard is None:
            with _CREATE_GUARD:
                if self._guard is None:
                    self._guard = threading.RLock()
        return self._guard

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Open a new connection, waiting for another process's lock up to the timeout."""
        path = self.database_path
        if not self.is_memory and not self.read_only:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if self.read_only and not self.is_memory and not os.path.exists(path):
            raise FileNotFoundError(
                f'DuckDB file "{path}" does not exist, and read_only=True cannot create it. '
                "Check the path, or write to it once with read_only=False."
            )
        config = dict(self.settings)
        if self.is_memory:
            con = duckdb.connect(path, config=config)
        else:
            con = connect_waiting(
                path,
                read_only=self.read_only,
                config=config,
                timeout=lock_wait_seconds(self.lock_timeout_seconds),
                owner=self,
            )
        try:
            if "enable_progress_bar" not in self.settings:
                # A library must not draw DuckDB's progress bar on the caller's stdout.
                con.execute("SET enable_progress_bar = false")
            for name in self.extensions:
                self._load_extension(con, name)
            for statement in self.init_sql:
                con.execute(statement)
                _finish(con)
        except BaseException:
            self._close_raw(con)
            raise
        return con

    def _close_raw(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close one connection and give back this block's in-process lock on the file."""
        close_connection(con, None if self.is_memory else self.database_path, self)

    @staticmethod
    def _load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
        try:
            con.load_extension(name)
            return
        except duckdb.Error:
            pass
        try:
            con.install_extension(name)
            con.load_extension(name)
        except duckdb.Error as exc:
            raise ExtensionLoadError(
                f"DuckDB extension {name!r} could not be loaded ({first_line(exc)}). It is not "
                "bundled with this DuckDB build and could not be installed (no network?). "
                f"Install it ahead of time (INSTALL {name}) into the extension directory, or "
                "remove it from `extensions`."
            ) from exc

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation: the held one, or a short-lived one for files."""
        with self._lock():
            if self._connection is not None:
                yield self._connection
                return
            if self.is_memory:
                self._connection = self._open()
                yield self._connection
                return
            con = self._open()
            try:
                yield con
            finally:
                self._close_raw(con)

    def _hold(self) -> duckdb.DuckDBPyConnection:
        with self._lock():
            if self._connection is None:
                self._connection = self._open()
            self._held += 1
            return self._connection

    def _release(self) -> None:
        with self._lock():
            self._held = max(0, self._held - 1)
            if self._held == 0 and not self._cursors and not self.is_memory:
                self._close_connection()

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Keep one DuckDB connection open for the ``with`` body and yield it.

        The file stays locked while the body runs; it is closed afterwards (in-memory
        databases stay open until :meth:`close`).

        Example:
            ```python
            from prefect_etl_blocks import DuckDBConnection

            with DuckDBConnection().get_connection() as con:
                con.execute("CREATE TABLE t AS SELECT 42 AS answer")
                print(con.sql("SELECT * FROM t").pl())
            ```
        """
        con = self._hold()
        try:
            yield con
        finally:
            self._release()

    def _close_connection(self) -> None:
        for cursor, _ in self._cursors.values():
            try:
                cursor.close()
            except duckdb.Error:
                pass
        self._cursors.clear()
        if self._connection is not None:
            try:
                self._close_raw(self._connection)
            finally:
                self._connection = None

    def reset_cursors(self) -> None:
        """Forget the open ``fetch_many`` result sets (the next call starts from the top)."""
        with self._lock():
            for cursor, _ in self._cursors.values():
                cursor.close()
            self._cursors.clear()
            if self._held == 0 and not self.is_memory:
                self._close_connection()

    def close(self) -> None:
        """Close the held connection and any cursors. Safe to call more than once."""
        with self._lock():
            self._held = 0
            self._close_connection()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def __enter__(self) -> DuckDBConnection:
        self._hold()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._release()

    async def __aenter__(self) -> DuckDBConnection:
        await anyio.to_thread.run_sync(self._hold)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._release()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_connection=None, _guard=None, _cursors={}, _held=0, _last_load=None)
        state["__pydantic_private__"] = private
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> DuckDBConnection:
        new = type(self).__new__(type(self))
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return new

    # ------------------------------------------------------------------ DatabaseBlock
    async def _in_thread(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(method, *args, _sync=True, **kwargs))

    async def afetch_one(self, operation: str, parameters: Any = None, **execution_options: Any) -> tuple | None:
        """Async twin of :meth:`fetch_one`."""
        return await self._in_thread(self.fetch_one, operation, parameters, **execution_options)

    @async_dispatch(afetch_one)
    def fetch_one(self, operation: str, parameters: Any = None, **execution_options: Any) -> tuple | None:
        """Run a query and return its first row (or ``None``), with bound ``parameters``."""
        with self._session() as con:
            with _classified(operation):
                row = con.execute(operation, parameters).fetchone()
                _finish(con)
            return row

    async def afetch_many(
        self, operation: str, parameters: Any = None, size: int | None = None, **execution_options: Any
    ) -> list[tuple]:
        """Async twin of :meth:`fetch_many`."""
        return await self._in_thread(self.fetch_many, operation, parameters, size, **execution_options)

    @async_dispatch(afetch_many)
    def fetch_many(
        self, operation: str, parameters: Any = None, size: int | None = None, **execution_options: Any
    ) -> list[tuple]:
        """Return the next ``size`` rows (default 1) of a query.

        Repeated calls with the same operation and parameters continue where the last call
        stopped, as Prefect's ``DatabaseBlock`` specifies; the result set (and, for files, the
        connection) stays open until it is exhausted, :meth:`reset_cursors` or :meth:`close`.
        """
        key = (operation, repr(parameters))
        want = size or 1
        with self._lock():
            entry = self._cursors.get(key)
            if entry is None:
                if self._connection is None:
                    self._connection = self._open()
                cursor = self._connection.cursor()
                try:
                    with _classified(operation):
                        cursor.execute(operation, parameters)
                except BaseException:
                    cursor.close()
                    if self._held == 0 and not self._cursors and not self.is_memory:
                        self._close_connection()  # a failed query must not keep the file locked
                    raise
                entry = self._cursors[key] = (cursor, [])
            cursor, buffered = entry
            # Read one row ahead, so the call that returns the last rows also knows the result
            # is exhausted and releases the cursor (and, for files, the connection and lock).
            rows = buffered + cursor.fetchmany(want + 1 - len(buffered))
            if len(rows) > want:
                self._cursors[key] = (cursor, rows[want:])
                return rows[:want]
            cursor.close()
            del self._cursors[key]
            if self._held == 0 and not self._cursors and not self.is_memory:
                self._close_connection()
            return rows

    async def afetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """Async twin of :meth:`fetch_all`."""
        return await self._in_thread(self.fetch_all, operation, parameters, **execution_options)

    @async_dispatch(afetch_all)
    def fetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """Run a query and return all rows as tuples, with bound ``parameters``."""
        with self._session() as con, _classified(operation):
            return con.execute(operation, parameters).fetchall()

    async def aexecute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Async twin of :meth:`execute`."""
        await self._in_thread(self.execute, operation, parameters, **execution_options)

    @async_dispatch(aexecute)
    def execute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Run one statement (DDL or DML) with bound ``parameters``."""
        with self._session() as con, _classified(operation):
            con.execute(operation, parameters)
            _finish(con)

    async def aexecute_many(
        self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any
    ) -> None:
        """Async twin of :meth:`execute_many`."""
        await self._in_thread(self.execute_many, operation, seq_of_parameters, **execution_options)

    @async_dispatch(aexecute_many)
    def execute_many(self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any) -> None:
        """Run one statement once per parameter set, all in one transaction."""
        with self._session() as con, _classified(operation), transaction(con):
            con.executemany(operation, list(seq_of_parameters))
            _finish(con)

    # ------------------------------------------------------------------ Polars
    async def aquery(self, sql: str, parameters: Any = None) -> pl.DataFrame:
        """Async twin of :meth:`query`."""
        return await self._in_thread(self.query, sql, parameters)

    @async_dispatch(aquery)
    def query(self, sql: str, parameters: Any = None) -> pl.DataFrame:
        """Run a query and return the result as a ``pl.DataFrame`` (via Arrow).

        Args:
            sql: one SQL statement; use ``?`` or ``$name`` placeholders for values.
            parameters: a list (for ``?``) or dict (for ``$name``) of bound values.
        """
        with self._session() as con, _classified(sql):
            relation = con.sql(sql, params=parameters)
            if relation is None:
                return pl.DataFrame()
            return pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]

    async def atable_exists(self, table: str) -> bool:
        """Async twin of :meth:`table_exists`."""
        return await self._in_thread(self.table_exists, table)

    @async_dispatch(atable_exists)
    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (optionally schema-qualified) exists."""
        parts = split_table_name(table)
        with self._session() as con:
            return table_exists(con, parts)

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
    ) -> Any:
        """Async twin of :meth:`load_frame`."""
        return await self._in_thread(
            self.load_frame, df, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, cursor=cursor, initial_value=initial_value, lag=lag,
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
    ) -> Any:
        """Write a Polars ``DataFrame``/``LazyFrame``, an Arrow table or reader, or a pandas frame
        into ``table``, in one transaction: the data is never changed on the way in.

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
                ``"qty >= 0"`` and built-ins from :mod:`prefect_etl_blocks.checks`.
            scd2_columns: validity column names for ``scd2`` (default ``valid_from``,
                ``valid_to``, ``is_current``).
            return_result: return the :class:`~prefect_etl_blocks.loading.LoadResult` (rows
                inserted, updated and deleted, schema changes, checks) instead of the row count.
                The last result is also kept in :attr:`last_load`.
            cursor: load incrementally on this column: only rows past the table's
                high-water mark load, and the mark advances in the same transaction (see
                :func:`prefect_etl_blocks.loading.incremental.load_cursor`). The mode is then
                ``append`` without ``keys`` and ``upsert`` (or ``insert-only``) with them.
            initial_value: the cursor mark before the first load.
            lag: re-read this far below the mark for late rows (needs ``keys``); a number,
                or a ``timedelta`` for date/time cursors.

        Returns:
            The number of rows written (for ``upsert``: updated plus inserted), or the
            ``LoadResult`` with ``return_result=True``.

        Raises:
            SchemaMismatchError: columns or types the table cannot take as they are.
            InvalidIdentifierError: a table or column name DuckDB would change or cannot use.
            DataCheckError: a check failed.
            LoadConfigError: an unknown mode, missing keys, ``fail`` on an existing table.
            LoadError: any other failure of the data (constraints, duplicate keys). Whatever
                is raised, the table is exactly as it was before the load.

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
        if cursor is not None:
            return self._run_incremental(
                partial(
                    load_cursor, source=df, table=table, cursor=cursor,
                    initial_value=initial_value, lag=lag, keys=keys, mode=mode,
                    on_schema_change=on_schema_change, checks=checks,
                ),
                table, return_result,
            )
        no_cursor_options(initial_value, lag)
        return self._run_load(
            as_source(df), table, mode or "replace", keys, on_schema_change, checks, scd2_columns,
            return_result,
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
        lineage_column: str | None = LINEAGE_COLUMN,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
    ) -> Any:
        """Async twin of :meth:`load_parquet`."""
        return await self._in_thread(
            self.load_parquet, source, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, incremental=incremental, on_missing_file=on_missing_file,
            lineage_column=lineage_column, cursor=cursor, initial_value=initial_value, lag=lag,
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
        lineage_column: str | None = LINEAGE_COLUMN,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
    ) -> Any:
        """Stream a Parquet dataset into ``table`` without materialising it in memory.

        Local files are read by DuckDB's own Parquet reader (columns and ``filter`` applied in
        the scan); ``s3://`` sources are streamed batch by batch from Polars' object-store
        reader. Either is read exactly once, inside the load's transaction, so a crash leaves
        nothing behind. The source's ``expected_schema`` is checked before the table is touched.

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
                :func:`prefect_etl_blocks.loading.incremental.load_new_files`); a file whose
                content changed has its earlier rows replaced. The file manifest is written in
                the same transaction as the rows, so a crash or a retry never loads a file twice.
            on_missing_file: with ``incremental``: ``keep`` (default) the rows of a file that
                disappeared, or ``delete`` them.
            lineage_column: with ``incremental``: the column recording each row's file
                (default ``_prefect_etl_file``), or ``None`` to keep the table without it (a
                rewritten file then fails the load).
            cursor: a cursor load as for :meth:`load_frame`; the predicate ``cursor > mark`` is
                pushed into the Parquet scan, so old row groups are skipped.
            initial_value: as for :meth:`load_frame`.
            lag: as for :meth:`load_frame`.

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
        from prefect_etl_blocks.parquet import ParquetSource

        if isinstance(source, str | os.PathLike):
            source = ParquetSource(path=os.fspath(source))
        if incremental and cursor is not None:
            raise LoadConfigError(
                "load_parquet takes incremental=True (new files) or cursor=... (new rows), not "
                "both."
            )
        if incremental:
            no_cursor_options(initial_value, lag)
            return self._run_incremental(
                partial(
                    load_new_files, source=source, table=table, mode=mode or "append", keys=keys,
                    on_schema_change=on_schema_change, checks=checks,
                    on_missing_file=on_missing_file, lineage_column=lineage_column,
                ),
                table, return_result, mode=mode or "append",
            )
        if cursor is not None:
            return self._run_incremental(
                partial(
                    load_cursor, source=source, table=table, cursor=cursor,
                    initial_value=initial_value, lag=lag, keys=keys, mode=mode,
                    on_schema_change=on_schema_change, checks=checks,
                ),
                table, return_result, origin=source, mode=mode,
            )
        no_cursor_options(initial_value, lag)
        return self._run_load(
            parquet_source(source), table, mode or "replace", keys, on_schema_change, checks,
            scd2_columns, return_result, origin=source,
        )

    @property
    def last_load(self) -> LoadResult | None:
        """What the last load through this block did (rows inserted, updated, deleted, schema
        changes, checks), or ``None`` before the first load."""
        return self._last_load

    def _run_load(
        self,
        source: Any,
        table: str,
        mode: str,
        keys: Any,
        on_schema_change: str,
        checks: Any,
        scd2_columns: Any,
        return_result: bool,
        origin: Any = None,
    ) -> Any:
        return self._run_incremental(
            partial(
                load, source=source, table=table, mode=mode, keys=keys,
                on_schema_change=on_schema_change, checks=checks, scd2_columns=scd2_columns,
            ),
            table, return_result, origin=origin, mode=mode,
        )

    def _run_incremental(
        self, run: Any, table: str, return_result: bool, origin: Any = None, mode: str | None = None
    ) -> Any:
        """Run ``run(con)`` (a load) on a session connection, then report it as lineage."""
        if self.read_only:
            raise LoadConfigError(
                f'Cannot load into {table!r}: DuckDBConnection("{self.database}") is read_only.'
            )
        try:
            with self._session() as con:
                result = run(con)
        except Exception as exc:
            if lineage.in_prefect_run():
                lineage.emit_load_failed(
                    self.database_path, table, mode, exc, lineage.source_fingerprint(origin)
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
        with self._session() as con:
            return ledger_history(con, table)

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
        if self.read_only:
            raise LoadConfigError(
                f'Cannot reset {table!r}: DuckDBConnection("{self.database}") is read_only.'
            )
        with self._session() as con:
            return reset_incremental(con, table)

    def __repr__(self) -> str:
        return f"DuckDBConnection(database={self.database!r}, read_only={self.read_only!r})"


@contextmanager
def _classified(sql: str) -> Iterator[None]:
    """Raise DuckDB's own refusals of ``sql`` as library errors (see
    :func:`prefect_etl_blocks.loading.boundary.classify_query_error`)."""
    try:
        yield
    except duckdb.Error as exc:
        classified = classify_query_error(exc, sql)
        if classified is exc:
            raise
        raise classified from exc


def _finish(con: duckdb.DuckDBPyConnection) -> None:
    """Run the last ``execute()`` result to its end: DuckDB 2.0 refuses other work (``sql``,
    ``register``) on a connection with an unfinished result, which matters when a block keeps
    its connection (``with db:``)."""
    complete = getattr(con, "complete", None)  # DuckDB 2.0; 1.x has no such state
    if complete is not None:
        complete()
