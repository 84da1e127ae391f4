"""prefect-etl-blocks: Prefect 3 blocks, tasks and templates for DuckDB + Polars pipelines.

Importing the package registers its blocks with Prefect's block registry and the
``"polars-parquet"`` result serializer, so any process that reads results can decode them.
"""

from __future__ import annotations

from prefect_etl_blocks import errors
from prefect_etl_blocks.parquet import ParquetSource
from prefect_etl_blocks.duckdb import DuckDBConnection

__version__ = "0.1.0"

__all__ = [
    "DuckDBConnection",
    "ParquetSource",
    "errors",
    "__version__",
]
