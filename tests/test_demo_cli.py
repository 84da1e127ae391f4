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
