"""The filter AST: one frozen dataclass per node kind, and a walk over a tree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    kind: str  # "int", "float", "str", "bool", "null", "date", "datetime"
    value: Any


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "NOT"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / % = != < <= > >= AND OR
    left: Node
    right: Node


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool


@dataclass(frozen=True)
class InList:
    operand: Node
    items: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(frozen=True)
class Like:
    operand: Node
    pattern: str
    case_insensitive: bool
    negated: bool


@dataclass(frozen=True)
class Call:
    name: str  # lower case, a key of ALLOWED_FUNCTIONS
    args: tuple[Node, ...]


Node = Column | Literal | Unary | Binary | IsNull | InList | Between | Like | Call

#: The node kinds a filter AST may contain; anything else is refused before compiling.
NODE_KINDS: tuple[type, ...] = (Column, Literal, Unary, Binary, IsNull, InList, Between, Like, Call)


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in _children(node):
        out.extend(_walk(child))
    return out


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, IsNull | Like):
        return (node.operand,)
    if isinstance(node, InList):
        return (node.operand, *node.items)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, Call):
        return node.args
    return ()
