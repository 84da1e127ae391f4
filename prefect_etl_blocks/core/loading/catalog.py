"""What the database already holds, as a load asks before it writes: whether a table or schema
exists, whether a table is plain enough for ``replace`` to recreate it, and, for
``create="never"``, the existing tables nearest in name to a missing one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import duckdb

from prefect_etl_blocks.core.identifiers import quote_identifier
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.connections import first_row as _first
from prefect_etl_blocks.core.loading.table_keys import state_schema


def schema_exists(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    sql = "SELECT count(*) FROM duckdb_schemas() WHERE lower(schema_name) = lower(?)"
    params: list[Any] = [parts[-2]]
    if len(parts) == 3:
        sql += " AND lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += " AND database_name = current_database()"
    return _first(con.execute(sql, params).fetchall())[0] > 0


def missing_table_message(con: duckdb.DuckDBPyConnection, parts: list[str], table: str) -> str:
    """Why ``create="never"`` refused ``table``, with the existing tables nearest in name,
    spelled as ``table`` was (``t``, ``schema.t`` or ``db.schema.t``; the current database is
    left out, as callers that qualify names in full did not write it)."""
    current_db = _first(con.execute("SELECT current_database()").fetchall())[0]
    shown = parts[1:] if len(parts) == 3 and parts[0].casefold() == str(current_db).casefold() else parts
    sql = (
        "SELECT database_name, schema_name, table_name, schema_name = current_schema() "
        "FROM duckdb_tables() WHERE NOT internal AND schema_name <> ? AND "
    )
    params: list[Any] = [ledger.STATE_SCHEMA]
    if len(parts) == 3:
        sql += "lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += "database_name = current_database()"
    names = []
    for database, schema, name, current in con.execute(sql, params).fetchall():
        if len(shown) == 3:
            names.append(f"{database}.{schema}.{name}")
        elif len(shown) == 1 and current:
            names.append(name)
        else:
            names.append(f"{schema}.{name}")
    wanted = ".".join(shown)
    by_fold = {n.casefold(): n for n in sorted(names)}
    near = [by_fold[n] for n in difflib.get_close_matches(wanted.casefold(), list(by_fold), n=5, cutoff=0.6)]
    if near:
        hint = f"Existing tables nearest in name: {', '.join(near)}."
    elif names:
        hint = f"No existing table has a similar name ({len(names)} table(s) in the database)."
    else:
        hint = "The database has no tables yet."
    return (
        f'Table "{wanted}" does not exist and create="never" refuses to create it; nothing was '
        f"written. {hint} Fix the name, create the table first, or pass create=\"if_missing\"."
    )


def table_exists(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    """Whether the table named by ``parts`` (``[catalog.][schema.]table``) exists."""
    return _table_row(con, parts, "count(*)")[0] > 0


def _table_row(con: duckdb.DuckDBPyConnection, parts: list[str], select: str) -> tuple:
    sql = f"SELECT {select} FROM duckdb_tables() WHERE lower(table_name) = lower(?)"
    params: list[Any] = [parts[-1]]
    if len(parts) >= 2:
        sql += " AND lower(schema_name) = lower(?)"
        params.append(parts[-2])
    else:
        sql += " AND schema_name = current_schema()"
    if len(parts) == 3:
        sql += " AND lower(database_name) = lower(?)"
        params.append(parts[-3])
    else:
        sql += " AND database_name = current_database()"
    return _first(con.execute(sql, params).fetchall())


@dataclass(frozen=True)
class Probe:
    """What a load asks the catalog before it writes, answered by one query (:func:`probe`)."""

    schema_exists: bool
    table_exists: bool
    #: How many of the state tables (``_prefect_etl.*``) the target's catalog holds.
    state_tables: int
    #: The ledger's (``_prefect_etl.loads``) column count, ``None`` without a ledger.
    loads_columns: int | None
    #: The manifest's (``_prefect_etl.files``) column count, ``None`` without one.
    files_columns: int | None = None
    #: The target's ``(column, DuckDBPyType)`` pairs, in order, when the probe bound it
    #: (``None``: not known, ask :func:`~prefect_etl_blocks.core.loading.contracts.relation_types`).
    columns: tuple[tuple[str, Any], ...] | None = None

    @property
    def state_is_current(self) -> bool:
        """Whether the state needs nothing from ``ensure_state`` but the key migration."""
        return ledger.state_is_current(self.state_tables, self.loads_columns, self.files_columns)


def probe(con: duckdb.DuckDBPyConnection, parts: list[str]) -> Probe:
    """:func:`schema_exists` and :func:`table_exists` of the table named in full by ``parts``
    (``[catalog, schema, table]``, as :func:`~prefect_etl_blocks.core.loading.ledger.resolve`
    gives them), and the state tables of catalog ``parts[0]``, in one catalog query instead of
    one each. Ask it inside the load's transaction, as those functions are.

    The usual answer (the table and every state table there) comes from binding them in two
    statements that are never run, which also give the table's columns: a catalog scan
    (``duckdb_tables()``) reads every table's entry, and on a DuckLake fetches every table's
    statistics from the catalog database. Only when a bind fails is the catalog scanned. The
    binds are made as relations (``con.sql``), whose failure leaves an open transaction usable
    (a failed ``execute`` aborts it on DuckDB 2.0)."""
    bound = _bound(con, parts)
    return bound if bound is not None else _scanned(con, parts)


def _bound(con: duckdb.DuckDBPyConnection, parts: list[str]) -> Probe | None:
    """The probe's answer when the target is a base table and every state table exists; else
    ``None``. The state tables are selected as ``STRUCT`` s of their columns (whose types give
    the column counts) in one statement, the target in another, so none of its columns can
    shadow a table's alias. ``rowid`` binds on base tables only, so a view of the name is not
    taken for a table (a table with a column called ``rowid`` is sent to the scan)."""
    state = state_schema(parts[0])
    tables = [f"{state}.{quote_identifier(name)} AS s{i}" for i, name in enumerate(ledger.STATE_TABLES)]
    structs = ", ".join(f"s{i}" for i in range(len(tables)))
    try:
        kinds = con.sql(f"SELECT {structs} FROM {', '.join(tables)} LIMIT 0").types
        counts = dict(zip(ledger.STATE_TABLES, (len(kind.children) for kind in kinds), strict=True))
        bound = con.sql(f"SELECT *, rowid FROM {'.'.join(quote_identifier(p) for p in parts)} LIMIT 0")
        columns = tuple(zip(bound.columns[:-1], bound.types[:-1], strict=True))
    except (duckdb.CatalogException, duckdb.BinderException, duckdb.InvalidInputException):
        return None  # a table missing, a view, or a state table not ours
    if any(name.casefold() == "rowid" for name, _ in columns):
        return None
    return Probe(True, True, len(tables), counts["loads"], counts["files"], columns)


def _scanned(con: duckdb.DuckDBPyConnection, parts: list[str]) -> Probe:
    catalog, schema, name = parts
    # One pass over duckdb_tables() of the one catalog, returning the few rows that matter (the
    # state tables and the target): each scan costs more than the query around it, and
    # aggregating in SQL, or asking duckdb_schemas() in the same query, costs more than reading
    # them here. The schema is asked about only when the table is not there.
    rows = con.execute(
        "SELECT schema_name, table_name, column_count FROM duckdb_tables() WHERE "
        "lower(database_name) = lower($catalog) AND (schema_name = $state OR "
        "(lower(table_name) = lower($name) AND lower(schema_name) = lower($schema)))",
        {"catalog": catalog, "schema": schema, "name": name, "state": ledger.STATE_SCHEMA},
    ).fetchall()
    state = {table: columns for owner, table, columns in rows if owner == ledger.STATE_SCHEMA}
    # Every other row is the target, matched by DuckDB's lower() (loads into the state schema
    # are refused before any probe).
    found = any(owner != ledger.STATE_SCHEMA for owner, _, _ in rows)
    return Probe(
        found or schema_exists(con, parts), found, len(state), state.get("loads"), state.get("files")
    )


def is_plain(con: duckdb.DuckDBPyConnection, parts: list[str]) -> bool:
    """A table with no constraints, defaults or comments, which ``replace`` may recreate from
    the data; any other table keeps its definition."""
    oid, comment = _table_row(con, parts, "any_value(table_oid), any_value(comment)")
    if oid is None or comment:
        return oid is None
    constraints = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_oid = ?", [oid]).fetchall()[0][0]
    decorated = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_oid = ? AND (column_default IS NOT NULL "
        "OR comment IS NOT NULL)",
        [oid],
    ).fetchall()[0][0]
    return constraints == 0 and decorated == 0


__all__ = ["Probe", "is_plain", "missing_table_message", "probe", "schema_exists", "table_exists"]
