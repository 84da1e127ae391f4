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
Inside ``with db:`` (or :meth:`get_connection`) one connection is kept open. ``":memory:"``
databases always keep their connection, since closing it would drop the data.

Loads are transactional: ``replace`` builds the new table and swaps it in one transaction, so a
failure at any point (bad file, type error, an exception in a source batch) leaves the old table
exactly as it was.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import duckdb
import polars as pl
import pyarrow as pa
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import DatabaseBlock
from pydantic import Field, PrivateAttr, field_validator

from prefect_etl_blocks.errors import DuckDBLockTimeoutError, ExtensionLoadError, LoadError
from prefect_etl_blocks.identifiers import quote_identifier, quote_table, split_table_name

if TYPE_CHECKING:
    from prefect_etl_blocks.parquet import ParquetSource

LoadMode = Literal["replace", "append", "upsert", "fail"]
DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/duckdb_connection/"
_LOCK_CONFLICT = "Could not set lock on file"
_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
_CREATE_GUARD = threading.Lock()
_STREAM_ROWS = 256 * 1024

__all__ = ["DuckDBConnection", "LoadMode", "quote_identifier", "quote_table", "split_table_name"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class DuckDBConnection(DatabaseBlock):
    """A DuckDB database file (or in-memory database) with Polars-native queries and loads.

    Implements Prefect's ``DatabaseBlock`` (``fetch_one``, ``fetch_many``, ``fetch_all``,
    ``execute``, ``execute_many``) and adds ``query`` (to a ``pl.DataFrame``), ``load_frame``
    and ``load_parquet`` with ``replace``/``append``/``upsert``/``fail`` modes. Identifiers are
    always quoted, loads are atomic and parameters are bound, never pasted into SQL.

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
        "(replace, append, upsert) that wait for other writers instead of failing."
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
    _cursors: dict[Any, duckdb.DuckDBPyConnection] = PrivateAttr(default_factory=dict)
    _held: int = PrivateAttr(default=0)

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
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(path, read_only=self.read_only, config=dict(self.settings))
                break
            except duckdb.IOException as exc:
                if _LOCK_CONFLICT not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    match = _HOLDER.search(str(exc))
                    holder = (
                        f"process {match['pid']} ({match['exe']})" if match else "another process"
                    )
                    raise DuckDBLockTimeoutError(
                        f'DuckDB file "{path}" is locked by {holder}; waited '
                        f"{self.lock_timeout_seconds:g} s for it. DuckDB allows one writing "
                        "process per file: let the other process finish, raise "
                        "lock_timeout_seconds, or use read_only=True for readers."
                    ) from exc
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 1.6, 0.5)
        try:
            for name in self.extensions:
                self._load_extension(con, name)
            for statement in self.init_sql:
                con.execute(statement)
        except BaseException:
            con.close()
            raise
        return con

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
                f"DuckDB extension {name!r} could not be loaded ({_first_line(exc)}). It is not "
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
                con.close()

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
        for cursor in self._cursors.values():
            try:
                cursor.close()
            except duckdb.Error:
                pass
        self._cursors.clear()
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def reset_cursors(self) -> None:
        """Forget the open ``fetch_many`` result sets (the next call starts from the top)."""
        with self._lock():
            for cursor in self._cursors.values():
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
        private.update(_connection=None, _guard=None, _cursors={}, _held=0)
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
            return con.execute(operation, parameters).fetchone()

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
        with self._lock():
            cursor = self._cursors.get(key)
            if cursor is None:
                if self._connection is None:
                    self._connection = self._open()
                cursor = self._connection.cursor()
                cursor.execute(operation, parameters)
                self._cursors[key] = cursor
            rows = cursor.fetchmany(size or 1)
            return rows

    async def afetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """Async twin of :meth:`fetch_all`."""
        return await self._in_thread(self.fetch_all, operation, parameters, **execution_options)

    @async_dispatch(afetch_all)
    def fetch_all(self, operation: str, parameters: Any = None, **execution_options: Any) -> list[tuple]:
        """Run a query and return all rows as tuples, with bound ``parameters``."""
        with self._session() as con:
            return con.execute(operation, parameters).fetchall()

    async def aexecute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Async twin of :meth:`execute`."""
        await self._in_thread(self.execute, operation, parameters, **execution_options)

    @async_dispatch(aexecute)
    def execute(self, operation: str, parameters: Any = None, **execution_options: Any) -> None:
        """Run one statement (DDL or DML) with bound ``parameters``."""
        with self._session() as con:
            con.execute(operation, parameters)

    async def aexecute_many(
        self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any
    ) -> None:
        """Async twin of :meth:`execute_many`."""
        await self._in_thread(self.execute_many, operation, seq_of_parameters, **execution_options)

    @async_dispatch(aexecute_many)
    def execute_many(self, operation: str, seq_of_parameters: Sequence[Any], **execution_options: Any) -> None:
        """Run one statement once per parameter set, all in one transaction."""
        with self._session() as con, self._transaction(con):
            con.executemany(operation, list(seq_of_parameters))

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
        with self._session() as con:
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
            return self._exists(con, parts)

    @staticmethod
    def _exists(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
        name = parts[-1]
        schema = parts[-2] if len(parts) >= 2 else None
        catalog = parts[-3] if len(parts) == 3 else None
        sql = "SELECT count(*) FROM duckdb_tables() WHERE lower(table_name) = lower(?)"
        params: list[Any] = [name]
        if schema is not None:
            sql += " AND lower(schema_name) = lower(?)"
            params.append(schema)
        else:
            sql += " AND schema_name = current_schema()"
        if catalog is not None:
            sql += " AND lower(database_name) = lower(?)"
            params.append(catalog)
        else:
            sql += " AND database_name = current_database()"
        row = con.execute(sql, params).fetchone()
        return bool(row and row[0])

    @contextmanager
    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    async def aload_frame(
        self, df: Any, table: str, mode: LoadMode = "replace", keys: Sequence[str] | None = None
    ) -> int:
        """Async twin of :meth:`load_frame`."""
        return await self._in_thread(self.load_frame, df, table, mode, keys)

    @async_dispatch(aload_frame)
    def load_frame(
        self, df: Any, table: str, mode: LoadMode = "replace", keys: Sequence[str] | None = None
    ) -> int:
        """Write a Polars ``DataFrame``/``LazyFrame`` or an Arrow table into ``table`` via Arrow.

        Args:
            df: a ``pl.DataFrame``, ``pl.LazyFrame`` (streamed in batches), ``pa.Table`` or
                ``pa.RecordBatchReader``.
            table: target table, optionally schema-qualified (``analytics.daily``); the schema is
                created when missing. Names are quoted, never pasted into SQL.
            mode: ``replace`` (atomic swap), ``append`` (columns matched by name), ``upsert``
                (update rows matching ``keys``, insert the rest, in one transaction) or
                ``fail`` (error if the table exists).
            keys: key columns for ``upsert``.

        Returns:
            The number of rows written (for ``upsert``: updated plus inserted).

        Raises:
            LoadError: the load failed; the table is exactly as it was before.
            InvalidIdentifierError: an unusable table name.
            ValueError: an unknown mode, missing keys, or ``fail`` on an existing table.
        """
        source = _as_arrow(df)
        columns = list(source.schema.names)
        return self._load(source, columns, table, mode, keys)

    async def aload_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode = "replace",
        keys: Sequence[str] | None = None,
    ) -> int:
        """Async twin of :meth:`load_parquet`."""
        return await self._in_thread(self.load_parquet, source, table, mode, keys)

    @async_dispatch(aload_parquet)
    def load_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode = "replace",
        keys: Sequence[str] | None = None,
    ) -> int:
        """Stream a Parquet dataset into ``table`` without materialising it in memory.

        Local files are read by DuckDB's own Parquet reader (columns and ``filter`` applied in
        the scan); ``s3://`` sources are streamed batch by batch from Polars' object-store
        reader. The source's ``expected_schema`` is checked before the table is touched.

        Args:
            source: a :class:`~prefect_etl_blocks.ParquetSource` or a path / glob / ``s3://`` URI.
            table: target table, as for :meth:`load_frame`.
            mode: load mode, as for :meth:`load_frame`.
            keys: key columns for ``upsert``.

        Returns:
            The number of rows written.
        """
        from prefect_etl_blocks.parquet import ParquetSource

        if isinstance(source, str | os.PathLike):
            source = ParquetSource(path=os.fspath(source))
        schema = source.validate_data()
        columns = list(schema.names())
        if source.is_remote:
            reader = _stream_lazy(source.scan(validate=False), schema)
            return self._load(reader, columns, table, mode, keys)
        return self._load(source, columns, table, mode, keys)

    def _load(self, source: Any, columns: list[str], table: str, mode: str, keys: Sequence[str] | None) -> int:
        if mode not in ("replace", "append", "upsert", "fail"):
            raise ValueError(
                f"mode={mode!r} is not a load mode; use 'replace', 'append', 'upsert' or 'fail'."
            )
        parts = split_table_name(table)
        target = ".".join(quote_identifier(p) for p in parts)
        key_list = list(keys or [])
        if mode == "upsert":
            if not key_list:
                raise ValueError(
                    f'mode="upsert" into {table!r} needs keys=[...]: the columns that identify a row.'
                )
            missing = [k for k in key_list if k not in columns]
            if missing:
                raise ValueError(
                    f"upsert keys {missing} are not columns of the data loaded into {table!r}; "
                    f"its columns are {columns}."
                )
        if self.read_only:
            raise ValueError(
                f'Cannot load into {table!r}: DuckDBConnection("{self.database}") is read_only.'
            )
        view = f"__petl_source_{uuid.uuid4().hex}"
        with self._session() as con:
            try:
                if isinstance(source, pa.Table | pa.RecordBatchReader):
                    con.register(view, source)
                else:  # a local ParquetSource: DuckDB's own reader
                    _register_parquet_view(con, view, source, columns)
                with self._transaction(con):
                    if len(parts) >= 2:
                        schema_name = ".".join(quote_identifier(p) for p in parts[:-1])
                        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
                    exists = self._exists(con, parts)
                    if mode == "fail" and exists:
                        raise ValueError(
                            f'Table "{table}" already exists. Use mode="replace" to replace it or '
                            'mode="append" to add rows.'
                        )
                    src = quote_identifier(view)
                    if mode in ("replace", "fail") or not exists:
                        row = con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {src}").fetchone()
                    elif mode == "append":
                        row = con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {src}").fetchone()
                    else:
                        row = (self._upsert(con, target, src, columns, key_list, table),)
                    return int(row[0]) if row else 0
            except (ValueError, LoadError):
                raise
            except Exception as exc:
                raise LoadError(
                    f'Loading into table "{table}" ({mode}) failed: {_first_line(exc)}. '
                    "The table was left exactly as it was before the load."
                ) from exc
            finally:
                if isinstance(source, pa.Table | pa.RecordBatchReader):
                    con.unregister(view)
                else:
                    con.execute(f"DROP VIEW IF EXISTS {quote_identifier(view)}")

    @staticmethod
    def _upsert(
        con: duckdb.DuckDBPyConnection, target: str, src: str, columns: list[str], keys: list[str], table: str
    ) -> int:
        key_cols = ", ".join(quote_identifier(k) for k in keys)
        dup = con.execute(
            f"SELECT {key_cols} FROM {src} GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if dup is not None:
            raise LoadError(
                f"upsert into {table!r}: key {dict(zip(keys, dup, strict=True))} appears more than "
                "once in the data; keys must be unique per load. The table was left as it was."
            )
        match = " AND ".join(
            f"t.{quote_identifier(k)} IS NOT DISTINCT FROM s.{quote_identifier(k)}" for k in keys
        )
        others = [c for c in columns if c not in keys]
        updated = 0
        if others:
            sets = ", ".join(f"{quote_identifier(c)} = s.{quote_identifier(c)}" for c in others)
            updated = con.execute(
                f"UPDATE {target} AS t SET {sets} FROM {src} AS s WHERE {match}"
            ).fetchone()[0]
        else:
            updated = con.execute(
                f"SELECT count(*) FROM {src} AS s WHERE EXISTS (SELECT 1 FROM {target} AS t WHERE {match})"
            ).fetchone()[0]
        inserted = con.execute(
            f"INSERT INTO {target} BY NAME SELECT s.* FROM {src} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {match})"
        ).fetchone()[0]
        return int(updated) + int(inserted)

    def __repr__(self) -> str:
        return f"DuckDBConnection(database={self.database!r}, read_only={self.read_only!r})"


def _as_arrow(df: Any) -> pa.Table | pa.RecordBatchReader:
    if isinstance(df, pl.DataFrame):
        return df.to_arrow()
    if isinstance(df, pl.LazyFrame):
        return _stream_lazy(df, df.collect_schema())
    if isinstance(df, pa.Table | pa.RecordBatchReader):
        return df
    if isinstance(df, pa.RecordBatch):
        return pa.Table.from_batches([df])
    try:  # pandas, without importing it when absent
        import pandas as pd

        if isinstance(df, pd.DataFrame):
            return pa.Table.from_pandas(df, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is optional
        pass
    raise TypeError(
        f"load_frame() takes a pl.DataFrame, pl.LazyFrame, pyarrow Table/RecordBatchReader or "
        f"pandas DataFrame, not {type(df).__name__}."
    )


def _stream_lazy(frame: pl.LazyFrame, schema: pl.Schema) -> pa.RecordBatchReader:
    """A RecordBatchReader over a LazyFrame, collected in batches (bounded memory)."""
    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema

    def batches() -> Iterable[pa.RecordBatch]:
        for chunk in frame.collect_batches(chunk_size=_STREAM_ROWS):
            yield from chunk.to_arrow().cast(arrow_schema).to_batches()

    return pa.RecordBatchReader.from_batches(arrow_schema, batches())


def _register_parquet_view(
    con: duckdb.DuckDBPyConnection, view: str, source: ParquetSource, columns: list[str]
) -> None:
    files = source.files()
    hive = source.hive_partitioning
    if hive is None:
        hive = len(files) > 1 or source.path.rstrip("/") != files[0]
    relation = con.read_parquet(files, hive_partitioning=bool(hive))
    if source.filter:
        # DuckDB parses this as one expression (never as a statement).
        relation = relation.filter(source.filter)
    relation = relation.project(", ".join(quote_identifier(c) for c in columns))
    relation.create_view(view, replace=True)
