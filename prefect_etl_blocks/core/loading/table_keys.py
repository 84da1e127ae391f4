"""Which table a name means, and the key its ledger rows and incremental state are kept under.

A table is identified as DuckDB resolves its name for the connection that loads it
(:func:`resolve`): its catalog, schema and name. ``t``, ``main.t``, ``"t"`` and ``w.main.t``
(the database ``w.duckdb`` is catalog ``w``) are one table. The catalog is *where* its state is
kept (the state schema of that database), and within it the table is recorded under the key
``schema.table`` (:attr:`TableRef.key`), folded to lower case as DuckDB folds identifiers
(ASCII letters only). So two databases' ``main.t`` are two tables, and the same database file
attached under another name (another alias, a renamed or copied file) keeps its state.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import quote_parts

#: The schema, in each catalog, that holds the state of that catalog's tables.
STATE_SCHEMA = "_prefect_etl"

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def state_schema(catalog: str) -> str:
    """The state schema of ``catalog``, quoted: ``"<catalog>"."_prefect_etl"``."""
    return quote_parts((catalog, STATE_SCHEMA))


def fold(name: str) -> str:
    """``name`` as DuckDB compares identifiers: ASCII letters in lower case, nothing else
    changed (``"Ä"`` and ``"ä"`` are two tables to DuckDB)."""
    return name.translate(_ASCII_LOWER)


def _key_part(name: str) -> str:
    name = fold(name)
    return q(name) if "." in name or '"' in name else name


@dataclass(frozen=True)
class TableRef:
    """A table as DuckDB resolved its name: catalog (the alias on this connection), schema and
    table name."""

    catalog: str
    schema: str
    name: str

    @property
    def key(self) -> str:
        """What the ledger and state record the table under: ``schema.table``, folded; a part
        holding a dot or a quote is quoted."""
        return f"{_key_part(self.schema)}.{_key_part(self.name)}"

    @property
    def state(self) -> str:
        """The quoted state schema in the table's catalog."""
        return state_schema(self.catalog)

    def old_keys(self) -> list[str]:
        """Keys earlier versions recorded this table under, other than :attr:`key` (plus any
        ``<catalog>.schema.table``, matched by :func:`old_key_sql`)."""
        return [k for k in (self._casefolded, f"{fold(self.schema)}.{fold(self.name)}") if k != self.key]

    @property
    def _casefolded(self) -> str:
        """``schema.table`` case-folded, as the earliest versions keyed a table (and, after a
        catalog name and a dot, as a key kept in a catalog's state)."""
        return f"{self.schema.casefold()}.{self.name.casefold()}"


def resolve(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> TableRef:
    """The catalog, schema and name DuckDB binds ``parts`` (from ``split_table_name``) to.

    ``table``: the current database and schema. ``a.table``: catalog ``a`` (its ``main``
    schema) when a database is attached under that name, else schema ``a`` of the current
    database (DuckDB's own rule). ``catalog.schema.table`` as written. Catalog names are taken
    as attached, so ``W.main.t`` and ``w.main.t`` are one table.
    """
    return _resolve(con, parts, "")[0]


def resolve_with_txid(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> tuple[TableRef, int]:
    """:func:`resolve`, and the ``txid_current()`` of its last statement: passed on to
    :func:`~prefect_etl_blocks.core.loading.connections.transaction` as ``txid_before`` when
    nothing else runs on ``con`` in between, it saves that function a statement. Only where
    ``txid_current()`` can be asked (not while a DuckLake is the default catalog)."""
    ref, txid = _resolve(con, parts, ", txid_current()")
    return ref, int(txid)


def _resolve(con: duckdb.DuckDBPyConnection, parts: Sequence[str], extra: str) -> tuple[TableRef, Any]:
    """:func:`resolve`, each statement also selecting ``extra`` (empty, or one more column),
    and the last statement's value of it."""
    if len(parts) == 1:
        row = con.execute(f"SELECT current_database(), current_schema(){extra}").fetchall()[0]
        return TableRef(row[0], row[1], parts[0]), row[2] if extra else None
    rows = con.execute(f"SELECT database_name{extra} FROM duckdb_databases()").fetchall()
    databases = {fold(row[0]): row[0] for row in rows}
    last = rows[0][1] if extra else None  # the system and temp databases are always listed
    if len(parts) == 2:
        if fold(parts[0]) in databases:
            return TableRef(databases[fold(parts[0])], "main", parts[1]), last
        row = con.execute(f"SELECT current_database(){extra}").fetchall()[0]
        return TableRef(row[0], parts[0], parts[1]), row[1] if extra else None
    return TableRef(databases.get(fold(parts[0]), parts[0]), parts[1], parts[2]), last


def table_key(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> str:
    """The key the table named by ``parts`` is recorded under (see the module docstring)."""
    return resolve(con, parts).key


def old_key_sql(ref: TableRef) -> tuple[str, list[Any]]:
    """A predicate on ``table_name`` matching the keys earlier versions gave ``ref``: those of
    :meth:`TableRef.old_keys`, and ``<one catalog name>.schema.table`` (kept in that catalog's
    state, so the catalog was this one, perhaps under another alias)."""
    suffix = "." + ref._casefolded
    keys = ref.old_keys()
    # One placeholder per old key (there are at most two, usually none): a list parameter
    # unnested in a subquery made DuckDB join it to every row, about 0.5 ms per 1,000 rows.
    listed = f"table_name IN ({', '.join('?' * len(keys))}) OR " if keys else ""
    return (
        f"({listed}(suffix(table_name, ?) "
        "AND strpos(table_name, '.') = length(table_name) - length(?) + 1 "
        "AND length(table_name) > length(?)))",
        [*keys, suffix, suffix, suffix],
    )


def is_old_key(ref: TableRef, key: str | None) -> bool:
    """:func:`old_key_sql`'s predicate, in Python, for one key (other than ``ref``'s own)."""
    if key is None or key == ref.key:
        return False
    suffix = "." + ref._casefolded
    return key in ref.old_keys() or (
        key.endswith(suffix) and key.find(".") == len(key) - len(suffix) and len(key) > len(suffix)
    )


__all__ = [
    "STATE_SCHEMA",
    "TableRef",
    "fold",
    "is_old_key",
    "old_key_sql",
    "resolve",
    "resolve_with_txid",
    "state_schema",
    "table_key",
]
