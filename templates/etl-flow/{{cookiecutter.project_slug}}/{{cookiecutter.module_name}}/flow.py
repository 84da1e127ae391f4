"""The {{ cookiecutter.flow_name }} flow: Parquet -> Polars -> DuckDB.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set). Edit ``transform`` for your data.
"""

from typing import Annotated

import polars as pl
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.concurrency.sync import concurrency
from prefect.tasks import exponential_backoff
from prefect_etl_blocks import DuckDBConnection, FrameInputs, ParquetSource, SourceFingerprint
from prefect_etl_blocks.tasks import extract_parquet, load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.settings import (
    CACHE_EXPIRATION,
    DUCKDB_PATH,
    FLOW_NAME,
    MAX_CONCURRENT_WRITES,
{%- if cookiecutter.result_storage == "s3" %}
    RESULT_STORAGE_BLOCK,
{%- endif %}
    RETRIES,
    RETRY_DELAY_SECONDS,
    SOURCE_PATH,
    STRICT_WRITE_LIMIT,
    TARGET_TABLE,
    TIMEOUT_SECONDS,
    WRITE_LIMIT_NAME,
)

RESULTS = {
    "persist_result": True,
    "result_serializer": "polars-parquet",
{%- if cookiecutter.result_storage == "s3" %}
    "result_storage": RESULT_STORAGE_BLOCK,
{%- endif %}
}
RETRY_OPTIONS = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_DELAY_SECONDS) if RETRY_DELAY_SECONDS else 0,
    "retry_jitter_factor": 0.2 if RETRY_DELAY_SECONDS else None,
    "timeout_seconds": TIMEOUT_SECONDS,
}

# Cached on the source's data (files, sizes, mtimes/ETags), not just its path.
extract = extract_parquet.with_options(
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **RESULTS,
    **RETRY_OPTIONS,
)


@task(
    name="transform",
    cache_policy=FrameInputs() + TASK_SOURCE,
    cache_expiration=CACHE_EXPIRATION,
    **RESULTS,
    **RETRY_OPTIONS,
)
def transform(sales: pl.DataFrame) -> pl.DataFrame:
    """Summarise sales by category. Replace with your own transformation."""
    return (
        sales.group_by("category")
        .agg(
            pl.len().alias("orders"),
            pl.col("value").sum().round(2).alias("revenue"),
            pl.col("value").mean().round(2).alias("avg_order_value"),
        )
        .sort("category")
    )


@flow(
    name=FLOW_NAME,
    timeout_seconds=TIMEOUT_SECONDS,
    log_prints=True,
{%- if cookiecutter.notifications == "email" %}
    on_failure=[on_failure],
    on_crashed=[on_failure],
{%- endif %}
)
def run(
    source_path: str = SOURCE_PATH,
    table: str = TARGET_TABLE,
    database: str = DUCKDB_PATH,
    min_value: Annotated[float, Field(ge=0)] = 0.0,
) -> int:
    """Extract rows with value > min_value, summarise them, and replace ``table``.

    Args:
        source_path: Parquet file, folder, glob or s3:// URI.
        table: target DuckDB table (schema-qualified names are fine).
        database: DuckDB file.
        min_value: keep rows whose value is above this (0 or more).
    """
    source = ParquetSource(path=source_path, filter=f"value > {float(min_value)!r}")
    summary = transform(extract(source))
    # At most MAX_CONCURRENT_WRITES runs write DuckDB at once; the others queue here.
    with concurrency(WRITE_LIMIT_NAME, occupy=1, strict=STRICT_WRITE_LIMIT):
        rows = load_to_duckdb(summary, table, DuckDBConnection(database=database), mode="replace")
    print(f"Loaded {rows} rows into {table} (write limit {WRITE_LIMIT_NAME}: {MAX_CONCURRENT_WRITES})")
    return rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
