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


def test_prefect_collections_entry_point_points_at_the_package() -> None:
    eps = entry_points(group="prefect.collections")
    ours = [ep for ep in eps if ep.name == "prefect_etl_blocks"]
    assert ours and ours[0].value == "prefect_etl_blocks"
    assert ours[0].load() is prefect_etl_blocks


def test_petl_console_script_is_declared() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "petl"]
    assert script.value == "prefect_etl_blocks.cli:main"


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
    for template in ("etl-flow", "partitioned-flow"):
        assert f"prefect_etl_blocks/templates/{template}/cookiecutter.json" in names, template
        assert any(n.startswith(f"prefect_etl_blocks/templates/{template}/hooks/") for n in names)
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
