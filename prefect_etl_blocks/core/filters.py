"""Row filters: one small predicate language, parsed by us, compiled for Polars and DuckDB.

A ``ParquetSource.filter`` often comes from a deployment parameter, so it is untrusted text. It
is never handed to an SQL engine as written. This module tokenizes and parses it with its own
recursive-descent parser into a small AST, checks the AST against an allow-list, and compiles
it twice:

* :meth:`Filter.to_polars` builds a ``polars.Expr`` with the expression API (``pl.col``,
  ``pl.lit``, ...), never through ``pl.sql_expr``;
* :meth:`Filter.to_sql` renders canonical DuckDB SQL from the AST: every identifier quoted with
  :func:`~prefect_etl_blocks.core.identifiers.quote_identifier`, every literal re-rendered from its
  parsed value, every sub-expression in parentheses.

Both give the same rows for the same data (tested with hypothesis against real DuckDB).

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

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from prefect_etl_blocks.core.errors import InvalidFilterError
from prefect_etl_blocks.core.identifiers import quote_identifier

__all__ = [
    "ALLOWED_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_IN_ITEMS",
    "Filter",
    "parse_filter",
]

#: Longest filter text accepted, in characters.
MAX_FILTER_LENGTH = 4000
#: Deepest nesting of parentheses, operators and function calls accepted.
MAX_DEPTH = 40
#: Most values in one ``IN (...)`` list.
MAX_IN_ITEMS = 1000

_INT64_MAX = 2**63 - 1

#: The scalar functions a filter may call: name -> (signature shown in errors, what it does).
ALLOWED_FUNCTIONS: dict[str, tuple[str, str]] = {
    "lower": ("lower(text)", "text in lower case"),
    "upper": ("upper(text)", "text in upper case"),
    "length": ("length(text)", "number of characters"),
    "abs": ("abs(number)", "absolute value"),
    "round": ("round(number[, digits])", "rounded half away from zero; digits: integer 0..10"),
    "coalesce": ("coalesce(a, b, ...)", "first argument that is not NULL (2 to 10 arguments)"),
    "year": ("year(date)", "year of a date or timestamp"),
    "month": ("month(date)", "month (1-12) of a date or timestamp"),
    "day": ("day(date)", "day of the month (1-31) of a date or timestamp"),
}

_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE", "ILIKE", "TRUE", "FALSE"}
)

# SQL words the filter language has no use for, with the reason shown when one appears.
# Reserved words (DuckDB's own "reserved" and "type_function" keywords, which DuckDB refuses as
# bare column names too) are always refused; a column called, say, "order" is written in double
# quotes. Statement words (COPY, ATTACH, ...) are refused when followed by a name, a literal or
# "(", as in a statement; otherwise they are ordinary column names.
_SUBQUERY = "subqueries and statements are not part of a filter"
_CONSTRUCT = (
    "casts, CASE, E'' strings and other SQL constructs are not part of the filter language"
)
_RESERVED_WORDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "SELECT", "FROM", "WHERE", "WITH", "UNION", "EXCEPT", "INTERSECT", "EXISTS", "ANY",
            "ALL", "SOME", "ORDER", "GROUP", "BY", "HAVING", "LIMIT", "OFFSET", "FETCH",
            "QUALIFY", "WINDOW", "DISTINCT", "AS", "JOIN", "ON", "USING", "RETURNING", "INTO",
            "LATERAL", "PIVOT", "PIVOT_LONGER", "PIVOT_WIDER", "UNPIVOT", "TABLE", "CREATE",
            "DESCRIBE", "SHOW", "SUMMARIZE", "ANALYSE", "ANALYZE", "TO", "FOR", "DO", "ONLY",
            "CROSS", "INNER", "OUTER", "LEFT", "RIGHT", "FULL", "NATURAL", "POSITIONAL", "SEMI",
            "ANTI", "ASOF", "TABLESAMPLE", "CONCURRENTLY", "VERBOSE", "FREEZE", "AUTHORIZATION",
        ),
        _SUBQUERY,
    ),
    **dict.fromkeys(
        (
            "CAST", "TRY_CAST", "CASE", "WHEN", "THEN", "ELSE", "END", "COLLATE", "COLLATION",
            "ESCAPE", "SIMILAR", "GLOB", "ARRAY", "LAMBDA", "COLUMNS", "COLUMN", "ISNULL",
            "NOTNULL", "DEFAULT", "CHECK", "CONSTRAINT", "PRIMARY", "FOREIGN", "REFERENCES",
            "UNIQUE", "ASC", "DESC", "ASYMMETRIC", "SYMMETRIC", "BOTH", "LEADING", "TRAILING",
            "PLACING", "VARIADIC", "DEFERRABLE", "INITIALLY", "AT", "BINARY", "GENERATED",
            "OVERLAPS", "MAP", "STRUCT", "TUPLE", "UNPACK", "CURRENT_DATE", "CURRENT_TIME",
            "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP", "CURRENT_USER", "SESSION_USER",
            "CURRENT_ROLE", "CURRENT_SCHEMA", "CURRENT_CATALOG",
        ),
        _CONSTRUCT,
    ),
}
_STATEMENT_WORDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "COPY", "ATTACH", "DETACH", "PRAGMA", "INSTALL", "LOAD", "FORCE", "DROP", "INSERT",
            "UPDATE", "DELETE", "ALTER", "TRUNCATE", "SET", "RESET", "CALL", "EXPORT", "IMPORT",
            "USE", "VACUUM", "CHECKPOINT", "EXECUTE", "PREPARE", "DEALLOCATE", "EXPLAIN",
            "BEGIN", "COMMIT", "ROLLBACK", "ABORT", "START", "TRANSACTION", "GRANT", "REVOKE",
            "MERGE", "VALUES", "SECRET", "MACRO", "REPLACE", "OVER", "FILTER",
        ),
        _SUBQUERY,
    ),
    **dict.fromkeys(("INTERVAL", "TRY", "ROW", "REGEXP", "RLIKE", "E", "X"), _CONSTRUCT),
}

_ALLOWED_SUMMARY = ", ".join(sig for sig, _ in ALLOWED_FUNCTIONS.values())
_EXAMPLE = "for example \"value > 0 AND region IN ('EU', 'US')\""
_WHITESPACE = frozenset(" \t\n\r")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")
_COMPARISON_OPS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_CMP_CHARS = frozenset("<>=!")


# ----------------------------------------------------------------------------------- AST
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


# ------------------------------------------------------------------------------ errors
def _shown(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:100] + "...")


def _fail(text: str, problem: str, fix: str) -> InvalidFilterError:
    return InvalidFilterError(f"filter {_shown(text)} is not a valid SQL predicate: {problem}. {fix}")


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


# ---------------------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "str", "ident", "qident", "op", "end"
    text: str  # the source text of the token
    pos: int  # 0-based offset in the filter
    value: Any = None


def _check_char_in_quotes(text: str, ch: str, pos: int, what: str) -> None:
    category = unicodedata.category(ch)
    if ch == "\x00" or (category == "Cc" and ch not in "\t\n\r") or category in ("Cf", "Cs", "Co"):
        raise _fail(
            text,
            f"{what} contains the invisible or control character {_char_name(ch)} at position "
            f"{pos + 1}",
            "Remove it; filters may not hide characters (NUL, control, bidi or zero-width "
            "characters are refused everywhere).",
        )


def _read_quoted(text: str, start: int, quote: str, what: str) -> tuple[str, int]:
    """The content of a quoted string or identifier starting at ``start``; doubled quotes escape."""
    i, n, parts = start + 1, len(text), []
    while True:
        j = text.find(quote, i)
        if j < 0:
            raise _fail(
                text,
                f"the {what} starting at position {start + 1} is not closed",
                f"End it with {quote}; write a {quote} inside it as {quote}{quote}.",
            )
        parts.append(text[i:j])
        if j + 1 < n and text[j + 1] == quote:
            parts.append(quote)
            i = j + 2
            continue
        content = "".join(parts)
        for k, ch in enumerate(content):
            _check_char_in_quotes(text, ch, start + 1 + k, what)
        return content, j + 1


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if ord(ch) > 127 or (ch < " " and ch not in _WHITESPACE) or ch == "\x7f":
            plain = unicodedata.normalize("NFKC", ch)
            hint = (
                f"Use the plain ASCII {plain!r} instead."
                if plain.isascii() and plain.strip() and len(plain) == 1
                else "Outside quotes a filter is plain ASCII; put other text inside 'quotes'."
            )
            raise _fail(text, f"character {_char_name(ch)} at position {i + 1} is not allowed", hint)
        two = text[i : i + 2]
        if two == "--" or two == "/*" or two == "*/":
            raise _fail(
                text,
                f"comments ({two!r} at position {i + 1}) are not allowed",
                "Remove the comment. To subtract a negative number write 'a - -1' with a space.",
            )
        if ch == ";":
            raise _fail(
                text,
                f"';' at position {i + 1}: a filter is one expression, never statements",
                f"Remove the ';' and everything after it; {_EXAMPLE}.",
            )
        if two == "::":
            raise _fail(
                text,
                f"casts ('::' at position {i + 1}) are not allowed",
                "Compare with a literal of the column's type instead, e.g. DATE '2024-01-31'.",
            )
        if two == "->" or two == "**" or two == "||" or two == "&&":
            raise _fail(
                text,
                f"unknown operator {two!r} at position {i + 1}",
                "Use only = != <> < <= > >= + - * / % AND OR NOT.",
            )
        if ch == "'":
            value, end = _read_quoted(text, i, "'", "string")
            tokens.append(_Token("str", text[i:end], i, value))
            i = end
            continue
        if ch == '"':
            value, end = _read_quoted(text, i, '"', "quoted column name")
            if value == "":
                raise _fail(
                    text, f'empty column name "" at position {i + 1}', "Write the column's name."
                )
            tokens.append(_Token("qident", text[i:end], i, value))
            i = end
            continue
        number = _NUMBER.match(text, i)
        if number and (ch.isdigit() or (ch == "." and number.end() > i + 1)):
            end = number.end()
            if end < n and (text[end].isalnum() or text[end] in "_.'\""):
                raise _fail(
                    text,
                    f"malformed number {text[i : end + 1]!r} at position {i + 1}",
                    "Write decimal numbers such as 42, 3.5 or 1e-3 (no hex, no '_' separators).",
                )
            tokens.append(_number_token(text, number.group(), i))
            i = end
            continue
        ident = _IDENT.match(text, i)
        if ident:
            end = ident.end()
            tokens.append(_Token("ident", ident.group(), i, ident.group()))
            i = end
            continue
        if ch in _CMP_CHARS:
            j = i
            while j < n and text[j] in _CMP_CHARS:
                j += 1
            op = text[i:j]
            if op not in _COMPARISON_OPS:
                raise _fail(
                    text,
                    f"unknown operator {op!r} at position {i + 1}",
                    "Comparisons are = != <> < <= > >= (one of them, between two values).",
                )
            tokens.append(_Token("op", op, i, op))
            i = j
            continue
        if ch in "+-*/%(),":
            tokens.append(_Token("op", ch, i, ch))
            i += 1
            continue
        what = "'.' (qualified names are not supported)" if ch == "." else repr(ch)
        raise _fail(
            text,
            f"the character {what} at position {i + 1} is not allowed",
            'Quote a column name that contains it: "my.column".'
            if ch == "."
            else "Use only = != <> < <= > >= + - * / % AND OR NOT, parentheses and commas.",
        )
    tokens.append(_Token("end", "", n))
    return tokens


def _number_token(text: str, raw: str, pos: int) -> _Token:
    if any(c in raw for c in ".eE"):
        value = float(raw)
        if not math.isfinite(value):
            raise _fail(text, f"number {raw!r} at position {pos + 1} is out of range", "Use a smaller number.")
        return _Token("num", raw, pos, value)
    value_int = int(raw)
    if value_int > _INT64_MAX:
        raise _fail(
            text,
            f"integer {raw!r} at position {pos + 1} does not fit in 64 bits",
            "Use a smaller number, or write it as a decimal such as 1e20.",
        )
    return _Token("num", raw, pos, value_int)


# ------------------------------------------------------------------------------- parser
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


def _like_regex(text: str, pattern: str, pos: int) -> str:
    """The anchored regular expression for a LIKE pattern (``\\`` escapes ``%``, ``_``, ``\\``)."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if nxt not in ("%", "_", "\\"):
                raise _fail(
                    text,
                    f"the LIKE pattern at position {pos + 1} has a backslash that is not "
                    "followed by %, _ or another backslash",
                    "Write \\% for a literal %, \\_ for a literal _ and \\\\ for a backslash.",
                )
            out.append(_regex_char(nxt))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else _regex_char(ch))
        i += 1
    out.append("$")
    return "".join(out)


def _regex_char(ch: str) -> str:
    # Hex escapes are literal in Polars' (Rust) regex syntax whatever the character is.
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):X}}}"


# --------------------------------------------------------------------------- type check
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


# -------------------------------------------------------------------------- compilation
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


def _want_predicate(text: str, kind: str) -> None:
    if kind not in ("bool", "any"):
        raise _fail(
            text,
            "it is a value, not a condition" if kind != "null" else "it is always NULL",
            f"Write a condition that is true for the rows to keep, {_EXAMPLE}.",
        )


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
