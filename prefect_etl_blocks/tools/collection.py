"""What Prefect imports through this package's ``prefect.collections`` entry point.

Prefect loads collections when it resolves a block type by slug (``Block.load("duckdb-connection/
warehouse")``, a result storage given as ``"s3-result-storage/results"``) and in workers. The
package itself loads its names lazily, so this module defines every exported block class and the
``"polars-parquet"`` serializer, which is what those lookups need.
"""

from __future__ import annotations

import prefect_etl_blocks

BLOCK_CLASSES = [
    getattr(prefect_etl_blocks, name) for name in prefect_etl_blocks.__all__ if name[0].isupper()
]
