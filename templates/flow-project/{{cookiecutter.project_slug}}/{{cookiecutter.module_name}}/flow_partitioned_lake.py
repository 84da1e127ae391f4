"""The {{ cookiecutter.flow_name }} flow: one task per Parquet file loads its rows straight into the lake, in parallel.

A DuckLake takes many writers at once (each load is one commit; conflicts are retried), so
there is no funnel through one writer and no global write limit. Each file's task is cached on
that file's fingerprint (path, size, mtime and Parquet footer): an unchanged file is not loaded
again. The summary is then computed inside the lake (``transform.py``) and replaces ``table``.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first.
"""

from typing import Annotated

import polars as pl
from prefect import flow, task, unmapped
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect_etl_blocks import DuckLakeConnection, LoadResult, ParquetSource, SourceFingerprint
from prefect_etl_blocks.tasks import load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.report import publish_loads
from {{ cookiecutter.module_name }}.runner import task_runner
from {{ cookiecutter.module_name }}.settings import CACHE_EXPIRATION, FLOW_NAME, FLOW_TIMEOUT_SECONDS, SOURCE_PATH, TARGET_TABLE, TASK_OPTIONS
from {{ cookiecutter.module_name }}.transform import partition_rows, summary_query
from {{ cookiecutter.module_name }}.warehouse import TARGET, connect


# delete-insert on source_file makes a re-run replace that file's rows, never duplicate them;
# cached on the file's data (and dry_run, an input), so an unchanged file is not loaded again.
@task(
    name="load-partition",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def load_partition(partition: ParquetSource, min_value: float, table: str, lake: DuckLakeConnection, dry_run: bool = False) -> LoadResult:
    """Load one file's rows into ``table``, tagged with the file they came from."""
    rows = partition_rows(partition.scan(), min_value).with_columns(pl.lit(partition.path).alias("source_file"))
    return lake.load_frame(rows, table, mode="delete-insert", keys="source_file", dry_run=dry_run, return_result=True)


# Reads the lake, which changes between runs: never cached.
@task(name="summarize-lake", cache_policy=NO_CACHE, **TASK_OPTIONS)
def summarize_lake(rows_table: str, files: list[str], lake: DuckLakeConnection) -> pl.DataFrame:
    """The summary over the rows of the files that exist now, computed inside the lake."""
    return lake.query(summary_query(rows_table), {"files": files})


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
    lake_block: str = TARGET,
    min_value: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
    dry_run: bool = False,
) -> int:
    """Load every file of ``source_path`` into ``<table>_rows`` in parallel, then replace ``table`` with the summary.

    Args:
        source_path: Parquet folder, glob or s3:// prefix; one task run per matched file.
        table: target table (schema-qualified names are fine); the rows go to ``<table>_rows``.
        lake_block: name of the saved DuckLakeConnection block.
        min_value: keep rows whose value is above this (0 or more).
        dry_run: run every load in full and report it (a markdown artifact), then keep nothing.
    """
    dataset = ParquetSource(path=source_path)
    files = dataset.files()
    partitions = [dataset.model_copy(update={"path": path}) for path in files]
    lake = connect(lake_block)
    rows_table = f"{table}_rows"
    # unmapped: the block and the table name are the same for every partition (a block is iterable).
    futures = load_partition.map(partitions, min_value=min_value, table=unmapped(rows_table), lake=unmapped(lake), dry_run=dry_run)
    loads = futures.result()
    print(f"Loaded {len(partitions)} partitions ({sum(load.rows for load in loads)} rows) into {rows_table}")
    summary = summarize_lake(rows_table, files, lake)
    result = load_to_duckdb(summary, table, lake, mode="replace", dry_run=dry_run, return_result=True)
    publish_loads([*loads, result], dry_run=dry_run)
    print(f"Loaded {result.rows} rows into {table} in the lake {lake_block!r}")
    return result.rows


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
