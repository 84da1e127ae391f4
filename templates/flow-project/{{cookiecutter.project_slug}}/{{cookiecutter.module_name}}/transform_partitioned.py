"""The transformation, in two steps: partial sums per file (in parallel), then their total. Edit it for your data.

``partial_summary`` runs once per Parquet file, in its own cached task; ``combine`` adds the
partial sums up (cheap: one row per category and file). Keep ``combine`` able to add up what
``partial_summary`` returns: sums and counts combine, averages must be computed at the end.
"""

import polars as pl


def partial_summary(partition: pl.LazyFrame, min_value: float) -> pl.DataFrame:
    """Orders and revenue per category of one file's rows with ``value > min_value``."""
    return (
        partition.filter(pl.col("value") > pl.lit(min_value))
        .group_by("category")
        .agg(pl.len().alias("orders"), pl.col("value").sum().alias("revenue"))
        .collect()
    )


def combine(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The final summary from the partial sums: totals, then the average order value."""
    return (
        pl.concat(parts)
        .group_by("category")
        .agg(pl.col("orders").sum(), pl.col("revenue").sum().round(2))
        .with_columns((pl.col("revenue") / pl.col("orders")).round(2).alias("avg_order_value"))
        .sort("category")
    )
