"""``DuckDBConnection.load_parquet`` against DuckDB's ``read_parquet`` CTAS (time and peak RSS,
each run in a fresh process), and ``ParquetSource.read()`` against ``pl.read_parquet``.

The dataset is 5M rows in 5 Parquet files (zstd). Times are medians over ``repeats``; peak RSS
is the largest over the repeats. Both sides end with the data checkpointed into the file
(``load_parquet`` closes its connection; the baseline calls ``con.close()``). Run ``python -m benchmarks.bench_parquet``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks._common import child_median, median_seconds, table
from benchmarks.bench_results import make_frame

ROWS = 5_000_000
FILES = 5


def write_dataset(folder: Path, rows: int = ROWS, files: int = FILES) -> list[str]:
    frame = make_frame(rows)
    paths = []
    for i, part in enumerate(frame.iter_slices(n_rows=-(-rows // files))):
        path = folder / f"part-{i}.parquet"
        part.write_parquet(path, compression="zstd")
        paths.append(str(path))
    return paths


def run(repeats: int = 5, rows: int = ROWS) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="petl-bench-parquet-") as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        paths = write_dataset(folder / "data", rows)
        glob = str(folder / "data" / "*.parquet")
        ours_setup = (
            "from prefect_etl_blocks import DuckDBConnection, ParquetSource\n"
            f"db = DuckDBConnection(database={str(folder / 'ours.duckdb')!r})\n"
            f"src = ParquetSource(path={glob!r})\n"
        )
        base_setup = f"import duckdb\ncon = duckdb.connect({str(folder / 'base.duckdb')!r})\nfiles = {paths!r}\n"
        ours_s, ours_rss = child_median(ours_setup, "db.load_parquet(src, 't')", repeats)
        base_s, base_rss = child_median(
            # close() checkpoints the WAL into the file, as load_parquet does when it releases the file
            base_setup, "con.execute('CREATE OR REPLACE TABLE t AS SELECT * FROM read_parquet(?)', [files]); con.close()", repeats
        )
        from prefect_etl_blocks import ParquetSource

        read_s = median_seconds(ParquetSource(path=glob).read, repeats)
        pl_s = median_seconds(lambda: pl.read_parquet(glob), repeats)
    return [
        {"name": f"load_parquet {rows:,} rows", "baseline": "read_parquet CTAS", "seconds": ours_s,
         "baseline_seconds": base_s, "ratio": ours_s / base_s, "target": 1.2,
         "peak_rss_mb": round(ours_rss), "baseline_peak_rss_mb": round(base_rss)},
        {"name": f"ParquetSource.read() {rows:,} rows", "baseline": "pl.read_parquet", "seconds": read_s,
         "baseline_seconds": pl_s, "ratio": read_s / pl_s, "target": 1.1},
    ]


if __name__ == "__main__":
    print(table(run(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
