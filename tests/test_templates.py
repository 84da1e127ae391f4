"""Cookiecutter templates: bakes with every option, answer validation (hypothesis), answers as
data, and generated projects installed into a fresh venv where their own tests and ruff pass."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prefect_etl_blocks.cli import main
from prefect_etl_blocks.errors import TemplateNotFoundError
from prefect_etl_blocks.scaffold import (
    AnswerError,
    list_templates,
    new_project,
    rendered_answers,
    templates_dir,
    validate_answers,
)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ["etl-flow", "partitioned-flow"]
RUFF = str(Path(sys.executable).with_name("ruff"))


def settings_values(project: Path) -> dict[str, object]:
    (module,) = [p for p in project.iterdir() if (p / "settings.py").exists()]
    tree = ast.parse((module / "settings.py").read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }


def assert_valid_project(project: Path) -> None:
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    result = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    yaml_text = (project / "prefect.yaml").read_text()
    import yaml

    deployment = yaml.safe_load(yaml_text)["deployments"][0]
    assert deployment["schedules"][0]["cron"] and deployment["work_pool"]["name"]
    assert deployment["concurrency_limit"]["limit"] == 1
    answers = json.loads((project / ".cookiecutter.json").read_text())
    assert answers["project_slug"] == project.name


def test_index_lists_both_templates() -> None:
    index = json.loads((ROOT / "templates" / "cookiecutter.json").read_text())
    assert set(index["templates"]) == set(TEMPLATES) == set(list_templates())
    assert templates_dir() == ROOT / "templates"


@pytest.mark.parametrize("template", TEMPLATES)
def test_bake_with_defaults(cookies, template: str) -> None:
    result = cookies.bake(template=str(ROOT / "templates" / template))
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert_valid_project(project)
    module = project / project.name.replace("-", "_")
    assert not (module / "alerts.py").exists() and not (module / "storage.py").exists()
    flow = (module / "flow.py").read_text()
    assert "SourceFingerprint()" in flow and "concurrency(WRITE_LIMIT_NAME" in flow and "cache_expiration" in flow
    assert settings_values(project)["STRICT_WRITE_LIMIT"] is True


@pytest.mark.parametrize(
    ("template", "context", "present", "absent"),
    [
        ("etl-flow", {"result_storage": "s3"}, ["storage.py"], ["alerts.py"]),
        ("etl-flow", {"notifications": "email"}, ["alerts.py"], ["storage.py"]),
        ("etl-flow", {"result_storage": "s3", "notifications": "email"}, ["alerts.py", "storage.py"], []),
        ("partitioned-flow", {"task_runner": "dask"}, [], ["alerts.py"]),
        ("partitioned-flow", {"task_runner": "dask", "dask_address": "tcp://127.0.0.1:8786"}, [], []),
        ("partitioned-flow", {"task_runner": "threads", "notifications": "email", "result_storage": "s3"}, ["alerts.py", "storage.py"], []),
    ],
)
def test_bake_each_option(cookies, template: str, context: dict, present: list[str], absent: list[str]) -> None:
    result = cookies.bake(template=str(ROOT / "templates" / template), extra_context=context)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert_valid_project(project)
    module = project / project.name.replace("-", "_")
    for name in present:
        assert (module / name).exists(), name
    for name in absent:
        assert not (module / name).exists(), name
    flow = (module / "flow.py").read_text()
    if context.get("notifications") == "email":
        assert "on_failure=[on_failure]" in flow
    if context.get("result_storage") == "s3":
        assert '"result_storage": RESULT_STORAGE_BLOCK' in flow
    if context.get("task_runner") == "dask":
        assert "DaskTaskRunner" in flow and "prefect-etl-blocks[dask]" in (project / "pyproject.toml").read_text()
        assert settings_values(project)["DASK_ADDRESS"] == context.get("dask_address", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project_slug", "Bad Slug"),
        ("module_name", "class"),
        ("target_table", "x; DROP TABLE y"),
        ("cron_schedule", "every day"),
        ("cron_schedule", "61 * * * *"),
        ("timezone", "Mars/Olympus"),
        ("retries", "21"),
        ("retries", "-1"),
        ("cache_expiration_hours", "lots"),
        ("max_concurrent_writes", "0"),
        ("result_storage", "gcs"),
        ("work_pool", "Pool With Spaces"),
        ("source_path", "a\nb"),
    ],
)
def test_invalid_answer_names_the_field_and_leaves_nothing(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(AnswerError, match=f"template answer {field}=") as info:
        new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={field: value})
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_answers_are_data_not_code(cookies) -> None:
    tricky = 'C:\\data\\"""; import os; os.system("x") #\'/*.parquet'
    result = cookies.bake(
        template=str(ROOT / "templates" / "etl-flow"),
        extra_context={"project_name": "Robert'); DROP \"\"\" \\ x", "source_path": tricky, "duckdb_path": "it's \\ here.duckdb"},
    )
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert_valid_project(project)
    values = settings_values(project)
    assert values["SOURCE_PATH"] == tricky and values["DUCKDB_PATH"] == "it's \\ here.duckdb"
    import yaml

    params = yaml.safe_load((project / "prefect.yaml").read_text())["deployments"][0]["parameters"]
    assert params["source_path"] == tricky


_safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="{}"), min_size=1, max_size=40).filter(
    lambda s: s.strip() and any(c.isalnum() and c.isascii() for c in s) and not s.strip()[0].isdigit()
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(name=_safe_text, path=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60).filter(str.strip))
@example(name="A", path="\U00010000 data/*.parquet")  # astral characters: tojson would split them
def test_hypothesis_valid_answers_bake_to_valid_python(cookies, name: str, path: str) -> None:
    context = {"project_name": name, "source_path": path}
    answers = rendered_answers("etl-flow", context)
    try:
        validate_answers(answers)
    except AnswerError as exc:  # a slug that slugify cannot make valid (e.g. leading digit after transliteration)
        assert exc.field in ("project_slug", "module_name", "flow_name", "project_name")
        return
    result = cookies.bake(template=str(ROOT / "templates" / "etl-flow"), extra_context=context)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    for py in project.rglob("*.py"):
        compile(py.read_text(), str(py), "exec")
    assert settings_values(project)["SOURCE_PATH"] == path


@settings(max_examples=40, deadline=None)
@given(
    field=st.sampled_from(["retries", "retry_delay_seconds", "cache_expiration_hours", "max_concurrent_writes"]),
    value=st.one_of(st.integers(-1000, -1).map(str), st.integers(100_000, 10**9).map(str), st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=5).filter(lambda s: not s.isdigit())),
)
def test_hypothesis_invalid_numbers_are_rejected_by_field(field: str, value: str) -> None:
    answers = rendered_answers("etl-flow", {})
    answers[field] = value
    with pytest.raises(AnswerError) as info:
        validate_answers(answers)
    assert info.value.field == field and field in str(info.value)


def test_petl_new_and_templates_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates"]) == 0
    out = capsys.readouterr().out
    assert "etl-flow" in out and "partitioned-flow" in out
    assert main(["new", "etl-flow", "--no-input", "--output-dir", str(tmp_path), "project_name=Orders ETL", "retries=5"]) == 0
    assert settings_values(tmp_path / "orders-etl")["RETRIES"] == 5
    assert main(["new", "etl-flow", "--no-input", "--output-dir", str(tmp_path / "x"), "retries=99"]) == 1
    assert "template answer retries='99' is invalid: a whole number from 0 to 20" in capsys.readouterr().err
    with pytest.raises(TemplateNotFoundError, match="No template named 'nope'; available: etl-flow, partitioned-flow"):
        new_project("nope", output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unknown template question\(s\) \['colour'\]"):
        new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={"colour": "red"})


def _venv_with_checkout(tmp_path: Path) -> Path:
    """A fresh venv with this checkout installed from its wheel (templates included) and the
    checkout venv's dependencies visible through a .pth file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "_checkout_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    return python


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("template", "context"),
    [("etl-flow", {}), ("partitioned-flow", {"task_runner": "dask"})],
)
def test_generated_project_installs_and_passes_its_own_tests(tmp_path: Path, template: str, context: dict) -> None:
    project = new_project(template, output_dir=tmp_path / "out", no_input=True, extra_context=context)
    python = _venv_with_checkout(tmp_path)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(project)],
        check=True, capture_output=True, timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "3 passed" in tests.stdout
    lint = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
