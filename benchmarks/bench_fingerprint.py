"""``SourceFingerprint`` cache keys over 1,000 small local Parquet files: ``mode="content"``
(size, mtime and a SHA-256 of each file's Parquet footer) against ``mode="stat"`` (size and
mtime only), and the content key against reading the same files.

Each key is ``SourceFingerprint(mode=...).compute_key`` on one ``ParquetSource`` over a folder
of 1,000 files (100 rows, 3 columns, zstd, about 2 KB each), as Prefect computes it before a
task runs. The files sit in the page cache after the first (warm-up) call, as they do when a
flow re-runs on unchanged data, so the figures are CPU and system-call cost, not disk. Times
are medians over ``repeats`` runs. Run ``python -m benchmarks.bench_fingerprint [repeats]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks._common import median_seconds, table

FILES = 1_000
ROWS = 100
# Content mode is the default only while its key costs at most this many times the stat key.
TARGET = 3.0


def write_files(folder: Path, files: int = FILES, rows: int = ROWS) -> None:
    for i in range(files):
        pl.DataFrame(
            {
                "id": range(i * rows, (i + 1) * rows),
                "code": [f"C{i:04d}-{j:03d}" for j in range(rows)],
                "value": [(i * rows + j) * 0.25 for j in range(rows)],
            }
        ).write_parquet(folder / f"part-{i:04d}.parquet", compression="zstd")


def run(repeats: int = 5, files: int = FILES) -> list[dict[str, Any]]:
    from prefect_etl_blocks import ParquetSource, SourceFingerprint

    with tempfile.TemporaryDirectory(prefix="petl-bench-fingerprint-") as tmp:
        folder = Path(tmp)
        write_files(folder, files)
        inputs = {"source": ParquetSource(path=str(folder))}
        stat, content = SourceFingerprint(mode="stat"), SourceFingerprint(mode="content")
        stat_s = median_seconds(lambda: stat.compute_key(None, inputs, {}), repeats)
        content_s = median_seconds(lambda: content.compute_key(None, inputs, {}), repeats)
        read_s = median_seconds(lambda: pl.read_parquet(str(folder / "*.parquet")), repeats)
        total_kb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1024
    return [
        {
            "name": f'SourceFingerprint mode="content", {files:,} files',
            "baseline": 'mode="stat"',
            "seconds": content_s,
            "baseline_seconds": stat_s,
            "ratio": content_s / stat_s,
            "target": TARGET,
            "us_per_file": round(content_s / files * 1e6, 1),
            "baseline_us_per_file": round(stat_s / files * 1e6, 1),
            "files_kb": round(total_kb),
        },
        {
            "name": f'SourceFingerprint mode="content" vs reading, {files:,} files',
            "baseline": "pl.read_parquet (all files)",
            "seconds": content_s,
            "baseline_seconds": read_s,
            "ratio": content_s / read_s,
        },
    ]


if __name__ == "__main__":
    print(table(run(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
