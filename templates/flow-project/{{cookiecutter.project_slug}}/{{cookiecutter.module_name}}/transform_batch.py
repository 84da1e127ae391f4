"""The transformation: what the flow computes from the rows. Edit it for your data.

``summarize_sales`` takes the Parquet scan as a ``LazyFrame``: the filter and the group-by run
as one streamed plan, so only the columns used are read and no row-level frame is ever
materialised. The flow caches its result on the files' fingerprint and on this module's source.
"""

import polars as pl


def summarize_sales(sales: pl.LazyFrame | pl.DataFrame, min_value: float = 0.0) -> pl.DataFrame:
    """Orders, units, revenue and average order value per category, over rows with ``value > min_value``.

    Args:
        sales: rows with at least ``category``, ``value`` and, optionally, ``quantity``.
        min_value: keep rows whose value is above this.

    Returns:
        One row per category, sorted by category.
    """
    lazy = sales.lazy()
    aggregates = [pl.len().alias("orders")]
    if "quantity" in lazy.collect_schema().names():
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
