"""The {{ cookiecutter.flow_name }} flow: one cached task per Parquet file, in parallel, then one load.

Each file is summarised by its own task run, cached on that file's fingerprint (path, size,
mtime and Parquet footer), so only changed files are recomputed. The partial sums are combined
(``transform.py``) and written to DuckDB once, under the global write limit.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first.
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
from {{ cookiecutter.module_name }}.runner import task_runner
from {{ cookiecutter.module_name }}.settings import CACHE_EXPIRATION, FLOW_NAME, FLOW_TIMEOUT_SECONDS, SOURCE_PATH, TARGET_TABLE, TASK_OPTIONS
from {{ cookiecutter.module_name }}.transform import combine, partial_summary
from {{ cookiecutter.module_name }}.warehouse import TARGET, connect, write_slot


# Cached on the file's data (path, size, mtime, Parquet footer), not just its path.
@task(
    name="summarize-partition",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def summarize_partition(partition: ParquetSource, min_value: float) -> pl.DataFrame:
    """Partial sums for one file (the transformation is in transform.py)."""
    return partial_summary(partition.scan(), min_value)


@flow(
    name=FLOW_NAME,
    task_runner=task_runner(),
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
    database: str = TARGET,
    min_value: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
    dry_run: bool = False,
) -> int:
    """Summarise every file of ``source_path`` in parallel and replace ``table`` with the total.

    Args:
        source_path: Parquet folder, glob or s3:// prefix; one task run per matched file.
        table: target DuckDB table (schema-qualified names are fine).
        database: DuckDB file.
        min_value: keep rows whose value is above this (0 or more).
        dry_run: run the load in full and report it (a markdown artifact), then keep nothing.
    """
    dataset = ParquetSource(path=source_path)
    partitions = [dataset.model_copy(update={"path": path}) for path in dataset.files()]
    futures = summarize_partition.map(partitions, min_value=min_value)
    summary = combine(futures.result())
    print(f"Summarised {len(partitions)} partitions")
    with write_slot():
        result = load_to_duckdb(summary, table, connect(database), mode="replace", dry_run=dry_run, return_result=True)
    publish_loads([result], dry_run=dry_run)
    print(f"Loaded {result.rows} rows into {table}" + (" (dry run: nothing kept)" if dry_run else ""))
    return result.rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
