"""Persisting and loading a task's DataFrame result: ``polars-parquet`` against Prefect's ``pickle``
and ``compressed/pickle`` serializers, bytes stored and seconds, 1M and 5M rows.

Each measurement goes through Prefect's own ``ResultStore`` (the code path a task result
takes): ``persist`` is ``create_result_record`` + ``persist_result_record`` (serialize, wrap in
the JSON result record, write the file), ``load`` is ``read`` from a fresh store (read the file,
parse the record, deserialize). Storage is a ``LocalFileSystem`` in a temporary folder, so the
figures are serializer cost, not network. Times are medians over ``repeats`` runs; ratios
divide ``polars-parquet`` by ``pickle`` measured in the same run.

``compressed/pickle`` (lzma) is measured too, but only ``lzma_repeats`` times (1 by default): it
compresses at a few MB/s, so repeating it on 5M rows would take many minutes.

Run ``python -m benchmarks.bench_results [--repeats N] [--rows 1000000,5000000]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SIZES = (1_000_000, 5_000_000)
OURS = "polars-parquet"
BASELINE = "pickle"
OTHERS = ("compressed/pickle",)
BYTES_TARGET = 0.25
TIME_TARGET = 0.4


def make_frame(rows: int, seed: int = 0) -> pl.DataFrame:
    """A sales-like frame: ids, amounts, quantities, low-cardinality strings, names and dates."""
    rng = np.random.default_rng(seed)
    categories = np.array(["books", "games", "garden", "music", "tools", "toys"])
    regions = np.array(["EU", "US", "APAC", "LATAM"])
    customers = rng.integers(0, 200_000, rows)
    return pl.DataFrame(
        {
            "order_id": np.arange(rows, dtype=np.int64),
            "customer": customers,
            "category": categories[rng.integers(0, len(categories), rows)],
            "region": regions[rng.integers(0, len(regions), rows)],
            "quantity": rng.integers(1, 20, rows, dtype=np.int32),
            "value": np.round(rng.normal(50, 40, rows), 2),
            "day": np.datetime64("2026-01-01")
            + rng.integers(0, 365, rows).astype("timedelta64[D]"),
        }
    ).with_columns(
        pl.format("customer-{}", pl.col("customer")).alias("customer_name"),
        pl.col("day").cast(pl.Date),
    )


def measure(frame: pl.DataFrame, serializer_type: str, folder: Path) -> dict[str, float]:
    """Persist then load ``frame`` once through Prefect's ResultStore; seconds and bytes."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore, resolve_serializer

    storage = LocalFileSystem(basepath=str(folder))
    serializer = resolve_serializer(serializer_type)
    key = uuid.uuid4().hex
    gc.collect()

    started = time.perf_counter()
    writer = ResultStore(
        result_storage=storage, serializer=serializer, cache_result_in_memory=False
    )
    writer.persist_result_record(writer.create_result_record(frame, key=key))
    persisted = time.perf_counter()

    reader = ResultStore(
        result_storage=storage, serializer=serializer, cache_result_in_memory=False
    )
    loaded = reader.read(key).result
    finished = time.perf_counter()

    if not (type(loaded) is pl.DataFrame and loaded.equals(frame)):
        raise AssertionError(f"{serializer_type} did not give the frame back")
    size = (folder / key).stat().st_size
    (folder / key).unlink()
    return {"persist": persisted - started, "load": finished - persisted, "bytes": size}


def median_run(
    frame: pl.DataFrame, serializer_type: str, folder: Path, repeats: int
) -> dict[str, float]:
    runs = [measure(frame, serializer_type, folder) for _ in range(repeats)]
    persist = statistics.median(r["persist"] for r in runs)
    load = statistics.median(r["load"] for r in runs)
    total = statistics.median(r["persist"] + r["load"] for r in runs)
    return {
        "persist": persist,
        "load": load,
        "total": total,
        "bytes": runs[0]["bytes"],
        "repeats": repeats,
    }


def run(
    repeats: int = 3, sizes: tuple[int, ...] = SIZES, lzma_repeats: int = 1
) -> list[dict[str, Any]]:
    """One row per size and measure (bytes, persist, load, persist + load).

    ``ratio`` is polars-parquet divided by pickle from the same run (lower is better);
    ``target`` is the issue's goal where it sets one.
    """
    import prefect_etl_blocks  # noqa: F401  (registers "polars-parquet")

    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="petl-bench-results-") as tmp:
        folder = Path(tmp)
        for rows in sizes:
            frame = make_frame(rows)
            found = {
                OURS: median_run(frame, OURS, folder, repeats),
                BASELINE: median_run(frame, BASELINE, folder, repeats),
            }
            for other in OTHERS:
                found[other] = median_run(frame, other, folder, lzma_repeats)
            del frame
            label = f"{rows / 1e6:g}M rows"
            for measure_name, field, scale, unit, target in (
                ("bytes stored", "bytes", 1e-6, "MB", BYTES_TARGET),
                ("persist", "persist", 1.0, "s", None),
                ("load", "load", 1.0, "s", None),
                ("persist + load", "total", 1.0, "s", TIME_TARGET),
            ):
                row: dict[str, Any] = {
                    "name": f"{label}: {measure_name} ({unit})",
                    "baseline": BASELINE,
                    "ratio": found[OURS][field] / found[BASELINE][field],
                    "target": target if target is not None else "",
                    OURS: found[OURS][field] * scale,
                    BASELINE: found[BASELINE][field] * scale,
                }
                for other in OTHERS:
                    row[other] = found[other][field] * scale
                    row[f"{other} ratio"] = found[other][field] / found[BASELINE][field]
                if unit == "s":
                    row["seconds"] = found[OURS][field]
                    row["baseline_seconds"] = found[BASELINE][field]
                rows_out.append(row)
    return rows_out


def markdown(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys and k not in ("seconds", "baseline_seconds")]

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lzma-repeats", type=int, default=1)
    parser.add_argument("--rows", default=",".join(str(s) for s in SIZES))
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.rows.split(","))
    started = time.perf_counter()
    rows = run(repeats=args.repeats, sizes=sizes, lzma_repeats=args.lzma_repeats)
    print(markdown(rows))
    print(
        f"\nmedians over {args.repeats} repeats (compressed/pickle: {args.lzma_repeats}); "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    missed = [
        r["name"] for r in rows if isinstance(r["target"], float) and r["ratio"] > r["target"]
    ]
    if missed:
        print("targets missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
