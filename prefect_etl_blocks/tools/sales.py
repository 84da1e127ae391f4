"""Sample sales data and the summary step shared by the demo and the generated projects.

``prefect-etl demo`` and every project made by ``prefect-etl new`` summarise sales with the same
:func:`summarize_sales`, and write their sample data with the same :func:`write_sample_sales`,
so what the demo shows is what a new project runs.

Example:
    ```python
    import tempfile
    from pathlib import Path

    import polars as pl
    from prefect_etl_blocks.tools.sales import summarize_sales, write_sample_sales

    folder = Path(tempfile.mkdtemp()) / "sales"
    write_sample_sales(folder, rows=5_000, files=2)
    summary = summarize_sales(pl.scan_parquet(folder / "*.parquet"), min_value=0)
    assert summary["orders"].sum() <= 5_000
    ```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

CATEGORIES = ["books", "electronics", "games", "garden", "grocery", "music", "sports", "toys"]
REGIONS = ["EU", "US", "APAC", "LATAM"]
#: The columns and dtypes of the sample data; the demo checks them before reading.
SALES_SCHEMA = {
    "order_id": "Int64",
    "day": "Date",
    "category": "String",
    "region": "String",
    "quantity": "Int32",
    "value": "Float64",
}
_MANIFEST = "_manifest.json"


def write_sample_sales(
    folder: str | Path,
    rows: int = 1_200_000,
    files: int = 6,
    seed: int = 42,
    progress: bool = False,
) -> list[Path]:
    """Write ``rows`` deterministic sales rows into ``files`` Parquet files in ``folder``.

    The same arguments give the same data; files are rewritten only when the arguments change
    (``_manifest.json`` records them), so a second run is instant. About 10% of the values are
    negative (refunds), for the summary's ``value > min_value`` filter to remove.

    Returns:
        The Parquet files, ``sales-000.parquet`` and so on.
    """
    if rows < 1 or files < 1:
        raise ValueError(f"write_sample_sales(rows={rows}, files={files}): both must be at least 1.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / _MANIFEST
    wanted = {"rows": rows, "files": files, "seed": seed, "version": 2}
    paths = [folder / f"sales-{i:03d}.parquet" for i in range(files)]
    if manifest.exists() and json.loads(manifest.read_text()) == wanted and all(p.exists() for p in paths):
        return paths
    for stale in folder.glob("sales-*.parquet"):
        stale.unlink()
    per_file = -(-rows // files)
    bar: Any = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
        job = bar.add_task("Generating sample sales data", total=files)
    try:
        for i, path in enumerate(paths):
            n = max(0, min(per_file, rows - i * per_file))
            _sales_frame(i * per_file, n, seed + i).write_parquet(
                path, compression="zstd", row_group_size=100_000
            )
            if bar is not None:
                bar.advance(job)
    finally:
        if bar is not None:
            bar.stop()
    manifest.write_text(json.dumps(wanted))
    return paths


def _sales_frame(start: int, n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = pl.date_range(pl.date(2026, 1, 1), pl.date(2026, 1, 31), eager=True)
    return pl.DataFrame(
        {
            "order_id": np.arange(start, start + n, dtype=np.int64),
            "day": days.gather(rng.integers(0, len(days), n)),
            "category": pl.Series(CATEGORIES).gather(rng.integers(0, len(CATEGORIES), n)),
            "region": pl.Series(REGIONS).gather(rng.integers(0, len(REGIONS), n)),
            "quantity": rng.integers(1, 10, n, dtype=np.int32),
            "value": np.round(rng.normal(60.0, 45.0, n), 2),
        }
    )


def summarize_sales(sales: pl.LazyFrame | pl.DataFrame, min_value: float = 0.0) -> pl.DataFrame:
    """Orders, units, revenue and average order value per category, over rows with
    ``value > min_value``.

    Given a ``LazyFrame`` (a Parquet scan), the filter and group-by run as one streamed plan,
    so only the columns used are read and no row-level frame is ever materialised.

    Args:
        sales: rows with at least ``category``, ``value`` and, optionally, ``quantity``.
        min_value: keep rows whose value is above this.

    Returns:
        One row per category, sorted by category.
    """
    lazy = sales.lazy()
    names = lazy.collect_schema().names()
    aggregates = [pl.len().alias("orders")]
    if "quantity" in names:
        aggregates.append(pl.col("quantity").sum().alias("units"))
    aggregates += [
        pl.col("value").sum().round(2).alias("revenue"),
        pl.col("value").mean().round(2).alias("avg_order_value"),
    ]
    return (
        lazy.filter(pl.col("value") > pl.lit(float(min_value)))
        .group_by("category")
        .agg(aggregates)
        .sort("category")
        .collect(engine="streaming")
    )
