"""Schema contracts: column names that are never changed, types that are never converted
across kinds, and what ``on_schema_change`` does with new and missing columns.

The type rule, independent of ``on_schema_change``:

* A value is never converted across kinds: float to integer, string to number, anything to
  string, bool to number, nested to scalar, temporal to string, naive to zoned timestamps.
* Within a kind a widening cast is always allowed (INTEGER data into a BIGINT column). Any
  other cast is allowed only when every value survives the round trip exactly (a BIGINT of 41
  into an INTEGER column loads, 3,000,000,000 does not; integers into DOUBLE only while they
  are exact); otherwise the load is refused with one offending value.
* ``append_new_columns`` and ``sync_all_columns`` may instead widen the table's column in
  place (INTEGER to BIGINT, FLOAT to DOUBLE, DECIMAL(10,2) to DECIMAL(12,4)).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from prefect_etl_blocks.core.errors import InvalidIdentifierError, SchemaMismatchError
from prefect_etl_blocks.core.identifiers import quote_identifier
from prefect_etl_blocks.core.loading.connections import first_row as _first

OnSchemaChange = Literal["fail", "append_new_columns", "sync_all_columns", "ignore"]
ON_SCHEMA_CHANGE = ("fail", "append_new_columns", "sync_all_columns", "ignore")

_INT_BITS = {
    "tinyint": (8, True), "smallint": (16, True), "integer": (32, True), "bigint": (64, True),
    "hugeint": (128, True), "utinyint": (8, False), "usmallint": (16, False),
    "uinteger": (32, False), "ubigint": (64, False), "uhugeint": (128, False),
}
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 20, 128: 39}
_TS_ORDER = {"timestamp_s": 0, "timestamp_ms": 1, "timestamp": 2, "timestamp_ns": 3}
_STRING_IDS = {"varchar", "enum"}


# ----------------------------------------------------------------------- column names
def check_column_names(names: Sequence[Any], where: str) -> list[str]:
    """Refuse names DuckDB would rename or that cannot be used: empty, NUL or other control
    characters, non-text, or equal to another name but for case (DuckDB names are
    case-insensitive, so ``A`` and ``a`` would become ``A`` and ``a_1``).

    Runs on the source's schema *before* any conversion (Polars panics on a NUL in a name).
    """
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or name == "":
            raise InvalidIdentifierError(
                f"{where} has a column named {name!r}: column names must be non-empty text. "
                "Rename it before loading (nothing was written)."
            )
        bad = [ch for ch in name if unicodedata.category(ch) == "Cc"]
        if bad:
            raise InvalidIdentifierError(
                f"{where} has a column named {name!r} containing the control character "
                f"{bad[0]!r}; DuckDB would change such a name. Rename it before loading "
                "(nothing was written)."
            )
        folded = name.casefold()
        if folded in seen:
            raise InvalidIdentifierError(
                f"{where} has columns {seen[folded]!r} and {name!r}, which differ only in case; "
                "DuckDB column names are case-insensitive, so one would be renamed. Rename one "
                "of them before loading (nothing was written)."
            )
        seen[folded] = name
    return list(names)


def key_list(keys: str | Sequence[str] | None) -> list[str]:
    """``keys`` as a list: a string is one column (``"id"`` means ``["id"]``)."""
    if keys is None:
        return []
    if isinstance(keys, str):
        return [keys]
    out = list(keys)
    for key in out:
        if not isinstance(key, str):
            raise InvalidIdentifierError(f"keys must be column names, got {key!r}.")
    return out


# ----------------------------------------------------------------------- types
def _kind(t: duckdb.typing.DuckDBPyType) -> str:
    tid = t.id
    if tid in _INT_BITS:
        return "int"
    if tid in ("float", "double"):
        return "float"
    if tid in _TS_ORDER or tid == "date":
        return "datetime"
    if tid in _STRING_IDS:
        return "string"
    if tid == "array":
        return "list"
    return tid


def _children(t: duckdb.typing.DuckDBPyType) -> dict[str, Any]:
    return dict(t.children)


def compatible(src: duckdb.typing.DuckDBPyType, dst: duckdb.typing.DuckDBPyType) -> bool:
    """Whether values of ``src`` may be cast to ``dst`` at all (same kind, or a numeric pair
    that can be exact: integer to decimal or double, decimal to integer)."""
    if src.id == "null":
        return True
    ks, kd = _kind(src), _kind(dst)
    if ks == "list" and kd == "list":
        return compatible(_children(src)["child"], _children(dst)["child"])
    if ks == "struct" and kd == "struct":
        a = {k.casefold(): v for k, v in src.children}
        b = {k.casefold(): v for k, v in dst.children}
        return set(a) == set(b) and all(compatible(a[k], b[k]) for k in a)
    if ks == "map" and kd == "map":
        cs, cd = _children(src), _children(dst)
        return compatible(cs["key"], cd["key"]) and compatible(cs["value"], cd["value"])
    if ks == kd:
        return ks not in ("union",) or str(src) == str(dst)
    return (ks, kd) in {("int", "decimal"), ("decimal", "int"), ("int", "float")}


def widening(src: duckdb.typing.DuckDBPyType, dst: duckdb.typing.DuckDBPyType) -> bool:
    """Whether every ``src`` value fits ``dst`` exactly, judged by the types alone."""
    if str(src) == str(dst) or src.id == "null":
        return True
    s, d = src.id, dst.id
    if s in _INT_BITS and d in _INT_BITS:
        (bs, signed_s), (bd, signed_d) = _INT_BITS[s], _INT_BITS[d]
        if signed_s == signed_d:
            return bd >= bs
        return (not signed_s) and signed_d and bd > bs
    if s == "float" and d == "double":
        return True
    if s == "decimal" and d == "decimal":
        ps, ss = _children(src)["precision"], _children(src)["scale"]
        pd, sd = _children(dst)["precision"], _children(dst)["scale"]
        return sd >= ss and pd - sd >= ps - ss
    if s in _INT_BITS and d == "decimal":
        c = _children(dst)
        return c["precision"] - c["scale"] >= _INT_DIGITS[_INT_BITS[s][0]]
    if s in _INT_BITS and d == "double":
        return _INT_BITS[s][0] <= 32
    if s in _INT_BITS and d == "float":
        return _INT_BITS[s][0] <= 16
    if s == "enum" and d == "varchar":
        return True
    if s == "date" and d in _TS_ORDER:
        return True
    if s in ("list", "array") and d == "list":
        return widening(_children(src)["child"], _children(dst)["child"])
    if s == "array" and d == "array":
        cs, cd = _children(src), _children(dst)
        return cs["size"] == cd["size"] and widening(cs["child"], cd["child"])
    if s == "struct" and d == "struct":
        a = {k.casefold(): v for k, v in src.children}
        b = {k.casefold(): v for k, v in dst.children}
        return set(a) == set(b) and all(widening(a[k], b[k]) for k in a)
    if s == "map" and d == "map":
        cs, cd = _children(src), _children(dst)
        return widening(cs["key"], cd["key"]) and widening(cs["value"], cd["value"])
    return False


def _same_family(a: duckdb.typing.DuckDBPyType, b: duckdb.typing.DuckDBPyType) -> bool:
    """Types a column may be widened between in place (never across kinds)."""
    fam = {"decimal": "decimal", "float": "float", "double": "float"}
    if a.id in _INT_BITS and b.id in _INT_BITS:
        return True
    if a.id in _TS_ORDER and b.id in _TS_ORDER:
        return True
    if a.id in fam and b.id in fam:
        return fam[a.id] == fam[b.id]
    return False


# ----------------------------------------------------------------------- plans
@dataclass
class SchemaPlan:
    """What a load does to the target's columns, and how each data column is inserted."""

    insert: list[tuple[str, str]] = field(default_factory=list)  # (target column, source column)
    add: list[tuple[str, str]] = field(default_factory=list)  # (column, SQL type)
    drop: list[str] = field(default_factory=list)
    widen: list[tuple[str, str, str]] = field(default_factory=list)  # (column, from, to)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def changes(self) -> list[str]:
        """Human-readable schema changes, for errors and the load artifact."""
        out = [f"added column {c} {t}" for c, t in self.add]
        out += [f"widened column {c} from {a} to {b}" for c, a, b in self.widen]
        out += [f"dropped column {c}" for c in self.drop]
        out += [f"ignored new column {c}" for c in self.ignored]
        out += [f"column {c} missing from the data (NULL or its default)" for c in self.missing]
        return out

    def apply(self, con: duckdb.DuckDBPyConnection, target: str) -> None:
        """Run the planned ALTER TABLE statements (inside the load's transaction)."""
        for column, sql_type in self.add:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quote_identifier(column)} {sql_type}").fetchall()
        for column, _, new in self.widen:
            con.execute(f"ALTER TABLE {target} ALTER COLUMN {quote_identifier(column)} SET DATA TYPE {new}").fetchall()
        for column in self.drop:
            con.execute(f"ALTER TABLE {target} DROP COLUMN {quote_identifier(column)}").fetchall()


def relation_types(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, Any]]:
    """``(column, DuckDBPyType)`` pairs of a table or view, in order."""
    rel = con.sql(f"SELECT * FROM {relation} LIMIT 0")
    return list(zip(rel.columns, rel.types, strict=True))


def plan_schema(
    con: duckdb.DuckDBPyConnection,
    *,
    table: str,
    target: str,
    staged: str,
    on_schema_change: str,
    reserved: Sequence[str] = (),
    target_columns: Sequence[tuple[str, Any]] | None = None,
) -> SchemaPlan:
    """Compare the staged data with the target table and decide, or refuse with
    :class:`SchemaMismatchError` (nothing has been changed when it raises).

    ``reserved`` are table columns the strategy fills itself (SCD2 validity columns); they
    are neither "missing" nor dropped. ``target_columns``: the target's columns as
    :func:`relation_types` gives them, when the load's transaction already read them (its
    catalog probe), so they are not asked again.
    """
    table_cols = list(target_columns) if target_columns is not None else relation_types(con, target)
    data_cols = relation_types(con, staged)
    reserved_f = {r.casefold() for r in reserved}
    by_name = {c.casefold(): (c, t) for c, t in table_cols if c.casefold() not in reserved_f}
    data_f = {c.casefold() for c, _ in data_cols}
    new = [c for c, _ in data_cols if c.casefold() not in by_name]
    clash = [c for c in new if c.casefold() in reserved_f]
    if clash:
        raise SchemaMismatchError(
            f'Table "{table}": the data has column(s) {clash}, which the strategy fills itself '
            "(validity columns); rename them in the data or pass other scd2_columns. The table "
            "was not changed."
        )
    missing = [c for f, (c, _) in by_name.items() if f not in data_f]
    plan = SchemaPlan()
    if (new or missing) and on_schema_change == "fail":
        parts = []
        if new:
            parts.append(f"the data has new column(s) {new}")
        if missing:
            parts.append(f"the data lacks the table's column(s) {missing}")
        raise SchemaMismatchError(
            f'Table "{table}": {" and ".join(parts)}. With on_schema_change="fail" (the '
            'default) the columns must match. Pass on_schema_change="append_new_columns" to add '
            'new columns (missing ones become NULL), "sync_all_columns" to also drop the missing '
            'ones, or "ignore" to load only the table\'s columns. The table was not changed.'
        )
    evolve = on_schema_change in ("append_new_columns", "sync_all_columns")
    for name, dtype in data_cols:
        hit = by_name.get(name.casefold())
        if hit is None:
            if evolve:
                plan.add.append((name, str(dtype) if dtype.id != "null" else "VARCHAR"))
                plan.insert.append((name, name))
            else:
                plan.ignored.append(name)
            continue
        column, ttype = hit
        if not compatible(dtype, ttype):
            if _all_null(con, staged, name):
                # No value to change: NULLs fit any column. (DuckDB before 2.0 stages a Polars
                # Null column, all-null by definition, as INTEGER.)
                plan.insert.append((column, name))
                continue
            raise _mismatch(con, table, column, ttype, dtype, staged, name, across=True)
        if not widening(dtype, ttype):
            bad = _offending(con, staged, name, dtype, ttype)
            if bad is not _NONE:
                if evolve and _same_family(ttype, dtype) and widening(ttype, dtype):
                    plan.widen.append((column, str(ttype), str(dtype)))
                else:
                    raise _mismatch(con, table, column, ttype, dtype, staged, name, value=bad)
        plan.insert.append((column, name))
    if not plan.insert:
        raise SchemaMismatchError(
            f'Table "{table}" has none of the data\'s columns {[c for c, _ in data_cols]} (the '
            f"table has {[c for c, _ in table_cols]}); with on_schema_change={on_schema_change!r} "
            "the load would only add rows of NULLs. Check the table name, or use "
            'on_schema_change="append_new_columns". The table was not changed.'
        )
    if on_schema_change == "sync_all_columns":
        plan.drop = missing
    else:
        plan.missing = missing
    return plan


_NONE = object()


def _all_null(con: duckdb.DuckDBPyConnection, staged: str, column: str) -> bool:
    col = quote_identifier(column)
    return _first(con.execute(f"SELECT count({col}) FROM {staged}").fetchall())[0] == 0


def _offending(
    con: duckdb.DuckDBPyConnection, staged: str, column: str, src: Any, dst: Any
) -> Any:
    """One value of ``column`` that does not survive ``src -> dst -> src`` exactly, or _NONE."""
    col = quote_identifier(column)
    row = _first(con.execute(
        f"SELECT {col} FROM {staged} WHERE {col} IS NOT NULL AND "
        f"TRY_CAST(TRY_CAST({col} AS {dst}) AS {src}) IS DISTINCT FROM {col} LIMIT 1"
    ).fetchall())
    return _NONE if row is None else row[0]


def _mismatch(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    ttype: Any,
    dtype: Any,
    staged: str,
    data_column: str,
    *,
    across: bool = False,
    value: Any = _NONE,
) -> SchemaMismatchError:
    if value is _NONE:
        row = _first(con.execute(
            f"SELECT {quote_identifier(data_column)} FROM {staged} "
            f"WHERE {quote_identifier(data_column)} IS NOT NULL LIMIT 1"
        ).fetchall())
        value = _NONE if row is None else row[0]
    example = "" if value is _NONE else f" (for example {_short(value)})"
    if across:
        why = (
            f"{dtype} values are never converted to {ttype}, because that would change them "
            "silently"
        )
        fix = f"Convert the column in the data first if that is what you mean, for example pl.col({column!r}).cast(...)"
    else:
        why = f"that value does not fit {ttype} exactly"
        fix = (
            'Pass on_schema_change="append_new_columns" to widen the column in place, or fix the data'
            if _same_family(ttype, dtype) and widening(ttype, dtype)
            else "Fix the data or change the table's column type"
        )
    return SchemaMismatchError(
        f'Table "{table}" column "{column}" is {ttype} but the data has {dtype}{example}: {why}. '
        f"{fix}. The table was not changed."
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
