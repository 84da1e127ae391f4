"""``DuckDBConnection.load_frame`` of a 5M-row Polars frame against DuckDB's own
``CREATE TABLE AS SELECT * FROM arrow_table`` and against ``executemany`` row inserts.

Both fast paths replace the same table in a DuckDB file; times are medians over ``repeats``.
``executemany`` is far too slow for 5M rows: it is timed on a 20k-row sample and extrapolated
linearly (the row says so). Run ``python -m benchmarks.bench_duckdb``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from benchmarks._common import median_seconds, table
from benchmarks.bench_results import make_frame

ROWS = 5_000_000
SAMPLE = 20_000
TARGET = 1.2


def run(repeats: int = 5, rows: int = ROWS) -> list[dict[str, Any]]:
    from prefect_etl_blocks import DuckDBConnection

    frame = make_frame(rows)
    with tempfile.TemporaryDirectory(prefix="petl-bench-duckdb-") as tmp:
        ours_db = DuckDBConnection(database=str(Path(tmp) / "ours.duckdb"))
        con = duckdb.connect(str(Path(tmp) / "baseline.duckdb"))

        def ours() -> None:
            assert ours_db.load_frame(frame, "t") == rows

        def baseline() -> None:
            arrow_table = frame.to_arrow()  # noqa: F841 - referenced by name in the SQL
            con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM arrow_table")

        ours_s = median_seconds(ours, repeats)
        base_s = median_seconds(baseline, repeats)

        sample = frame.head(SAMPLE)
        con.execute("CREATE OR REPLACE TABLE m AS SELECT * FROM sample LIMIT 0")
        values = sample.rows()
        placeholders = ", ".join("?" * sample.width)
        started = time.perf_counter()
        con.executemany(f"INSERT INTO m VALUES ({placeholders})", values)
        many_s = (time.perf_counter() - started) * rows / SAMPLE
        con.close()
    return [
        {"name": f"load_frame {rows:,} rows", "baseline": "CTAS from Arrow", "seconds": ours_s,
         "baseline_seconds": base_s, "ratio": ours_s / base_s, "target": TARGET},
        {"name": f"load_frame vs executemany ({SAMPLE:,}-row sample, extrapolated)", "baseline": "executemany",
         "seconds": ours_s, "baseline_seconds": many_s, "ratio": ours_s / many_s},
    ]


if __name__ == "__main__":
    print(table(run(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
