"""The transformation, in SQL: how the summary is rebuilt from every raw row. Edit it for your data.

The raw rows accumulate in ``<table>_raw`` (each run loads only new or changed files); the
query runs inside the warehouse, with ``$min_value`` bound to the flow's parameter.
"""

from prefect_etl_blocks.identifiers import quote_table


def summary_query(raw_table: str) -> str:
    """Orders, units, revenue and average order value per category of the rows with value > $min_value."""
    return (
        "SELECT category, count(*) AS orders, sum(quantity) AS units, round(sum(value), 2) AS revenue, "
        f"round(avg(value), 2) AS avg_order_value FROM {quote_table(raw_table)} "
        "WHERE value > $min_value GROUP BY category ORDER BY category"
    )
