"""Project scaffolding: the shipped cookiecutter templates, ``petl new`` and answer validation.

The templates' ``hooks/pre_gen_project.py`` call :func:`validate_answers`, so one set of rules
serves ``petl new``, ``cookiecutter templates/<name>`` and the tests. All functions are sync.
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2.ext import Extension

from prefect_etl_blocks.errors import TemplateNotFoundError

_SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_MODULE = re.compile(r"[a-z_][a-z0-9_]*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE = re.compile(rf"{_IDENT}(\.{_IDENT}){{0,2}}")
_RANGES = {
    "cache_expiration_hours": (0, 8760),
    "retries": (0, 20),
    "retry_delay_seconds": (0, 86400),
    "max_concurrent_writes": (1, 64),
    "max_workers": (1, 256),
}
_CHOICES = {
    "result_storage": ("local", "s3"),
    "notifications": ("none", "email"),
    "task_runner": ("threads", "dask"),
}


class DataLiterals(Extension):
    """Jinja filters the templates use to render answers as data.

    ``pyrepr`` gives a Python literal (``repr``); ``yamlstr`` a double-quoted YAML/TOML string.
    Unlike ``tojson``, neither splits characters outside the Basic Multilingual Plane into
    surrogate pairs, which Python string literals would not join again.
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.filters["pyrepr"] = repr
        environment.filters["yamlstr"] = lambda value: json.dumps(value, ensure_ascii=False)


class AnswerError(ValueError):
    """A template answer that failed validation; ``field`` names the question."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        super().__init__(f"template answer {field}={value!r} is invalid: {expected}.")


def templates_dir() -> Path:
    """Where the templates are: inside the installed wheel, else next to the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "cookiecutter.json").exists():
            return candidate
    raise TemplateNotFoundError(
        f"No templates folder found in {here} or {here.parent}; reinstall prefect-etl-blocks."
    )


def list_templates() -> dict[str, str]:
    """Template name → description, from ``templates/cookiecutter.json``."""
    index = json.loads((templates_dir() / "cookiecutter.json").read_text())["templates"]
    return {name: entry.get("description", "") for name, entry in index.items()}


def _text(field: str, value: Any, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise AnswerError(field, value, f"expected non-empty text of at most {max_len} characters")
    if any(c in value for c in "\r\n\x00"):
        raise AnswerError(field, value, "line breaks and NUL characters are not allowed")
    return value


def validate_answers(answers: Mapping[str, Any]) -> None:
    """Check a template's answers; raises :class:`AnswerError` naming the first bad field."""
    from cronsim import CronSim, CronSimError

    name = _text("project_name", answers.get("project_name"))
    if "{" in name or "}" in name:
        raise AnswerError("project_name", name, "braces are not allowed")
    for field, pattern, expected in (
        ("project_slug", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
        ("work_pool", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
        ("module_name", _MODULE, "a Python module name (lowercase letters, digits, underscores)"),
        ("flow_name", _SLUG, "lowercase letters, digits and single dashes, starting with a letter"),
    ):
        value = answers.get(field)
        if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > 63:
            raise AnswerError(field, value, expected)
    if keyword.iskeyword(answers["module_name"]):
        raise AnswerError("module_name", answers["module_name"], "a Python keyword cannot be a module name")
    for field in ("source_path", "duckdb_path"):
        _text(field, answers.get(field), 1000)
    table = answers.get("target_table")
    if not isinstance(table, str) or not _TABLE.fullmatch(table):
        raise AnswerError("target_table", table, "a table name such as daily_summary or analytics.daily_summary")
    cron = answers.get("cron_schedule")
    try:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise CronSimError("five fields expected")
        CronSim(cron, dt.datetime(2026, 1, 1))
    except (CronSimError, ValueError) as exc:
        raise AnswerError("cron_schedule", cron, f"a 5-field cron expression such as '0 6 * * *' ({exc})") from None
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(str(answers.get("timezone")))
    except Exception:
        raise AnswerError("timezone", answers.get("timezone"), "an IANA time zone such as UTC or Europe/Berlin") from None
    for field, (low, high) in _RANGES.items():
        if field not in answers:
            continue
        value = answers[field]
        if not re.fullmatch(r"\d+", str(value)) or not low <= int(value) <= high:
            raise AnswerError(field, value, f"a whole number from {low} to {high}")
    for field, choices in _CHOICES.items():
        if field in answers and answers[field] not in choices:
            raise AnswerError(field, answers[field], f"one of {', '.join(choices)}")
    address = answers.get("dask_address", "")
    if address and not re.fullmatch(r"(tcp|tls)://[A-Za-z0-9.\-\[\]:]+", str(address)):
        raise AnswerError("dask_address", address, "empty (local cluster) or a scheduler address like tcp://10.0.0.5:8786")


def new_project(
    template: str,
    output_dir: str | Path = ".",
    no_input: bool = False,
    extra_context: Mapping[str, Any] | None = None,
    overwrite_if_exists: bool = False,
) -> Path:
    """Bake ``template`` (a name from :func:`list_templates`) into ``output_dir``.

    Returns:
        The generated project's folder.

    Raises:
        TemplateNotFoundError: unknown template name.
        AnswerError: an answer failed validation (nothing is left behind).
    """
    from cookiecutter.exceptions import FailedHookException
    from cookiecutter.main import cookiecutter

    available = list_templates()
    if template not in available:
        raise TemplateNotFoundError(
            f"No template named {template!r}; available: {', '.join(available)} (see `petl templates`)."
        )
    context = dict(extra_context or {})
    questions = json.loads((templates_dir() / template / "cookiecutter.json").read_text())
    unknown = set(context) - set(questions)
    if unknown:
        raise ValueError(f"unknown template question(s) {sorted(unknown)} for {template!r}.")
    for field, value in context.items():
        if isinstance(questions[field], list) and value not in questions[field]:
            raise AnswerError(field, value, f"one of {', '.join(questions[field])}")
    try:
        path = cookiecutter(
            str(templates_dir() / template),
            no_input=no_input,
            extra_context=context,
            output_dir=str(output_dir),
            overwrite_if_exists=overwrite_if_exists,
            accept_hooks=True,
        )
    except FailedHookException:
        if no_input:
            validate_answers(rendered_answers(template, context))  # raises, naming the field
        raise ValueError(
            f"template {template!r}: an answer failed validation (see the message above). "
            "Nothing was created."
        ) from None
    return Path(path)


def rendered_answers(template: str, extra_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The answers ``--no-input`` would use: defaults, overrides, derived fields rendered."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(
        context_file=str(templates_dir() / template / "cookiecutter.json"),
        extra_context=dict(extra_context or {}),
    )
    return dict(prompt_for_config(context, no_input=True))
