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

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect_etl_blocks.core.errors import ProjectExistsError
from prefect_etl_blocks.tools.template_answers import (
    AnswerError,
    DataLiterals,
    _yaml_toml_string,
    escape_jinja,
    validate_answers,
)
from prefect_etl_blocks.tools.template_render import (
    TEMPLATE,
    derived_default,
    list_templates,
    render_template,
    template_preset,
    templates_dir,
)
from prefect_etl_blocks.tools.template_update import record_project

__all__ = [
    "TEMPLATE", "AnswerError", "DataLiterals", "_yaml_toml_string", "escape_jinja", "list_templates",
    "new_project", "questions", "render_template", "rendered_answers", "resolve_answers", "templates_dir",
    "validate_answers",
]

def questions(template: str = TEMPLATE) -> dict[str, Any]:
    """The questions of ``template`` in order, name → default (a list for a choice).

    Preset answers are not asked again: a preset's ``shape`` is fixed, and its other answers
    become the defaults.
    """
    folder, preset = template_preset(template)
    raw = json.loads((folder / "cookiecutter.json").read_text())
    asked: dict[str, Any] = {}
    for name, default in raw.items():
        if name.startswith("_"):
            continue
        if name in preset and isinstance(default, list):
            continue  # fixed by the preset
        asked[name] = preset.get(name, default)
    return asked


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
    folder, preset = template_preset(template)
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
            value = derived_default(default, answers, folder) if "{" in str(default) else default
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

    folder, _ = template_preset(template)
    answers = resolve_answers(template, extra_context, no_input=no_input, ask=ask)
    validate_answers(answers)
    target = Path(output_dir) / answers["project_slug"]
    if target.exists() and not overwrite_if_exists:
        raise ProjectExistsError(
            f"{target} already exists; choose another --output-dir or project_slug, or pass "
            "--overwrite to write over it."
        )
    existed = target.exists()
    path = render_template(folder, answers, output_dir, overwrite_if_exists=overwrite_if_exists)
    record_project(path, template, folder, answers, existed=existed)
    return path


def rendered_answers(template: str, extra_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The answers ``--no-input`` would use: defaults, overrides and derived fields."""
    return resolve_answers(template, extra_context, no_input=True)
