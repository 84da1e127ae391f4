"""Rendering the shipped template: where it is (:func:`templates_dir`), its presets
(:func:`template_preset`), a derived default (:func:`derived_default`) and the render itself
(:func:`render_template`, answers escaped so nothing in them is evaluated).

:mod:`~prefect_etl_blocks.tools.scaffold` (``prefect-etl new``) and
:mod:`~prefect_etl_blocks.tools.template_update` (``prefect-etl check`` / ``update``) both render
through here, so neither imports the other for it.

Example:
    ```python
    from prefect_etl_blocks.tools.template_render import TEMPLATE, list_templates, template_preset

    assert "etl-flow" in list_templates()
    folder, answers = template_preset("etl-flow")
    assert folder.name == TEMPLATE and answers["shape"] == "batch"
    ```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect_etl_blocks.core.errors import TemplateNotFoundError
from prefect_etl_blocks.tools.template_answers import escape_jinja, validate_answers

__all__ = ["TEMPLATE", "derived_default", "list_templates", "render_template", "template_preset", "templates_dir"]

TEMPLATE = "flow-project"
def templates_dir() -> Path:
    """Where the templates are: inside the installed wheel, else next to the source checkout."""
    here = Path(__file__).resolve().parent.parent  # the package folder (this module is in tools/)
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "cookiecutter.json").exists():
            return candidate
    raise TemplateNotFoundError(
        f"No templates folder found in {here} or {here.parent}; reinstall prefect-etl-blocks."
    )


def _index(root: Path | None = None) -> dict[str, dict[str, Any]]:
    return json.loads(((root or templates_dir()) / "cookiecutter.json").read_text())["templates"]


def list_templates() -> dict[str, str]:
    """Preset name → description, from ``templates/cookiecutter.json``."""
    return {name: entry.get("description", "") for name, entry in _index().items()}


def template_preset(template: str, root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The template folder and the preset answers of ``template`` (a preset or ``flow-project``),
    in ``root`` (a ``templates/`` folder; default: the installed one)."""
    root = root or templates_dir()
    index = _index(root)
    if template == TEMPLATE:
        return root / TEMPLATE, {}
    if template not in index:
        raise TemplateNotFoundError(
            f"No template named {template!r}; available: {', '.join([*index, TEMPLATE])} "
            "(see `prefect-etl templates`)."
        )
    entry = index[template]
    return (root / entry["path"]).resolve(), dict(entry.get("answers", {}))


def derived_default(default: str, answers: Mapping[str, Any], folder: Path) -> str:
    """Render one of the template's own derived defaults (``{{ cookiecutter.project_name |
    slugify }}``) with the answers so far as plain values in the context."""
    from cookiecutter.environment import StrictEnvironment

    env = StrictEnvironment(context={"cookiecutter": {"_extensions": []}}, keep_trailing_newline=False)
    return env.from_string(default).render(cookiecutter=dict(answers))


def render_template(folder: Path, answers: Mapping[str, Any], output_dir: str | Path, overwrite_if_exists: bool = False) -> Path:
    """Render the template in ``folder`` with validated ``answers`` into ``output_dir``.

    Cookiecutter receives every answer escaped (see the module docs), so the files hold exactly
    the text of the answers and nothing in them is evaluated.
    """
    from cookiecutter.main import cookiecutter

    validate_answers(answers)
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
