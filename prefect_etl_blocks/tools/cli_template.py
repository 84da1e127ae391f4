"""What ``prefect-etl check`` and ``prefect-etl update`` print (the work is in
:mod:`~prefect_etl_blocks.tools.template_update`).

Example:
    ```python
    from pathlib import Path

    from prefect_etl_blocks.tools.cli_template import check_lines
    from prefect_etl_blocks.tools.template_update import TemplateStatus

    status = TemplateStatus(project=Path("."), recorded_version="sha256:ab", template_version="sha256:ab")
    assert check_lines(status) == ["up to date with the template (sha256:ab)."]
    ```
"""

from __future__ import annotations

from prefect_etl_blocks.tools.template_update import TemplateStatus, UpdateResult


def _short(version: str) -> str:
    return version[:19] if version.startswith("sha256:") else version


def check_lines(status: TemplateStatus) -> list[str]:
    """What ``prefect-etl check`` prints: the verdict, the changed files, then the diff."""
    lines = []
    if status.behind:
        lines.append(
            f"behind the template: generated from {_short(status.recorded_version)}, the template is now "
            f"{_short(status.template_version)}; {len(status.changes)} file(s) changed:"
        )
        lines += [f"  {kind:9} {path}" for kind, path in status.changes]
        lines.append("Run `prefect-etl update` to merge them in (`prefect-etl update --dry-run` shows the result first).")
        lines += ["", status.diff.rstrip("\n")]
    else:
        lines.append(f"up to date with the template ({_short(status.template_version)}).")
    if status.unresolved:
        lines.append(f"unresolved conflict markers (<<<<<<< ... >>>>>>>) in: {', '.join(status.unresolved)}")
    return lines


def update_lines(result: UpdateResult) -> list[str]:
    """What ``prefect-etl update`` prints: one line per file, then the diff with ``--dry-run``."""
    status = result.status
    if not status.behind:
        return [f"already up to date with the template ({_short(status.template_version)}); nothing to do."]
    verb = "would update" if result.dry_run else "updated"
    lines = [f"{verb} from {_short(status.recorded_version)} to {_short(status.template_version)}:"]
    notes = {"merged": "   (your edits kept)", "conflict": "   (both sides kept between <<<<<<< and >>>>>>>)"}
    lines += [f"  {kind:9} {path}{notes.get(kind, '')}" for kind, path in result.files]
    if not result.files:
        lines.append("  (no file changes: the template's changes were already in the project)")
    if result.dry_run:
        lines += ["", result.diff.rstrip("\n"), "", "Dry run: nothing was written."]
    return lines
