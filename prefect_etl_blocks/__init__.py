"""prefect-etl-blocks: Prefect 3 blocks, tasks and templates for DuckDB + Polars pipelines.

Names are imported when first used: ``import prefect_etl_blocks`` itself loads neither Prefect
nor a block, so ``prefect-etl --help`` starts at once. ``from prefect_etl_blocks import
DuckDBConnection`` loads the DuckDB block and what it needs, and nothing else (prefect_aws and
boto only with the blocks that read S3).

The ``"polars-parquet"`` result serializer is registered with Prefect as soon as Prefect is
imported in a process that imported this package (and through the ``prefect.collections``
entry point, in processes that did not), so any process that reads results can decode them.

The layout is described in docs/architecture.md; module paths from before it still import
(:mod:`prefect_etl_blocks._aliases`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# First, before anything imports pyarrow or NumPy: an installed version outside the declared
# range stops here with a message naming the package and what to install (docs/versions.md),
# not with a traceback from inside NumPy.
from prefect_etl_blocks.core.versions import require_supported_versions

require_supported_versions()

from prefect_etl_blocks import _aliases, _on_prefect_import  # noqa: E402

_aliases.install()
_on_prefect_import.register_serializer_with_prefect()

if TYPE_CHECKING:  # what type checkers and documentation tools see; at run time see _LAZY
    from prefect_etl_blocks.blocks.duckdb import DuckDBConnection as DuckDBConnection
    from prefect_etl_blocks.blocks.ducklake import DuckLakeConnection as DuckLakeConnection
    from prefect_etl_blocks.blocks.notifications import EmailNotifier as EmailNotifier
    from prefect_etl_blocks.blocks.notifications import email_notifier as email_notifier
    from prefect_etl_blocks.blocks.parquet import ParquetSource as ParquetSource
    from prefect_etl_blocks.blocks.results import S3ResultStorage as S3ResultStorage
    from prefect_etl_blocks.blocks.results import (
        dataframe_result_options as dataframe_result_options,
    )
    from prefect_etl_blocks.core import checks as checks
    from prefect_etl_blocks.core import errors as errors
    from prefect_etl_blocks.core.loading.engine import LoadResult as LoadResult
    from prefect_etl_blocks.integration.cache_policies import FrameInputs as FrameInputs
    from prefect_etl_blocks.integration.cache_policies import SourceFingerprint as SourceFingerprint
    from prefect_etl_blocks.runtime.serializers import (
        PolarsParquetSerializer as PolarsParquetSerializer,
    )

__version__ = "0.1.0"

#: Public name → the module that defines it.
_LAZY: dict[str, str] = {
    "DuckDBConnection": "prefect_etl_blocks.blocks.duckdb",
    "DuckLakeConnection": "prefect_etl_blocks.blocks.ducklake",
    "LoadResult": "prefect_etl_blocks.core.loading.engine",
    "EmailNotifier": "prefect_etl_blocks.blocks.notifications",
    "email_notifier": "prefect_etl_blocks.blocks.notifications",
    "ParquetSource": "prefect_etl_blocks.blocks.parquet",
    "PolarsParquetSerializer": "prefect_etl_blocks.runtime.serializers",
    "S3ResultStorage": "prefect_etl_blocks.blocks.results",
    "dataframe_result_options": "prefect_etl_blocks.blocks.results",
    "FrameInputs": "prefect_etl_blocks.integration.cache_policies",
    "SourceFingerprint": "prefect_etl_blocks.integration.cache_policies",
}
#: Public modules reachable as attributes (``prefect_etl_blocks.checks.not_null(...)``).
_MODULES: dict[str, str] = {
    "checks": "prefect_etl_blocks.core.checks",
    "errors": "prefect_etl_blocks.core.errors",
}

__all__ = [*_LAZY, *_MODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'prefect_etl_blocks' has no attribute {name!r}")
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
