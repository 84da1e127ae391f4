"""Module paths from before the wings (0.1), kept working for code written against them.

``prefect_etl_blocks.tasks``, ``.loading.ledger``, ``.compat`` and the rest were flat modules;
they now live in ``core/``, ``runtime/``, ``blocks/``, ``integration/`` and ``tools/``
(docs/architecture.md). An import of an old path returns *the same module object* as the new
one, so names, private helpers, ``isinstance`` and monkeypatching all behave as before, and
``python -m prefect_etl_blocks.cli`` still runs. Nothing here imports a module before it is
asked for.

Example:
    ```python
    import prefect_etl_blocks.tasks
    import prefect_etl_blocks.integration.tasks

    assert prefect_etl_blocks.tasks is prefect_etl_blocks.integration.tasks
    ```
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

#: Old dotted path → where it lives now.
MOVED: dict[str, str] = {
    "prefect_etl_blocks.errors": "prefect_etl_blocks.core.errors",
    "prefect_etl_blocks.identifiers": "prefect_etl_blocks.core.identifiers",
    "prefect_etl_blocks.versions": "prefect_etl_blocks.core.versions",
    "prefect_etl_blocks.extensions": "prefect_etl_blocks.core.extensions",
    "prefect_etl_blocks.checks": "prefect_etl_blocks.core.checks",
    "prefect_etl_blocks.filters": "prefect_etl_blocks.core.filters",
    "prefect_etl_blocks.compat": "prefect_etl_blocks.core.engines",
    "prefect_etl_blocks.loading": "prefect_etl_blocks.core.loading",
    "prefect_etl_blocks.loading.boundary": "prefect_etl_blocks.core.loading.boundary",
    "prefect_etl_blocks.loading.checks": "prefect_etl_blocks.core.loading.audit",
    "prefect_etl_blocks.loading.connections": "prefect_etl_blocks.core.loading.connections",
    "prefect_etl_blocks.loading.contracts": "prefect_etl_blocks.core.loading.contracts",
    "prefect_etl_blocks.loading.engine": "prefect_etl_blocks.core.loading.engine",
    "prefect_etl_blocks.loading.incremental": "prefect_etl_blocks.core.loading.incremental",
    "prefect_etl_blocks.loading.ledger": "prefect_etl_blocks.core.loading.ledger",
    "prefect_etl_blocks.loading.staging": "prefect_etl_blocks.core.loading.staging",
    "prefect_etl_blocks.loading.strategies": "prefect_etl_blocks.core.loading.strategies",
    "prefect_etl_blocks.serializers": "prefect_etl_blocks.runtime.serializers",
    "prefect_etl_blocks.lineage": "prefect_etl_blocks.runtime.lineage",
    "prefect_etl_blocks.duckdb": "prefect_etl_blocks.blocks.duckdb",
    "prefect_etl_blocks.ducklake": "prefect_etl_blocks.blocks.ducklake",
    "prefect_etl_blocks.warehouse": "prefect_etl_blocks.blocks.warehouse",
    "prefect_etl_blocks.parquet": "prefect_etl_blocks.blocks.parquet",
    "prefect_etl_blocks.results": "prefect_etl_blocks.blocks.results",
    "prefect_etl_blocks.notifications": "prefect_etl_blocks.blocks.notifications",
    "prefect_etl_blocks.tasks": "prefect_etl_blocks.integration.tasks",
    "prefect_etl_blocks.cache_policies": "prefect_etl_blocks.integration.cache_policies",
    "prefect_etl_blocks.cli": "prefect_etl_blocks.tools.cli",
    "prefect_etl_blocks.doctor": "prefect_etl_blocks.tools.doctor",
    "prefect_etl_blocks.scaffold": "prefect_etl_blocks.tools.scaffold",
    "prefect_etl_blocks.registration": "prefect_etl_blocks.tools.registration",
    "prefect_etl_blocks.demo": "prefect_etl_blocks.tools.demo",
    "prefect_etl_blocks.sales": "prefect_etl_blocks.tools.sales",
}


def new_name(old: str) -> str | None:
    """Where ``old`` lives now: a listed path, or a submodule of a listed package
    (``prefect_etl_blocks.filters.lexer`` → ``prefect_etl_blocks.core.filters.lexer``)."""
    if old in MOVED:
        return MOVED[old]
    head = old.rpartition(".")[0]
    while head:
        if head in MOVED:
            return f"{MOVED[head]}.{old[len(head) + 1 :]}"
        head = head.rpartition(".")[0]
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands back the module at its new one (imported on first use)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        new = new_name(fullname)
        if new is None:
            return None
        spec = importlib.util.find_spec(new)
        if spec is None:  # pragma: no cover - MOVED names a module that is not there
            return None
        alias = importlib.machinery.ModuleSpec(fullname, self, origin=spec.origin)
        if spec.submodule_search_locations is not None:
            alias.submodule_search_locations = list(spec.submodule_search_locations)
        return alias

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(new_name(spec.name))  # type: ignore[arg-type]
        spec.loader_state = module.__spec__  # put back in exec_module (see there)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran once, under its new name; the import system now also files it under
        the old one (``sys.modules[old] is sys.modules[new]``). It has just stamped the alias
        spec on it; the module keeps its own, so ``importlib.reload`` and pickling see the
        real path."""
        alias = module.__spec__
        if alias is not None and isinstance(alias.loader, _Alias):
            module.__spec__ = alias.loader_state

    def get_code(self, fullname: str) -> CodeType | None:
        """For ``python -m <old path>``: runpy runs the new module's code as ``__main__``."""
        new = new_name(fullname)
        spec = importlib.util.find_spec(new) if new else None
        loader = spec.loader if spec else None
        return loader.get_code(new) if hasattr(loader, "get_code") else None  # type: ignore[union-attr]

    def is_package(self, fullname: str) -> bool:
        new = new_name(fullname)
        spec = importlib.util.find_spec(new) if new else None
        return bool(spec and spec.submodule_search_locations is not None)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (re-imports of the package do not stack it)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
