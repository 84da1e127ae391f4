"""Prefect tasks over the blocks: ``extract_parquet``, ``load_to_duckdb``, ``run_duckdb_query``.

They are thin wrappers that add what a flow author would otherwise repeat: retries for
transient failures only (a lock held too long, a network error) and never for bad data, logging
through ``get_run_logger()``, and, for loads, a markdown artifact in the Prefect UI with the row
count, the table's schema and a few sample rows.

All three are sync tasks (Prefect runs them in worker threads from async flows). Change their
options per call site with ``.with_options(...)``, for example
``extract_parquet.with_options(cache_policy=INPUTS + SourceFingerprint())``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from prefect_etl_blocks.duckdb import DuckDBConnection, LoadMode, quote_table
from prefect_etl_blocks.errors import DuckDBLockTimeoutError, PrefectETLBlocksError
from prefect_etl_blocks.parquet import ParquetSource

SAMPLE_ROWS = 5


def _retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed run unless it failed on bad input (retrying cannot fix bad data)."""
    try:
        state.result()
    except DuckDBLockTimeoutError:
        return True
    except (PrefectETLBlocksError, ValueError, TypeError, KeyError):
        return False
    except Exception:
        return True
    return False


# Two retries with a growing delay, for transient failures only (see _retry_transient_only).
RETRY_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": _retry_transient_only,
}


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for a table or path."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unnamed"
    return f"{prefix}-{slug}"[:100].rstrip("-")


def _markdown_table(frame: pl.DataFrame) -> str:
    if frame.width == 0:
        return "_(no columns)_"

    def cell(value: Any) -> str:
        text = "null" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")[:80]

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * frame.width
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def load_report(connection: DuckDBConnection, table: str, rows: int, mode: str) -> str:
    """The markdown shown as the load's artifact: row count, schema and sample rows."""
    target = quote_table(table)
    schema = connection.query(f"DESCRIBE {target}").select(
        pl.col("column_name").alias("column"), pl.col("column_type").alias("type")
    )
    total = connection.fetch_one(f"SELECT count(*) FROM {target}")
    sample = connection.query(f"SELECT * FROM {target} LIMIT {SAMPLE_ROWS}")
    return "\n\n".join(
        [
            f"# Loaded `{table}`",
            f"**{rows:,}** rows written ({mode}); the table now has **{(total or [0])[0]:,}** rows.",
            f"Database: `{connection.database_path}`",
            "## Schema",
            _markdown_table(schema),
            f"## Sample ({min(SAMPLE_ROWS, sample.height)} rows)",
            _markdown_table(sample),
        ]
    )


@task(name="extract-parquet", task_run_name="extract-parquet-{source.path}", **RETRY_OPTIONS)
def extract_parquet(source: ParquetSource) -> pl.DataFrame:
    """Read a :class:`~prefect_etl_blocks.ParquetSource` into a ``pl.DataFrame``.

    Columns, filter and schema checks of the source apply. Retries twice on transient errors
    (network, S3), never on bad data.

    Example:
        ```python
        from prefect import flow
        from prefect_etl_blocks import ParquetSource
        from prefect_etl_blocks.tasks import extract_parquet

        @flow
        def show(path: str) -> int:
            return extract_parquet(ParquetSource(path=path)).height
        ```
    """
    logger = get_run_logger()
    files = source.files()
    frame = source.read()
    logger.info(
        "Read %s rows x %s columns from %s file(s) at %s", frame.height, frame.width, len(files), source.path
    )
    return frame


@task(name="load-to-duckdb", task_run_name="load-to-duckdb-{table}", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def load_to_duckdb(
    frame: Any,
    table: str,
    connection: DuckDBConnection,
    mode: LoadMode = "replace",
    keys: Sequence[str] | None = None,
) -> int:
    """Load a frame (or a ``ParquetSource``, streamed) into a DuckDB table and report it.

    Args:
        frame: a ``pl.DataFrame``, ``pl.LazyFrame``, Arrow table, or a
            :class:`~prefect_etl_blocks.ParquetSource` (loaded with ``load_parquet``).
        table: target table, optionally schema-qualified.
        connection: the :class:`~prefect_etl_blocks.DuckDBConnection` to write to.
        mode: ``replace``, ``append``, ``upsert`` (needs ``keys``) or ``fail``.
        keys: key columns for ``upsert``.

    Returns:
        Rows written. A markdown artifact (key ``duckdb-load-<table>``) shows the row count,
        schema and sample rows in the Prefect UI.
    """
    logger = get_run_logger()
    if isinstance(frame, ParquetSource):
        rows = connection.load_parquet(frame, table, mode=mode, keys=keys)
    else:
        rows = connection.load_frame(frame, table, mode=mode, keys=keys)
    logger.info("Loaded %s rows into %s (%s) in %s", rows, table, mode, connection.database_path)
    create_markdown_artifact(
        markdown=load_report(connection, table, rows, mode),
        key=artifact_key("duckdb-load", table),
        description=f"{rows} rows loaded into {table}",
    )
    return rows


@task(name="run-duckdb-query", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def run_duckdb_query(
    sql: str, connection: DuckDBConnection, parameters: Sequence[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Run SQL on a DuckDB database and return the result as a ``pl.DataFrame``.

    Use ``?`` or ``$name`` placeholders with ``parameters``; never format values into ``sql``.
    """
    logger = get_run_logger()
    result = connection.query(sql, parameters)
    logger.info("Query returned %s rows x %s columns", result.height, result.width)
    return result
