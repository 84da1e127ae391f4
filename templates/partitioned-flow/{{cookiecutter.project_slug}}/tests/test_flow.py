"""The partitioned flow on generated sample data, under the Prefect test harness."""

import duckdb
import polars as pl
from prefect.client.orchestration import get_client

from {{ cookiecutter.module_name }}.flow import run
from {{ cookiecutter.module_name }}.settings import TARGET_TABLE
from tests.conftest import write_sales


def partition_states(flow_state) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    run_id = flow_state.state_details.flow_run_id
    return sorted(r.state.name for r in runs if r.flow_run_id == run_id and r.name.startswith("summarize-partition"))


def test_partitions_are_combined_like_a_single_pass(sales_dir, tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    assert run(source_path=str(sales_dir), database=database) == 3
    expected = (
        pl.read_parquet(sales_dir / "*.parquet")
        .filter(pl.col("value") > 0)
        .group_by("category")
        .agg(pl.len().alias("orders"))
        .sort("category")
    )
    con = duckdb.connect(database, read_only=True)
    got = con.execute(f"SELECT category, orders FROM {TARGET_TABLE} ORDER BY category").fetchall()
    assert got == [(c, n) for c, n in expected.iter_rows()]


def test_only_changed_partitions_are_recomputed(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir), "database": str(tmp_path / "c.duckdb")}
    run(**kwargs)
    second = run(**kwargs, return_state=True)
    assert partition_states(second) == ["Cached", "Cached", "Cached"]
    write_sales(sales_dir, files=1, seed=42)  # rewrites part-0 only
    third = run(**kwargs, return_state=True)
    assert partition_states(third) == ["Cached", "Cached", "Completed"]


def test_bad_parameter_fails_naming_it(sales_dir, tmp_path):
    state = run(source_path=str(sales_dir), database=str(tmp_path / "b.duckdb"), min_value=-3, return_state=True)
    assert state.is_failed()
    assert "min_value" in state.message
