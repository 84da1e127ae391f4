"""The recursive-descent parser: tokens in, a checked AST out (grammar in the package
docstring)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from prefect_etl_blocks.core.errors import InvalidFilterError

from .lexer import _like_regex, _Token
from .nodes import Between, Binary, Call, Column, InList, IsNull, Like, Literal, Node, Unary
from .words import (
    _ALLOWED_SUMMARY,
    _COMPARISON_OPS,
    _EXAMPLE,
    _KEYWORDS,
    _RESERVED_WORDS,
    _STATEMENT_WORDS,
    ALLOWED_FUNCTIONS,
    MAX_DEPTH,
    MAX_IN_ITEMS,
    _fail,
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_word(self, *words: str, offset: int = 0) -> bool:
        tok = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return tok.kind == "ident" and tok.value.upper() in words

    def _is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def _describe(self, tok: _Token) -> str:
        if tok.kind == "end":
            return "the end of the filter"
        return f"{tok.text!r} at position {tok.pos + 1}"

    def _error(self, expected: str, tok: _Token | None = None, fix: str | None = None) -> InvalidFilterError:
        tok = tok or self.tok
        return _fail(
            self.text,
            f"expected {expected}, found {self._describe(tok)}",
            fix or f"Write one boolean expression, {_EXAMPLE}.",
        )

    def _expect_op(self, op: str, context: str) -> _Token:
        if not self._is_op(op):
            raise self._error(f"{op!r} {context}")
        return self._advance()

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _fail(
                self.text,
                f"it nests deeper than {MAX_DEPTH} levels (at {self._describe(self.tok)})",
                "Simplify it: use IN (...) instead of many ORs, and fewer parentheses.",
            )

    def _leave(self) -> None:
        self.depth -= 1

    # -- grammar
    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise _fail(
                self.text,
                "it is empty",
                f"Leave filter unset (None) to read every row, or write a predicate, {_EXAMPLE}.",
            )
        node = self.or_expr()
        if self.tok.kind != "end":
            tok = self.tok
            raise self._error(
                "AND, OR or the end of the filter",
                tok,
                "A filter is one expression; join conditions with AND / OR and check for a "
                "missing operator or quote.",
            )
        return node

    def or_expr(self) -> Node:
        self._enter()
        terms = [self.and_expr()]
        while self._is_word("OR"):
            self._advance()
            terms.append(self.and_expr())
        self._leave()
        return _balanced_nodes("OR", terms)

    def and_expr(self) -> Node:
        terms = [self.not_expr()]
        while self._is_word("AND"):
            self._advance()
            terms.append(self.not_expr())
        return _balanced_nodes("AND", terms)

    def not_expr(self) -> Node:
        if self._is_word("NOT"):
            self._advance()
            self._enter()
            node = Unary("NOT", self.not_expr())
            self._leave()
            return node
        return self.predicate()

    def predicate(self) -> Node:
        left = self.sum()
        node = self._predicate_tail(left)
        if node is not left and self._starts_predicate_tail():
            raise _fail(
                self.text,
                f"{self._describe(self.tok)} follows another comparison",
                "Comparisons do not chain: join them with AND / OR, or add parentheses.",
            )
        return node

    def _starts_predicate_tail(self) -> bool:
        return (
            (self.tok.kind == "op" and self.tok.value in _COMPARISON_OPS)
            or self._is_word("IS", "IN", "BETWEEN", "LIKE", "ILIKE")
            or (self._is_word("NOT") and self._is_word("IN", "BETWEEN", "LIKE", "ILIKE", offset=1))
        )

    def _predicate_tail(self, left: Node) -> Node:
        tok = self.tok
        if tok.kind == "op" and tok.value in _COMPARISON_OPS:
            self._advance()
            op = "!=" if tok.value == "<>" else tok.value
            return Binary(op, left, self.sum())
        if self._is_word("IS"):
            self._advance()
            negated = False
            if self._is_word("NOT"):
                self._advance()
                negated = True
            if not self._is_word("NULL"):
                raise self._error(
                    "NULL after IS" + (" NOT" if negated else ""),
                    fix="Only IS NULL and IS NOT NULL are supported; compare values with = or !=.",
                )
            self._advance()
            return IsNull(left, negated)
        negated = False
        if self._is_word("NOT") and self._is_word("IN", "BETWEEN", "LIKE", "ILIKE", offset=1):
            self._advance()
            negated = True
        if self._is_word("IN"):
            self._advance()
            return InList(left, self._in_items(), negated)
        if self._is_word("BETWEEN"):
            self._advance()
            low = self.sum()
            if not self._is_word("AND"):
                raise self._error("AND in BETWEEN low AND high")
            self._advance()
            return Between(left, low, self.sum(), negated)
        if self._is_word("LIKE", "ILIKE"):
            case_insensitive = self._advance().value.upper() == "ILIKE"
            pattern = self.tok
            if pattern.kind != "str":
                raise self._error(
                    "a 'quoted pattern' after LIKE",
                    fix="LIKE takes one string literal such as 'EU%'; patterns from columns are "
                    "not supported.",
                )
            self._advance()
            _like_regex(self.text, pattern.value, pattern.pos)  # validates the escapes
            return Like(left, pattern.value, case_insensitive, negated)
        return left

    def _in_items(self) -> tuple[Literal, ...]:
        self._expect_op("(", "after IN")
        items: list[Literal] = []
        while True:
            tok = self.tok
            item = self.unary()
            if not isinstance(item, Literal):
                raise _fail(
                    self.text,
                    f"IN lists hold literal values only, found {self._describe(tok)}",
                    "List values such as IN ('EU', 'US') or IN (1, 2, 3); compare columns with "
                    "= and OR.",
                )
            items.append(item)
            if len(items) > MAX_IN_ITEMS:
                raise _fail(
                    self.text,
                    f"the IN list has more than {MAX_IN_ITEMS} values",
                    "Filter on a range or load the values into a table and join instead.",
                )
            if self._is_op(","):
                self._advance()
                continue
            self._expect_op(")", "or ',' in the IN list")
            return tuple(items)

    def sum(self) -> Node:
        return self._chain(("+", "-"), self.product)

    def product(self) -> Node:
        return self._chain(("*", "/", "%"), self.unary)

    def _chain(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        # Arithmetic is left-associative, so each operator adds a level of nesting.
        node, levels = operand(), 0
        while self._is_op(*ops):
            op = self._advance().value
            self._enter()
            levels += 1
            node = Binary(op, node, operand())
        self.depth -= levels
        return node

    def unary(self) -> Node:
        if self._is_op("-"):
            self._advance()
            self._enter()
            operand = self.unary()
            self._leave()
            if isinstance(operand, Literal) and operand.kind in ("int", "float"):
                return Literal(operand.kind, -operand.value)
            return Unary("-", operand)
        if self._is_op("+"):
            raise self._error("a value", fix="Drop the unary '+'.")
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self._advance()
            return Literal("float" if isinstance(tok.value, float) else "int", tok.value)
        if tok.kind == "str":
            self._advance()
            return Literal("str", tok.value)
        if tok.kind == "qident":
            self._advance()
            if self._is_op("("):
                raise self._error(
                    "an operator after a quoted column name",
                    fix="Functions are called by their bare name, e.g. lower(region).",
                )
            return Column(tok.value)
        if tok.kind == "op" and tok.value == "(":
            self._advance()
            node = self.or_expr()
            self._expect_op(")", f"to close the '(' at position {tok.pos + 1}")
            return node
        if tok.kind == "ident":
            return self._word(tok)
        raise self._error("a column, a literal, a function call or '('")

    def _word(self, tok: _Token) -> Node:
        word = tok.value.upper()
        nxt = self.tokens[self.i + 1]
        if word in ("TRUE", "FALSE"):
            self._advance()
            return Literal("bool", word == "TRUE")
        if word == "NULL":
            self._advance()
            return Literal("null", None)
        if word in ("DATE", "TIMESTAMP") and nxt.kind == "str":
            self._advance()
            self._advance()
            return _temporal_literal(self.text, word, nxt)
        if word in _KEYWORDS:
            raise self._error("a column, a literal, a function call or '('", tok)
        if nxt.kind == "op" and nxt.value == "(":
            return self._call(tok)  # refuses every function that is not on the allow-list
        reason = _RESERVED_WORDS.get(word)
        if reason is None and nxt.kind in ("ident", "qident", "str", "num"):
            reason = _STATEMENT_WORDS.get(word)
        if reason is not None:
            raise _fail(
                self.text,
                f"{tok.text} (at position {tok.pos + 1}) is not allowed: {reason}",
                "A filter is one row-level predicate over the source's columns, "
                f"{_EXAMPLE}. For a column with that name write it in double quotes: "
                f'"{tok.text}".',
            )
        self._advance()
        return Column(tok.value)

    def _call(self, tok: _Token) -> Node:
        name = tok.value.lower()
        if name not in ALLOWED_FUNCTIONS:
            raise _fail(
                self.text,
                f"function {tok.text}() at position {tok.pos + 1} is not allowed",
                f"Filters may call only: {_ALLOWED_SUMMARY}.",
            )
        self._advance()
        open_tok = self._advance()
        self._enter()
        args: list[Node] = []
        if not self._is_op(")"):
            while True:
                args.append(self.or_expr())
                if self._is_op(","):
                    self._advance()
                    continue
                break
        self._expect_op(")", f"to close {tok.text}( at position {open_tok.pos + 1}")
        self._leave()
        _check_arity(self.text, name, args)
        return Call(name, tuple(args))


def _balanced_nodes(op: str, terms: list[Node]) -> Node:
    # AND and OR are associative (also with NULLs), so a balanced tree is the same predicate
    # and keeps long chains shallow for both engines.
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    return Binary(op, _balanced_nodes(op, terms[:mid]), _balanced_nodes(op, terms[mid:]))


def _check_arity(text: str, name: str, args: list[Node]) -> None:
    signature = ALLOWED_FUNCTIONS[name][0]
    low, high = {"round": (1, 2), "coalesce": (2, 10)}.get(name, (1, 1))
    if not low <= len(args) <= high:
        raise _fail(
            text, f"{name}() takes {signature}, not {len(args)} argument(s)", f"Call it as {signature}."
        )
    if name == "round" and len(args) == 2:
        digits = args[1]
        if not (isinstance(digits, Literal) and digits.kind == "int" and 0 <= digits.value <= 10):
            raise _fail(
                text,
                "round()'s digits must be an integer literal from 0 to 10",
                "Call it as round(value) or round(value, 2).",
            )


def _temporal_literal(text: str, word: str, tok: _Token) -> Literal:
    raw = tok.value
    try:
        if word == "DATE":
            if not _DATE.fullmatch(raw):
                raise ValueError(raw)
            return Literal("date", dt.date.fromisoformat(raw))
        if not _TIMESTAMP.fullmatch(raw):
            raise ValueError(raw)
        value = dt.datetime.fromisoformat(raw.replace("T", " "))
        return Literal("datetime", value)
    except ValueError:
        shape = "'YYYY-MM-DD'" if word == "DATE" else "'YYYY-MM-DD HH:MM:SS[.ffffff]'"
        raise _fail(
            text,
            f"{word} {tok.text} at position {tok.pos + 1} is not a valid {word.lower()}",
            f"Write {word} {shape} (no time zone).",
        ) from None
