"""The transformation: which rows of each file are loaded, and the summary computed in the lake. Edit it for your data.

``partition_rows`` runs once per Parquet file, in its own cached task, and its rows go
straight into ``<table>_rows``; ``summary_query`` then runs inside the lake over the rows of
the files that exist now (``$files``).
"""

import polars as pl
from prefect_etl_blocks.identifiers import quote_table


def partition_rows(partition: pl.LazyFrame, min_value: float) -> pl.LazyFrame:
    """The rows of one file to load: those with ``value > min_value``."""
    return partition.filter(pl.col("value") > pl.lit(min_value))


def summary_query(rows_table: str) -> str:
    """Orders, revenue and average order value per category over the rows of the files in $files."""
    return (
        "SELECT category, count(*) AS orders, round(sum(value), 2) AS revenue, "
        "round(sum(value) / count(*), 2) AS avg_order_value "
        f"FROM {quote_table(rows_table)} WHERE list_contains($files, source_file) "
        "GROUP BY category ORDER BY category"
    )
