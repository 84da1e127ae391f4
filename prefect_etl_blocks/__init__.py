"""prefect-etl-blocks: Prefect 3 blocks, tasks and templates for DuckDB + Polars pipelines.

Importing the package registers its blocks with Prefect's block registry and the
``"polars-parquet"`` result serializer, so any process that reads results can decode them.
"""

from __future__ import annotations

# First, before anything imports pyarrow or NumPy: an installed version outside the declared
# range stops here with a message naming the package and what to install (docs/versions.md),
# not with a traceback from inside NumPy.
from prefect_etl_blocks.versions import require_supported_versions

require_supported_versions()

from prefect_etl_blocks import checks, errors
from prefect_etl_blocks.cache_policies import FrameInputs, SourceFingerprint
from prefect_etl_blocks.duckdb import DuckDBConnection
from prefect_etl_blocks.ducklake import DuckLakeConnection
from prefect_etl_blocks.loading import LoadResult
from prefect_etl_blocks.notifications import EmailNotifier, email_notifier
from prefect_etl_blocks.parquet import ParquetSource
from prefect_etl_blocks.results import S3ResultStorage, dataframe_result_options
from prefect_etl_blocks.serializers import PolarsParquetSerializer

__version__ = "0.1.0"

__all__ = [
    "DuckDBConnection",
    "DuckLakeConnection",
    "LoadResult",
    "EmailNotifier",
    "email_notifier",
    "ParquetSource",
    "PolarsParquetSerializer",
    "S3ResultStorage",
    "dataframe_result_options",
    "FrameInputs",
    "SourceFingerprint",
    "checks",
    "errors",
    "__version__",
]
