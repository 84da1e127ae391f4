"""The flow-project template and its presets: bakes with every option, answers validated before
cookiecutter runs, answers as data (hypothesis, with Jinja delimiters, backslashes, quotes and
Unicode), and generated projects installed into a fresh venv where their own tests pass."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jinja2 import Environment

from prefect_etl_blocks.errors import DataError, ProjectExistsError, TemplateNotFoundError
from prefect_etl_blocks.scaffold import (
    AnswerError,
    _yaml_toml_string,
    escape_jinja,
    list_templates,
    new_project,
    questions,
    rendered_answers,
    templates_dir,
    validate_answers,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["etl-flow", "partitioned-flow"]
RUFF = str(Path(sys.executable).with_name("ruff"))


def settings_values(project: Path) -> dict[str, object]:
    (module,) = [p for p in project.iterdir() if (p / "settings.py").exists()]
    tree = ast.parse((module / "settings.py").read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }


def module_of(project: Path) -> Path:
    (module,) = [p for p in project.iterdir() if (p / "settings.py").exists()]
    return module


def code_of(project: Path) -> str:
    """The flow module and the modules of the choices it uses (warehouse, task runner)."""
    module = module_of(project)
    return "\n".join((module / name).read_text() for name in ("flow.py", "warehouse.py", "runner.py") if (module / name).exists())


def runner_values(project: Path) -> dict[str, object]:
    tree = ast.parse((module_of(project) / "runner.py").read_text())
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)}


def parsed_files(project: Path) -> tuple[dict, dict]:
    """Compile every .py; parse prefect.yaml and pyproject.toml (returned)."""
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    deployment = yaml.safe_load((project / "prefect.yaml").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    pool = deployment["deployments"][0]["work_pool"]["name"]
    assert compose["services"]["worker"]["command"][-1] == pool
    assert compose["services"]["prefect-server"]["environment"]["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    return deployment, pyproject


def assert_valid_project(project: Path) -> None:
    deployment, _ = parsed_files(project)
    result = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    first = deployment["deployments"][0]
    assert first["schedules"][0]["cron"] and first["work_pool"]["name"]
    assert first["concurrency_limit"]["limit"] == 1
    answers = json.loads((project / ".cookiecutter.json").read_text())
    assert answers["project_slug"] == project.name
    assert json.loads((project / ".prefect-etl.json").read_text())["answers"] == answers
    machine = str(project.parent.resolve())
    for path in project.rglob("*"):
        if path.is_file():  # no path of the generating machine (cookiecutter's _output_dir, _repo_dir...)
            assert machine not in path.read_text(errors="replace") and str(ROOT) not in path.read_text(errors="replace"), path


TEMPLATE_DIR = ROOT / "templates" / "flow-project"
JINJA_TAG = re.compile(r"\{\{|\{%|\{#")


def test_no_template_file_has_more_than_20_jinja_tags() -> None:
    """Files split by choice instead of nested conditionals (the one flow.py had 81 tags)."""
    counts = {
        path.relative_to(TEMPLATE_DIR).as_posix(): len(JINJA_TAG.findall(path.read_text()))
        for path in TEMPLATE_DIR.rglob("*") if path.is_file()
    }
    assert len(counts) > 30
    assert {path: n for path, n in counts.items() if n > 20} == {}
    module = "{{cookiecutter.project_slug}}/{{cookiecutter.module_name}}"
    assert sorted(p for p in counts if p.startswith(f"{module}/flow_")) == [
        f"{module}/flow_{variant}.py" for variant in ("batch", "batch_incremental", "partitioned", "partitioned_lake")
    ]


# Every generated project of the 64 answer combinations is checked in one child process: each
# module imports, and prefect.yaml goes through what `prefect deploy` runs on it (its loader and
# model, the entrypoint's flow, its parameters against the flow's signature, the schedules).
_IMPORT_AND_DEPLOY = r"""
import importlib, io, json, os, sys
from pathlib import Path

import yaml
from prefect.cli.deploy._config import _load_deploy_configs_and_actions
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.cli.deploy._schedules import _construct_schedules
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from rich.console import Console

failures = {}
for folder in sys.argv[1:]:
    project = Path(folder)
    os.chdir(project)
    sys.path.insert(0, str(project))
    try:
        answers = json.loads(Path(".cookiecutter.json").read_text())
        module = answers["module_name"]
        for path in sorted(Path(module).glob("*.py")):
            importlib.import_module(module if path.stem == "__init__" else f"{module}.{path.stem}")
        said = io.StringIO()
        configs, _ = _load_deploy_configs_and_actions(Path("prefect.yaml"), console=Console(file=said))
        assert not said.getvalue(), said.getvalue()
        PrefectYamlModel.model_validate(yaml.safe_load(Path("prefect.yaml").read_text()))
        (config,) = configs
        flow = load_flow_from_entrypoint(config["entrypoint"])
        assert flow.name == answers["flow_name"], flow.name
        assert set(parameter_schema(flow).properties) >= set(config["parameters"]) | {"dry_run"}
        flow.validate_parameters(config["parameters"])
        (schedule,) = _construct_schedules(config, {}, console=Console(file=said), is_interactive=lambda: False)
        assert schedule["schedule"].cron == answers["cron_schedule"] and schedule["active"] is True
    except Exception as exc:
        failures[project.name] = f"{type(exc).__name__}: {exc}"
    finally:
        sys.path.remove(str(project))
print(json.dumps(failures))
"""


def test_every_combination_renders_lints_imports_and_deploys(tmp_path: Path) -> None:
    """All 64 combinations of the six choices: the 48 valid ones bake, pass ruff, import and
    deploy; the 16 others (incremental with the partitioned shape) are refused naming the answer."""
    raw = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    choices = {name: options for name, options in raw.items() if isinstance(options, list) and not name.startswith("_")}
    combinations = list(itertools.product(*choices.values()))
    assert len(combinations) == 64
    baked, refused = [], []
    for number, combination in enumerate(combinations):
        context = {"project_name": f"Combo {number}", **dict(zip(choices, combination, strict=True))}
        try:
            baked.append(new_project("flow-project", output_dir=tmp_path, no_input=True, extra_context=context))
        except AnswerError as exc:
            refused.append((context, exc.field))
    assert [(c["shape"], c["load_strategy"], field) for c, field in refused] == [("partitioned", "incremental", "load_strategy")] * 16
    assert len(baked) == 48
    for project in baked:
        parsed_files(project)
        module = module_of(project)
        assert not [p.name for p in module.iterdir() if re.match(r"(flow|transform|warehouse|runner)_", p.name)]
        assert {"flow.py", "transform.py", "warehouse.py", "report.py"} <= {p.name for p in module.iterdir()}
    lint = subprocess.run([RUFF, "check", "--no-cache", *map(str, baked)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-4000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    child = subprocess.run([sys.executable, "-c", _IMPORT_AND_DEPLOY, *map(str, baked)], capture_output=True, text=True,
                           env=env, timeout=600)
    assert child.returncode == 0, child.stderr[-4000:]
    assert json.loads(child.stdout.splitlines()[-1]) == {}


def test_index_lists_the_presets_over_one_template() -> None:
    index = json.loads((ROOT / "templates" / "cookiecutter.json").read_text())["templates"]
    assert set(index) == set(PRESETS) == set(list_templates())
    assert {entry["path"] for entry in index.values()} == {"./flow-project"}
    assert templates_dir() == ROOT / "templates"
    assert sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir()) == ["flow-project"]
    assert "shape" not in questions("etl-flow") and questions("flow-project")["shape"] == ["batch", "partitioned"]
    assert {"task_timeout_seconds", "flow_timeout_seconds"} <= set(questions("etl-flow"))


@pytest.mark.parametrize("preset", PRESETS)
def test_bake_each_preset_with_defaults(tmp_path: Path, preset: str) -> None:
    project = new_project(preset, output_dir=tmp_path, no_input=True)
    assert_valid_project(project)
    module = module_of(project)
    assert not (module / "alerts.py").exists() and not (module / "storage.py").exists()
    assert (module / "sample_data.py").exists()
    flow = code_of(project)
    assert "SourceFingerprint()" in flow and "concurrency(WRITE_LIMIT_NAME" in flow and "cache_expiration" in flow
    # The example transformation lives in the project, where the team edits it.
    assert "prefect_etl_blocks.sales" not in flow and "prefect_etl_blocks.sales" not in (module / "transform.py").read_text()
    assert ("def summarize_sales(" in (module / "transform.py").read_text()) == (preset == "etl-flow")
    assert "summarize_sales" in flow or preset == "partitioned-flow"
    assert ("summarize_partition.map" in flow) == (preset == "partitioned-flow")
    values = settings_values(project)
    assert values["STRICT_WRITE_LIMIT"] is True
    assert (values["TASK_TIMEOUT_SECONDS"], values["FLOW_TIMEOUT_SECONDS"]) == (600, 3600)
    assert "retry_condition_fn\": retry_transient" in (module / "settings.py").read_text()
    readme = (project / "README.md").read_text()
    assert f"{values['FLOW_NAME']}-scheduled" in readme and "prefect deploy --name" in readme
    assert "second* deployment" in readme


def test_plain_template_asks_for_the_shape(tmp_path: Path) -> None:
    project = new_project("flow-project", output_dir=tmp_path, no_input=True, extra_context={"shape": "partitioned"})
    assert "summarize_partition" in (module_of(project) / "flow.py").read_text()
    with pytest.raises(AnswerError, match="fixed to 'batch' by the 'etl-flow' preset"):
        new_project("etl-flow", output_dir=tmp_path / "x", no_input=True, extra_context={"shape": "partitioned"})


@pytest.mark.parametrize(
    ("preset", "context", "present", "absent"),
    [
        ("etl-flow", {"result_storage": "s3"}, ["storage.py"], ["alerts.py"]),
        ("etl-flow", {"notifications": "email"}, ["alerts.py"], ["storage.py"]),
        ("etl-flow", {"result_storage": "s3", "notifications": "email"}, ["alerts.py", "storage.py"], []),
        ("partitioned-flow", {"task_runner": "dask"}, [], ["alerts.py"]),
        ("partitioned-flow", {"task_runner": "dask", "dask_address": "tcp://127.0.0.1:8786"}, [], []),
        ("partitioned-flow", {"task_runner": "threads", "notifications": "email", "result_storage": "s3"}, ["alerts.py", "storage.py"], []),
        ("etl-flow", {"warehouse": "ducklake"}, ["sample_data.py"], ["alerts.py"]),
        ("etl-flow", {"load_strategy": "incremental"}, ["sample_data.py"], ["alerts.py"]),
        ("etl-flow", {"load_strategy": "incremental", "warehouse": "ducklake"}, ["sample_data.py"], ["alerts.py"]),
        ("partitioned-flow", {"warehouse": "ducklake", "task_runner": "dask"}, ["sample_data.py"], ["storage.py"]),
        ("partitioned-flow", {"warehouse": "ducklake", "task_runner": "threads", "notifications": "email"}, ["alerts.py"], []),
    ],
)
def test_bake_each_option(tmp_path: Path, preset: str, context: dict, present: list[str], absent: list[str]) -> None:
    project = new_project(preset, output_dir=tmp_path, no_input=True, extra_context=context)
    assert_valid_project(project)
    module = module_of(project)
    for name in present:
        assert (module / name).exists(), name
    for name in absent:
        assert not (module / name).exists(), name
    flow = code_of(project)
    if context.get("notifications") == "email":
        assert "on_failure=[on_failure]" in flow
    if context.get("result_storage") == "s3":
        assert '"result_storage": ' in (module / "settings.py").read_text()
    if context.get("task_runner") == "dask":
        assert "DaskTaskRunner" in flow and "prefect-etl-blocks[dask]" in (project / "pyproject.toml").read_text()
        assert runner_values(project)["DASK_ADDRESS"] == context.get("dask_address", "")
    if context.get("load_strategy") == "incremental":
        assert "incremental=True" in flow and "summarize_raw" in flow
        assert "summary_query(raw_table)" in flow and "def summary_query(" in (module / "transform.py").read_text()
    if context.get("warehouse") == "ducklake":
        values = settings_values(project)
        assert values["DUCKLAKE_BLOCK"] == f"{project.name}-lake" and "DUCKDB_PATH" not in values
        assert "DuckLakeConnection.load(" in flow and "concurrency(" not in flow
        params = yaml.safe_load((project / "prefect.yaml").read_text())["deployments"][0]["parameters"]
        assert params["lake_block"] == values["DUCKLAKE_BLOCK"] and "database" not in params
        if "partitioned" in flow and context.get("task_runner") == "dask":
            assert '"processes": True' in flow and "load_partition.map" in flow


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project_slug", "Bad Slug"),
        ("project_slug", "../escape"),
        ("module_name", "class"),
        ("target_table", "x; DROP TABLE y"),
        ("cron_schedule", "every day"),
        ("cron_schedule", "61 * * * *"),
        ("timezone", "Mars/Olympus"),
        ("timezone", "../../etc/passwd"),
        ("retries", "21"),
        ("retries", "-1"),
        ("cache_expiration_hours", "lots"),
        ("max_concurrent_writes", "0"),
        ("result_storage", "gcs"),
        ("work_pool", "Pool With Spaces"),
        ("work_pool", "{{ 7*7 }}"),
        ("warehouse", "sqlite"),
        ("ducklake_block", "Not A Slug"),
        ("source_path", "a\nb"),
        ("source_path", "a\u2028b"),
        ("project_name", "x\x00y"),
        ("task_timeout_seconds", "3000"),
        ("flow_timeout_seconds", "59"),
        ("module_name", "__pycache__"),
    ],
)
def test_invalid_answer_names_the_field_and_leaves_nothing(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(AnswerError, match=f"template answer {field}=") as info:
        new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={field: value})
    assert info.value.field == field
    assert isinstance(info.value, DataError)
    assert list(tmp_path.iterdir()) == []


def test_task_timeouts_must_fit_in_the_flow_timeout() -> None:
    answers = rendered_answers("etl-flow", {"task_timeout_seconds": "1000", "retries": "3"})
    with pytest.raises(AnswerError, match="4 attempts of 1000 s plus 84 s of retry delays need 4084 s") as info:
        validate_answers(answers)
    assert info.value.field == "task_timeout_seconds"


def test_incremental_strategy_is_for_the_batch_shape(tmp_path: Path) -> None:
    with pytest.raises(AnswerError, match="use load_strategy=incremental with shape=batch") as info:
        new_project("partitioned-flow", output_dir=tmp_path, no_input=True, extra_context={"load_strategy": "incremental"})
    assert info.value.field == "load_strategy" and list(tmp_path.iterdir()) == []


def test_underscore_keys_cannot_be_overridden(tmp_path: Path) -> None:
    """``_extensions`` would make cookiecutter import a module of the caller's choosing."""
    for key in ("_extensions", "_copy_without_render", "__prompts__", "colour"):
        with pytest.raises(AnswerError, match="not a question of 'etl-flow'"):
            new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={key: "os"})
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_naming_overwrite(tmp_path: Path) -> None:
    new_project("etl-flow", output_dir=tmp_path, no_input=True)
    with pytest.raises(ProjectExistsError, match="--overwrite"):
        new_project("etl-flow", output_dir=tmp_path, no_input=True)
    new_project("etl-flow", output_dir=tmp_path, no_input=True, overwrite_if_exists=True)


def test_unknown_template_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(TemplateNotFoundError, match="No template named 'nope'; available: etl-flow, partitioned-flow, flow-project"):
        new_project("nope", output_dir=tmp_path)


def test_interactive_answers_are_not_rendered(tmp_path: Path) -> None:
    typed = {"project_name": "Typed {{ 6*7 }}", "source_path": "in/{% raw %}/*.parquet"}
    project = new_project(
        "etl-flow", output_dir=tmp_path, no_input=False,
        ask=lambda name, default, prompt: typed.get(name, default if not isinstance(default, list) else default[0]),
    )
    assert project.name == "typed-6-7"
    assert settings_values(project)["SOURCE_PATH"] == "in/{% raw %}/*.parquet"


MARKER_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


def _git_ignored(root: Path) -> set[str]:
    """The files below ``root`` that git, with the repository's ``.gitignore``, leaves out."""
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    out = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode()
    return {entry[3:] for entry in out.split("\0") if entry.startswith("!! ")}


_WAREHOUSE_FILES = ("", ".wal", ".lock", ".tmp/spill.bin")


def _touch(root: Path, relative: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def test_generated_gitignore_leaves_out_the_warehouse_and_caches_and_nothing_generated(tmp_path: Path) -> None:
    """The DuckDB file, its WAL, the load lock and DuckDB's spill folder are ignored by the
    generated ``.gitignore``, as are bytecode and tool caches; no file the template generates is.
    A real load into ``duckdb_path`` leaves nothing beside the database that git would show."""
    import polars as pl

    from prefect_etl_blocks import DuckDBConnection

    project = new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={"duckdb_path": "data/../db/w.duckdb"})
    assert _git_ignored(project) == set()
    (project / "db").mkdir()
    with DuckDBConnection(database=str(project / "db" / "w.duckdb")) as warehouse:
        assert warehouse.load_frame(pl.DataFrame({"id": [1, 2]}), "t") == 2
    beside = {p.relative_to(project).as_posix() for p in (project / "db").rglob("*") if p.is_file()}
    assert "db/w.duckdb" in beside and beside <= _git_ignored(project)
    made = ["db/w.duckdb" + suffix for suffix in _WAREHOUSE_FILES]
    caches = ["sales_etl/__pycache__/flow.cpython-311.pyc", ".pytest_cache/v/x", ".ruff_cache/x", "dist/p.whl"]
    kept = ["w.duckdb", "db/w.duckdb.bak", "data/w.duckdb", "sales_etl/dist/x.py"]
    for relative in [*made, *caches, *kept]:
        _touch(project, relative)
    assert _git_ignored(project) == {*made, *caches}


def test_generated_gitignore_has_no_warehouse_lines_for_a_lake_or_a_path_outside(tmp_path: Path) -> None:
    lake = new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={"warehouse": "ducklake"})
    outside = new_project(
        "etl-flow", output_dir=tmp_path, no_input=True,
        extra_context={"project_name": "Other", "duckdb_path": "../shared/w.duckdb"},
    )
    assert "duckdb" not in (lake / ".gitignore").read_text()
    assert "# (none here: duckdb_path is outside the project)" in (outside / ".gitignore").read_text()
    dist = new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={"project_name": "Dist", "module_name": "dist"})
    assert "/dist/" not in (dist / ".gitignore").read_text() and _git_ignored(dist) == set()


_path_chars = st.sampled_from(list("ab.Z*?[]!#\\ ~-_éß€") + ["\U0001F600", "\u00A0"])
_component = st.one_of(st.sampled_from([".", "..", "!x", "#x", " x", "x ", "**", "[a-z]", "\\"]), st.text(_path_chars, min_size=1, max_size=8))


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(_component, min_size=1, max_size=4), dot_slash=st.booleans())
def test_hypothesis_gitignore_pattern_ignores_that_file_and_no_other(parts: list[str], dot_slash: bool) -> None:
    """Whatever the characters of ``duckdb_path`` (glob and escape characters, ``!`` and ``#``,
    leading and trailing spaces, ``.`` and ``..``), the pattern makes git leave out exactly the
    database's files, and files whose names differ by one character stay visible; a path that
    climbs out of the project gives no pattern."""
    import posixpath
    import tempfile

    from prefect_etl_blocks.tools.template_answers import gitignore_pattern

    typed = ("./" if dot_slash else "") + "/".join(parts)
    pattern = gitignore_pattern(typed)
    where = posixpath.normpath(typed)
    if where in (".", "..") or where.startswith("../") or typed.startswith("~"):  # ~: the user's home
        assert pattern == ""
        return
    assert pattern.startswith("/") and not pattern.endswith(" ")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / ".gitignore").write_text("".join(f"{pattern}{s}\n" for s in (".tmp/", "", ".wal", ".lock")), encoding="utf-8")
        made = [where + suffix for suffix in _WAREHOUSE_FILES]
        head, name = posixpath.split(where)
        near = {posixpath.join(head, name[:-1] + ("Y" if name[-1] != "Y" else "W")), where + "x", posixpath.join(head, "x" + name)}
        for relative in [*made, *near]:
            _touch(root, relative)
        assert _git_ignored(root) == set(made)


def _payloads(marker: Path) -> list[str]:
    """Jinja that would create ``marker`` if any engine evaluated it."""
    command = f"touch {marker}"
    quoted = "'" + command + "'"
    return [
        "{{ cycler.__init__.__globals__.os.system(" + quoted + ") }}",
        "{% set x = cycler.__init__.__globals__.os.popen(" + quoted + ").read() %}",
        "{{ self.__init__.__globals__.__builtins__.__import__('os').system(" + quoted + ") }}",
        "{# " + command + " #}{{ lipsum.__globals__['os'].system(" + quoted + ") }}",
    ]


_text_chars = st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Zl", "Zp"))
_fragments = st.sampled_from(["{{", "}}", "{%", "%}", "{#", "#}", "\\", "\\N", "\\u0041", "\\x00", '"', "'", '"""', "\n", "€", "\U0001F600", "\u0085", "ß", "{", "}"])


def _hostile_text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.text(_text_chars, max_size=6), _fragments), min_size=1, max_size=8).map("".join).map(lambda s: s[:max_size])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    data=st.data(),
    field=st.sampled_from(["project_name", "project_slug", "module_name", "flow_name", "source_path", "target_table",
                           "duckdb_path", "cron_schedule", "timezone", "cache_expiration_hours", "retries",
                           "retry_delay_seconds", "task_timeout_seconds", "flow_timeout_seconds",
                           "max_concurrent_writes", "task_runner", "max_workers", "dask_address",
                           "result_storage", "notifications", "work_pool", "warehouse", "ducklake_block",
                           "load_strategy"]),
)
def test_hypothesis_answers_are_data_never_code(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, field: str) -> None:
    """Any answer to any question: either refused naming that field, or printed literally into
    files that compile and parse back to the same value. No payload ever runs."""
    out = tmp_path_factory.mktemp("bake")
    marker = out / "executed.marker"
    payload = _payloads(marker)
    value = data.draw(
        st.one_of(_hostile_text(60), st.sampled_from(payload), _hostile_text(20).map(lambda s: s + payload[0])), label="value"
    )
    other = data.draw(st.sampled_from([{}, {"source_path": payload[1]}, {"project_name": payload[2] + " x"}]), label="other")
    context = {**other, field: value}
    preset = "partitioned-flow" if field in ("task_runner", "max_workers", "dask_address") else "etl-flow"
    try:
        project = new_project(preset, output_dir=out, no_input=True, extra_context=context)
    except AnswerError as exc:
        assert exc.field in context or exc.field in ("project_slug", "module_name", "flow_name", "task_timeout_seconds")
        assert not marker.exists()
        return
    assert not marker.exists()
    deployment, pyproject = parsed_files(project)
    answers = json.loads((project / ".cookiecutter.json").read_text())
    for name, given_value in context.items():
        assert answers[name] == given_value, name
    values = settings_values(project)
    params = deployment["deployments"][0]["parameters"]
    assert values["SOURCE_PATH"] == params["source_path"] == answers["source_path"]
    assert values["DUCKDB_PATH"] == params["database"] == answers["duckdb_path"]
    assert pyproject["project"]["description"].startswith(answers["project_name"] + ":")
    doc = ast.get_docstring(ast.parse((module_of(project) / "__init__.py").read_text(encoding="utf-8")), clean=False)
    assert doc == answers["project_name"] + ": a Prefect flow built with prefect-etl-blocks."


def test_backslash_n_in_project_name_compiles(tmp_path: Path) -> None:
    """``Sales \\N ETL`` once generated an ``__init__.py`` that failed with a SyntaxError."""
    project = new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context={"project_name": "Sales \\N ETL"})
    parsed_files(project)
    doc = ast.get_docstring(ast.parse((module_of(project) / "__init__.py").read_text()), clean=False)
    assert doc.startswith("Sales \\N ETL:")


@settings(max_examples=200, deadline=None)
@given(st.text(_text_chars))
def test_hypothesis_escape_round_trips_through_jinja(text: str) -> None:
    """Any text validation lets through (no control characters: Jinja normalises line breaks)."""
    assert Environment(keep_trailing_newline=True).from_string(escape_jinja(text)).render() == text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_hypothesis_yaml_and_toml_strings_parse_to_the_same_value(text: str) -> None:
    literal = _yaml_toml_string(text)
    assert yaml.safe_load(f"k: {literal}")["k"] == text
    assert tomllib.loads(f"k = {literal}")["k"] == text


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


def test_plain_cookiecutter_still_validates_in_the_hook(tmp_path: Path) -> None:
    """``cookiecutter templates/flow-project`` (no prefect-etl) still refuses a bad answer."""
    from cookiecutter.exceptions import FailedHookException
    from cookiecutter.main import cookiecutter

    with pytest.raises(FailedHookException):
        cookiecutter(str(ROOT / "templates" / "flow-project"), no_input=True, output_dir=str(tmp_path),
                     extra_context={"cron_schedule": "daily"})
    assert list(tmp_path.iterdir()) == []


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
    ("preset", "context"),
    [("etl-flow", {}), ("etl-flow", {"load_strategy": "incremental"}), ("partitioned-flow", {"task_runner": "dask"})],
)
def test_generated_project_installs_and_passes_its_own_tests(tmp_path: Path, preset: str, context: dict) -> None:
    project = new_project(preset, output_dir=tmp_path / "out", no_input=True, extra_context=context)
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
    assert "8 passed" in tests.stdout, tests.stdout[-2000:]
    lint = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def _combinations_for_this_leg() -> list[dict[str, str]]:
    """The valid answer combinations whose projects can run their tests here: DuckLake projects
    need the DuckLake extension (the DuckLake leg runs theirs, test_templates_ducklake.py)."""
    raw = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    choices = {name: options for name, options in raw.items() if isinstance(options, list) and not name.startswith("_")}
    found = []
    for combination in itertools.product(*choices.values()):
        context = dict(zip(choices, combination, strict=True))
        if context["warehouse"] != "duckdb" or (context["shape"] == "partitioned" and context["load_strategy"] == "incremental"):
            continue
        if context["shape"] == "batch" and context["task_runner"] != "threads":
            continue  # the task runner is a question of the partitioned shape only: the same project
        found.append(context)
    return found


# A different sample each day; TEMPLATE_SAMPLE_SEED=N replays the sample of a failed run (its
# seed is printed in the test's output).
SAMPLE_SEED = int(os.environ.get("TEMPLATE_SAMPLE_SEED") or dt.date.today().strftime("%Y%m%d"))
LEG_COMBINATIONS = _combinations_for_this_leg()


#: Projects installed and tested a day, in two halves (one per xdist worker). Four keep the
#: newest CI leg within its time budget; every combination still renders, lints, imports and
#: deploys in ``test_every_combination_renders_lints_imports_and_deploys``.
SAMPLE_SIZE = 4


def rotating_sample(day_seed: int, size: int = SAMPLE_SIZE) -> list[dict[str, str]]:
    """``size`` distinct combinations drawn by hypothesis from ``day_seed``: the last of a few
    generated examples (hypothesis tries the simplest example first, the same every day)."""
    drawn: list[list[int]] = []

    @seed(day_seed)
    @settings(max_examples=5, phases=[Phase.generate], database=None, deadline=None)
    @given(st.lists(st.sampled_from(range(len(LEG_COMBINATIONS))), min_size=size, max_size=size, unique=True))
    def draw(sample: list[int]) -> None:
        drawn.append(sample)

    draw()
    return [LEG_COMBINATIONS[i] for i in drawn[-1]]


def test_the_rotating_sample_changes_with_the_seed() -> None:
    samples = [rotating_sample(day) for day in (20261206, 20261207, 20261208)]
    assert all(len({json.dumps(c, sort_keys=True) for c in sample}) == SAMPLE_SIZE for sample in samples)
    assert samples[0] != samples[1] != samples[2] and rotating_sample(20261206) == samples[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("half", [0, 1])
def test_a_rotating_sample_of_combinations_installs_and_passes_its_own_tests(tmp_path: Path, half: int) -> None:
    """SAMPLE_SIZE combinations a day, in two halves that pytest -n 2 runs side by side; each half is
    installed (``pip install --target``, next to this checkout's library) and tested by one
    pytest run, which shares one Prefect harness (the generated conftest reuses a harness
    another project of the run started)."""
    per_half = SAMPLE_SIZE // 2
    contexts = rotating_sample(SAMPLE_SEED)[per_half * half : per_half * (half + 1)]
    print(f"rotating sample, TEMPLATE_SAMPLE_SEED={SAMPLE_SEED}: {contexts}")
    root = tmp_path
    projects = [
        new_project("flow-project", output_dir=root / "projects", no_input=True,
                    extra_context={"project_name": f"Sample {per_half * half + i}", **context})
        for i, context in enumerate(contexts)
    ]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(root / "site"),
         *map(str, projects)],
        check=True, capture_output=True, timeout=600,
    )
    (root / "projects" / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PYTHONPATH=str(root / "site"))
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
         "--import-mode=importlib", *(f"{p.name}/tests" for p in projects)],
        cwd=root / "projects", env=env, capture_output=True, text=True, timeout=800,
    )
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-2000:]
    assert f"{8 * len(projects)} passed" in tests.stdout, tests.stdout[-2000:]


def test_setup_limits_refuses_without_a_prefect_server(tmp_path: Path) -> None:
    """A limit set on the temporary server Prefect starts without ``PREFECT_API_URL`` is lost
    when the command ends: the generated ``setup_limits`` refuses and says how to point it at one."""
    project = new_project("etl-flow", output_dir=tmp_path / "out", no_input=True)
    module = module_of(project).name
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(project))
    result = subprocess.run([sys.executable, "-m", f"{module}.setup_limits"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("setup_limits: PREFECT_API_URL is not set, so the limit would be created on a temporary")
    assert "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api" in result.stderr
    assert "prefect server start" in result.stderr
    assert "global concurrency limit" not in result.stdout
    assert not (tmp_path / "home" / "prefect.db").exists()  # no temporary server was started
