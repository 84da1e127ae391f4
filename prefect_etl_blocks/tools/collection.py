"""What Prefect imports through this package's ``prefect.collections`` entry point.

Prefect loads collections when it resolves a block type by slug (``Block.load("duckdb-connection/
warehouse")``, a result storage given as ``"s3-result-storage/results"``) and in workers. The
package itself loads its names lazily, so this module defines every exported block class and the
``"polars-parquet"`` serializer, which is what those lookups need.
"""

from __future__ import annotations

from prefect_etl_blocks.blocks.duckdb import DuckDBConnection
from prefect_etl_blocks.blocks.ducklake import DuckLakeConnection
from prefect_etl_blocks.blocks.notifications import EmailNotifier
from prefect_etl_blocks.blocks.parquet import ParquetSource
from prefect_etl_blocks.blocks.results import S3ResultStorage
from prefect_etl_blocks.runtime import serializers  # noqa: F401 - defining it registers "polars-parquet"

#: Every block class the package exports (tests/test_architecture.py holds it to ``__all__``).
BLOCK_CLASSES = [DuckDBConnection, DuckLakeConnection, EmailNotifier, ParquetSource, S3ResultStorage]
