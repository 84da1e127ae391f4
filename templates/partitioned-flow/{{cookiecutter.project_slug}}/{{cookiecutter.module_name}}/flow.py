"""The {{ cookiecutter.flow_name }} flow: one task per Parquet file, in parallel, then one load.

Each file is summarised by its own task run (cached on that file's fingerprint, so only
changed files are recomputed); the partial results are combined and written to DuckDB once.
Run locally with ``python -m {{ cookiecutter.module_name }}.flow``.
"""

from typing import Annotated

import polars as pl
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.concurrency.sync import concurrency
{%- if cookiecutter.task_runner != "dask" %}
from prefect.task_runners import ThreadPoolTaskRunner
{%- endif %}
from prefect.tasks import exponential_backoff
{%- if cookiecutter.task_runner == "dask" %}
from prefect_dask import DaskTaskRunner
{%- endif %}
from prefect_etl_blocks import DuckDBConnection, ParquetSource, SourceFingerprint
from prefect_etl_blocks.tasks import load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.settings import (
    CACHE_EXPIRATION,
{%- if cookiecutter.task_runner == "dask" %}
    DASK_ADDRESS,
{%- endif %}
    DUCKDB_PATH,
    FLOW_NAME,
    MAX_CONCURRENT_WRITES,
    MAX_WORKERS,
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


def task_runner():
    """The flow's task runner: {{ cookiecutter.task_runner }} with MAX_WORKERS workers."""
{%- if cookiecutter.task_runner == "dask" %}
    if DASK_ADDRESS:  # an existing cluster
        return DaskTaskRunner(address=DASK_ADDRESS)
    return DaskTaskRunner(cluster_kwargs={"n_workers": MAX_WORKERS, "threads_per_worker": 1, "processes": False})
{%- else %}
    return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
{%- endif %}


@task(
    name="summarize-partition",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=RETRY_DELAY_SECONDS) if RETRY_DELAY_SECONDS else 0,
    timeout_seconds=TIMEOUT_SECONDS,
    **RESULTS,
)
def summarize_partition(partition: ParquetSource) -> pl.DataFrame:
    """Partial sums for one file. Replace with your own per-partition work."""
    return (
        partition.scan()
        .group_by("category")
        .agg(pl.len().alias("orders"), pl.col("value").sum().alias("revenue"))
        .collect()
    )


def combine(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Combine partial sums into the final summary."""
    return (
        pl.concat(parts)
        .group_by("category")
        .agg(pl.col("orders").sum(), pl.col("revenue").sum().round(2))
        .with_columns((pl.col("revenue") / pl.col("orders")).round(2).alias("avg_order_value"))
        .sort("category")
    )


@flow(
    name=FLOW_NAME,
    task_runner=task_runner(),
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
    """Summarise every file of ``source_path`` in parallel and replace ``table`` with the total.

    Args:
        source_path: Parquet folder, glob or s3:// prefix; one task run per matched file.
        table: target DuckDB table.
        database: DuckDB file.
        min_value: keep rows whose value is above this (0 or more).
    """
    dataset = ParquetSource(path=source_path)
    predicate = f"value > {float(min_value)!r}"
    partitions = [dataset.model_copy(update={"path": path, "filter": predicate}) for path in dataset.files()]
    futures = summarize_partition.map(partitions)
    summary = combine(futures.result())
    print(f"Summarised {len(partitions)} partitions")
    with concurrency(WRITE_LIMIT_NAME, occupy=1, strict=STRICT_WRITE_LIMIT):
        rows = load_to_duckdb(summary, table, DuckDBConnection(database=database), mode="replace")
    print(f"Loaded {rows} rows into {table} (write limit {WRITE_LIMIT_NAME}: {MAX_CONCURRENT_WRITES})")
    return rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
