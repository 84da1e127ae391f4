"""Polars dtype names as people write them (``expected_schema={"value": "Float64"}``), and the
check of a schema against them.

Names are matched loosely: case and spaces do not matter, and ``utf8``/``str``, ``int``,
``float`` and ``bool`` stand for ``String``, ``Int64``, ``Float64`` and ``Boolean``. A bare
name (``Datetime``, ``Decimal``, ``List``) matches any parameters; a full one
(``Decimal(38, 2)``) matches only those.

Example:
    ```python
    import polars as pl
    from prefect_etl_blocks.core.dtypes import dtype_matches

    assert dtype_matches(pl.Datetime("us"), "datetime")
    assert dtype_matches(pl.String(), "Utf8")
    assert not dtype_matches(pl.Int32(), "Int64")
    ```
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import polars as pl

from prefect_etl_blocks.core.errors import SchemaMismatchError

_DTYPE_ALIASES = {"utf8": "string", "str": "string", "int": "int64", "float": "float64", "bool": "boolean"}


def normalise_dtype_name(name: str) -> str:
    """``name`` in lower case without spaces, with the aliases above resolved."""
    key = re.sub(r"\s+", "", str(name)).lower()
    return _DTYPE_ALIASES.get(key, key)


def dtype_matches(actual: pl.DataType, expected: str) -> bool:
    """True when ``actual`` is what the name ``expected`` says, with or without parameters."""
    wanted = normalise_dtype_name(expected)
    base = normalise_dtype_name(actual.base_type().__name__)
    return wanted in (normalise_dtype_name(str(actual)), normalise_dtype_name(repr(actual)), base)


def check_dtype_names(expected: Mapping[str, str]) -> None:
    """Refuse (``ValueError``) a name that is not a Polars dtype, naming the column."""
    known = {
        n.lower()
        for n in dir(pl.datatypes)
        if isinstance(getattr(pl.datatypes, n), type) and issubclass(getattr(pl.datatypes, n), pl.DataType)
    }
    for column, name in expected.items():
        if normalise_dtype_name(name).split("(")[0] not in known:
            raise ValueError(
                f"expected_schema[{column!r}] = {name!r} is not a Polars dtype name; "
                "use names such as 'Int64', 'Float64', 'String', 'Date', 'Datetime', "
                "'Boolean', 'Decimal(38, 2)' or 'List(Int64)'."
            )


def check_expected(schema: pl.Schema, expected: Mapping[str, str], where: str, *, partial: bool) -> None:
    """Raise :class:`SchemaMismatchError` naming ``where`` when a column of ``expected`` has
    another dtype in ``schema``, or is missing from it (unless ``partial``: the schema of one
    file, where a hive partition column is not yet there)."""
    for column, wanted in expected.items():
        if column not in schema:
            if partial:
                continue  # may be a hive partition column; checked on the combined schema
            raise SchemaMismatchError(
                f"{where}: expected column {column!r} ({wanted}) is missing; "
                f"found columns {list(schema)}. Fix the data or expected_schema."
            )
        if not dtype_matches(schema[column], wanted):
            raise SchemaMismatchError(
                f"{where}: column {column!r} has dtype {schema[column]}, expected {wanted}. "
                "Cast it when writing the data, or change expected_schema."
            )
