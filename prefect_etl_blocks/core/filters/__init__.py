"""Row filters: one small predicate language, parsed by us, compiled for Polars and DuckDB.

A ``ParquetSource.filter`` often comes from a deployment parameter, so it is untrusted text. It
is never handed to an SQL engine as written. This package tokenizes and parses it with its own
recursive-descent parser into a small AST, checks the AST against an allow-list, and compiles
it twice:

* :meth:`Filter.to_polars` builds a ``polars.Expr`` with the expression API (``pl.col``,
  ``pl.lit``, ...), never through ``pl.sql_expr``;
* :meth:`Filter.to_sql` renders canonical DuckDB SQL from the AST: every identifier quoted with
  :func:`~prefect_etl_blocks.core.identifiers.quote_identifier`, every literal re-rendered from its
  parsed value, every sub-expression in parentheses.

Both give the same rows for the same data (tested with hypothesis against real DuckDB).

One module a role, each importing only those before it: ``words`` (limits, allowed functions,
refused SQL words, the error message), ``nodes`` (the AST), ``lexer`` (tokens and LIKE
patterns), ``parser``, ``to_sql``, ``typecheck``, ``to_polars``; this ``__init__`` ties them
together in :class:`Filter` and :func:`parse_filter`.

Grammar (keywords and function names are case-insensitive, column names are not)::

    filter     := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | predicate
    predicate  := sum [ ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") sum
                      | "IS" ["NOT"] "NULL"
                      | ["NOT"] "IN" "(" literal ("," literal)* ")"
                      | ["NOT"] "BETWEEN" sum "AND" sum
                      | ["NOT"] ("LIKE" | "ILIKE") string ]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := literal | column | function "(" [or_expr ("," or_expr)*] ")" | "(" or_expr ")"
    literal    := integer | decimal | string | "TRUE" | "FALSE" | "NULL"
                | "DATE" string | "TIMESTAMP" string
    column     := identifier | quoted identifier

Semantics (the same on both engines): SQL three-valued logic (a comparison with NULL is NULL,
and a row is kept only when the filter is TRUE); ``/`` is true division (``7 / 2 = 3.5``);
``%`` takes the sign of the dividend (``-7 % 3 = -1``); division or remainder by zero is NULL;
``LIKE`` patterns use ``%`` (any text) and ``_`` (one character), and a backslash makes the
next ``%``, ``_`` or ``\\`` literal.

Example:
    ```python
    import polars as pl
    from prefect_etl_blocks.core.filters import parse_filter

    f = parse_filter("value > 0 AND region IN ('EU', 'US')")
    print(f.to_sql())   # (("value" > CAST(0 AS BIGINT)) AND ("region" IN ('EU', 'US')))
    frame = pl.DataFrame({"value": [1, -1], "region": ["EU", "EU"]})
    assert frame.filter(f.to_polars()).height == 1
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from prefect_etl_blocks.core.errors import InvalidFilterError

from .lexer import _tokenize
from .nodes import NODE_KINDS, Call, Column, Node, _walk
from .parser import _Parser
from .to_polars import to_polars
from .to_sql import render_sql
from .typecheck import (
    _TypeChecker,
    _want_predicate,
    kind_of_dtype,
)
from .words import (
    _ALLOWED_SUMMARY,
    ALLOWED_FUNCTIONS,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_IN_ITEMS,
    _fail,
    _shown,
)

__all__ = [
    "ALLOWED_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_IN_ITEMS",
    "Filter",
    "parse_filter",
]


def _check_allowed(text: str, node: Node) -> None:
    """Defence in depth: the AST holds only allow-listed node kinds and functions."""
    for part in _walk(node):
        if not isinstance(part, NODE_KINDS):
            raise _fail(text, f"{type(part).__name__} is not a filter node", "Rewrite the filter.")
        if isinstance(part, Call) and part.name not in ALLOWED_FUNCTIONS:
            raise _fail(text, f"function {part.name}() is not allowed", f"Use {_ALLOWED_SUMMARY}.")


# ------------------------------------------------------------------------------ public
@dataclass(frozen=True)
class Filter:
    """A parsed, allow-listed filter: compile it with :meth:`to_polars` or :meth:`to_sql`."""

    text: str
    ast: Node

    def columns(self) -> list[str]:
        """The column names the filter refers to, sorted."""
        return sorted({n.name for n in _walk(self.ast) if isinstance(n, Column)})

    def to_polars(self) -> pl.Expr:
        """The filter as a ``polars.Expr`` built with the expression API."""
        return to_polars(self.ast)

    def to_sql(self) -> str:
        """The filter as canonical DuckDB SQL rendered from the AST (never the original text)."""
        return render_sql(self.ast)

    def to_text(self) -> str:
        """The filter as canonical text in the filter language (parses back to the same AST)."""
        return render_sql(self.ast, sql=False)

    def check_schema(self, schema: Mapping[str, pl.DataType], where: str = "") -> None:
        """Check column names and types against ``schema`` (column name to Polars dtype).

        Raises:
            InvalidFilterError: naming an unknown column (with the available ones) or two
                operands of different types.
        """
        unknown = [c for c in self.columns() if c not in schema]
        if unknown:
            near = {
                c: [s for s in schema if s.lower() == c.lower()] for c in unknown
            }
            hints = "".join(
                f" Column names are case-sensitive: did you mean {names[0]!r} for {c!r}?"
                for c, names in near.items()
                if names
            )
            raise InvalidFilterError(
                f"filter {_shown(self.text)}{where} refers to unknown column(s) {unknown}; "
                f"available columns: {list(schema)}.{hints}"
            )
        kinds = {name: kind_of_dtype(dtype) for name, dtype in schema.items()}
        kind = _TypeChecker(self.text, kinds, dict(schema)).check(self.ast)
        _want_predicate(self.text, kind)


def parse_filter(text: str) -> Filter:
    """Parse and allow-list check a filter; see the module docstring for the grammar.

    Raises:
        InvalidFilterError: naming the offending part and saying how to fix it.
    """
    if not isinstance(text, str):
        raise InvalidFilterError(f"filter must be text, not {type(text).__name__}.")
    if len(text) > MAX_FILTER_LENGTH:
        raise _fail(
            text,
            f"it is {len(text)} characters long, more than {MAX_FILTER_LENGTH}",
            "Shorten it (use IN lists or ranges), or load the values into a table and join.",
        )
    tokens = _tokenize(text)
    ast = _Parser(text, tokens).parse()
    _check_allowed(text, ast)
    _want_predicate(text, _TypeChecker(text, None, {}).check(ast))
    return Filter(text, ast)
