"""Differences between the supported DuckDB (``duckdb>=1.5,<3``) and Polars releases, in one place.

What differs, and how the library stays on the common ground:

* DuckDB 2.0 dropped ``.pl()`` / ``.arrow()`` on the result of ``con.execute(...)``; both
  releases have ``con.sql(q).to_arrow_table()``, which :func:`query_polars` uses.
* DuckDB 2.0 refuses ``register`` and other work on a connection whose last result was not read
  to the end; every internal query is therefore fetched completely (``fetchall()``).
* Pip wheels of the DuckLake, postgres and httpfs extensions exist for DuckDB 1.5.5 and not for
  2.0 (:data:`EXTENSION_WHEELS`), so offline DuckLake needs 1.5.5 (``[ducklake]`` extra).
* Polars 2.0 added ``Float16`` (:data:`Float16` stands in for it on 1.x), and
  ``collect_batches`` takes a chunk size that is only a hint (:func:`collect_batches` slices).

Example:
    ```python
    import duckdb
    from prefect_etl_blocks.core.engines import DUCKDB_VERSION, duckdb_version_tag, query_polars

    con = duckdb.connect()
    assert duckdb_version_tag(con).startswith("v")
    assert DUCKDB_VERSION >= (1, 5)
    print(query_polars(con, "SELECT ? AS answer", [42]))
    ```
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.core.identifiers import quote_identifier


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text.split("-")[0].split("+")[0])[:3]
    return tuple(int(n) for n in numbers)


#: The running DuckDB's version as a tuple, e.g. ``(1, 5, 5)``.
DUCKDB_VERSION: tuple[int, ...] = _version_tuple(duckdb.__version__)

#: DuckDB releases for which the DuckLake, postgres and httpfs extensions exist as pip wheels.
EXTENSION_WHEELS: frozenset[str] = frozenset({"1.5.5"})


# ----------------------------------------------------------------------------- Polars releases
# (polars>=1.34; see pyproject.toml and docs/versions.md)


def _polars_dtype(name: str) -> Any:
    """``pl.<name>``, or a stand-in dtype that equals no other when this Polars lacks it (no
    frame can then hold such a column, so code that matches on the dtype never matches)."""
    found = getattr(pl, name, None)
    if found is not None:
        return found
    return type(name, (pl.DataType,), {"__doc__": f"Stand-in: this Polars has no pl.{name}."})


#: Polars dtypes newer than some supported Polars (1.34 has Int128 and UInt128, Float16 comes
#: with 2.0); on a release without one it is a stand-in that matches no column.
Int128: Any = _polars_dtype("Int128")
UInt128: Any = _polars_dtype("UInt128")
Float16: Any = _polars_dtype("Float16")

#: Whether the installed Polars has ``LazyFrame.collect_batches`` (added in polars 1.34).
HAS_COLLECT_BATCHES: bool = hasattr(pl.LazyFrame, "collect_batches")


def collect_batches(frame: pl.LazyFrame, chunk_size: int) -> Iterator[pl.DataFrame]:
    """``frame``'s rows as DataFrames of at most ``chunk_size`` rows.

    Polars 1.34 and later (every supported release) stream them with
    ``LazyFrame.collect_batches``: bounded memory. An older Polars has no batch iterator, so
    the frame would be collected once and handed out in slices: the same rows, unbounded
    memory.
    """
    if HAS_COLLECT_BATCHES:
        for batch in frame.collect_batches(chunk_size=chunk_size):
            # chunk_size is a hint to Polars: a batch may be larger.
            yield from batch.iter_slices(chunk_size)
        return
    yield from frame.collect().iter_slices(chunk_size)


def duckdb_version_tag(con: duckdb.DuckDBPyConnection | None = None) -> str:
    """The version tag DuckDB files extensions under (``v1.5.5``), from the running library."""
    if con is not None:
        try:
            rows = con.execute("SELECT library_version FROM pragma_version()").fetchall()
            if rows and rows[0][0]:
                return str(rows[0][0])
        except duckdb.Error:
            pass
    return "v" + duckdb.__version__


def query_polars(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: Any = None
) -> pl.DataFrame:
    """Run ``sql`` with bound ``parameters`` and return a Polars frame (via Arrow), the same way
    on DuckDB 1.5 and 2.0; a statement without a result gives an empty frame."""
    relation = con.sql(sql, params=parameters)
    if relation is None:
        return pl.DataFrame()
    return relation_polars(relation)


_SPECIAL = {"hugeint": Int128, "uhugeint": UInt128, "interval": pl.Duration("us")}


def _special(t: Any) -> bool:
    """Whether ``t`` holds a HUGEINT, UHUGEINT or INTERVAL, at any depth."""
    if t.id in _SPECIAL:
        return True
    if t.id in ("list", "array"):
        return _special(dict(t.children)["child"])
    if t.id == "struct":
        return any(_special(c) for _, c in t.children)
    return False


def _exportable(expr: str, t: Any, depth: int = 0) -> str:
    """SQL turning ``expr`` (of type ``t``) into values Arrow and Polars read exactly: HUGEINT
    and UHUGEINT as text, INTERVAL as microseconds, inside lists, arrays and structs too."""
    if t.id in ("hugeint", "uhugeint"):
        return f"CAST({expr} AS VARCHAR)"
    if t.id == "interval":
        return f"epoch_us({expr})"
    if not _special(t):
        return expr
    if t.id in ("list", "array"):
        var = f"x{depth}"
        return f"list_transform({expr}, lambda {var}: {_exportable(var, dict(t.children)['child'], depth + 1)})"
    fields = ", ".join(
        f"\"{n.replace(chr(34), chr(34) * 2)}\" := "
        + _exportable(f"struct_extract({expr}, '{n.replace(chr(39), chr(39) * 2)}')", c, depth + 1)
        for n, c in t.children
    )
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({fields}) END"


def _restored(t: Any, exported: Any) -> Any:
    """The Polars dtype of ``t``, given the dtype :func:`_exportable`'s values were read as."""
    if t.id in _SPECIAL:
        return _SPECIAL[t.id]
    if not _special(t):
        return exported
    if t.id == "list":
        return pl.List(_restored(dict(t.children)["child"], exported.inner))
    if t.id == "array":
        children = dict(t.children)
        return pl.Array(_restored(children["child"], exported.inner), children["size"])
    return pl.Struct(
        [pl.Field(f.name, _restored(c, f.dtype)) for (_, c), f in zip(t.children, exported.fields, strict=True)]
    )


def relation_polars(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """A relation's rows as a Polars frame, exactly. Arrow would squeeze HUGEINT / UHUGEINT into
    DECIMAL(38,0) (wrong beyond 38 digits) and Polars cannot read Arrow intervals, so these
    travel as text and microseconds and come back as Int128 / UInt128 and a microsecond
    Duration (a month counts 30 days, as in DuckDB's ``epoch_us``), also inside nested types."""
    special = {name: t for name, t in zip(relation.columns, relation.types, strict=True) if _special(t)}
    if not special or len(set(relation.columns)) != len(relation.columns):
        return pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]
    exprs = []
    for name in relation.columns:
        quoted = quote_identifier(name)
        t = special.get(name)
        exprs.append(quoted if t is None else f"{_exportable(quoted, t)} AS {quoted}")
    frame: pl.DataFrame = pl.from_arrow(relation.project(", ".join(exprs)).to_arrow_table())  # type: ignore[assignment]
    return frame.with_columns(pl.col(name).cast(_restored(t, frame.schema[name])) for name, t in special.items())


def finish_result(con: duckdb.DuckDBPyConnection) -> None:
    """Run the last ``execute()`` result on ``con`` to its end without fetching its rows:
    DuckDB 2.0 refuses other work (``sql``, ``register``) on a connection with an unfinished
    result, which matters when a block keeps its connection. DuckDB 1.5 has no such state."""
    complete = getattr(con, "complete", None)
    if complete is not None:
        complete()


__all__ = [
    "DUCKDB_VERSION",
    "EXTENSION_WHEELS",
    "HAS_COLLECT_BATCHES",
    "Float16",
    "Int128",
    "UInt128",
    "collect_batches",
    "duckdb_version_tag",
    "finish_result",
    "query_polars",
]
