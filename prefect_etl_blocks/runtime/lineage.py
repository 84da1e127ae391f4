"""Lineage: every load inside a Prefect run emits a Prefect asset materialization event.

Prefect 3's asset API (:mod:`prefect.assets`) records materializations only for tasks
decorated with ``@materialize(...)``, whose assets are fixed when the task is defined; a load's
table is only known when it runs. So the load emits the same events Prefect's own
``@materialize`` emits, itself:

* ``prefect.asset.materialization.succeeded`` after a load commits;
* ``prefect.asset.materialization.failed`` when it raises (the table is unchanged).

The event's resource is the table as an asset, keyed ``duckdb://<database path>/<schema>/<table>``
(the scheme prefect-dbt uses, so our tables join dbt-duckdb lineage); the payload holds the rows
written, inserted, updated and deleted, the strategy, the load id (its row in
``_prefect_etl.loads``) and the source fingerprint; for a failure, the error's class and first
line. Prefect relates the event to the current flow run and task run. Automations can trigger
on either event, for example an ``EmailNotifier`` when ``prefect.asset.materialization.failed``
fires for ``duckdb://*``.

Outside a Prefect run nothing is emitted (there is no run to relate the event to), and an
event that cannot be sent never fails the load.

Example:
    ```python
    from prefect_etl_blocks.runtime.lineage import asset_key

    assert asset_key("/data/shop.duckdb", "orders") == "duckdb:///data/shop.duckdb/main/orders"
    ```
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from prefect_etl_blocks.core.errors import first_line
from prefect_etl_blocks.core.identifiers import split_table_name

SUCCEEDED = "prefect.asset.materialization.succeeded"
FAILED = "prefect.asset.materialization.failed"

_log = logging.getLogger(__name__)


def asset_key(database_path: str, table: str) -> str:
    """The asset key of ``table`` in the database at ``database_path``.

    ``schema`` defaults to ``main``; a catalog-qualified name (``lake.sales.orders``) keeps its
    catalog in front of the schema.
    """
    parts = split_table_name(table)
    if len(parts) == 1:
        parts = ["main", *parts]
    return f"duckdb://{database_path}/{'/'.join(parts)}"


def in_prefect_run() -> bool:
    """Whether a flow run or task run is active in this context."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return False
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def source_fingerprint(source: Any) -> str | None:
    """A short description of the data loaded: a ``ParquetSource``'s fingerprint, else ``None``."""
    fingerprint = getattr(source, "fingerprint", None)
    if callable(fingerprint):
        try:
            return str(fingerprint())
        except Exception:  # noqa: BLE001 - lineage metadata must never fail a load
            return None
    return None


def files_fingerprint(files: tuple[str, ...] | list[str]) -> str | None:
    """A SHA-256 of the list of files an incremental load read (``None`` for none)."""
    if not files:
        return None
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()


def _resource(key: str, table: str, database_path: str) -> dict[str, str]:
    return {
        "prefect.resource.id": key,
        "prefect.resource.name": table,
        "prefect.asset.name": table,
        "prefect-etl-blocks.database": database_path,
    }


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> Any:
    try:
        from prefect.events import emit_event

        return emit_event(
            event=event,
            resource=resource,
            related=[{"prefect.resource.id": "prefect-etl-blocks", "prefect.resource.role": "asset-materialized-by"}],
            payload=payload,
        )
    except Exception as exc:  # noqa: BLE001 - a lost event must not fail a committed load
        _log.warning("Could not emit the Prefect event %s for %s: %s", event, resource["prefect.resource.id"], exc)
        return None


def emit_load_succeeded(database_path: str, result: Any, fingerprint: str | None = None) -> Any:
    """Emit the materialization event of a committed load (inside a Prefect run only)."""
    if not in_prefect_run():
        return None
    key = asset_key(database_path, result.table)
    payload = {
        "rows": result.rows,
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "strategy": result.mode,
        "load_id": result.load_id,
        "source_fingerprint": fingerprint or files_fingerprint(result.files),
        "files": len(result.files),
        "schema_changes": list(result.schema_changes),
    }
    return _emit(SUCCEEDED, _resource(key, result.table, database_path), payload)


def emit_load_failed(
    database_path: str, table: str, mode: str | None, error: BaseException, fingerprint: str | None = None
) -> Any:
    """Emit the failure event of a load that raised (inside a Prefect run only)."""
    if not in_prefect_run():
        return None
    try:
        key = asset_key(database_path, table)
    except Exception:  # noqa: BLE001 - an invalid table name: the load already says why
        return None
    payload = {
        "strategy": mode,
        "error": type(error).__name__,
        "message": first_line(error)[:500],
        "source_fingerprint": fingerprint,
    }
    return _emit(FAILED, _resource(key, table, database_path), payload)


__all__ = [
    "FAILED",
    "SUCCEEDED",
    "asset_key",
    "emit_load_failed",
    "emit_load_succeeded",
    "source_fingerprint",
]
