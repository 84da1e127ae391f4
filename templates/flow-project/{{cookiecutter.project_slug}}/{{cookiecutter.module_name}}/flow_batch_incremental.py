{%- set target = "lake_block" if cookiecutter.warehouse == "ducklake" else "database" -%}
"""The {{ cookiecutter.flow_name }} flow, incremental: new Parquet files -> a raw table -> the summary, by SQL.

Each run loads only the files not loaded yet (or changed since) into ``<table>_raw``; the
manifest of loaded files commits with the rows, so a crash never loads a file twice. The
summary is then rebuilt from every raw row inside the warehouse (``transform.py``).

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first.
"""

from typing import Annotated

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect_etl_blocks import ParquetSource
from prefect_etl_blocks.loading import LINEAGE_COLUMN
from prefect_etl_blocks.tasks import load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.report import publish_loads
from {{ cookiecutter.module_name }}.settings import FLOW_NAME, FLOW_TIMEOUT_SECONDS, SOURCE_PATH, TARGET_TABLE, TASK_OPTIONS
from {{ cookiecutter.module_name }}.transform import summary_query
from {{ cookiecutter.module_name }}.warehouse import TARGET, Warehouse, connect, write_slot


# Reads the warehouse, which changes between runs: never cached.
@task(name="summarize-raw", cache_policy=NO_CACHE, **TASK_OPTIONS)
def summarize_raw(raw_table: str, min_value: float, warehouse: Warehouse) -> pl.DataFrame:
    """The summary over every raw row loaded so far, computed by SQL inside the warehouse."""
    return warehouse.query(summary_query(raw_table), {"min_value": min_value})


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
    """Load the new files of ``source_path`` into ``<table>_raw``, then rebuild ``table`` from it.

    Args:
        source_path: Parquet file, folder, glob or s3:// URI.
        table: target table (schema-qualified names are fine); the raw rows go to ``<table>_raw``.
        {{ target }}: {{ "name of the saved DuckLakeConnection block." if target == "lake_block" else "DuckDB file." }}
        min_value: keep rows whose value is above this (0 or more).
        dry_run: run every load in full and report it (a markdown artifact), then keep nothing.
            The summary is then computed from the raw rows kept so far.
    """
    source = ParquetSource(path=source_path, columns=["category", "quantity", "value"])
    raw_table = f"{table}_raw"
    warehouse = connect({{ target }})
    with write_slot():
        # Only files not loaded yet (or changed) are read; the manifest commits with the rows.
        # LINEAGE_COLUMN records each raw row's file, so a corrected file replaces its rows.
        raw = load_to_duckdb(
            source, raw_table, warehouse, incremental=True, lineage_column=LINEAGE_COLUMN, dry_run=dry_run, return_result=True
        )
        summary = summarize_raw(raw_table, min_value, warehouse)
        result = load_to_duckdb(summary, table, warehouse, mode="replace", dry_run=dry_run, return_result=True)
    publish_loads([raw, result], dry_run=dry_run)
    print(f"Loaded {raw.rows} new rows into {raw_table}; {table} rebuilt with {result.rows} rows")
    return result.rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
