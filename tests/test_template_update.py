"""Generated projects kept up to date, as a team would: generate, edit, change the template (a
temporary copy of it), then ``prefect-etl check`` and ``prefect-etl update`` (git's three-way
merge: the team's edits stay, clashes are listed with conflict markers and exit 1)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from prefect_etl_blocks.scaffold import AnswerError, new_project
from prefect_etl_blocks.tools.cli import main
from prefect_etl_blocks.tools.template_update import (
    GENERATED,
    RECORD,
    ProjectRecordError,
    check_project,
    template_version,
    update_project,
)

ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIR = "flow-project/{{cookiecutter.project_slug}}"
MODULE_DIR = f"{PROJECT_DIR}/{{{{cookiecutter.module_name}}}}"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A temporary copy of the shipped ``templates/`` folder, to change as a new release would."""
    copy = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", copy)
    return copy


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return new_project("etl-flow", output_dir=tmp_path / "work", no_input=True, extra_context={"project_name": "Team ETL"})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_new_records_answers_and_template_version_without_machine_paths(project: Path) -> None:
    record = json.loads((project / RECORD).read_text())
    answers = json.loads((project / ".cookiecutter.json").read_text())
    assert record["answers"] == answers and answers["project_name"] == "Team ETL"
    assert record["template"] == "etl-flow"
    assert record["template_version"] == template_version(ROOT / "templates" / "flow-project")
    assert not [key for key in answers if key.startswith("_")]  # no _output_dir, _repo_dir, _template
    generated = json.loads((project / GENERATED).read_text())
    assert generated["team_etl/flow.py"] == (project / "team_etl" / "flow.py").read_text()
    assert RECORD not in generated and GENERATED not in generated
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert str(project.parent) not in text and str(ROOT) not in text, path
    assert not check_project(project).behind


def test_update_merges_the_template_change_and_keeps_the_team_edits(
    project: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "team_etl" / "settings.py"
    edit(settings, "RETRIES = 3\n", "RETRIES = 5  # our source is flaky\n")
    edit(project / "team_etl" / "transform.py", '.alias("orders")]', '.alias("orders"), pl.col("region").n_unique().alias("regions")]')
    # The next release of the template: a new setting, a changed comment, a new file, a new question.
    edit(template / MODULE_DIR / "settings.py", "STRICT_WRITE_LIMIT = True\n",
         "STRICT_WRITE_LIMIT = True\n# Rows per DuckDB insert batch.\nBATCH_ROWS = 100_000\n")
    edit(template / MODULE_DIR / "settings.py", '"""Settings chosen when the project was generated;',
         '"""Settings chosen when the project was generated (by prefect-etl new);')
    (template / PROJECT_DIR / "CODEOWNERS").write_text("* @{{ cookiecutter.owner }}\n")
    config = json.loads((template / "flow-project" / "cookiecutter.json").read_text())
    config = {**{k: v for k, v in config.items() if not k.startswith("_")}, "owner": "data-team",
              **{k: v for k, v in config.items() if k.startswith("_")}}
    (template / "flow-project" / "cookiecutter.json").write_text(json.dumps(config, indent=2))

    code, out, _ = cli(capsys, "check", "--project", str(project), "--template", str(template / "flow-project"))
    assert code == 1
    assert out.startswith("behind the template: generated from sha256:")
    assert "  added     CODEOWNERS\n" in out and "  modified  team_etl/settings.py\n" in out
    assert "+BATCH_ROWS = 100_000" in out

    code, out, err = cli(capsys, "update", "--project", str(project), "--template", str(template))
    assert (code, err) == (0, "")
    assert "  merged    team_etl/settings.py   (your edits kept)\n" in out
    assert "  added     CODEOWNERS\n" in out and "transform.py" not in out
    text = settings.read_text()
    assert "RETRIES = 5  # our source is flaky\n" in text  # the team's edit
    assert "BATCH_ROWS = 100_000\n" in text and "(by prefect-etl new)" in text  # the template's
    assert '.alias("regions")' in (project / "team_etl" / "transform.py").read_text()
    assert (project / "CODEOWNERS").read_text() == "* @data-team\n"
    record = json.loads((project / RECORD).read_text())
    assert record["template_version"] == template_version(template / "flow-project")
    assert record["answers"]["owner"] == "data-team" and record["answers"]["project_name"] == "Team ETL"

    assert cli(capsys, "check", "--project", str(project), "--template", str(template))[0] == 0
    assert check_project(project).behind  # the installed template is now the older one


def test_a_file_the_projects_gitignore_leaves_out_is_merged_not_overwritten(
    project: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The merge runs in a git repository that holds the project's own ``.gitignore``: a file the
    team wrote and ignores, which the template now adds too, is a conflict with both sides kept,
    not silently replaced by the template's (git overwrites ignored files on a merge)."""
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "CODEOWNERS\n")
    (project / "CODEOWNERS").write_text("* @our-team\n")
    (template / PROJECT_DIR / "CODEOWNERS").write_text("* @data-platform\n")

    code, out, err = cli(capsys, "update", "--project", str(project), "--template", str(template))
    assert code == 1 and "CODEOWNERS" in err
    assert "  conflict  CODEOWNERS" in out
    text = (project / "CODEOWNERS").read_text()
    assert "* @our-team\n" in text and "* @data-platform\n" in text and "<<<<<<< " in text


def test_a_conflicting_edit_is_listed_exits_1_and_keeps_both_sides(
    project: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = project / "team_etl" / "settings.py"
    edit(settings, "STRICT_WRITE_LIMIT = True\n", "STRICT_WRITE_LIMIT = False  # we run one flow at a time\n")
    edit(template / MODULE_DIR / "settings.py", "STRICT_WRITE_LIMIT = True\n", "STRICT_WRITE_LIMIT = True  # never False: see README\n")
    edit(template / "flow-project" / "templates" / "readme" / "deploy.md", "## Deploy", "## Deploy it")  # README.md's include

    code, out, err = cli(capsys, "update", "--project", str(project), "--template", str(template))
    assert code == 1
    assert err == (
        "prefect-etl update: 1 conflict(s), both sides kept between <<<<<<< and >>>>>>> in: "
        "team_etl/settings.py; edit them, then run `prefect-etl check`.\n"
    )
    assert "  conflict  team_etl/settings.py   (both sides kept between <<<<<<< and >>>>>>>)\n" in out
    assert "  updated   README.md\n" in out
    text = settings.read_text()
    ours = text.index("STRICT_WRITE_LIMIT = False  # we run one flow at a time\n")
    theirs = text.index("STRICT_WRITE_LIMIT = True  # never False: see README\n")
    assert text.index("<<<<<<< ") < ours < text.index("=======\n") < theirs < text.index(">>>>>>> template")
    assert "## Deploy it" in (project / "README.md").read_text()

    code, out, _ = cli(capsys, "check", "--project", str(project), "--template", str(template))
    assert code == 1 and "unresolved conflict markers (<<<<<<< ... >>>>>>>) in: team_etl/settings.py" in out
    resolved = re.sub(r"<<<<<<< [^\n]*\n(.*?)=======\n.*?>>>>>>> template\n", r"\1", text, flags=re.S)
    settings.write_text(resolved)
    assert "STRICT_WRITE_LIMIT = False  # we run one flow at a time\n" in resolved
    assert cli(capsys, "check", "--project", str(project), "--template", str(template))[0] == 0


def test_dry_run_shows_the_diff_and_changes_nothing(project: Path, template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(template / MODULE_DIR / "settings.py", "STRICT_WRITE_LIMIT = True\n", "STRICT_WRITE_LIMIT = True\nBATCH_ROWS = 1\n")
    edit(project / "team_etl" / "settings.py", "RETRIES = 3\n", "RETRIES = 4\n")
    before = files_of(project)
    code, out, err = cli(capsys, "update", "--dry-run", "--project", str(project), "--template", str(template))
    assert (code, err) == (0, "")
    assert out.startswith("would update from sha256:")
    assert "  merged    team_etl/settings.py   (your edits kept)\n" in out
    assert "--- a/team_etl/settings.py\n+++ b/team_etl/settings.py\n" in out and "\n+BATCH_ROWS = 1\n" in out
    assert "-RETRIES" not in out  # the diff is against the project as it is now
    assert out.rstrip().endswith("Dry run: nothing was written.")
    assert files_of(project) == before


def test_update_of_a_current_project_writes_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files_of(project)
    code, out, _ = cli(capsys, "update", "--project", str(project))
    assert code == 0 and out.startswith("already up to date with the template (sha256:")
    assert files_of(project) == before
    assert update_project(project).files == []


def test_a_folder_that_was_not_generated_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "check", "--project", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == (
        f"prefect-etl check: .prefect-etl.json not found in {tmp_path}: run this in a project made by "
        "`prefect-etl new` (it records the answers and the project as generated there).\n"
    )
    with pytest.raises(ProjectRecordError):
        update_project(tmp_path)


def test_a_folder_that_is_not_a_template_is_refused(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "update", "--project", str(project), "--template", str(tmp_path / "nowhere"))
    assert code == 1 and "is not a template: no readable cookiecutter.json in it" in err


def test_recorded_answers_are_data_and_are_validated(project: Path, tmp_path: Path) -> None:
    """``.prefect-etl.json`` is a file anyone could have edited: its answers are validated and
    escaped like typed ones, so a payload is refused or printed, never run."""
    marker = tmp_path / "ran.marker"
    record = json.loads((project / RECORD).read_text())
    record["answers"]["cron_schedule"] = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    (project / RECORD).write_text(json.dumps(record))
    with pytest.raises(AnswerError, match="template answer cron_schedule="):
        check_project(project)
    record["answers"]["cron_schedule"] = "0 6 * * *"
    record["answers"]["project_name"] = "Team {{ 7*7 }} {% raw %}"
    (project / RECORD).write_text(json.dumps(record))
    status = check_project(project)
    assert [path for _, path in status.changes] == [".cookiecutter.json", "README.md", "pyproject.toml", "team_etl/__init__.py"]
    assert "+# Team {{ 7*7 }} {% raw %}\n" in status.diff
    assert not marker.exists()
