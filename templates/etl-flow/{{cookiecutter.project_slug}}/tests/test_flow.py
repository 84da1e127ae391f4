"""The flow on generated sample data, under the Prefect test harness."""

import duckdb
from prefect.client.orchestration import get_client

from {{ cookiecutter.module_name }}.flow import run
from {{ cookiecutter.module_name }}.settings import TARGET_TABLE
from tests.conftest import write_sales


def task_states(flow_state) -> dict:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    run_id = flow_state.state_details.flow_run_id
    return {r.task_key.split("-")[0]: r.state.name for r in runs if r.flow_run_id == run_id}


def test_flow_loads_the_summary(sales_dir, tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    rows = run(source_path=str(sales_dir / "*.parquet"), database=database)
    assert rows == 3
    con = duckdb.connect(database, read_only=True)
    assert con.execute(f"SELECT count(*), min(revenue) > 0 FROM {TARGET_TABLE}").fetchone() == (3, True)


def test_extract_is_cached_until_the_data_changes(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir / "*.parquet"), "database": str(tmp_path / "c.duckdb")}
    first = run(**kwargs, return_state=True)
    second = run(**kwargs, return_state=True)
    assert first.is_completed() and second.is_completed()
    assert "Cached" in task_states(second).values()
    write_sales(sales_dir, seed=99)
    third = run(**kwargs, return_state=True)
    assert "Cached" not in task_states(third).values()


def test_bad_parameter_fails_naming_it(sales_dir, tmp_path):
    state = run(source_path=str(sales_dir), database=str(tmp_path / "b.duckdb"), min_value=-1, return_state=True)
    assert state.is_failed()
    assert "min_value" in state.message
