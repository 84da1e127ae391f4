"""The results a session's fetch methods remember (Prefect's ``DatabaseBlock`` fetch contract,
as prefect-sqlalchemy implements it; see :mod:`prefect_etl_blocks.core.warehouse.session`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import duckdb

from prefect_etl_blocks.core.engines import finish_result
from prefect_etl_blocks.core.identifiers import quote_parts
from prefect_etl_blocks.core.loading.boundary import classify_query_error


class Owner(Protocol):
    """What the results need of the session that owns them
    (:class:`~prefect_etl_blocks.core.warehouse.session.Session`): its connection, its lock,
    its backend's ``open``/``in_transaction``, and closing the connection when nothing holds it."""

    connection: duckdb.DuckDBPyConnection | None
    lock: Any
    backend: Any

    def close_if_idle(self) -> None: ...

#: What a cursor must share with its connection to run a fetch's query in its place.
_SESSION = (
    "SELECT current_database(), current_schema(), current_setting('search_path'), "
    "current_setting('TimeZone'), (SELECT count(*) FROM duckdb_variables()), "
    "(SELECT count(*) FROM duckdb_tables() WHERE temporary)"
)

__all__ = ["Results", "classified"]


class Results:
    """``cursors`` maps each result, by ``(operation, repr(parameters))``, to ``(cursor, rows
    read ahead)``. One row is read ahead, so the call that returns the last rows already knows
    the result is exhausted: the cursor is closed then, and with it the connection it kept (a
    file is released). An exhausted result stays as ``(None, [])``, holding nothing."""

    def __init__(self, session: Owner) -> None:
        self.session = session
        self.cursors: dict[Any, tuple[duckdb.DuckDBPyConnection | None, list[tuple]]] = {}

    def read(
        self, operation: str, parameters: Any, size: int | None, *, start: bool, streamed: bool = False
    ) -> list[tuple] | None:
        """The next ``size`` rows (``None``: all that are left) of the result of ``operation``
        with ``parameters``, ``[]`` once it is exhausted. Without one the query is run and
        remembered when ``start`` (see :meth:`run` for ``streamed``), else ``None`` is returned."""
        key = (operation, repr(parameters))
        session = self.session
        with session.lock:
            entry = self.cursors.get(key)
            if entry is None:
                if not start:
                    return None
                entry = self.cursors[key] = self.run(operation, parameters, streamed)
            cursor, ahead = entry
            if cursor is None:  # exhausted, or read at once (see run)
                rows, rest = (ahead, []) if size is None else (ahead[:size], ahead[size:])
                self.cursors[key] = (None, rest)
                session.close_if_idle()
                return rows
            try:
                with classified(operation):
                    more = cursor.fetchall() if size is None else cursor.fetchmany(size + 1 - len(ahead))
            except BaseException:
                # A failure while reading (a cast error of a later row, say): forget the result.
                del self.cursors[key]
                self.drop(cursor)
                session.close_if_idle()
                raise
            rows = ahead + more
            if size is not None and len(rows) > size:
                self.cursors[key] = (cursor, rows[size:])
                return rows[:size]
            self.cursors[key] = (None, [])
            self.drop(cursor)
            session.close_if_idle()
            return rows

    def run(self, operation: str, parameters: Any, streamed: bool) -> tuple[duckdb.DuckDBPyConnection | None, list[tuple]]:
        """Run a fetch's query for remembering.

        ``fetch_one`` (``streamed=False``) runs it on the session's own connection, as any other
        statement: usually the first rows are all there is, and nothing is left open. So does
        ``fetch_many`` when that connection has state a cursor would not see (an open
        transaction, temporary tables, variables, a time zone or search path from ``init_sql``).
        What is left of such a result is read into memory as soon as another statement needs
        the connection (:meth:`park`). Otherwise ``fetch_many`` runs it on a cursor of its own
        (a DuckDB connection of its own), so statements can run between two pages while the
        result streams.
        """
        session = self.session
        opened = session.connection is None
        if opened:
            session.connection = session.backend.open()
        con = session.connection
        try:
            self.park()
            source = con.cursor() if streamed else con
            try:
                if source is not con and (
                    (not opened and session.backend.in_transaction(con)) or not _same_session(con, source)
                ):
                    _close_quietly(source)
                    source = con
                with classified(operation):
                    source.execute(operation, parameters)
            except BaseException:
                self.drop(source)
                raise
            return source, []
        except BaseException:
            session.close_if_idle()  # a failed query must not keep a file locked
            raise

    def reading(self) -> bool:
        """Whether a result still reads from its cursor (and so needs the connection)."""
        return any(cursor is not None for cursor, _ in self.cursors.values())

    def forget(self) -> None:
        """Forget every result, closing the unread ones."""
        for cursor, _ in self.cursors.values():
            self.drop(cursor)
        self.cursors.clear()

    def drop_unread(self) -> None:
        """Forget the results still being read (their connection is closing): the next fetch
        of one runs anew. Exhausted results hold no connection and stay remembered."""
        for key, (cursor, _) in list(self.cursors.items()):
            if cursor is not None:
                self.drop(cursor)
                del self.cursors[key]

    def drop(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        """Close a result's own cursor; a result read on the session's connection is finished
        (DuckDB 2.0 refuses other work on a connection with an unfinished result)."""
        if cursor is None:
            return
        if cursor is not self.session.connection:
            _close_quietly(cursor)
            return
        try:
            finish_result(cursor)
        except duckdb.Error:
            pass

    def park(self) -> None:
        """Read into memory what is left of a result being read on the session's own
        connection (see :meth:`run`), so that connection can run something else."""
        connection = self.session.connection
        for key, (cursor, ahead) in list(self.cursors.items()):
            if cursor is not None and cursor is connection:
                try:
                    rest = cursor.fetchall()
                except duckdb.Error:
                    del self.cursors[key]  # it failed while reading: the next fetch runs anew
                    continue
                self.cursors[key] = (None, ahead + rest)


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
            cursor.execute(f"USE {quote_parts(mine[:2])}").fetchall()
        return cursor.execute(_SESSION).fetchall()[0] == mine
    except duckdb.Error:
        return False


@contextmanager
def classified(sql: str) -> Iterator[None]:
    """Raise DuckDB's own refusals of ``sql`` as library errors (see
    :func:`prefect_etl_blocks.core.loading.boundary.classify_query_error`)."""
    try:
        yield
    except duckdb.Error as exc:
        converted = classify_query_error(exc, sql)
        if converted is exc:
            raise
        raise converted from exc
