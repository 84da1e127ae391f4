"""Prefect tasks over the blocks: ``extract_parquet``, ``load_to_duckdb``, ``run_duckdb_query``.

They are thin wrappers that add what a flow author would otherwise repeat: retries for
transient failures only (a lock held too long, a network error, a transaction conflict; see
:func:`retry_transient`) and never for bad data, logging through ``get_run_logger()``, and, for
loads, a markdown artifact in the Prefect UI with what the load did (strategy, rows inserted,
updated and deleted, schema changes, checks), the table's schema and a few sample rows.

All three are sync tasks (Prefect runs them in worker threads from async flows). Change their
options per call site with ``.with_options(...)``, for example
``extract_parquet.with_options(cache_policy=INPUTS + SourceFingerprint())``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from prefect_etl_blocks.blocks.duckdb import DuckDBConnection, LoadMode, quote_table
from prefect_etl_blocks.blocks.loads import asset_keys
from prefect_etl_blocks.blocks.parquet import ParquetSource
from prefect_etl_blocks.core.checks import Check
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.loading.connections import LOCK_WAIT_CAP
from prefect_etl_blocks.core.loading.contracts import OnSchemaChange
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.options import CreateMode, LoadOptions, OnCheckFailure
from prefect_etl_blocks.runtime import quarantine_artifact
from prefect_etl_blocks.runtime.retries import RETRY_OPTIONS, retry_transient

SAMPLE_ROWS = 5
# Share of a task's timeout_seconds a lock wait may use, so that a busy file fails as
# DuckDBLockTimeoutError (transient, retried) before Prefect's TimedOut would.
_LOCK_SHARE_OF_TIMEOUT = 0.8

__all__ = [
    "RETRY_OPTIONS",
    "artifact_key",
    "extract_parquet",
    "load_report",
    "load_to_duckdb",
    "retry_transient",
    "run_duckdb_query",
]


@contextmanager
def _lock_wait_within_task_timeout() -> Iterator[None]:
    """Cap DuckDB lock waits below the running task's ``timeout_seconds`` (if any)."""
    context = TaskRunContext.get()
    timeout = getattr(getattr(context, "task", None), "timeout_seconds", None)
    if not timeout:
        yield
        return
    token = LOCK_WAIT_CAP.set(float(timeout) * _LOCK_SHARE_OF_TIMEOUT)
    try:
        yield
    finally:
        LOCK_WAIT_CAP.reset(token)


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


def load_report(
    connection: DuckDBConnection, table: str, rows: int, mode: str, result: LoadResult | None = None
) -> str:
    """The markdown shown as the load's artifact: what the load did, schema and sample rows."""
    target = quote_table(table)
    schema = connection.query(f"DESCRIBE {target}").select(
        pl.col("column_name").alias("column"), pl.col("column_type").alias("type")
    )
    # Not fetch_one: a second report through the same block would continue its cached result.
    total = connection.fetch_all(f"SELECT count(*) FROM {target}")[0]
    sample = connection.query(f"SELECT * FROM {target} LIMIT {SAMPLE_ROWS}")
    parts = [
        f"# Loaded `{table}`",
        f"**{rows:,}** rows written ({mode}); the table now has **{(total or [0])[0]:,}** rows.",
        f"Database: `{connection.database_path}`",
    ]
    if result is not None and result.created_note:
        # Said up front: a typo'd schema or table name shows here, not weeks later.
        parts.append(
            f"**{result.created_note}**: it did not exist before this load. Pass "
            '`create="never"` to refuse a missing table instead.'
        )
    if result is not None:
        keys = f", keys {', '.join(f'`{k}`' for k in result.keys)}" if result.keys else ""
        parts += [
            "## What the load did",
            f"Strategy: `{result.mode}`{keys}; on_schema_change: `{result.on_schema_change}`",
            _markdown_table(
                pl.DataFrame(
                    {"inserted": [result.inserted], "updated": [result.updated], "deleted": [result.deleted]}
                )
            ),
            "**Schema changes:** "
            + ("; ".join(result.schema_changes) if result.schema_changes else "none"),
        ]
        report = getattr(result, "quarantine", None)
        if report is not None and report.rows:
            parts += [
                f"**Quarantined:** {report.rows:,} row(s) into {quarantine_artifact.cell(report.table)}; "
                f"a sample is in the `{quarantine_artifact.artifact_slug(table)}` artifact.",
                _markdown_table(pl.DataFrame(
                    {"check": [c for c, _ in report.by_check], "quarantined": [n for _, n in report.by_check]}
                )),
            ]
        if result.checks:
            checks = pl.DataFrame(
                {
                    "check": [c.name for c in result.checks],
                    "on": [c.scope for c in result.checks],
                    "result": [c.outcome for c in result.checks],
                }
            )
            parts += ["## Checks", _markdown_table(checks)]
        else:
            parts += ["**Checks:** none"]
    parts += [
        "## Schema",
        _markdown_table(schema),
        f"## Sample ({min(SAMPLE_ROWS, sample.height)} rows)",
        _markdown_table(sample),
    ]
    return "\n\n".join(parts)


@task(name="extract-parquet", task_run_name="extract-parquet-{source.path}", **RETRY_OPTIONS)
def extract_parquet(source: ParquetSource, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
    """Read a :class:`~prefect_etl_blocks.ParquetSource` into a ``pl.DataFrame``, or, with
    ``lazy=True``, return its scan as a ``pl.LazyFrame``.

    Columns, filter and schema checks of the source apply either way (the schema is checked
    before the task returns). A lazy result is a plan, not data: the next step's filter and
    group-by and :func:`load_to_duckdb` then run as one streamed pass, and no row-level frame is
    materialised, hashed or persisted. Retries transient errors (network, S3), never bad data.

    Args:
        source: what to read.
        lazy: return the scan instead of reading it.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        import polars as pl
        from prefect import flow
        from prefect_etl_blocks import ParquetSource
        from prefect_etl_blocks.integration.tasks import extract_parquet

        folder = Path(tempfile.mkdtemp())
        pl.DataFrame({"category": ["a", "b"], "value": [1.0, -2.0]}).write_parquet(folder / "p.parquet")

        @flow
        def positive_rows(path: str) -> int:
            scan = extract_parquet(ParquetSource(path=path, filter="value > 0"), lazy=True)
            return scan.select(pl.len()).collect().item()

        assert positive_rows(str(folder / "*.parquet")) == 1
        ```
    """
    logger = get_run_logger()
    files = source.files()
    if lazy:
        scan = source.scan()
        logger.info("Scanning %s file(s) at %s lazily (%s columns)", len(files), source.path, len(scan.collect_schema()))
        return scan
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
    mode: LoadMode | None = None,
    keys: str | Sequence[str] | None = None,
    on_schema_change: OnSchemaChange = "fail",
    checks: Sequence[Check | str] | None = None,
    scd2_columns: Sequence[str] | dict[str, str] | None = None,
    incremental: bool = False,
    on_missing_file: str = "keep",
    lineage_column: str | None = None,
    cursor: str | None = None,
    initial_value: Any = None,
    lag: Any = None,
    create: CreateMode = "if_missing",
    upstream: Sequence[Any] | str | None = None,
    on_check_failure: OnCheckFailure = "fail",
    dry_run: bool = False,
    transactional: bool | None = None,
    return_result: bool = False,
) -> Any:
    """Load a frame (or a ``ParquetSource``, streamed) into a DuckDB table and report it.

    Args:
        frame: a ``pl.DataFrame``, ``pl.LazyFrame``, Arrow table or reader, or a
            :class:`~prefect_etl_blocks.ParquetSource` (loaded with ``load_parquet``).
        table: target table, optionally schema-qualified.
        connection: the :class:`~prefect_etl_blocks.DuckDBConnection` to write to.
        mode: ``replace`` (default), ``append``, ``upsert``, ``delete-insert``,
            ``insert-only``, ``scd2`` (the keyed ones need ``keys``) or ``fail``; incremental
            and cursor loads default to ``append`` (``upsert`` with ``keys``).
        keys: key column(s); a string is one column.
        on_schema_change: ``fail`` (default), ``append_new_columns``, ``sync_all_columns`` or
            ``ignore``.
        checks: SQL predicates and :mod:`prefect_etl_blocks.core.checks` built-ins, run before the
            load commits.
        scd2_columns: validity column names for ``scd2``.
        incremental: with a ``ParquetSource``, load only files not loaded into ``table`` yet
            (see :meth:`DuckDBConnection.load_parquet`); a retried task never loads a file twice.
        on_missing_file: with ``incremental``: ``keep`` or ``delete`` the rows of vanished files.
        lineage_column: with ``incremental``: opt in to a column recording each row's file
            (``"_prefect_etl_file"``), so that changed files replace their rows.
        cursor: a cursor load: only rows past the table's high-water mark load.
        initial_value: the cursor's mark before the first load.
        lag: how far behind the mark rows are still taken (needs ``keys``).
        create: ``if_missing`` (default) creates a missing table (and schema) and the log line
            and artifact say ``created analytics.orders``; ``never`` refuses a missing table
            (``LoadConfigError`` naming the nearest existing tables, not retried) and writes
            nothing.
        upstream: asset keys (or ``prefect.assets.Asset`` objects) the data came from, named
            as upstream assets on the load's materialization event.
        on_check_failure: ``fail`` (default) or ``quarantine`` (failing rows go to
            ``<table>__quarantine``; the rest load).
        dry_run: run the whole load and report it, keep nothing.
        transactional: ``None`` (default) joins an active Prefect transaction; ``False``
            commits on its own; ``True`` requires a transaction.
        return_result: return the :class:`~prefect_etl_blocks.core.loading.LoadResult` instead
            of the row count.

    Returns:
        Rows written. A markdown artifact (key ``duckdb-load-<table>``) shows the strategy,
        rows inserted, updated and deleted, schema changes, checks, the schema and sample rows.
        Retries only transient failures (:func:`retry_transient`); a lock wait stays inside
        the task's ``timeout_seconds`` so a busy file is reported as a lock timeout.

    Example:
        ```python
        import polars as pl
        from prefect import flow
        from prefect_etl_blocks import DuckDBConnection
        from prefect_etl_blocks.integration.tasks import load_to_duckdb

        @flow
        def nightly(db: DuckDBConnection) -> int:
            frame = pl.DataFrame({"day": ["2026-01-01"], "total": [3.5]})
            return load_to_duckdb(frame, "daily", db, mode="delete-insert", keys="day",
                                  checks=["total >= 0"])
        ```
    """
    logger = get_run_logger()
    if incremental and not isinstance(frame, ParquetSource):
        raise LoadConfigError(
            f"incremental=True loads new files of a ParquetSource; got a "
            f"{type(frame).__name__}. Pass the ParquetSource itself, or use cursor=... "
            "for frames."
        )
    options = LoadOptions(
        mode=mode, keys=keys, on_schema_change=on_schema_change, checks=checks,
        scd2_columns=scd2_columns, return_result=True, cursor=cursor, initial_value=initial_value,
        lag=lag, incremental=incremental, on_missing_file=on_missing_file,
        lineage_column=lineage_column, create=create, upstream=asset_keys(upstream),
        on_check_failure=on_check_failure, dry_run=dry_run, transactional=transactional,
    )
    with _lock_wait_within_task_timeout():
        # The block's one load path, the one load_frame and load_parquet take.
        result = connection._load(frame, table, options)
    mode = result.mode
    if result.dry_run:
        return _report_dry_run(logger, connection, table, result, return_result)
    logger.info(
        "Loaded into %s (%s) in %s: %s inserted, %s updated, %s deleted%s%s",
        table, mode, connection.database_path, result.inserted, result.updated, result.deleted,
        f"; schema changes: {'; '.join(result.schema_changes)}" if result.schema_changes else "",
        f"; {result.created_note}" if result.created_note else "",
    )
    if not connection.table_exists(table):
        # A cursor load that found no rows on its first run creates no table: nothing to show.
        return result if return_result else result.rows
    create_markdown_artifact(
        markdown=load_report(connection, table, result.rows, mode, result),
        key=artifact_key("duckdb-load", table),
        description=f"{result.rows} rows loaded into {table} ({mode})"
        + (f"; {result.created_note}" if result.created_note else ""),
    )
    return result if return_result else result.rows


def _report_dry_run(
    logger: Any, connection: DuckDBConnection, table: str, result: LoadResult, return_result: bool
) -> Any:
    """Log and publish what a dry run would have done; the table itself is unchanged, so the
    report shows no sample of it."""
    would = f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted"
    changes = f"; schema changes: {'; '.join(result.schema_changes)}" if result.schema_changes else ""
    logger.info(
        "Dry run into %s (%s) in %s: would have %s%s%s; nothing was kept",
        table, result.mode, connection.database_path, would, changes,
        f"; would have {result.created_note}" if result.created_note else "",
    )
    checks = "; ".join(f"{c.name}: {c.outcome}" for c in result.checks)
    create_markdown_artifact(
        markdown="\n\n".join([
            f"# Dry run of a load into `{table}`",
            "Nothing was kept: the load ran in full, then rolled back.",
            f"Strategy: `{result.mode}`; database: `{connection.database_path}`",
            _markdown_table(pl.DataFrame({
                "inserted": [result.inserted], "updated": [result.updated],
                "deleted": [result.deleted], "quarantined": [result.quarantined],
            })),
            "**Schema changes:** " + ("; ".join(result.schema_changes) or "none"),
            "**Checks:** " + (checks or "none"),
            *([f"**Would have {result.created_note}.**"] if result.created_note else []),
        ]),
        key=artifact_key("duckdb-dry-run", table),
        description=f"dry run into {table} ({result.mode}): would have {would}",
    )
    return result if return_result else result.rows


@task(name="run-duckdb-query", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def run_duckdb_query(
    sql: str, connection: DuckDBConnection, parameters: Sequence[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Run SQL on a DuckDB database and return the result as a ``pl.DataFrame``.

    Use ``?`` or ``$name`` placeholders with ``parameters``; never format values into ``sql``.
    """
    logger = get_run_logger()
    with _lock_wait_within_task_timeout():
        result = connection.query(sql, parameters)
    logger.info("Query returned %s rows x %s columns", result.height, result.width)
    return result
