"""The type checker: the kind of every sub-expression, against a schema when there is one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from prefect_etl_blocks.core.errors import InvalidFilterError

from .nodes import Between, Binary, Call, Column, InList, IsNull, Like, Literal, Node, Unary
from .to_sql import render_sql
from .words import (
    _COMPARISON_OPS,
    _EXAMPLE,
    ALLOWED_FUNCTIONS,
    _fail,
)

_NUMERIC = frozenset({"int", "float", "number"})  # "number": numeric, exact type unknown
_TEMPORAL = frozenset({"date", "datetime"})
_FLEX = frozenset({"any", "null"})


def kind_of_dtype(dtype: pl.DataType) -> str:
    """The filter language's kind for a Polars dtype (``"other"`` when filters cannot use it
    beyond IS NULL)."""
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return "str"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return "datetime"
    if dtype == pl.Null:
        return "null"
    return "other"


def _comparable(a: str, b: str) -> bool:
    if "any" in (a, b):
        return True
    if "other" in (a, b):
        return False
    if "null" in (a, b) or a == b:
        return True
    return (a in _NUMERIC and b in _NUMERIC) or (a in _TEMPORAL and b in _TEMPORAL)


class _TypeChecker:
    def __init__(self, text: str, kinds: Mapping[str, str] | None, dtypes: Mapping[str, Any]) -> None:
        self.text = text
        self.kinds = kinds
        self.dtypes = dtypes

    def _what(self, node: Node) -> str:
        if isinstance(node, Column):
            dtype = self.dtypes.get(node.name)
            return f"column {node.name!r}" + (f" ({dtype})" if dtype is not None else "")
        return render_sql(node, sql=False)

    def _bad(self, problem: str, fix: str) -> InvalidFilterError:
        return _fail(self.text, problem, fix)

    def check(self, node: Node) -> str:
        if isinstance(node, Column):
            return (self.kinds or {}).get(node.name, "any")
        if isinstance(node, Literal):
            return node.kind
        if isinstance(node, Unary):
            kind = self.check(node.operand)
            if node.op == "NOT":
                self._want_bool(node.operand, kind, "NOT")
                return "bool"
            if kind not in _NUMERIC | _FLEX:
                raise self._bad(
                    f"cannot negate {self._what(node.operand)}", "Use '-' on numbers only."
                )
            return "number" if kind == "any" else kind
        if isinstance(node, Binary):
            left, right = self.check(node.left), self.check(node.right)
            if node.op in ("AND", "OR"):
                self._want_bool(node.left, left, node.op)
                self._want_bool(node.right, right, node.op)
                return "bool"
            if node.op in _COMPARISON_OPS:
                self._want_comparable(node.left, left, node.right, right, node.op)
                return "bool"
            for side, kind in ((node.left, left), (node.right, right)):
                if kind not in _NUMERIC | _FLEX:
                    raise self._bad(
                        f"arithmetic '{node.op}' on {self._what(side)}, which is not a number",
                        "Use + - * / % on numeric columns and number literals only.",
                    )
            if node.op == "/":
                return "float"
            if "null" in (left, right):
                return "null"
            if "any" in (left, right) or "number" in (left, right):
                return "number"
            return "int" if left == right == "int" else "float"
        if isinstance(node, IsNull):
            self.check(node.operand)
            return "bool"
        if isinstance(node, InList):
            kind = self.check(node.operand)
            for item in node.items:
                self._want_comparable(node.operand, kind, item, item.kind, "IN")
            return "bool"
        if isinstance(node, Between):
            kind = self.check(node.operand)
            for bound in (node.low, node.high):
                self._want_comparable(node.operand, kind, bound, self.check(bound), "BETWEEN")
            return "bool"
        if isinstance(node, Like):
            kind = self.check(node.operand)
            if kind not in {"str"} | _FLEX:
                raise self._bad(
                    f"LIKE on {self._what(node.operand)}, which is not text",
                    "Use LIKE / ILIKE on text columns only.",
                )
            return "bool"
        if isinstance(node, Call):
            return self._call(node)
        raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover - parser never builds one

    def _want_bool(self, node: Node, kind: str, op: str) -> None:
        if kind not in {"bool"} | _FLEX:
            raise self._bad(
                f"{op} needs true/false operands, but {self._what(node)} is not a condition",
                "Compare it with something, e.g. value > 0.",
            )

    def _want_comparable(self, left: Node, lk: str, right: Node, rk: str, op: str) -> None:
        if not _comparable(lk, rk):
            hint = (
                " Write dates as DATE 'YYYY-MM-DD' and timestamps as TIMESTAMP 'YYYY-MM-DD HH:MM:SS'."
                if {lk, rk} & _TEMPORAL
                else ""
            )
            raise self._bad(
                f"{op} compares {self._what(left)} with {self._what(right)}, which have different "
                "types",
                f"Compare a column with a value of the same type.{hint}",
            )

    def _call(self, node: Call) -> str:
        kinds = [self.check(arg) for arg in node.args]
        name = node.name
        wanted = {
            "lower": {"str"},
            "upper": {"str"},
            "length": {"str"},
            "abs": _NUMERIC,
            "round": _NUMERIC,
            "year": _TEMPORAL,
            "month": _TEMPORAL,
            "day": _TEMPORAL,
        }.get(name)
        if wanted is not None:
            if kinds[0] not in wanted | _FLEX:
                raise self._bad(
                    f"{name}() of {self._what(node.args[0])}, which has the wrong type",
                    f"Call it as {ALLOWED_FUNCTIONS[name][0]}.",
                )
            if name in ("lower", "upper"):
                return "str" if kinds[0] != "null" else "null"
            if name in ("abs", "round"):
                return "number" if kinds[0] == "any" else kinds[0]
            return "int" if kinds[0] != "null" else "null"
        # coalesce: all arguments of one type
        result = "null"
        for arg, kind in zip(node.args, kinds, strict=True):
            if not _comparable(result, kind):
                raise self._bad(
                    f"coalesce() mixes types ({self._what(arg)})",
                    "Give coalesce() arguments of one type.",
                )
            if result in _FLEX:
                result = kind if result == "null" or kind != "null" else result
            elif kind == "float" and result == "int":
                result = "float"
            elif kind == "datetime" and result == "date":
                result = "datetime"
        return result


def _want_predicate(text: str, kind: str) -> None:
    if kind not in ("bool", "any"):
        raise _fail(
            text,
            "it is a value, not a condition" if kind != "null" else "it is always NULL",
            f"Write a condition that is true for the rows to keep, {_EXAMPLE}.",
        )
