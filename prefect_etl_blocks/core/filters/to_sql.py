"""Rendering an AST as canonical DuckDB SQL, or as canonical filter text."""

from __future__ import annotations

import math

from prefect_etl_blocks.core.errors import InvalidFilterError
from prefect_etl_blocks.core.identifiers import quote_identifier

from .nodes import Between, Binary, Call, Column, InList, IsNull, Like, Literal, Node, Unary


def _sql_string(value: str) -> str:
    if "\x00" in value:  # the tokenizer refuses NUL already; never render one
        raise InvalidFilterError("a filter string may not contain a NUL character.")
    return "'" + value.replace("'", "''") + "'"


def _sql_literal(node: Literal, sql: bool = True) -> str:
    if node.kind == "int":
        # DuckDB types small integer literals as INTEGER, whose arithmetic overflows at 2**31;
        # Polars uses 64 bits. BIGINT on both sides.
        text = f"CAST({abs(node.value)} AS BIGINT)" if sql else str(abs(node.value))
        return f"(-{text})" if node.value < 0 else text
    if node.kind == "float":
        text = repr(abs(node.value))
        if "e" not in text:
            text += "e0"  # an exponent makes DuckDB read a DOUBLE, as Polars does, not a DECIMAL
        return f"(-{text})" if math.copysign(1.0, node.value) < 0 else text
    if node.kind == "str":
        return _sql_string(node.value)
    if node.kind == "bool":
        return "TRUE" if node.value else "FALSE"
    if node.kind == "null":
        return "NULL"
    if node.kind == "date":
        return f"DATE '{node.value.isoformat()}'"
    if node.kind == "datetime":
        return f"TIMESTAMP '{node.value.isoformat(sep=' ')}'"
    raise TypeError(f"not a literal kind: {node.kind!r}")  # pragma: no cover


def render_sql(node: Node, sql: bool = True) -> str:
    """Render an AST node as canonical DuckDB SQL (every sub-expression parenthesised).

    With ``sql=False`` the result is canonical text in the filter language itself, which
    :func:`parse_filter` reads back to the same AST.
    """
    if isinstance(node, Column):
        return quote_identifier(node.name)
    if isinstance(node, Literal):
        return _sql_literal(node, sql)
    if isinstance(node, Unary):
        inner = render_sql(node.operand, sql)
        return f"(NOT {inner})" if node.op == "NOT" else f"(-({inner}))"
    if isinstance(node, Binary):
        left, right = render_sql(node.left, sql), render_sql(node.right, sql)
        if sql and node.op in ("/", "%"):
            return f"({left} {node.op} NULLIF({right}, 0))"
        op = "<>" if node.op == "!=" else node.op
        return f"({left} {op} {right})"
    if isinstance(node, IsNull):
        return f"({render_sql(node.operand, sql)} IS {'NOT ' if node.negated else ''}NULL)"
    if isinstance(node, InList):
        items = ", ".join(_sql_literal(i, sql) for i in node.items)
        return f"({render_sql(node.operand, sql)} {'NOT ' if node.negated else ''}IN ({items}))"
    if isinstance(node, Between):
        return (
            f"({render_sql(node.operand, sql)} {'NOT ' if node.negated else ''}BETWEEN "
            f"{render_sql(node.low, sql)} AND {render_sql(node.high, sql)})"
        )
    if isinstance(node, Like):
        op = ("NOT " if node.negated else "") + ("ILIKE" if node.case_insensitive else "LIKE")
        escape = " ESCAPE '\\'" if sql else ""
        return f"({render_sql(node.operand, sql)} {op} {_sql_string(node.pattern)}{escape})"
    if isinstance(node, Call):
        args = [render_sql(a, sql) for a in node.args]
        if node.name == "round" and len(node.args) == 2:
            args[1] = str(node.args[1].value)  # type: ignore[union-attr]  # DuckDB wants INTEGER
        return f"{node.name}({', '.join(args)})"
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover
