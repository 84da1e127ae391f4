"""Exceptions from DuckDB, Polars, Arrow and object stores, sorted at the boundary into
:class:`~prefect_etl_blocks.core.errors.DataError` (a retry cannot help) and
:class:`~prefect_etl_blocks.core.errors.TransientError` (it may), each with a message that says
what failed, where, and what to do.
"""

from __future__ import annotations

import re

import duckdb

from prefect_etl_blocks.core.errors import (
    NETWORK,
    DuckDBLockTimeoutError,
    LoadError,
    PrefectETLBlocksError,
    QueryError,
    SourceUnavailableError,
    TransactionConflictError,
    first_line,
    is_transient,
)

_CONFLICT = re.compile(r"conflict", re.IGNORECASE)
_MISSING = re.compile(
    r"(Table|View|Schema|Catalog) with name .* does not exist|"
    r"Referenced column .* not found|does not have a column",
    re.IGNORECASE,
)


def commit_conflict(exc: BaseException, *, table: str, mode: str | None = None) -> TransactionConflictError | None:
    """``exc`` as a :class:`TransactionConflictError` when it says the load lost a race with
    another writer's commit, else ``None``.

    That covers changed rows and, as much, a race to *create* something: DuckLake refuses the
    COMMIT of the second creator of a table, a schema or the state tables ("Transaction
    conflict - attempting to create table "raw" in schema "main" - but this table has been
    created by another transaction already"). The COMMIT of an incremental load runs outside
    :func:`~prefect_etl_blocks.core.loading.load`, so that error reaches the caller unclassified;
    waited out and run again, the load finds the table and succeeds.
    """
    if isinstance(exc, TransactionConflictError):
        return exc
    if isinstance(exc, duckdb.TransactionException) and _CONFLICT.search(str(exc)):
        how = f" ({mode})" if mode else ""
        return TransactionConflictError(
            f'Loading into table "{table}"{how} conflicted with another writer\'s commit: '
            f"{first_line(exc)}. The table was left exactly as it was before the load. "
            "Running the load again can succeed."
        )
    return None


def classify_load_error(exc: BaseException, *, table: str, mode: str, remote: bool) -> PrefectETLBlocksError:
    """The library error for an exception raised while loading into ``table``.

    The target was rolled back before this is called, so every message says so.
    """
    kept = "The table was left exactly as it was before the load."
    text = first_line(exc)
    if isinstance(exc, PrefectETLBlocksError):
        return exc
    conflict = commit_conflict(exc, table=table, mode=mode)
    if conflict is not None:
        return conflict
    if isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc):
        return DuckDBLockTimeoutError(
            f'Loading into table "{table}" ({mode}): the database file is locked ({text}). {kept}'
        )
    if is_transient(exc) or (remote and NETWORK.search(str(exc))):
        return SourceUnavailableError(
            f'Loading into table "{table}" ({mode}): the source could not be read ({text}). '
            f"{kept} The storage or network did not answer; a retry may succeed."
        )
    if isinstance(exc, duckdb.ConstraintException):
        return LoadError(
            f'Loading into table "{table}" ({mode}) violates a constraint of the table: {text}. '
            f"{kept} Fix the rows that break it (or the constraint)."
        )
    if isinstance(exc, duckdb.CatalogException | duckdb.BinderException) and _MISSING.search(str(exc)):
        return LoadError(
            f'Loading into table "{table}" ({mode}) failed: {text}. {kept} Check the table and '
            "column names (names are case-insensitive; quote a schema-qualified part with dots)."
        )
    return LoadError(f'Loading into table "{table}" ({mode}) failed: {text}. {kept}')


def classify_query_error(exc: BaseException, sql: str) -> BaseException:
    """The library error for a DuckDB error raised by a query or statement, or ``exc`` itself
    when it is none of ours to classify (it then keeps its own type)."""
    text = first_line(exc)
    shown = " ".join(sql.split())
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    if isinstance(exc, duckdb.TransactionException) and _CONFLICT.search(str(exc)):
        return TransactionConflictError(
            f"{text} (running {shown!r}). Another writer changed the same rows first; running "
            "it again can succeed."
        )
    if isinstance(exc, duckdb.CatalogException | duckdb.BinderException):
        return QueryError(
            f"{text} (in {shown!r}). Check the table and column names: names are "
            "case-insensitive, a schema-qualified table is written schema.table, and "
            "SELECT * FROM duckdb_tables() lists the tables."
        )
    if isinstance(exc, duckdb.ParserException):
        return QueryError(f"{text} (in {shown!r}). Fix the SQL syntax.")
    return exc
