"""Differences between the supported DuckDB releases (``duckdb>=1.5,<3``), in one place.

What differs, and how the library stays on the common ground:

* DuckDB 2.0 dropped ``.pl()`` / ``.arrow()`` on the result of ``con.execute(...)``; both
  releases have ``con.sql(q).to_arrow_table()``, which :func:`query_polars` uses.
* DuckDB 2.0 refuses ``register`` and other work on a connection whose last result was not read
  to the end; every internal query is therefore fetched completely (``fetchall()``).
* Pip wheels of the DuckLake, postgres and httpfs extensions exist for DuckDB 1.5.5 and not for
  2.0 (:data:`EXTENSION_WHEELS`), so offline DuckLake needs 1.5.5 (``[ducklake]`` extra).

Example:
    ```python
    import duckdb
    from prefect_etl_blocks.compat import DUCKDB_VERSION, duckdb_version_tag, query_polars

    con = duckdb.connect()
    assert duckdb_version_tag(con).startswith("v")
    assert DUCKDB_VERSION >= (1, 5)
    print(query_polars(con, "SELECT ? AS answer", [42]))
    ```
"""

from __future__ import annotations

import re
from typing import Any

import duckdb
import polars as pl


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text.split("-")[0].split("+")[0])[:3]
    return tuple(int(n) for n in numbers)


#: The running DuckDB's version as a tuple, e.g. ``(1, 5, 5)``.
DUCKDB_VERSION: tuple[int, ...] = _version_tuple(duckdb.__version__)

#: DuckDB releases for which the DuckLake, postgres and httpfs extensions exist as pip wheels.
EXTENSION_WHEELS: frozenset[str] = frozenset({"1.5.5"})


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
    return pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]


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
    "duckdb_version_tag",
    "finish_result",
    "query_polars",
]
