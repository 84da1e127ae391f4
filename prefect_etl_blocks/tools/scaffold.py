"""Project scaffolding: the shipped template, its presets, ``prefect-etl new`` and answer checks.

One cookiecutter template, ``templates/flow-project``, asks a ``shape`` question (``batch`` or
``partitioned``). The names ``etl-flow`` and ``partitioned-flow`` are presets over it: the same
template with ``shape`` (and a default project name) already answered.

Answers are data, never code. Cookiecutter renders every answer as a Jinja template before its
hooks run, so an answer such as ``{{ cycler.__init__.__globals__.os.system('...') }}`` would
execute before any validation in ``pre_gen_project``. :func:`new_project` therefore:

1. asks the questions itself (or takes ``extra_context`` / the defaults) and computes derived
   defaults such as ``project_slug`` from the answers given, treating answers as plain values;
2. validates every answer with :func:`validate_answers` (allow-lists and patterns) before
   cookiecutter is called at all;
3. hands cookiecutter the complete, validated answers with every ``{`` escaped as
   ``{{ '{' }}``, so its rendering gives back exactly the text typed and nothing is evaluated.

Inside the templates, answers are printed through the :class:`DataLiterals` filters: ``pyrepr``
for Python, ``yamlstr`` / ``tomlstr`` for YAML and TOML, so backslashes, quotes and any Unicode
come through as the same value and every generated file compiles and parses.

Plain ``cookiecutter templates/flow-project`` works too (the ``pre_gen_project`` hook validates
the answers), but there cookiecutter renders what the user typed as Jinja first: whoever types
Jinja into their own command runs their own code. Use ``prefect-etl new`` or :func:`new_project`
whenever answers come from somewhere else (CI parameters, a web form).

All functions are sync.

Example:
    ```python
    import tempfile

    from prefect_etl_blocks.tools.scaffold import new_project

    project = new_project(
        "etl-flow",
        output_dir=tempfile.mkdtemp(),
        no_input=True,
        extra_context={"project_name": "Sales {{ 7*7 }} ETL"},
    )
    assert project.name == "sales-7-7-etl"
    assert "Sales {{ 7*7 }} ETL" in (project / "README.md").read_text()
    ```
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2.ext import Extension

from prefect_etl_blocks.core.errors import DataError, ProjectExistsError, TemplateNotFoundError

TEMPLATE = "flow-project"
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


class DataLiterals(Extension):
    """Jinja filters the templates use to print answers as data.

    ``pyrepr`` gives a Python literal (``repr``); ``yamlstr`` and ``tomlstr`` a double-quoted
    string that YAML and TOML read back unchanged (see :func:`_yaml_toml_string`). Unlike
    Jinja's ``tojson``, none of them splits characters outside the Basic Multilingual Plane
    into surrogate pairs.
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.filters["pyrepr"] = repr
        environment.filters["yamlstr"] = _yaml_toml_string
        environment.filters["tomlstr"] = _yaml_toml_string


class AnswerError(DataError, ValueError):
    """A template answer that failed validation; ``field`` names the question."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        shown = value if not isinstance(value, str) or len(value) <= 120 else value[:117] + "..."
        super().__init__(f"template answer {field}={shown!r} is invalid: {expected}.")


def templates_dir() -> Path:
    """Where the templates are: inside the installed wheel, else next to the source checkout."""
    here = Path(__file__).resolve().parent.parent  # the package folder (this module is in tools/)
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "cookiecutter.json").exists():
            return candidate
    raise TemplateNotFoundError(
        f"No templates folder found in {here} or {here.parent}; reinstall prefect-etl-blocks."
    )


def _index() -> dict[str, dict[str, Any]]:
    return json.loads((templates_dir() / "cookiecutter.json").read_text())["templates"]


def list_templates() -> dict[str, str]:
    """Preset name → description, from ``templates/cookiecutter.json``."""
    return {name: entry.get("description", "") for name, entry in _index().items()}


def _preset(template: str) -> tuple[Path, dict[str, Any]]:
    """The template folder and the preset answers of ``template`` (a preset or ``flow-project``)."""
    index = _index()
    if template == TEMPLATE:
        return templates_dir() / TEMPLATE, {}
    if template not in index:
        raise TemplateNotFoundError(
            f"No template named {template!r}; available: {', '.join([*index, TEMPLATE])} "
            "(see `prefect-etl templates`)."
        )
    entry = index[template]
    return (templates_dir() / entry["path"]).resolve(), dict(entry.get("answers", {}))


def questions(template: str = TEMPLATE) -> dict[str, Any]:
    """The questions of ``template`` in order, name → default (a list for a choice).

    Preset answers are not asked again: a preset's ``shape`` is fixed, and its other answers
    become the defaults.
    """
    folder, preset = _preset(template)
    raw = json.loads((folder / "cookiecutter.json").read_text())
    asked: dict[str, Any] = {}
    for name, default in raw.items():
        if name.startswith("_"):
            continue
        if name in preset and isinstance(default, list):
            continue  # fixed by the preset
        asked[name] = preset.get(name, default)
    return asked


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


def _derived_default(default: str, answers: Mapping[str, Any], folder: Path) -> str:
    """Render one of the template's own derived defaults (``{{ cookiecutter.project_name |
    slugify }}``) with the answers so far as plain values in the context."""
    from cookiecutter.environment import StrictEnvironment

    env = StrictEnvironment(context={"cookiecutter": {"_extensions": []}}, keep_trailing_newline=False)
    return env.from_string(default).render(cookiecutter=dict(answers))


def resolve_answers(
    template: str,
    extra_context: Mapping[str, Any] | None = None,
    no_input: bool = True,
    ask: Callable[[str, Any, str], Any] | None = None,
) -> dict[str, Any]:
    """Every answer of ``template``: given ones as they are, the rest asked or defaulted.

    Args:
        template: a preset name (``etl-flow``, ``partitioned-flow``) or ``flow-project``.
        extra_context: answers given up front (``key=value`` on the command line). Taken as
            plain text: nothing in them is rendered.
        no_input: use the defaults for everything not given, without asking.
        ask: ``ask(question, default, prompt) -> answer`` for the interactive case; the
            default reads a line from standard input.

    Raises:
        AnswerError: an answer names no question of the template, or is not one of a
            choice's options. (Full validation is :func:`validate_answers`.)
    """
    folder, preset = _preset(template)
    raw = json.loads((folder / "cookiecutter.json").read_text())
    prompts = raw.get("__prompts__", {})
    given = dict(extra_context or {})
    asked = questions(template)
    for name, value in given.items():
        if name not in asked:
            if name in preset:
                raise AnswerError(name, value, f"fixed to {preset[name]!r} by the {template!r} preset; use another preset")
            raise AnswerError(name, value, f"not a question of {template!r}; its questions are {', '.join(asked)}")
    answers: dict[str, Any] = {}
    for name, default in raw.items():
        if name.startswith("_"):
            continue
        if name in given:
            value = given[name]
            if isinstance(default, list) and value not in default:
                raise AnswerError(name, value, f"one of {', '.join(default)}")
            answers[name] = value if isinstance(value, str) else str(value)
            continue
        if name in preset:
            answers[name] = preset[name]
            if not (isinstance(default, list) or no_input):
                answers[name] = (ask or _ask_stdin)(name, preset[name], prompts.get(name, name))
            continue
        if isinstance(default, list):
            value = default[0]
        else:
            value = _derived_default(default, answers, folder) if "{" in str(default) else default
        if not no_input:
            value = (ask or _ask_stdin)(name, default if isinstance(default, list) else value, prompts.get(name, name))
            if isinstance(default, list) and value not in default:
                raise AnswerError(name, value, f"one of {', '.join(default)}")
        answers[name] = value
    return answers


def _ask_stdin(name: str, default: Any, prompt: str) -> str:
    if isinstance(default, list):
        options = ", ".join(default)
        reply = input(f"{prompt} [{options}] ({default[0]}): ").strip()
        return reply or default[0]
    reply = input(f"{prompt} [{default}]: ").strip()
    return reply or str(default)


def new_project(
    template: str,
    output_dir: str | Path = ".",
    no_input: bool = False,
    extra_context: Mapping[str, Any] | None = None,
    overwrite_if_exists: bool = False,
    ask: Callable[[str, Any, str], Any] | None = None,
) -> Path:
    """Generate a project from ``template`` (a preset from :func:`list_templates`, or
    ``flow-project``) into ``output_dir``.

    Every answer is validated before cookiecutter runs, and cookiecutter receives them escaped
    so that nothing in them is evaluated (see the module docs).

    Returns:
        The generated project's folder.

    Raises:
        TemplateNotFoundError: unknown template name.
        AnswerError: an answer failed validation (nothing is written).
        ProjectExistsError: the project folder exists and ``overwrite_if_exists`` is false.
    """
    from cookiecutter.main import cookiecutter

    folder, _ = _preset(template)
    answers = resolve_answers(template, extra_context, no_input=no_input, ask=ask)
    validate_answers(answers)
    target = Path(output_dir) / answers["project_slug"]
    if target.exists() and not overwrite_if_exists:
        raise ProjectExistsError(
            f"{target} already exists; choose another --output-dir or project_slug, or pass "
            "--overwrite to write over it."
        )
    escaped = {name: escape_jinja(value) if isinstance(value, str) else value for name, value in answers.items()}
    path = cookiecutter(
        str(folder),
        no_input=True,
        extra_context=escaped,
        output_dir=str(output_dir),
        overwrite_if_exists=overwrite_if_exists,
        accept_hooks=True,
    )
    return Path(path)


def rendered_answers(template: str, extra_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The answers ``--no-input`` would use: defaults, overrides and derived fields."""
    return resolve_answers(template, extra_context, no_input=True)
