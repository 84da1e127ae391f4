"""Packaging shows the plugin: entry points, py.typed, templates inside the wheel, public API,
and an import that works without the optional heavy dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import prefect_etl_blocks

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_collections_entry_point_points_at_the_collection_module() -> None:
    """The package is lazy, so the entry point names the module that defines every exported
    block class (tests/test_architecture.py resolves them by slug in a fresh process)."""
    from prefect.blocks.core import Block

    eps = entry_points(group="prefect.collections")
    ours = [ep for ep in eps if ep.name == "prefect_etl_blocks"]
    assert ours and ours[0].value == "prefect_etl_blocks.tools.collection"
    exported = [
        getattr(prefect_etl_blocks, n) for n in prefect_etl_blocks.__all__
        if isinstance(getattr(prefect_etl_blocks, n), type) and issubclass(getattr(prefect_etl_blocks, n), Block)
    ]
    assert ours[0].load().BLOCK_CLASSES == exported


def test_prefect_etl_console_script_is_declared_and_petl_is_not() -> None:
    """``petl`` is the console script of the petl ETL library: we must not install one."""
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.value.startswith("prefect_etl_blocks")]
    assert [(ep.name, ep.value) for ep in scripts] == [("prefect-etl", "prefect_etl_blocks.cli:main")]


def test_every_runtime_import_is_declared() -> None:
    """Each third-party module the package imports is a declared dependency (or a stdlib one)."""
    import ast

    import tomllib

    declared = {
        line.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower().replace("-", "_")
        for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    # import name -> distribution name, where they differ
    aliases = {"prefect_aws": "prefect_aws", "yaml": "pyyaml", "cronsim": "cronsim", "jinja2": "jinja2"}
    optional = {"pandas", "prefect_dask", "dask", "distributed", "prefect_redis", "rich"}
    found: set[str] = set()
    for path in (ROOT / "prefect_etl_blocks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    third_party = {name for name in found if name not in sys.stdlib_module_names and name != "prefect_etl_blocks"}
    missing = sorted(
        name for name in third_party
        if aliases.get(name, name) not in declared and name not in optional
        and name not in {"anyio", "pydantic", "httpx", "botocore", "boto3", "typing_extensions", "cloudpickle", "fsspec"}
    )
    assert not missing, f"imported but not declared in [project].dependencies: {missing}"


def test_all_names_resolve() -> None:
    for name in prefect_etl_blocks.__all__:
        assert getattr(prefect_etl_blocks, name) is not None, name


@pytest.mark.slow
def test_wheel_ships_templates_types_and_entry_points(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("prefect_etl_blocks-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "prefect_etl_blocks/py.typed" in names
    assert "prefect_etl_blocks/templates/cookiecutter.json" in names
    assert "prefect_etl_blocks/templates/flow-project/cookiecutter.json" in names
    assert any(n.startswith("prefect_etl_blocks/templates/flow-project/hooks/") for n in names)
    assert not any("/templates/etl-flow/" in n or "/templates/partitioned-flow/" in n for n in names)
    entry_txt = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_txt).decode()
    assert "[prefect.collections]" in text and "prefect_etl_blocks = prefect_etl_blocks" in text
    assert not any("__pycache__" in n or n.endswith(".duckdb") for n in names)


def test_imports_without_optional_dependencies() -> None:
    """pandas and prefect-dask are extras: the package must import and work without them."""
    code = (
        "import sys\n"
        "for name in ('pandas', 'prefect_dask', 'dask', 'distributed'):\n"
        "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
        "import polars as pl\n"
        "import prefect_etl_blocks as p\n"
        "db = p.DuckDBConnection()\n"
        "assert db.load_frame(pl.DataFrame({'a': [1, 2]}), 't') == 2\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_bare_wheel_in_a_fresh_venv_runs_the_demo_and_a_generated_project(tmp_path: Path) -> None:
    """``pip install`` of the wheel alone (no extras), then what the README promises: the demo,
    ``prefect-etl new``, and the generated project's own tests, all in that one venv."""
    import os

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("prefect_etl_blocks-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=900,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '')}", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
        PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    cli = str(bin_dir / "prefect-etl")
    assert not (bin_dir / "petl").exists()
    demo = subprocess.run([cli, "demo", "--rows", "20000", "--workdir", str(tmp_path / "demo")],
                          env=env, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Rows loaded into daily_summary: 8" in demo.stdout
    new = subprocess.run([cli, "new", "etl-flow", "--output-dir", str(tmp_path / "projects")],
                         env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert new.returncode == 0, new.stdout + new.stderr
    project = tmp_path / "projects" / "sales-etl"
    dev = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-e", f"{project}[dev]"],
                         capture_output=True, text=True, timeout=600)
    assert dev.returncode == 0, dev.stdout[-2000:] + dev.stderr[-3000:]
    sample = subprocess.run([str(bin_dir / "python"), "-m", "sales_etl.sample_data", "--rows", "3000"],
                            cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert sample.returncode == 0, sample.stderr
    tests = subprocess.run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "8 passed" in tests.stdout, tests.stdout[-2000:]
