"""The filter language's vocabulary: limits, allowed functions, keywords, the SQL words it
refuses, and the shape of every error message (``_fail``)."""

from __future__ import annotations

from prefect_etl_blocks.core.errors import InvalidFilterError

#: Longest filter text accepted, in characters.
MAX_FILTER_LENGTH = 4000
#: Deepest nesting of parentheses, operators and function calls accepted.
MAX_DEPTH = 40
#: Most values in one ``IN (...)`` list.
MAX_IN_ITEMS = 1000

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
_COMPARISON_OPS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})


# ------------------------------------------------------------------------------ errors
def _shown(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:100] + "...")


def _fail(text: str, problem: str, fix: str) -> InvalidFilterError:
    return InvalidFilterError(f"filter {_shown(text)} is not a valid SQL predicate: {problem}. {fix}")
