"""The demo flow (``daily-etl``) on 10M rows against its floor, all in one process and one run.

The floor is what the same work costs without our code: plain Polars + DuckDB with no Prefect
(scan, filter, group, ``CREATE OR REPLACE TABLE``), plus an empty Prefect flow with the same
number of tasks (three no-op tasks), on the same ephemeral Prefect server. The ratio is
``daily_etl / (plain + empty flow)``; the target is 1.15 or less.

For context, a fourth row times the demo's previous shape: an eager extract that materialises
the filtered rows, and a summary task under Prefect's default cache policy, which hashes that
frame through cloudpickle.

Run ``python -m benchmarks.bench_demo [REPEATS]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import median_seconds, table

ROWS = 10_000_000
FILES = 10
TARGET = 1.15
DATA = Path(__file__).resolve().parent / ".data" / "demo-sales"


def run(repeats: int = 5, rows: int = ROWS) -> list[dict[str, Any]]:
    import duckdb
    import polars as pl
    from prefect import flow, task
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    from prefect_etl_blocks.demo import daily_etl
    from prefect_etl_blocks.parquet import ParquetSource
    from prefect_etl_blocks.sales import summarize_sales, write_sample_sales
    from prefect_etl_blocks.tasks import extract_parquet, load_to_duckdb

    folder = DATA / f"{rows}"
    write_sample_sales(folder, rows=rows, files=FILES)
    glob = str(folder / "*.parquet")

    @task
    def noop() -> None:
        return None

    @flow(name="empty-3-tasks")
    def empty_flow() -> None:
        noop()
        noop()
        noop()

    @task(name="summarize-eager")
    def summarize_eager(frame: pl.DataFrame) -> pl.DataFrame:
        return summarize_sales(frame)

    @flow(name="daily-etl-eager")
    def eager_flow(source_path: str, database: str) -> int:
        from prefect_etl_blocks.duckdb import DuckDBConnection

        source = ParquetSource(path=source_path, columns=["category", "quantity", "value"], filter="value > 0")
        summary = summarize_eager(extract_parquet(source))
        return load_to_duckdb(summary, "daily_summary", DuckDBConnection(database=database), mode="replace")

    with tempfile.TemporaryDirectory(prefix="petl-bench-demo-") as tmp:
        updates = {PREFECT_HOME: os.path.join(tmp, "home"), PREFECT_SERVER_ANALYTICS_ENABLED: False}
        with temporary_settings(updates=updates):
            ours_db = os.path.join(tmp, "ours.duckdb")
            plain_db = os.path.join(tmp, "plain.duckdb")
            eager_db = os.path.join(tmp, "eager.duckdb")

            def ours() -> None:
                assert daily_etl(source_path=glob, database=ours_db) == 8

            def plain() -> None:
                summary = summarize_sales(pl.scan_parquet(glob).select("category", "quantity", "value"))
                con = duckdb.connect(plain_db)
                con.register("summary_view", summary.to_arrow())
                con.execute("CREATE OR REPLACE TABLE daily_summary AS SELECT * FROM summary_view")
                con.close()

            def empty() -> None:
                empty_flow()

            def eager() -> None:
                assert eager_flow(source_path=glob, database=eager_db) == 8

            empty_s = median_seconds(empty, repeats)  # also starts the ephemeral server
            ours_s = median_seconds(ours, repeats)
            plain_s = median_seconds(plain, repeats)
            eager_s = median_seconds(eager, repeats)
    floor = plain_s + empty_s
    return [
        {"name": f"daily-etl, {rows:,} rows", "baseline": "plain Polars+DuckDB + empty 3-task flow",
         "seconds": ours_s, "baseline_seconds": floor, "ratio": ours_s / floor, "target": TARGET},
        {"name": "floor: plain Polars + DuckDB (no Prefect)", "baseline": "", "seconds": plain_s},
        {"name": "floor: empty flow, 3 no-op tasks", "baseline": "", "seconds": empty_s},
        {"name": "previous shape: eager extract + default cache policy", "baseline": "plain Polars+DuckDB + empty 3-task flow",
         "seconds": eager_s, "baseline_seconds": floor, "ratio": eager_s / floor},
    ]


if __name__ == "__main__":
    print(table(run(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
