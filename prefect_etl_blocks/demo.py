"""The ``daily-etl`` demo: sample sales data → ParquetSource → Polars → DuckDBConnection.

``make demo`` (or ``petl demo``) generates a deterministic sample dataset (1.2M rows in six
Parquet files by default), then runs the ``daily-etl`` flow on embedded defaults: an ephemeral
Prefect server whose database lives under the demo folder, a DuckDB file and local data. No
account and no network. Running it again reuses the data and replaces the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
from prefect import flow, task

from prefect_etl_blocks.duckdb import DuckDBConnection
from prefect_etl_blocks.parquet import ParquetSource
from prefect_etl_blocks.tasks import extract_parquet, load_to_duckdb

CATEGORIES = ["books", "electronics", "games", "garden", "grocery", "music", "sports", "toys"]
REGIONS = ["EU", "US", "APAC", "LATAM"]


def generate_sales_data(folder: Path, rows: int = 1_200_000, files: int = 6, seed: int = 42, progress: bool = True) -> list[Path]:
    """Write ``rows`` deterministic sales rows into ``files`` Parquet files in ``folder``.

    The same arguments always give byte-identical data; files are rewritten only when the
    arguments change (a ``_manifest.json`` records them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "_manifest.json"
    wanted = {"rows": rows, "files": files, "seed": seed, "version": 1}
    paths = [folder / f"sales-{i:03d}.parquet" for i in range(files)]
    if manifest.exists() and json.loads(manifest.read_text()) == wanted and all(p.exists() for p in paths):
        return paths
    for stale in folder.glob("sales-*.parquet"):
        stale.unlink()
    per_file = -(-rows // files)
    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar:
        job = bar.add_task("Generating sample sales data", total=files)
        for i, path in enumerate(paths):
            n = min(per_file, rows - i * per_file)
            rng = np.random.default_rng(seed + i)
            start = i * per_file
            frame = pl.DataFrame(
                {
                    "order_id": np.arange(start, start + n, dtype=np.int64),
                    "day": pl.date_range(
                        pl.date(2026, 1, 1), pl.date(2026, 1, 31), eager=True
                    ).gather(rng.integers(0, 31, n)),
                    "category": pl.Series(CATEGORIES).gather(rng.integers(0, len(CATEGORIES), n)),
                    "region": pl.Series(REGIONS).gather(rng.integers(0, len(REGIONS), n)),
                    "quantity": rng.integers(1, 10, n, dtype=np.int32),
                    # about 10% returns/refunds with negative value, filtered out by the flow
                    "value": np.round(rng.normal(60.0, 45.0, n), 2),
                }
            )
            frame.write_parquet(path, compression="zstd", row_group_size=100_000)
            bar.advance(job)
    manifest.write_text(json.dumps(wanted))
    return paths


@task(name="summarize-sales")
def summarize_sales(frame: pl.DataFrame) -> pl.DataFrame:
    """Group positive sales by category: orders, units, revenue and average order value."""
    return (
        frame.group_by("category")
        .agg(
            pl.len().alias("orders"),
            pl.col("quantity").sum().alias("units"),
            pl.col("value").sum().round(2).alias("revenue"),
            pl.col("value").mean().round(2).alias("avg_order_value"),
        )
        .sort("category")
    )


@flow(name="daily-etl", log_prints=True)
def daily_etl(source_path: str, database: str, table: str = "daily_summary", min_value: float = 0.0) -> int:
    """Extract sales Parquet, keep rows with ``value > min_value``, group by category, load.

    Returns:
        The number of rows written to ``table``.
    """
    source = ParquetSource(
        path=source_path,
        columns=["category", "quantity", "value"],
        filter=f"value > {float(min_value)!r}",
        expected_schema={"category": "String", "quantity": "Int32", "value": "Float64"},
    )
    sales = extract_parquet(source)
    summary = summarize_sales(sales)
    return load_to_duckdb(summary, table, DuckDBConnection(database=database), mode="replace")


def run_demo(workdir: str | os.PathLike = ".petl/demo", rows: int = 1_200_000, files: int = 6, regenerate: bool = False) -> int:
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
    print(f"DuckDB file: {database}")
    print(f'  look at it:  .venv/bin/python -c "import duckdb; print(duckdb.connect(\'{database}\', read_only=True).sql(\'FROM daily_summary\'))"')
    print("See the run in the Prefect UI:")
    print(f"  PREFECT_HOME={home} .venv/bin/prefect server start   # then open http://127.0.0.1:4200/runs")
    return loaded
