"""Reading filter text character by character: the tokenizer, and LIKE patterns turned into
anchored regular expressions (used by the parser to validate them, and by Polars)."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .words import _COMPARISON_OPS, _EXAMPLE, _fail

_INT64_MAX = 2**63 - 1
_WHITESPACE = frozenset(" \t\n\r")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CMP_CHARS = frozenset("<>=!")


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


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
