"""DuckDB identifiers: quoting and splitting ``catalog.schema.table`` names.

Every table, schema and column name that reaches SQL goes through :func:`quote_identifier`, so
any name is used literally or refused with :class:`~prefect_etl_blocks.core.errors.InvalidIdentifierError`;
nothing is ever pasted into SQL as written.
"""

from __future__ import annotations

from collections.abc import Iterable

from prefect_etl_blocks.core.errors import InvalidIdentifierError


def quote_identifier(name: str) -> str:
    """Quote one DuckDB identifier (table, schema or column name) so it is used literally.

    Raises:
        InvalidIdentifierError: for an empty name or one containing a NUL character.
    """
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise InvalidIdentifierError(
            f"{name!r} is not a usable DuckDB identifier: names must be non-empty text "
            "without NUL characters."
        )
    return '"' + name.replace('"', '""') + '"'


def split_table_name(table: str) -> list[str]:
    """Split ``catalog.schema.table`` into its parts; double-quoted parts may contain dots.

    ``"analytics.daily_summary"`` is schema ``analytics``, table ``daily_summary``;
    ``'"odd.name"'`` is one table called ``odd.name``. Quotes inside a quoted part are doubled,
    as in SQL.

    Raises:
        InvalidIdentifierError: for empty parts, unbalanced quotes or more than three parts.
    """
    if not isinstance(table, str):
        raise InvalidIdentifierError(f"table must be a string, got {type(table).__name__}.")
    parts: list[str] = []
    i, n = 0, len(table)
    while True:
        if i < n and table[i] == '"':
            j, buf = i + 1, []
            while True:
                k = table.find('"', j)
                if k < 0:
                    raise InvalidIdentifierError(
                        f"table name {table!r} has an unclosed double quote; write parts with "
                        'dots as "like.this" and double any quote inside them.'
                    )
                buf.append(table[j:k])
                if k + 1 < n and table[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            parts.append("".join(buf))
        else:
            k = table.find(".", i)
            part = table[i:] if k < 0 else table[i:k]
            if '"' in part:
                raise InvalidIdentifierError(
                    f"table name {table!r}: a double quote may only enclose a whole part, as in "
                    'analytics."my table".'
                )
            parts.append(part)
            i = n if k < 0 else k
        if i >= n:
            break
        if table[i] != ".":
            raise InvalidIdentifierError(
                f"table name {table!r}: expected '.' after a quoted part at position {i}."
            )
        i += 1
        if i >= n:
            parts.append("")
            break
    if not 1 <= len(parts) <= 3 or any(p == "" for p in parts):
        raise InvalidIdentifierError(
            f"table name {table!r} is not valid: use 'table', 'schema.table' or "
            "'catalog.schema.table' with non-empty parts (quote a part that contains a dot)."
        )
    for part in parts:
        quote_identifier(part)
    return parts


def quote_parts(parts: Iterable[str]) -> str:
    """``parts`` (catalog, schema, table; or fewer) quoted one by one and joined with dots:
    ``quote_parts(["w", "main", "my table"]) == '"w"."main"."my table"'``."""
    return ".".join(quote_identifier(p) for p in parts)


def quote_table(table: str) -> str:
    """The quoted, possibly schema-qualified form of ``table`` for use in SQL."""
    return quote_parts(split_table_name(table))
