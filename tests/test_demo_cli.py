"""``prefect-etl demo`` end to end in a subprocess (its own workdir and Prefect home), twice, and the
CLI's argument handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from prefect_etl_blocks.cli import build_parser, main


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_runs_twice_with_embedded_defaults(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_API_URL", None)
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "prefect_etl_blocks.cli", "demo", "--workdir", str(tmp_path / "demo"), "--rows", "60000", "--files", "3"],
            env=env, capture_output=True, text=True, timeout=380,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        outputs.append(result.stdout)
    for out in outputs:
        assert "Rows loaded into daily_summary: 8" in out
        assert f"DuckDB file: {tmp_path / 'demo' / 'warehouse.duckdb'}" in out
        assert "prefect server start" in out
    con = duckdb.connect(str(tmp_path / "demo" / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), min(orders) > 0 FROM daily_summary").fetchone() == (8, True)
    assert (tmp_path / "demo" / "prefect-home" / "prefect.db").exists()


def test_sample_data_is_deterministic(tmp_path: Path) -> None:
    from prefect_etl_blocks.demo import generate_sales_data

    a = generate_sales_data(tmp_path / "a", rows=5000, files=2, progress=False)
    b = generate_sales_data(tmp_path / "b", rows=5000, files=2, progress=False)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    mtime = a[0].stat().st_mtime_ns
    generate_sales_data(tmp_path / "a", rows=5000, files=2, progress=False)
    assert a[0].stat().st_mtime_ns == mtime  # reused, not rewritten


def test_cli_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "prefect-etl-blocks 0.1.0" in capsys.readouterr().out
    assert main([]) == 2
    commands = {"demo", "new", "templates", "register", "doctor", "history", "version"}
    assert commands <= set(build_parser()._subparsers._group_actions[0].choices)


def test_cli_rejects_bad_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "etl-flow", "--no-input", "novalue"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "prefect-etl new: 'novalue' is not a key=value answer; write for example "
        "project_name='Sales ETL' (see `prefect-etl new --help`)."
    ]


# ------------------------------------------------------------------ follow-up commands (issue 20)
def _look_command(lines: list[str]) -> str:
    (line,) = [x for x in lines if x.startswith("  look at it:  ")]
    return line.removeprefix("  look at it:  ")


def _server_command(lines: list[str]) -> str:
    (line,) = [x for x in lines if "server start" in x]
    return line.split("   # ")[0].strip()


@pytest.fixture
def summary_db(tmp_path: Path) -> Path:
    path = tmp_path / "with space" / "warehouse.duckdb"
    path.parent.mkdir()
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE daily_summary AS SELECT 'books' AS category, 3 AS orders")
    con.close()
    return path


def test_follow_up_commands_in_the_repository_use_its_venv_relative_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, summary_db: Path
) -> None:
    """``make demo`` runs in the checkout with .venv not activated: ``.venv/bin/...`` works there."""
    from prefect_etl_blocks.demo import follow_up_commands

    venv = Path(sys.executable).absolute().parent.parent  # .venv of this checkout under make
    monkeypatch.chdir(venv.parent)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    lines = follow_up_commands(summary_db, tmp_path / "home")
    assert _look_command(lines).startswith(f"{venv.name}/bin/python -c ")
    assert _server_command(lines) == f"PREFECT_HOME={tmp_path / 'home'} {venv.name}/bin/prefect server start"
    done = subprocess.run(["bash", "-c", _look_command(lines)], cwd=venv.parent, capture_output=True, text=True)
    assert done.returncode == 0 and "books" in done.stdout, done.stderr


def test_follow_up_commands_elsewhere_never_print_a_venv_relative_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, summary_db: Path
) -> None:
    from prefect_etl_blocks.demo import follow_up_commands

    bindir = Path(sys.executable).absolute().parent
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not activated: absolute paths
    lines = follow_up_commands(summary_db, tmp_path / "home")
    assert _look_command(lines).startswith(f"{bindir / 'python'} -c ")
    assert _server_command(lines).endswith(f" {bindir / 'prefect'} server start")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")  # activated: plain names
    activated = follow_up_commands(summary_db, tmp_path / "home")
    assert _look_command(activated).startswith("python -c ")
    assert _server_command(activated).endswith(" prefect server start")
    for printed in (lines, activated):
        assert not any(".venv/bin" in line and str(bindir) not in line for line in printed), printed
        done = subprocess.run(["bash", "-c", _look_command(printed)], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and "books" in done.stdout, done.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_from_an_installed_wheel_prints_commands_that_work_there(tmp_path: Path) -> None:
    """The wheel installed into a fresh venv, run from another folder with the venv not
    activated: every printed command runs as printed."""
    from tests.test_templates import _venv_with_checkout

    python = _venv_with_checkout(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(tmp_path / "home"), PATH="/usr/bin:/bin",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    result = subprocess.run(
        [str(python.with_name("prefect-etl")), "demo", "--workdir", "demo", "--rows", "3000", "--files", "1"],
        cwd=work, env=env, capture_output=True, text=True, timeout=500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert ".venv/bin/" not in result.stdout
    look = _look_command(lines)
    assert look.startswith(f"{python} -c ")
    done = subprocess.run(["bash", "-c", look], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "daily_summary" not in done.stderr and "category" in done.stdout, done.stderr
    server = _server_command(lines)
    assert server.startswith(f"PREFECT_HOME={work / 'demo' / 'prefect-home'} ") and server.endswith(" server start")
    # The same command with `version` instead of `server start`: the printed prefect runs here.
    version = subprocess.run(["bash", "-c", server.removesuffix("server start") + "version"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and "Version:" in version.stdout, version.stdout + version.stderr
