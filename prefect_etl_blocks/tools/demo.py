"""The ``daily-etl`` demo: sample sales data → ParquetSource → Polars → DuckDBConnection.

``make demo`` (or ``prefect-etl demo``) generates a deterministic sample dataset (1.2M rows in
six Parquet files by default), then runs the ``daily-etl`` flow on embedded defaults: an
ephemeral Prefect server whose database lives under the demo folder, a DuckDB file and local
data. No account and no network. Running it again reuses the data and replaces the table.

The flow has the fastest correct shape for its work: ``extract_parquet(lazy=True)`` returns a
scan, the summary filters and groups it in one streamed pass (the same
:func:`~prefect_etl_blocks.tools.sales.summarize_sales` the generated projects use), and only the
8-row summary is loaded. No task hashes or persists a row-level frame.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prefect_etl_blocks.blocks.duckdb import DuckDBConnection
from prefect_etl_blocks.blocks.parquet import ParquetSource
from prefect_etl_blocks.integration.tasks import extract_parquet, load_to_duckdb
from prefect_etl_blocks.tools.sales import CATEGORIES, REGIONS, summarize_sales, write_sample_sales

__all__ = ["CATEGORIES", "REGIONS", "daily_etl", "generate_sales_data", "run_demo", "summarize"]


def generate_sales_data(
    folder: Path, rows: int = 1_200_000, files: int = 6, seed: int = 42, progress: bool = True
) -> list[Path]:
    """The demo's sample data: :func:`prefect_etl_blocks.tools.sales.write_sample_sales`, with a
    progress bar by default."""
    return write_sample_sales(folder, rows=rows, files=files, seed=seed, progress=progress)


# The input is a LazyFrame (a plan, not data) and the output is 8 rows: nothing to cache.
@task(name="summarize-sales", cache_policy=NO_CACHE, persist_result=False)
def summarize(sales: pl.LazyFrame, min_value: float = 0.0) -> pl.DataFrame:
    """Group sales above ``min_value`` by category in one streamed pass."""
    return summarize_sales(sales, min_value=min_value)


@flow(name="daily-etl", log_prints=True)
def daily_etl(source_path: str, database: str, table: str = "daily_summary", min_value: float = 0.0) -> int:
    """Extract sales Parquet, keep rows with ``value > min_value``, group by category, load.

    Returns:
        The number of rows written to ``table``.
    """
    source = ParquetSource(
        path=source_path,
        columns=["category", "quantity", "value"],
        expected_schema={"category": "String", "quantity": "Int32", "value": "Float64"},
    )
    sales = extract_parquet(source, lazy=True)
    summary = summarize(sales, min_value)
    return load_to_duckdb(summary, table, DuckDBConnection(database=database), mode="replace")


def run_demo(workdir: str | os.PathLike = ".prefect-etl/demo", rows: int = 1_200_000, files: int = 6, regenerate: bool = False) -> int:
    """Generate the data if needed and run ``daily-etl`` on an ephemeral Prefect server.

    Prefect's home (its SQLite database) goes under ``workdir/prefect-home`` so the runs can be
    browsed afterwards with ``prefect server start``.
    """
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    root = Path(workdir).resolve()
    data = root / "data" / "sales"
    if regenerate and data.exists():
        for old in data.glob("*"):
            old.unlink()
    generate_sales_data(data, rows=rows, files=files)
    database = root / "warehouse.duckdb"
    home = root / "prefect-home"
    print(f"Sample data: {rows:,} rows in {files} Parquet files under {data}")
    updates = {
        PREFECT_HOME: str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 120,
    }
    with temporary_settings(updates=updates):
        loaded = daily_etl(source_path=str(data / "*.parquet"), database=str(database))
    summary = DuckDBConnection(database=str(database), read_only=True).query(
        "SELECT * FROM daily_summary ORDER BY category"
    )
    print()
    with pl.Config(float_precision=2, thousands_separator=",", tbl_hide_dataframe_shape=True):
        print(summary)
    print(f"\nRows loaded into daily_summary: {loaded}")
    for line in follow_up_commands(database, home):
        print(line)
    return loaded


def follow_up_commands(database: Path, home: Path) -> list[str]:
    """The lines the demo prints after its run: the DuckDB file, and commands that open it and
    the Prefect UI, spelled for the environment the demo runs in (see :func:`script_command`)."""
    code = (
        f"import duckdb; print(duckdb.connect({json.dumps(str(database))}, read_only=True)"
        '.sql("FROM daily_summary"))'
    )
    return [
        f"DuckDB file: {database}",
        f"  look at it:  {script_command('python')} -c {shlex.quote(code)}",
        "See the run in the Prefect UI:",
        f"  PREFECT_HOME={shlex.quote(str(home))} {script_command('prefect')} server start"
        "   # then open http://127.0.0.1:4200/runs",
    ]


def script_command(name: str) -> str:
    """How to run ``name`` (``python`` or a console script such as ``prefect``) of the
    environment this process runs in, from the current folder.

    Just ``name`` when ``PATH`` finds it in this environment (an activated venv, a plain
    ``pip install``); a path relative to the current folder when the environment lives below
    it (``.venv/bin/python`` in this repository, for ``make demo``); else the absolute path.
    A console script this environment lacks runs as ``python -m name``.
    """
    bindir = Path(sys.executable).absolute().parent
    found = shutil.which(name)
    if found and Path(found).absolute().parent == bindir:
        return name
    path = Path(sys.executable).absolute() if name == "python" else bindir / name
    if not path.exists():
        return f"{script_command('python')} -m {name}"
    try:
        shown = str(path.relative_to(Path.cwd().absolute()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)
