"""Keep a generated project up to date with its template: ``prefect-etl check`` and ``update``.

``prefect-etl new`` records two files in the project (commit both):

* ``.prefect-etl.json``: the preset, the answers, and the template version (the installed
  library's version and a sha256 of the template's files);
* ``.prefect-etl.generated.json``: the project *as generated*, file by file: the base of the
  three-way merge. Keeping the render itself, rather than re-rendering the recorded template
  version later, works for a pip-installed library that ships only its current template.

:func:`check_project` renders the current template (the installed one, or ``template=PATH``)
with the recorded answers and compares it with the recorded base: the project is behind when
they differ. :func:`update_project` merges that render into the project with git's own merge
machinery (``git merge`` in a throw-away repository holding three commits: the base, the
project's files, the new render), so the team's edits stay and a clash is left as
``<<<<<<<``/``>>>>>>>`` markers and listed, never silently overwritten. Then the new render
becomes the recorded base. It needs ``git`` on ``PATH``; the project itself need not be a git
repository.

Answers read back from ``.prefect-etl.json`` are untrusted like any answers: they are validated
and escaped before cookiecutter sees them (:func:`~prefect_etl_blocks.tools.template_render.render_template`).

Example:
    ```python
    import tempfile

    from prefect_etl_blocks.tools.scaffold import new_project
    from prefect_etl_blocks.tools.template_update import check_project

    project = new_project("etl-flow", output_dir=tempfile.mkdtemp(), no_input=True)
    assert not check_project(project).behind
    ```
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_etl_blocks.core.errors import DataError, TemplateNotFoundError
from prefect_etl_blocks.tools.template_answers import AnswerError, validate_answers
from prefect_etl_blocks.tools.template_render import (
    TEMPLATE,
    derived_default,
    render_template,
    template_preset,
)

RECORD = ".prefect-etl.json"
GENERATED = ".prefect-etl.generated.json"
_OWN_FILES = {RECORD, GENERATED}
_SKIPPED_DIRS = {".git", "__pycache__"}


class ProjectRecordError(DataError, LookupError):
    """A project without a readable ``.prefect-etl.json`` / ``.prefect-etl.generated.json``."""


class GitNotFoundError(DataError, FileNotFoundError):
    """``prefect-etl update`` merges with git, and no ``git`` command is on ``PATH``."""


@dataclass(frozen=True)
class TemplateStatus:
    """Where a project stands against a template (:func:`check_project`).

    ``changes`` lists ``(kind, path)`` for every file the template changed since the project
    was generated or last updated (kind: ``added``, ``removed`` or ``modified``); ``diff`` is
    that change as a unified diff; ``unresolved`` names files still holding conflict markers.
    """

    project: Path
    recorded_version: str
    template_version: str
    changes: list[tuple[str, str]] = field(default_factory=list)
    diff: str = ""
    unresolved: list[str] = field(default_factory=list)

    @property
    def behind(self) -> bool:
        """``True`` when the template changed something this project has not taken yet."""
        return bool(self.changes)


@dataclass(frozen=True)
class UpdateResult:
    """What :func:`update_project` did (or, with ``dry_run``, would do).

    ``files`` lists ``(kind, path)``: ``updated`` (the team had not edited it), ``merged`` (both
    sides changed it, merged cleanly), ``added``, ``removed``, ``conflict``. ``diff`` is the
    change to the project's files as a unified diff.
    """

    status: TemplateStatus
    files: list[tuple[str, str]] = field(default_factory=list)
    diff: str = ""
    dry_run: bool = False

    @property
    def conflicts(self) -> list[str]:
        """The files left with conflict markers, to resolve by hand."""
        return [path for kind, path in self.files if kind == "conflict"]


# ----------------------------------------------------------------------------- the record


def template_version(folder: Path) -> str:
    """``sha256:<hex>`` over the template folder's file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(_files(folder)):
        digest.update(path.encode() + b"\0" + (folder / path).read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def _library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("prefect-etl-blocks")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree on sys.path
        return "unknown"


def _files(root: Path) -> list[str]:
    """Every file under ``root`` as a POSIX path relative to it (no ``.git``, no caches)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel not in _OWN_FILES and not name.endswith(".pyc"):
                found.append(rel)
    return found


def _snapshot(root: Path) -> dict[str, str]:
    return {rel: (root / rel).read_text(encoding="utf-8", errors="surrogateescape") for rel in sorted(_files(root))}


def record_project(project: Path, template: str, folder: Path, answers: Mapping[str, Any], existed: bool = False) -> None:
    """Write ``.prefect-etl.json`` and the project as generated (right after rendering it into
    a new folder; into an existing one, the base is rendered apart, without the folder's files)."""
    generated = _render(folder, answers) if existed else _snapshot(project)
    _write_record(project, template, folder, answers, generated)


def _write_record(project: Path, template: str, folder: Path, answers: Mapping[str, Any], generated: Mapping[str, str]) -> None:
    record = {
        "template": template,
        "template_version": template_version(folder),
        "library_version": _library_version(),
        "answers": dict(answers),
        "generated_files": GENERATED,
        "note": "Written by prefect-etl new/update; commit it. `prefect-etl check` compares the project "
        "with the template, `prefect-etl update` merges the template's changes in.",
    }
    (project / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (project / GENERATED).write_text(
        json.dumps(dict(sorted(generated.items())), indent=0, ensure_ascii=False) + "\n",
        encoding="utf-8", errors="surrogateescape",
    )


def _read_record(project: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        record = json.loads((project / RECORD).read_text(encoding="utf-8"))
        generated = json.loads((project / GENERATED).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProjectRecordError(
            f"{Path(exc.filename).name} not found in {project}: run this in a project made by "
            "`prefect-etl new` (it records the answers and the project as generated there)."
        ) from None
    except ValueError as exc:
        raise ProjectRecordError(
            f"{project / RECORD} or {GENERATED} is not valid JSON ({exc}); restore it from version control."
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("answers"), dict) or not isinstance(generated, dict):
        raise ProjectRecordError(f"{project / RECORD} has no answers; restore it from version control.")
    return record, generated


# ----------------------------------------------------------------------------- rendering


def _template_folder(record: Mapping[str, Any], template: str | os.PathLike[str] | None) -> Path:
    """The template to compare with: the installed one, or ``template`` (a ``templates/``
    folder with presets, or one template folder)."""

    name = str(record.get("template") or TEMPLATE)
    if template is None:
        return template_preset(name)[0]
    root = Path(template)
    try:
        config = json.loads((root / "cookiecutter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TemplateNotFoundError(
            f"{root} is not a template: no readable cookiecutter.json in it. Pass a checkout's "
            "templates/ folder or a template folder such as templates/flow-project."
        ) from None
    return template_preset(name, root)[0] if "templates" in config else root


def _complete_answers(folder: Path, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded answers for the template's current questions; a question added since takes
    its default. Validated: the record is a file anyone could have edited."""

    raw = json.loads((folder / "cookiecutter.json").read_text(encoding="utf-8"))
    answers: dict[str, Any] = {}
    for name, default in raw.items():
        if name.startswith("_"):
            continue
        if name in recorded:
            value = recorded[name]
            if isinstance(default, list) and value not in default:
                raise AnswerError(name, value, f"one of {', '.join(default)} (recorded in {RECORD})")
            answers[name] = value if isinstance(value, str) else str(value)
        elif isinstance(default, list):
            answers[name] = default[0]
        else:
            answers[name] = derived_default(default, answers, folder) if "{" in str(default) else default
    validate_answers(answers)
    return answers


def _render(folder: Path, answers: Mapping[str, Any]) -> dict[str, str]:

    with tempfile.TemporaryDirectory(prefix="prefect-etl-render-") as out:
        return _snapshot(render_template(folder, answers, out))


def _diff(old: Mapping[str, str], new: Mapping[str, str], paths: list[str]) -> str:
    chunks = []
    for path in paths:
        chunks.extend(difflib.unified_diff(
            old.get(path, "").splitlines(keepends=True), new.get(path, "").splitlines(keepends=True),
            fromfile=f"a/{path}" if path in old else "/dev/null", tofile=f"b/{path}" if path in new else "/dev/null",
        ))
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in chunks)


def _has_markers(text: str) -> bool:
    lines = text.splitlines()
    return any(line.startswith("<<<<<<< ") for line in lines) and any(line.startswith(">>>>>>> ") for line in lines)


def _status(project: Path, template: str | os.PathLike[str] | None) -> tuple[TemplateStatus, dict, dict, dict, Path]:
    project = Path(project)
    record, generated = _read_record(project)
    folder = _template_folder(record, template)
    answers = _complete_answers(folder, record["answers"])
    fresh = _render(folder, answers)
    changes = [
        ("added" if path not in generated else "removed" if path not in fresh else "modified", path)
        for path in sorted(set(generated) | set(fresh))
        if generated.get(path) != fresh.get(path)
    ]
    unresolved = [
        path for path in sorted(set(generated) | set(fresh))
        if (project / path).is_file() and _has_markers((project / path).read_text(encoding="utf-8", errors="replace"))
    ]
    status = TemplateStatus(
        project=project,
        recorded_version=str(record.get("template_version", "unknown")),
        template_version=template_version(folder),
        changes=changes,
        diff=_diff(generated, fresh, [path for _, path in changes]),
        unresolved=unresolved,
    )
    return status, record, generated, {"answers": answers, "fresh": fresh}, folder


def check_project(project: str | os.PathLike[str], template: str | os.PathLike[str] | None = None) -> TemplateStatus:
    """Compare a generated project with the template (installed, or ``template``: a
    ``templates/`` folder or a template folder). Writes nothing.

    Raises:
        ProjectRecordError: the project has no record of how it was generated.
        TemplateNotFoundError: ``template`` is not a template.
        AnswerError: a recorded answer is no longer valid for the template.
    """
    return _status(Path(project), template)[0]


# ----------------------------------------------------------------------------- merging


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    command = ["git", "-c", "user.name=prefect-etl", "-c", "user.email=prefect-etl@localhost",
               "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", "merge.conflictStyle=merge", *args]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)


def _commit(repo: Path, files: Mapping[str, str], message: str) -> None:
    for rel in _files(repo):
        (repo / rel).unlink()
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text, encoding="utf-8", errors="surrogateescape")
    _git(repo, "add", "-A", "--force")  # every file given, whatever a .gitignore among them says
    done = _git(repo, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    if done.returncode:
        raise RuntimeError(f"git commit failed in {repo}: {done.stderr.strip()}")


def _merge(base: Mapping[str, str], ours: Mapping[str, str], theirs: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Three-way merge of whole file trees with ``git merge``; returns the merged files and the
    paths git left in conflict (with markers in the file, or the kept side of a delete)."""
    if shutil.which("git") is None:
        raise GitNotFoundError(
            "git is not on PATH: `prefect-etl update` merges the template's changes with git's "
            "three-way merge. Install git (https://git-scm.com/downloads) and run it again."
        )
    with tempfile.TemporaryDirectory(prefix="prefect-etl-merge-") as tmp:
        repo = Path(tmp)
        _git(repo, "init", "-q", "-b", "generated")
        _commit(repo, base, "the project as generated")
        _git(repo, "checkout", "-q", "-b", "template")
        _commit(repo, theirs, "the template now")
        _git(repo, "checkout", "-q", "generated")
        _git(repo, "checkout", "-q", "-b", "your-project")
        _commit(repo, ours, "the project now")
        merged = _git(repo, "merge", "-q", "--no-ff", "--no-edit", "-X", "no-renames", "template")
        conflicts = sorted(filter(None, _git(repo, "diff", "--name-only", "--diff-filter=U").stdout.splitlines()))
        if merged.returncode and not conflicts:
            raise RuntimeError(f"git merge failed: {(merged.stdout + merged.stderr).strip()}")
        return _snapshot(repo), conflicts


def update_project(
    project: str | os.PathLike[str], template: str | os.PathLike[str] | None = None, dry_run: bool = False
) -> UpdateResult:
    """Merge the template's changes since the project was generated (or last updated) into it.

    The team's edits stay; where both sides changed the same lines, the file keeps both between
    conflict markers and is listed in :attr:`UpdateResult.conflicts`. Only files the template
    produces (now or at the recorded version) are touched. With ``dry_run`` nothing is written
    and :attr:`UpdateResult.diff` shows what would change.
    """
    project = Path(project)
    status, record, generated, fresh_info, folder = _status(project, template)
    if not status.behind:
        return UpdateResult(status=status, dry_run=dry_run)
    fresh = fresh_info["fresh"]
    paths = sorted(set(generated) | set(fresh))
    ours = {p: (project / p).read_text(encoding="utf-8", errors="surrogateescape") for p in paths if (project / p).is_file()}
    merged, conflicts = _merge(generated, ours, fresh)
    touched = sorted(p for p in set(paths) | set(merged) if merged.get(p) != ours.get(p))
    files = []
    for path in touched:
        if path in conflicts:
            kind = "conflict"
        elif path not in merged:
            kind = "removed"
        elif path not in ours:
            kind = "added"
        else:
            kind = "updated" if ours.get(path) == generated.get(path) else "merged"
        files.append((kind, path))
    files += [("conflict", p) for p in conflicts if p not in touched]  # both sides kept as they are
    result = UpdateResult(status=status, files=files, diff=_diff(ours, merged, touched), dry_run=dry_run)
    if dry_run:
        return result
    for path in touched:
        target = project / path
        if path in merged:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(merged[path], encoding="utf-8", errors="surrogateescape")
        elif target.exists():
            target.unlink()
    _write_record(project, str(record.get("template") or "flow-project"), folder, fresh_info["answers"], fresh)
    return result

