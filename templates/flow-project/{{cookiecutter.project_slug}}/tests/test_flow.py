"""The flow on generated sample data, under the Prefect test harness."""

{% if cookiecutter.warehouse == "duckdb" -%}
import duckdb
{% endif -%}
import polars as pl
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect_etl_blocks.sales import write_sample_sales

from {{ cookiecutter.module_name }}.flow import run
from {{ cookiecutter.module_name }}.report import DRY_RUN_KEY
from {{ cookiecutter.module_name }}.settings import (
{%- if cookiecutter.warehouse == "ducklake" %}
    DUCKLAKE_BLOCK,
{%- endif %}
    FLOW_TIMEOUT_SECONDS,
    RETRIES,
    TARGET_TABLE,
    TASK_TIMEOUT_SECONDS,
)


def write_sales(folder, files: int = 3, rows: int = 2000, seed: int = 7) -> None:
    """Sample sales Parquet files, from the same generator as the ``sample_data`` module."""
    write_sample_sales(folder, rows=rows, files=files, seed=seed)


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


SUMMARY_SQL = f"SELECT category, orders, round(revenue, 2) FROM {TARGET_TABLE} ORDER BY category"
{%- if cookiecutter.warehouse == "ducklake" %}


def where(tmp_path, name: str) -> dict:
    """The flow's target: the lake saved under DUCKLAKE_BLOCK by the ``lake`` fixture."""
    return {"lake_block": DUCKLAKE_BLOCK}


def summary_rows(tmp_path, name: str) -> list[tuple]:
    from prefect_etl_blocks import DuckLakeConnection

    return DuckLakeConnection.load(DUCKLAKE_BLOCK).fetch_all(SUMMARY_SQL)
{%- else %}


def where(tmp_path, name: str) -> dict:
    """The flow's target: a DuckDB file of its own per test."""
    return {"database": str(tmp_path / f"{name}.duckdb")}


def summary_rows(tmp_path, name: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / f"{name}.duckdb"), read_only=True)
    try:
        return con.execute(SUMMARY_SQL).fetchall()
    finally:
        con.close()
{%- endif %}


def test_flow_loads_the_summary(sales_dir, tmp_path):
    rows = run(source_path=str(sales_dir / "*.parquet"), **where(tmp_path, "warehouse"))
    assert rows == 8
    assert summary_rows(tmp_path, "warehouse") == expected_summary(sales_dir)


def test_min_value_filters_rows(sales_dir, tmp_path):
    run(source_path=str(sales_dir / "*.parquet"), min_value=50.0, **where(tmp_path, "filtered"))
    assert summary_rows(tmp_path, "filtered") == expected_summary(sales_dir, 50.0)


{%- if cookiecutter.shape == "partitioned" %}


def test_only_changed_partitions_are_recomputed(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir), **where(tmp_path, "c")}
    task = {{ '"load-partition"' if cookiecutter.warehouse == "ducklake" else '"summarize-partition"' }}
    run(**kwargs)
    second = run(**kwargs, return_state=True)
    assert task_states(second, task) == ["Cached", "Cached", "Cached"]
    write_sales(sales_dir, files=3, seed=99)  # a new seed rewrites every file
    third = run(**kwargs, return_state=True)
    assert task_states(third, task) == ["Completed", "Completed", "Completed"]
    assert summary_rows(tmp_path, "c") == expected_summary(sales_dir)
{%- elif cookiecutter.load_strategy == "incremental" %}


def loaded_per_run(tmp_path, name: str) -> list[int]:
{%- if cookiecutter.warehouse == "ducklake" %}
    from prefect_etl_blocks import DuckLakeConnection

    warehouse = DuckLakeConnection.load(DUCKLAKE_BLOCK)
{%- else %}
    from prefect_etl_blocks import DuckDBConnection

    warehouse = DuckDBConnection(database=str(tmp_path / f"{name}.duckdb"), read_only=True)
{%- endif %}
    return warehouse.load_history(f"{TARGET_TABLE}_raw")["inserted"].to_list()


def test_only_new_files_are_loaded(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir / "*.parquet"), **where(tmp_path, "inc")}
    run(**kwargs)
    run(**kwargs)  # nothing new: 0 rows read
    write_sales(sales_dir / "more", files=2, rows=500, seed=11)
    for path in (sales_dir / "more").glob("*.parquet"):
        path.rename(sales_dir / f"new-{path.name}")
    run(**kwargs)  # only the two new files
    run(**kwargs)
    assert loaded_per_run(tmp_path, "inc") == [2000, 0, 500, 0]
    assert summary_rows(tmp_path, "inc") == expected_summary(sales_dir)
    write_sales(sales_dir, seed=99)  # corrected files: their earlier raw rows are replaced
    run(**kwargs)
    assert loaded_per_run(tmp_path, "inc")[-1] == 2000
    assert summary_rows(tmp_path, "inc") == expected_summary(sales_dir)
{%- else %}


def test_summary_is_cached_until_the_data_changes(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir / "*.parquet"), **where(tmp_path, "c")}
    first = run(**kwargs, return_state=True)
    second = run(**kwargs, return_state=True)
    assert first.is_completed() and second.is_completed()
    assert task_states(second, "summarize") == ["Cached"]
    write_sales(sales_dir, seed=99)
    third = run(**kwargs, return_state=True)
    assert task_states(third, "summarize") == ["Completed"]
{%- endif %}


def test_dry_run_reports_every_load_and_keeps_nothing(sales_dir, tmp_path):
    kwargs = {"source_path": str(sales_dir / "*.parquet"), **where(tmp_path, "dry")}
    run(**kwargs)
    kept = summary_rows(tmp_path, "dry")
    write_sales(sales_dir, seed=99)  # new data, which the dry run loads in full
    assert run(**kwargs, dry_run=True) == 8
    assert summary_rows(tmp_path, "dry") == kept
    report = Artifact.get(DRY_RUN_KEY)
    assert report is not None and report.data.startswith("# Dry run"), report
    assert f"| `{TARGET_TABLE}` | replace | 8 | 0 |" in report.data, report.data


def test_bad_parameter_fails_naming_it(sales_dir, tmp_path):
    state = run(source_path=str(sales_dir), min_value=-1, return_state=True, **where(tmp_path, "b"))
    assert state.is_failed()
    assert "min_value" in state.message


def test_missing_column_fails_without_retrying(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    pl.DataFrame({"category": ["a"], "price": [1.0]}).write_parquet(folder / "part.parquet")
    state = run(source_path=str(folder / "*.parquet"), return_state=True, **where(tmp_path, "m"))
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
