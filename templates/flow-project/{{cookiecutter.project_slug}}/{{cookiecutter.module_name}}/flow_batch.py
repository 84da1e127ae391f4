{%- set target = "lake_block" if cookiecutter.warehouse == "ducklake" else "database" -%}
"""The {{ cookiecutter.flow_name }} flow: Parquet -> Polars summary -> the warehouse, as one streamed pass.

The summary task scans the Parquet files lazily, so the filter and the group-by run as one
streamed plan and no row-level frame is materialised. It is cached on the files' fingerprint
(path, size, mtime and Parquet footer): a run over unchanged files reads nothing.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first. Edit ``transform.py`` for your data.
"""

from typing import Annotated

import polars as pl
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect_etl_blocks import ParquetSource, SourceFingerprint
from prefect_etl_blocks.tasks import load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.report import publish_loads
from {{ cookiecutter.module_name }}.settings import CACHE_EXPIRATION, FLOW_NAME, FLOW_TIMEOUT_SECONDS, SOURCE_PATH, TARGET_TABLE, TASK_OPTIONS
from {{ cookiecutter.module_name }}.transform import summarize_sales
from {{ cookiecutter.module_name }}.warehouse import TARGET, connect, write_slot


# Cached on the source's data (files, sizes, mtimes, Parquet footers) and the parameters.
@task(
    name="summarize",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def summarize(source: ParquetSource, min_value: float) -> pl.DataFrame:
    """Summarise sales by category in one streamed pass (the transformation is in transform.py)."""
    return summarize_sales(source.scan(), min_value=min_value)


@flow(
    name=FLOW_NAME,
    timeout_seconds=FLOW_TIMEOUT_SECONDS,
    log_prints=True,
{%- if cookiecutter.notifications == "email" %}
    on_failure=[on_failure],
    on_crashed=[on_failure],
{%- endif %}
)
def run(
    source_path: str = SOURCE_PATH,
    table: str = TARGET_TABLE,
    {{ target }}: str = TARGET,
    min_value: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
    dry_run: bool = False,
) -> int:
    """Summarise rows with value > min_value by category and replace ``table`` with the result.

    Args:
        source_path: Parquet file, folder, glob or s3:// URI.
        table: target table (schema-qualified names are fine).
        {{ target }}: {{ "name of the saved DuckLakeConnection block." if target == "lake_block" else "DuckDB file." }}
        min_value: keep rows whose value is above this (0 or more).
        dry_run: run every load in full and report it (a markdown artifact), then keep nothing.
    """
    summary = summarize(ParquetSource(path=source_path, columns=["category", "quantity", "value"]), min_value)
    with write_slot():
        result = load_to_duckdb(
            summary, table, connect({{ target }}), mode="replace", dry_run=dry_run, return_result=True
        )
    publish_loads([result], dry_run=dry_run)
    print(f"Loaded {result.rows} rows into {table}" + (" (dry run: nothing kept)" if dry_run else ""))
    return result.rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
