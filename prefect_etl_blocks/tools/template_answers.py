"""Template answers are data, never code: their checks and the Jinja filters that print them.

:func:`validate_answers` checks every answer against allow-lists and patterns before anything is
rendered; :func:`escape_jinja` hands them to cookiecutter so that rendering gives back exactly
the text typed; :class:`DataLiterals` prints them into Python, YAML, TOML and JSON files as
literals. See :mod:`prefect_etl_blocks.tools.scaffold` for why.

Example:
    ```python
    from prefect_etl_blocks.tools.template_answers import AnswerError, validate_answers

    try:
        validate_answers({"project_name": "x", "project_slug": "Bad Slug"})
    except AnswerError as exc:
        assert exc.field == "project_slug"
    ```
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import posixpath
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from jinja2.ext import Extension

from prefect_etl_blocks.core.errors import DataError

_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_MODULE = re.compile(r"[a-z_][a-z0-9_]*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE = re.compile(rf"{_IDENT}(\.{_IDENT}){{0,2}}")
_RANGES = {
    "cache_expiration_hours": (0, 8760),
    "retries": (0, 20),
    "retry_delay_seconds": (0, 86400),
    "task_timeout_seconds": (1, 86400),
    "flow_timeout_seconds": (60, 7 * 86400),
    "max_concurrent_writes": (1, 64),
    "max_workers": (1, 256),
}
_CHOICES = {
    "shape": ("batch", "partitioned"),
    "warehouse": ("duckdb", "ducklake"),
    "load_strategy": ("full", "incremental"),
    "result_storage": ("local", "s3"),
    "notifications": ("none", "email"),
    "task_runner": ("threads", "dask"),
}
# Unicode categories refused in free text: controls, lone surrogates, unassigned code points,
# and the line/paragraph separators that YAML and some editors treat as line breaks.
_REFUSED_CATEGORIES = {"Cc", "Cs", "Cn", "Zl", "Zp"}


def _yaml_toml_string(value: Any) -> str:
    """A double-quoted string that YAML and TOML both read back as exactly ``value``.

    Printable ASCII stays as it is (``"`` and ``\\`` escaped); everything else becomes a
    ``\\uXXXX`` or ``\\UXXXXXXXX`` escape, which both languages define the same way. Raw
    non-ASCII is avoided on purpose: YAML folds U+0085/U+2028/U+2029 as line breaks and refuses
    some code points that JSON lets through.
    """
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def gitignore_pattern(value: Any) -> str:
    r"""The ``.gitignore`` pattern that matches exactly the file ``value`` names relative to the
    project's root, where its flows run; ``""`` when it names no file there (an absolute path,
    ``~``, a path that climbs out with ``..``, a folder, or ``:memory:``).

    The pattern is anchored with a leading ``/``, so ``!`` and ``#`` are never its first
    character; a backslash, ``*``, ``?`` and ``[`` are escaped with a backslash and a space is
    written ``[ ]`` (git drops an unescaped trailing space, and editors strip an escaped one).

    Example:
        ```python
        from prefect_etl_blocks.tools.template_answers import gitignore_pattern

        assert gitignore_pattern("./data/../warehouse.duckdb") == "/warehouse.duckdb"
        assert gitignore_pattern("my db[1].duckdb") == "/my[ ]db\\[1].duckdb"
        assert gitignore_pattern("/srv/warehouse.duckdb") == ""
        ```
    """
    text = str(value)
    if text.startswith((":memory:", "/", "~")) or text.endswith("/"):  # "" normalises to "."
        return ""
    path = posixpath.normpath(text)
    if path == "." or path == ".." or path.startswith("../"):
        return ""
    out = ["/"]
    for char in path:
        if char in "\\*?[":
            out.append("\\" + char)
        elif char == " ":
            out.append("[ ]")
        else:
            out.append(char)
    return "".join(out)


class DataLiterals(Extension):
    """Jinja filters the templates use to print answers as data.

    ``pyrepr`` gives a Python literal (``repr``); ``yamlstr`` and ``tomlstr`` a double-quoted
    string that YAML and TOML read back unchanged (see :func:`_yaml_toml_string`). Unlike
    Jinja's ``tojson``, none of them splits characters outside the Basic Multilingual Plane
    into surrogate pairs. ``answers_json`` prints the answers alone as JSON: cookiecutter's
    own keys (``_template``, ``_output_dir``, ``_repo_dir``, ``_checkout``...) hold paths of
    the generating machine and stay out of the project. ``gitignore_pattern`` gives the
    ``.gitignore`` pattern of one file of the project (see :func:`gitignore_pattern`).
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.filters["pyrepr"] = repr
        environment.filters["yamlstr"] = _yaml_toml_string
        environment.filters["tomlstr"] = _yaml_toml_string
        environment.filters["answers_json"] = answers_json
        environment.filters["gitignore_pattern"] = gitignore_pattern


def answers_json(context: Mapping[str, Any]) -> str:
    """The answers of a cookiecutter context as indented JSON, without its ``_`` keys."""
    return json.dumps({k: v for k, v in context.items() if not k.startswith("_")}, indent=2, ensure_ascii=False)


class AnswerError(DataError, ValueError):
    """A template answer that failed validation; ``field`` names the question."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        shown = value if not isinstance(value, str) or len(value) <= 120 else value[:117] + "..."
        super().__init__(f"template answer {field}={shown!r} is invalid: {expected}.")


def _check_text(field: str, value: Any, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise AnswerError(field, value, f"expected non-empty text of at most {max_len} characters")
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise AnswerError(
                field,
                value,
                f"character U+{ord(char):04X} is not allowed (no line breaks, control characters "
                "or unassigned code points)",
            )
    return value


def validate_answers(answers: Mapping[str, Any]) -> None:
    """Check a template's answers; raises :class:`AnswerError` naming the first bad field.

    Free text (``project_name``, ``source_path``, ``duckdb_path``) may hold any printable
    character, Jinja delimiters included (they are printed literally); names, numbers, choices,
    cron expressions and time zones must match their allow-lists.
    """
    from cronsim import CronSim, CronSimError

    _check_text("project_name", answers.get("project_name"))
    for field, pattern, expected in (
        ("project_slug", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
        ("work_pool", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
        ("module_name", _MODULE, "a Python module name (lowercase letters, digits, underscores)"),
        ("flow_name", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
    ):
        value = answers.get(field)
        if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > 63:
            raise AnswerError(field, value, expected)
    lake_block = answers.get("ducklake_block")
    if lake_block is not None and (not isinstance(lake_block, str) or not _SLUG.fullmatch(lake_block) or len(lake_block) > 63):
        raise AnswerError("ducklake_block", lake_block, "a block name: lowercase letters, digits and single dashes, starting with a letter")
    if keyword.iskeyword(answers["module_name"]):
        raise AnswerError("module_name", answers["module_name"], "a Python keyword cannot be a module name")
    if answers["module_name"] == "__pycache__":
        raise AnswerError("module_name", "__pycache__", "a name other than __pycache__, the folder of Python's bytecode cache (the project's .gitignore leaves it out)")
    for field in ("source_path", "duckdb_path"):
        _check_text(field, answers.get(field), 1000)
    table = answers.get("target_table")
    if not isinstance(table, str) or not _TABLE.fullmatch(table):
        raise AnswerError("target_table", table, "a table name such as daily_summary or analytics.daily_summary")
    cron = answers.get("cron_schedule")
    try:
        if not isinstance(cron, str) or len(cron.split()) != 5 or not cron.isascii():
            raise CronSimError("five fields expected")
        CronSim(cron, dt.datetime(2026, 1, 1))
    except (CronSimError, ValueError) as exc:
        raise AnswerError("cron_schedule", cron, f"a 5-field cron expression such as '0 6 * * *' ({exc})") from None
    zone = answers.get("timezone")
    try:
        from zoneinfo import ZoneInfo

        if not isinstance(zone, str) or not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", zone):
            raise ValueError(zone)
        ZoneInfo(zone)
    except Exception:
        raise AnswerError("timezone", zone, "an IANA time zone such as UTC or Europe/Berlin") from None
    numbers: dict[str, int] = {}
    for field, (low, high) in _RANGES.items():
        if field not in answers:
            continue
        value = answers[field]
        if not re.fullmatch(r"[0-9]{1,9}", str(value)) or not low <= int(value) <= high:
            raise AnswerError(field, value, f"a whole number from {low} to {high}")
        numbers[field] = int(value)
    if "task_timeout_seconds" in numbers and "flow_timeout_seconds" in numbers:
        attempts = numbers.get("retries", 0) + 1
        delay = numbers.get("retry_delay_seconds", 0)
        # exponential_backoff(factor) waits factor * 2**i before retry i (plus up to 20% jitter).
        waits = int(sum(delay * 2**i for i in range(attempts - 1)) * 1.2)
        needed = numbers["task_timeout_seconds"] * attempts + waits
        if needed > numbers["flow_timeout_seconds"]:
            raise AnswerError(
                "task_timeout_seconds",
                answers["task_timeout_seconds"],
                f"{attempts} attempts of {numbers['task_timeout_seconds']} s plus {waits} s of "
                f"retry delays need {needed} s, more than flow_timeout_seconds="
                f"{numbers['flow_timeout_seconds']}; lower the task timeout or the retries, or "
                "raise the flow timeout",
            )
    for field, choices in _CHOICES.items():
        if field in answers and answers[field] not in choices:
            raise AnswerError(field, answers[field], f"one of {', '.join(choices)}")
    if answers.get("load_strategy") == "incremental" and answers.get("shape") == "partitioned":
        raise AnswerError(
            "load_strategy", "incremental",
            "the partitioned shape already recomputes only changed files (each file's task is "
            "cached on it); use load_strategy=incremental with shape=batch (the etl-flow preset)",
        )
    address = answers.get("dask_address", "")
    if address and not re.fullmatch(r"(tcp|tls)://[A-Za-z0-9.\-\[\]:]{1,200}", str(address)):
        raise AnswerError("dask_address", address, "empty (local cluster) or a scheduler address like tcp://10.0.0.5:8786")


def escape_jinja(value: str) -> str:
    """``value`` written so that Jinja renders it back to exactly ``value``, evaluating nothing.

    Every ``{`` becomes ``{{ '{' }}``; with no ``{`` left, no Jinja tag, expression or comment
    can start, and a lone ``}`` is plain text to Jinja.

    Example:
        ```python
        from jinja2 import Environment
        from prefect_etl_blocks.tools.scaffold import escape_jinja

        text = "{{ 7*7 }} {% raw %} {# x #}"
        assert Environment().from_string(escape_jinja(text)).render() == text
        ```
    """
    return value.replace("{", "{{ '{' }}")
