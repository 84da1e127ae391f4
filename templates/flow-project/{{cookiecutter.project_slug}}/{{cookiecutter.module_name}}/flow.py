{%- if cookiecutter.shape == "partitioned" -%}
"""The {{ cookiecutter.flow_name }} flow: one cached task per Parquet file, in parallel, then one load.

Each file is summarised by its own task run, cached on that file's fingerprint (path, size,
mtime and Parquet footer), so only changed files are recomputed. The partial sums are combined
and written to DuckDB once, under the global write limit.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first.
"""
{%- else -%}
"""The {{ cookiecutter.flow_name }} flow: Parquet -> Polars summary -> DuckDB, as one streamed pass.

The summary task scans the Parquet files lazily, so the filter and the group-by run as one
streamed plan and no row-level frame is materialised. It is cached on the files' fingerprint
(path, size, mtime and Parquet footer): a run over unchanged files reads nothing.

Run it locally with ``python -m {{ cookiecutter.module_name }}.flow`` (an ephemeral Prefect
server starts when PREFECT_API_URL is not set); ``python -m {{ cookiecutter.module_name }}.sample_data``
writes sample files first. Edit ``summarize`` for your data.
"""
{%- endif %}

from typing import Annotated

import polars as pl
from prefect import flow, task{% if cookiecutter.warehouse == "ducklake" and cookiecutter.shape == "partitioned" %}, unmapped{% endif %}
from prefect.cache_policies import INPUTS, {% if cookiecutter.load_strategy == "incremental" %}NO_CACHE, {% endif %}TASK_SOURCE
{%- if cookiecutter.warehouse == "duckdb" %}
from prefect.concurrency.sync import concurrency
{%- endif %}
{%- if cookiecutter.shape == "partitioned" and cookiecutter.task_runner == "threads" %}
from prefect.task_runners import ThreadPoolTaskRunner
{%- endif %}
{%- if cookiecutter.shape == "partitioned" and cookiecutter.task_runner == "dask" %}
from prefect_dask import DaskTaskRunner
{%- endif %}
{%- if cookiecutter.warehouse == "ducklake" %}
from prefect_etl_blocks import DuckLakeConnection, ParquetSource, SourceFingerprint
{%- else %}
from prefect_etl_blocks import DuckDBConnection, ParquetSource, SourceFingerprint
{%- endif %}
{%- if (cookiecutter.warehouse == "ducklake" and cookiecutter.shape == "partitioned") or cookiecutter.load_strategy == "incremental" %}
from prefect_etl_blocks.identifiers import quote_table
{%- endif %}
{%- if cookiecutter.load_strategy == "incremental" %}
from prefect_etl_blocks.loading import LINEAGE_COLUMN
{%- endif %}
{%- if cookiecutter.shape == "batch" %}
from prefect_etl_blocks.sales import summarize_sales
{%- endif %}
from prefect_etl_blocks.tasks import load_to_duckdb
from pydantic import Field

{% if cookiecutter.notifications == "email" -%}
from {{ cookiecutter.module_name }}.alerts import on_failure
{% endif -%}
from {{ cookiecutter.module_name }}.settings import (
    CACHE_EXPIRATION,
{%- if cookiecutter.shape == "partitioned" and cookiecutter.task_runner == "dask" %}
    DASK_ADDRESS,
{%- endif %}
{%- if cookiecutter.warehouse == "ducklake" %}
    DUCKLAKE_BLOCK,
{%- else %}
    DUCKDB_PATH,
{%- endif %}
    FLOW_NAME,
    FLOW_TIMEOUT_SECONDS,
{%- if cookiecutter.warehouse == "duckdb" %}
    MAX_CONCURRENT_WRITES,
{%- endif %}
{%- if cookiecutter.shape == "partitioned" %}
    MAX_WORKERS,
{%- endif %}
    SOURCE_PATH,
{%- if cookiecutter.warehouse == "duckdb" %}
    STRICT_WRITE_LIMIT,
{%- endif %}
    TARGET_TABLE,
    TASK_OPTIONS,
{%- if cookiecutter.warehouse == "duckdb" %}
    WRITE_LIMIT_NAME,
{%- endif %}
)

{%- if cookiecutter.shape == "partitioned" %}


def task_runner():
    """The flow's task runner: {{ cookiecutter.task_runner }} with MAX_WORKERS workers."""
{%- if cookiecutter.task_runner == "dask" %}
    if DASK_ADDRESS:  # an existing cluster
        return DaskTaskRunner(address=DASK_ADDRESS)
{%- if cookiecutter.warehouse == "ducklake" %}
    # Worker processes: each loads its own partitions straight into the lake, in parallel.
    return DaskTaskRunner(cluster_kwargs={"n_workers": MAX_WORKERS, "threads_per_worker": 1, "processes": True})
{%- else %}
    return DaskTaskRunner(cluster_kwargs={"n_workers": MAX_WORKERS, "threads_per_worker": 1, "processes": False})
{%- endif %}
{%- else %}
    return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
{%- endif %}


{%- if cookiecutter.warehouse == "ducklake" %}
# Each worker loads its file's rows straight into the lake: no funnel through one writer.
# delete-insert on source_file makes a re-run replace that file's rows, never duplicate them;
# cached on the file's data, so an unchanged file is not loaded again.
@task(
    name="load-partition",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def load_partition(partition: ParquetSource, min_value: float, table: str, lake: DuckLakeConnection) -> int:
    """Load one file's rows above ``min_value`` into ``table``, tagged with the file they came from."""
    rows = (
        partition.scan()
        .filter(pl.col("value") > pl.lit(min_value))
        .with_columns(pl.lit(partition.path).alias("source_file"))
    )
    return lake.load_frame(rows, table, mode="delete-insert", keys="source_file")


@task(name="summarize-lake", **TASK_OPTIONS)
def summarize_lake(rows_table: str, files: list[str], lake: DuckLakeConnection) -> pl.DataFrame:
    """The summary over the rows of the files that exist now, computed inside the lake."""
    return lake.query(
        "SELECT category, count(*) AS orders, round(sum(value), 2) AS revenue, "
        "round(sum(value) / count(*), 2) AS avg_order_value "
        f"FROM {quote_table(rows_table)} WHERE list_contains($files, source_file) "
        "GROUP BY category ORDER BY category",
        {"files": files},
    )
{%- else %}
# Cached on the file's data (path, size, mtime, Parquet footer), not just its path.
@task(
    name="summarize-partition",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def summarize_partition(partition: ParquetSource, min_value: float) -> pl.DataFrame:
    """Partial sums for one file. Replace with your own per-partition work."""
    return (
        partition.scan()
        .filter(pl.col("value") > pl.lit(min_value))
        .group_by("category")
        .agg(pl.len().alias("orders"), pl.col("value").sum().alias("revenue"))
        .collect()
    )


def combine(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Combine the partial sums into the final summary (cheap: one row per category and file)."""
    return (
        pl.concat(parts)
        .group_by("category")
        .agg(pl.col("orders").sum(), pl.col("revenue").sum().round(2))
        .with_columns((pl.col("revenue") / pl.col("orders")).round(2).alias("avg_order_value"))
        .sort("category")
    )
{%- endif %}
{%- else %}


# Cached on the source's data (files, sizes, mtimes, Parquet footers) and the parameters.
@task(
    name="summarize",
    cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
    cache_expiration=CACHE_EXPIRATION,
    **TASK_OPTIONS,
)
def summarize(source: ParquetSource, min_value: float) -> pl.DataFrame:
    """Summarise sales by category in one streamed pass. Replace with your own transformation."""
    return summarize_sales(source.scan(), min_value=min_value)
{%- if cookiecutter.load_strategy == "incremental" %}


# Reads the warehouse, which changes between runs: never cached.
@task(name="summarize-raw", cache_policy=NO_CACHE, **TASK_OPTIONS)
def summarize_raw(raw_table: str, min_value: float, warehouse: {{ "DuckLakeConnection" if cookiecutter.warehouse == "ducklake" else "DuckDBConnection" }}) -> pl.DataFrame:
    """The summary over every raw row loaded so far, computed by SQL inside the warehouse."""
    return warehouse.query(
        "SELECT category, count(*) AS orders, sum(quantity) AS units, round(sum(value), 2) AS revenue, "
        f"round(avg(value), 2) AS avg_order_value FROM {quote_table(raw_table)} "
        "WHERE value > $min_value GROUP BY category ORDER BY category",
        {"min_value": min_value},
    )
{%- endif %}
{%- endif %}


@flow(
    name=FLOW_NAME,
{%- if cookiecutter.shape == "partitioned" %}
    task_runner=task_runner(),
{%- endif %}
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
{%- if cookiecutter.warehouse == "ducklake" %}
    lake_block: str = DUCKLAKE_BLOCK,
{%- else %}
    database: str = DUCKDB_PATH,
{%- endif %}
    min_value: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0,
) -> int:
{%- if cookiecutter.shape == "partitioned" %}
    """Summarise every file of ``source_path`` in parallel and replace ``table`` with the total.

    Args:
        source_path: Parquet folder, glob or s3:// prefix; one task run per matched file.
        table: target DuckDB table (schema-qualified names are fine).
{%- if cookiecutter.warehouse == "ducklake" %}
        lake_block: name of the saved DuckLakeConnection block.
{%- else %}
        database: DuckDB file.
{%- endif %}
        min_value: keep rows whose value is above this (0 or more).
    """
    dataset = ParquetSource(path=source_path)
    files = dataset.files()
    partitions = [dataset.model_copy(update={"path": path}) for path in files]
{%- if cookiecutter.warehouse == "ducklake" %}
    lake = DuckLakeConnection.load(lake_block)
    rows_table = f"{table}_rows"
    # unmapped: the block and the table name are the same for every partition (a block is iterable).
    futures = load_partition.map(partitions, min_value=min_value, table=unmapped(rows_table), lake=unmapped(lake))
    loaded = sum(futures.result())
    print(f"Loaded {len(partitions)} partitions ({loaded} rows) into {rows_table}")
    summary = summarize_lake(rows_table, files, lake)
{%- else %}
    futures = summarize_partition.map(partitions, min_value=min_value)
    summary = combine(futures.result())
    print(f"Summarised {len(partitions)} partitions")
{%- endif %}
{%- else %}
    """Summarise rows with value > min_value by category and replace ``table`` with the result.

    Args:
        source_path: Parquet file, folder, glob or s3:// URI.
        table: target DuckDB table (schema-qualified names are fine).
{%- if cookiecutter.warehouse == "ducklake" %}
        lake_block: name of the saved DuckLakeConnection block.
{%- else %}
        database: DuckDB file.
{%- endif %}
        min_value: keep rows whose value is above this (0 or more).
    """
    source = ParquetSource(path=source_path, columns=["category", "quantity", "value"])
{%- if cookiecutter.load_strategy == "incremental" %}
    raw_table = f"{table}_raw"
{%- if cookiecutter.warehouse == "ducklake" %}
    warehouse = DuckLakeConnection.load(lake_block)
    # Only files not loaded yet (or changed) are read; the manifest commits with the rows.
    # LINEAGE_COLUMN records each raw row's file, so a corrected file replaces its rows.
    new_rows = load_to_duckdb(source, raw_table, warehouse, incremental=True, lineage_column=LINEAGE_COLUMN)
    summary = summarize_raw(raw_table, min_value, warehouse)
    rows = load_to_duckdb(summary, table, warehouse, mode="replace")
{%- else %}
    warehouse = DuckDBConnection(database=database)
    # At most MAX_CONCURRENT_WRITES runs write DuckDB at once; the others queue here.
    with concurrency(WRITE_LIMIT_NAME, occupy=1, strict=STRICT_WRITE_LIMIT):
        # Only files not loaded yet (or changed) are read; the manifest commits with the rows.
        # LINEAGE_COLUMN records each raw row's file, so a corrected file replaces its rows.
        new_rows = load_to_duckdb(
            source, raw_table, warehouse, incremental=True, lineage_column=LINEAGE_COLUMN
        )
        summary = summarize_raw(raw_table, min_value, warehouse)
        rows = load_to_duckdb(summary, table, warehouse, mode="replace")
    print(f"Write limit {WRITE_LIMIT_NAME}: {MAX_CONCURRENT_WRITES} at once")
{%- endif %}
    print(f"Loaded {new_rows} new rows into {raw_table}; {table} rebuilt with {rows} rows")
    return rows
{%- else %}
    summary = summarize(source, min_value)
{%- endif %}
{%- endif %}
{%- if cookiecutter.shape == "batch" and cookiecutter.load_strategy == "incremental" %}
{%- elif cookiecutter.warehouse == "ducklake" %}
    # A DuckLake takes many writers at once (each load is one commit; conflicts are retried),
    # so no global write limit is held here.
    rows = load_to_duckdb(summary, table, {% if cookiecutter.shape == "partitioned" %}lake{% else %}DuckLakeConnection.load(lake_block){% endif %}, mode="replace")
    print(f"Loaded {rows} rows into {table} in the lake {lake_block!r}")
{%- else %}
    # At most MAX_CONCURRENT_WRITES runs write DuckDB at once; the others queue here.
    with concurrency(WRITE_LIMIT_NAME, occupy=1, strict=STRICT_WRITE_LIMIT):
        rows = load_to_duckdb(summary, table, DuckDBConnection(database=database), mode="replace")
    print(f"Loaded {rows} rows into {table} (write limit {WRITE_LIMIT_NAME}: {MAX_CONCURRENT_WRITES})")
{%- endif %}
{%- if not (cookiecutter.shape == "batch" and cookiecutter.load_strategy == "incremental") %}
    return rows
{%- endif %}


if __name__ == "__main__":
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
    run()
