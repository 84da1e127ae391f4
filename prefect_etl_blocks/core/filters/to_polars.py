"""Compiling an AST to a ``polars.Expr`` with the expression API (never ``pl.sql_expr``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from .lexer import _like_regex
from .nodes import Between, Binary, Call, Column, InList, IsNull, Like, Literal, Node, Unary


def _lit(node: Literal) -> pl.Expr:
    dtype = {
        "int": pl.Int64,
        "float": pl.Float64,
        "str": pl.String,
        "bool": pl.Boolean,
        "date": pl.Date,
        "datetime": pl.Datetime("us"),
    }.get(node.kind)
    return pl.lit(node.value, dtype=dtype) if dtype is not None else pl.lit(None)


def _nonzero(divisor: pl.Expr) -> pl.Expr:
    # Division or remainder by zero is NULL on both engines (DuckDB raises by default).
    return pl.when(divisor != 0).then(divisor)


def _balanced(op: Callable[[pl.Expr, pl.Expr], pl.Expr], exprs: Sequence[pl.Expr]) -> pl.Expr:
    # A balanced tree keeps long IN lists shallow.
    if len(exprs) == 1:
        return exprs[0]
    mid = len(exprs) // 2
    return op(_balanced(op, exprs[:mid]), _balanced(op, exprs[mid:]))


def _null_only(node: Node) -> bool:
    """True when the node is NULL whatever the data (built from NULL literals only)."""
    if isinstance(node, Literal):
        return node.kind == "null"
    if isinstance(node, Unary):
        return _null_only(node.operand)
    if isinstance(node, Binary) and node.op in ("+", "-", "*", "/", "%"):
        return _null_only(node.left) or _null_only(node.right)
    if isinstance(node, Call):
        if node.name == "coalesce":
            return all(_null_only(a) for a in node.args)
        return _null_only(node.args[0])
    return False


def _typed(node: Node, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    # Polars refuses most operations on its Null dtype; SQL just gives NULL. A typed NULL
    # makes `lower(NULL)`, `-NULL`, `NOT NULL` and friends NULL in Polars too.
    expr = to_polars(node)
    return expr.cast(dtype) if _null_only(node) else expr


def to_polars(node: Node) -> pl.Expr:
    """Compile an AST node to a ``polars.Expr`` with the expression API."""
    if isinstance(node, Column):
        return pl.col(node.name)
    if isinstance(node, Literal):
        return _lit(node)
    if isinstance(node, Unary):
        if node.op == "NOT":
            return ~_typed(node.operand, pl.Boolean)
        return -_typed(node.operand, pl.Float64)
    if isinstance(node, Binary) and node.op in ("AND", "OR"):
        left, right = _typed(node.left, pl.Boolean), _typed(node.right, pl.Boolean)
        return left & right if node.op == "AND" else left | right
    if isinstance(node, Binary) and node.op in ("%", "/"):
        left, right = _typed(node.left, pl.Float64), _typed(node.right, pl.Float64)
        if node.op == "/":
            return left / _nonzero(right)
        # SQL's remainder takes the dividend's sign (truncated); Polars' % is floored.
        magnitude = left.abs() % _nonzero(right).abs()
        return pl.when(left < 0).then(-magnitude).otherwise(magnitude)
    if isinstance(node, Binary):
        left, right = to_polars(node.left), to_polars(node.right)
        op = node.op
        if op == "=":
            return left == right
        if op == "!=":
            return left != right
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        if op == ">=":
            return left >= right
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
    if isinstance(node, IsNull):
        inner = to_polars(node.operand)
        return inner.is_not_null() if node.negated else inner.is_null()
    if isinstance(node, InList):
        # x IN (a, b) is x = a OR x = b in SQL, NULLs included: the same three-valued result.
        inner = to_polars(node.operand)
        expr = _balanced(lambda a, b: a | b, [inner == _lit(item) for item in node.items])
        return ~expr if node.negated else expr
    if isinstance(node, Between):
        inner = to_polars(node.operand)
        expr = (inner >= to_polars(node.low)) & (inner <= to_polars(node.high))
        return ~expr if node.negated else expr
    if isinstance(node, Like):
        regex = _like_regex("", node.pattern, 0)
        flags = "(?si)" if node.case_insensitive else "(?s)"
        # The cast is a no-op for String and makes Categorical / Enum columns (text in DuckDB)
        # and NULL usable with string functions.
        expr = to_polars(node.operand).cast(pl.String).str.contains(flags + regex, literal=False)
        return ~expr if node.negated else expr
    if isinstance(node, Call):
        name = node.name
        arg_dtype = {"year": pl.Date, "month": pl.Date, "day": pl.Date}.get(
            name, pl.String if name in ("lower", "upper", "length") else pl.Float64
        )
        args = [
            to_polars(a).cast(pl.String)
            if arg_dtype == pl.String
            else to_polars(a)
            if name == "coalesce"
            else _typed(a, arg_dtype)
            for a in node.args
        ]
        if name == "lower":
            return args[0].str.to_lowercase()
        if name == "upper":
            return args[0].str.to_uppercase()
        if name == "length":
            return args[0].str.len_chars().cast(pl.Int64)
        if name == "abs":
            return args[0].abs()
        if name == "round":
            digits = node.args[1].value if len(node.args) == 2 else 0  # type: ignore[union-attr]
            return args[0].round(digits, mode="half_away_from_zero")
        if name == "coalesce":
            return pl.coalesce(args)
        if name == "year":
            return args[0].dt.year().cast(pl.Int64)
        if name == "month":
            return args[0].dt.month().cast(pl.Int64)
        if name == "day":
            return args[0].dt.day().cast(pl.Int64)
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover - parser never builds one
