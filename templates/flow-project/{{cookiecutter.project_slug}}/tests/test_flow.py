"""The flow on generated sample data, under the Prefect test harness."""

import duckdb
import polars as pl
from prefect.client.orchestration import get_client

from {{ cookiecutter.module_name }}.flow import run
from {{ cookiecutter.module_name }}.settings import FLOW_TIMEOUT_SECONDS, RETRIES, TARGET_TABLE, TASK_TIMEOUT_SECONDS
from tests.conftest import write_sales


def task_states(flow_state, prefix: str) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    run_id = flow_state.state_details.flow_run_id
    return sorted(r.state.name for r in runs if r.flow_run_id == run_id and r.name.startswith(prefix))


def expected_summary(folder, min_value: float = 0.0) -> list[tuple]:
    frame = (
        pl.read_parquet(folder / "*.parquet")
        .filter(pl.col("value") > min_value)
        .group_by("category")
        .agg(pl.len().alias("orders"), pl.col("value").sum().round(2).alias("revenue"))
        .sort("category")
    )
    return list(frame.iter_rows())


def test_flow_loads_the_summary(sales_dir, tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    rows = run(source_path=str(sales_dir / "*.parquet"), database=database)
    assert rows == 8
    con = duckdb.connect(database, read_only=True)
    got = con.execute(f"SELECT category, orders, round(revenue, 2) FROM {TARGET_TABLE} ORDER BY category").fetchall()
    assert got == expected_summary(sales_dir)


def test_min_value_filters_rows(sales_dir, tmp_path):
    database = str(tmp_path / "filtered.duckdb")
    run(source_path=str(sales_dir / "*.parquet"), database=database, min_value=50.0)
    con = duckdb.connect(database, read_only=True)
    got = con.execute(f"SELECT category, orders, round(revenue, 2) FROM {TARGET_TABLE} ORDER BY category").fetchall()
    assert got == expected_summary(sales_dir, 50.0)


{%- if cookiecutter.shape == "partitioned" %}


def test_only_changed_partitions_are_recomputed(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir), "database": str(tmp_path / "c.duckdb")}
    run(**kwargs)
    second = run(**kwargs, return_state=True)
    assert task_states(second, "summarize-partition") == ["Cached", "Cached", "Cached"]
    write_sales(sales_dir, files=3, seed=99)  # a new seed rewrites every file
    third = run(**kwargs, return_state=True)
    assert task_states(third, "summarize-partition") == ["Completed", "Completed", "Completed"]
{%- else %}


def test_summary_is_cached_until_the_data_changes(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir / "*.parquet"), "database": str(tmp_path / "c.duckdb")}
    first = run(**kwargs, return_state=True)
    second = run(**kwargs, return_state=True)
    assert first.is_completed() and second.is_completed()
    assert task_states(second, "summarize") == ["Cached"]
    write_sales(sales_dir, seed=99)
    third = run(**kwargs, return_state=True)
    assert task_states(third, "summarize") == ["Completed"]
{%- endif %}


def test_bad_parameter_fails_naming_it(sales_dir, tmp_path):
    state = run(source_path=str(sales_dir), database=str(tmp_path / "b.duckdb"), min_value=-1, return_state=True)
    assert state.is_failed()
    assert "min_value" in state.message


def test_missing_column_fails_without_retrying(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    pl.DataFrame({"category": ["a"], "price": [1.0]}).write_parquet(folder / "part.parquet")
    state = run(source_path=str(folder / "*.parquet"), database=str(tmp_path / "m.duckdb"), return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_task_runs() if r.flow_run_id == state.state_details.flow_run_id]
    failed = [r for r in runs if r.state.name == "Failed"]
    assert failed and all(r.run_count == 1 for r in failed), [(r.name, r.run_count) for r in runs]


def test_every_task_retry_fits_in_the_flow_timeout():
    assert TASK_TIMEOUT_SECONDS * (RETRIES + 1) <= FLOW_TIMEOUT_SECONDS


def test_sample_data_matches_the_source_path(tmp_path, monkeypatch):
    from {{ cookiecutter.module_name }} import sample_data

    monkeypatch.chdir(tmp_path)
    sample_data.main(["--rows", "500", "--files", "2"])
    folder = sample_data.sample_folder()
    assert pl.scan_parquet(folder / "*.parquet").select(pl.len()).collect().item() == 500
