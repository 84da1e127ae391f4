"""Register the ``"polars-parquet"`` serializer with Prefect once Prefect is imported.

Prefect finds a serializer by its ``type`` in a registry filled when the serializer's class is
defined, so a process that reads a result must have defined it. Importing this package used to
do that by importing Prefect; now the package loads nothing up front (``prefect-etl --help``
does not import Prefect at all), and this hook defines the serializer right after Prefect's own
``__init__`` finishes, in any process that imported this package first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

SERIALIZER_MODULE = "prefect_etl_blocks.runtime.serializers"


class _AfterPrefect(importlib.abc.MetaPathFinder):
    """Finds ``prefect`` once, through the other finders, and adds one step after it runs."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        if fullname != "prefect":
            return None
        sys.meta_path.remove(self)  # once: the lookup below, and later imports, skip this hook
        spec = importlib.util.find_spec("prefect")
        if spec is None or spec.loader is None:
            return spec
        run_prefect = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_prefect(module)
            importlib.import_module(SERIALIZER_MODULE)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's loader only
        return spec


def register_serializer_with_prefect() -> None:
    """Now if Prefect is already imported, otherwise right after it is."""
    if "prefect" in sys.modules:
        importlib.import_module(SERIALIZER_MODULE)
    elif not any(isinstance(f, _AfterPrefect) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPrefect())
