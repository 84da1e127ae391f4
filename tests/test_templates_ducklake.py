"""The flow-project template targeting a DuckLake (``warehouse=ducklake``), in the DuckLake leg
(DuckDB 1.5.5 with the extension wheels): the generated projects pass their own tests on a
local lake, and the partitioned preset on a real Dask ``LocalCluster`` with 4 worker processes
loads every partition straight into a lake with a PostgreSQL catalog and an ``s3://`` data
path on moto."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from prefect_etl_blocks.scaffold import new_project
from tests.fixtures.postgres import PostgresServer

pytestmark = [pytest.mark.ducklake, pytest.mark.slow]


def _project_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(project), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("preset", "context", "passed"),
    [
        ("etl-flow", {}, 8),
        ("etl-flow", {"load_strategy": "incremental"}, 8),
        ("partitioned-flow", {"task_runner": "threads"}, 8),
        ("partitioned-flow", {"task_runner": "dask", "max_workers": "2"}, 8),
    ],
)
def test_generated_lake_project_passes_its_own_tests(tmp_path: Path, preset: str, context: dict, passed: int) -> None:
    project = new_project(preset, output_dir=tmp_path, no_input=True,
                          extra_context={"warehouse": "ducklake", "project_name": "Lake Sales", **context})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly"],
        cwd=project, env=_project_env(project), capture_output=True, text=True, timeout=800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{passed} passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.timeout(900)
def test_dask_worker_processes_load_partitions_straight_into_a_postgres_s3_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_server: PostgresServer, pg_database: str,
    aws_credentials, bucket: str,
) -> None:
    from prefect_etl_blocks import DuckLakeConnection
    from prefect_etl_blocks.ducklake import close_instances
    from prefect_etl_blocks.sales import write_sample_sales

    project = new_project(
        "partitioned-flow", output_dir=tmp_path, no_input=True,
        extra_context={"warehouse": "ducklake", "task_runner": "dask", "max_workers": "4",
                       "project_name": "Scale Out", "ducklake_block": "scale-out-lake"},
    )
    # The Dask worker processes import the generated module, so they need it on their path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(project))
    lake = DuckLakeConnection(
        catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=f"s3://{bucket}/lake/",
        aws_credentials=aws_credentials,
    )
    lake.save("scale-out-lake", overwrite=True)
    data = tmp_path / "sales"
    write_sample_sales(data, rows=40_000, files=8, seed=3)
    flow_module = importlib.import_module("scale_out.flow")
    try:
        state = flow_module.run(source_path=str(data), lake_block="scale-out-lake", return_state=True)
        assert state.is_completed(), state.message
        assert state.result() == 8
        reference = (
            pl.read_parquet(data / "*.parquet").filter(pl.col("value") > 0)
            .group_by("category").agg(pl.len().alias("orders"), pl.col("value").sum().round(2).alias("revenue"))
            .sort("category")
        )
        got = lake.fetch_all("SELECT category, orders, round(revenue, 2) FROM analytics.daily_summary ORDER BY category")
        assert got == list(reference.iter_rows())
        total, files = lake.fetch_one(
            "SELECT count(*), count(DISTINCT source_file) FROM analytics.daily_summary_rows"
        )
        assert (total, files) == (reference["orders"].sum(), 8)
        # The partition loads are commits of their own, not one funnelled write.
        assert len(lake.snapshots()) >= 8
        # A second run reloads nothing: every partition is cached on its file.
        again = flow_module.run(source_path=str(data), lake_block="scale-out-lake", return_state=True)
        assert again.is_completed()
        assert lake.fetch_one("SELECT count(*) FROM analytics.daily_summary_rows") == (total,)
    finally:
        close_instances()
        for name in [m for m in sys.modules if m == "scale_out" or m.startswith("scale_out.")]:
            del sys.modules[name]
