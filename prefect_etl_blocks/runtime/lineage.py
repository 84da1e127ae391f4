"""Lineage: every load inside a Prefect run emits the asset events Prefect's own
``@materialize(table, asset_deps=[...])`` emits.

Prefect 3's asset API (:mod:`prefect.assets`) records materializations only for tasks
decorated with ``@materialize(...)``, whose assets are fixed when the task is defined; a load's
table and source are only known when it runs. So the load emits the same events itself, with
the same names, resources, related resources and payload:

* ``prefect.asset.referenced`` for each upstream asset: the ``ParquetSource`` loaded (keyed by
  its dataset root, :func:`source_asset_key`) and the keys given as ``upstream=``;
* ``prefect.asset.materialization.succeeded`` after a load commits, or
  ``prefect.asset.materialization.failed`` when it raises (the table is unchanged), relating
  every upstream asset with role ``asset`` and ``prefect-etl-blocks`` with role
  ``asset-materialized-by`` (as ``@materialize(..., by="prefect-etl-blocks")``).

The table's key is prefect-dbt's: ``duckdb://<catalog>/<schema>/<table>`` (:func:`asset_key`),
so a dbt-duckdb model reading the table joins the same graph. The catalog is the name DuckDB
gives the file (its stem) or ``lake`` for a DuckLake; two files with one stem share a key, and
the file is named in the resource's ``prefect-etl-blocks.database`` label, the asset's URL and
the payload's ``database``. The payload is the asset metadata ``add_asset_metadata`` would
give: the rows written, inserted, updated and deleted, the table's ``row_count`` and
``schema`` after the load, the strategy, the load id (its row in ``_prefect_etl.loads``) and
the source fingerprint; for a failure, the error's class and first line. Prefect relates each
event to the current flow run and task run. Automations can trigger on either event, for
example an ``EmailNotifier`` when ``prefect.asset.materialization.failed`` fires for
``duckdb://*``.

Outside a Prefect run nothing is emitted (there is no run to relate the event to), and an
event that cannot be sent never fails the load.

Example:
    ```python
    from prefect_etl_blocks.runtime.lineage import asset_key, source_asset_key

    assert asset_key("/data/shop.duckdb", "orders") == "duckdb://shop/main/orders"
    assert source_asset_key("s3://raw/orders/*.parquet") == "s3://raw/orders"
    ```
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from prefect_etl_blocks.core.asset_keys import catalog_of, source_key, table_key
from prefect_etl_blocks.core.errors import LoadConfigError, first_line
from prefect_etl_blocks.core.identifiers import quote_parts, split_table_name

SUCCEEDED = "prefect.asset.materialization.succeeded"
FAILED = "prefect.asset.materialization.failed"
REFERENCED = "prefect.asset.referenced"
#: The tool named as ``asset-materialized-by`` on every materialization.
MATERIALIZED_BY = "prefect-etl-blocks"

_log = logging.getLogger(__name__)


def asset_key(database_path: str, table: str) -> str:
    """The asset key of ``table`` in the database at ``database_path``: prefect-dbt's key
    ``duckdb://<catalog>/<schema>/<table>`` for the same table read by dbt-duckdb.

    ``schema`` defaults to ``main``; the catalog is the one DuckDB names the file after
    (``/data/shop.duckdb`` -> ``shop``), ``memory`` in memory, ``lake`` for a DuckLake, or the
    catalog part of a three-part name (``lake.sales.orders``).
    """
    return table_key(catalog_of(database_path), table)


def source_asset_key(source: Any) -> str | None:
    """The asset key of a ``ParquetSource`` (or a path): ``file:///<root>`` or
    ``s3://<bucket>/<prefix>``, the root of its dataset (a glob's folder, a hive dataset's top
    folder); ``None`` for a frame or anything else without a path."""
    if isinstance(source, str | os.PathLike):
        path: Any = source
    elif hasattr(source, "list_files"):
        path = getattr(source, "path", None)
    else:
        return None
    try:
        return source_key(os.fspath(path))
    except Exception:  # noqa: BLE001 - a path the OS cannot resolve names no asset
        return None


def check_asset_keys(keys: Iterable[Any]) -> tuple[Any, ...]:
    """``keys`` checked with Prefect's own asset-key validator, in order, without repeats
    (anything but a string is passed on, for ``LoadOptions`` to refuse by its type).

    Raises:
        LoadConfigError: a key Prefect would refuse, named with the reason.
    """
    from prefect.assets import Asset
    from pydantic import ValidationError

    checked: list[Any] = []
    for key in keys:
        if not isinstance(key, str):
            checked.append(key)
            continue
        try:
            Asset(key=key)
        except ValidationError as exc:
            reason = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
            raise LoadConfigError(
                f"upstream asset key {_shown(key)!r} is not a valid Prefect asset key: {reason}. Use a "
                "URI with a lower-case scheme such as 's3://bucket/raw/orders', at most 512 "
                "characters, without spaces or any of #?&%\"'<>[]{}|\\^ and backticks. Nothing "
                "was loaded."
            ) from None
        if key not in checked:
            checked.append(key)
    return tuple(checked)


def _shown(key: str) -> str:
    """``key`` as an error may show it: a password in ``scheme://user:password@`` masked, and
    cut at 100 characters."""
    scheme, sep, rest = key.partition("://")
    userinfo, at, host = rest.partition("@")
    if sep and at and ":" in userinfo and "/" not in userinfo:
        key = f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
    return key if len(key) <= 100 else key[:100] + "..."


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


def table_shape(con: Any, table: str) -> dict[str, Any]:
    """``row_count`` and ``schema`` (column -> DuckDB type) of ``table`` as ``con`` sees it,
    for the materialization's metadata; empty when the table is not there.

    Run inside the load's transaction, so nothing here may fail: a failed statement would
    abort the transaction. The columns come from the catalog (``duckdb_columns()``, with bound
    parameters), and the rows are counted only in a table found there."""
    try:
        parts = split_table_name(table)
        catalog, schema = ([None, None, *parts][-3:])[:2]
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = coalesce(?, current_database()) "
            "AND lower(schema_name) = lower(coalesce(?, current_schema())) "
            "AND lower(table_name) = lower(?) ORDER BY column_index",
            [catalog, schema, parts[-1]],
        ).fetchall()
        if not columns:
            return {}
        name = quote_parts(parts)
        [(count,)] = con.execute(f"SELECT count(*) FROM {name}").fetchall()
    except Exception:  # noqa: BLE001 - metadata only; the load itself decides what fails
        return {}
    return {"row_count": int(count), "schema": {str(c[0]): str(c[1]) for c in columns}}


def upstream_keys(source: Any, upstream: Iterable[str] = ()) -> tuple[str, ...]:
    """The upstream assets of a load of ``source``: its own key first, then ``upstream``."""
    own = source_asset_key(source) if source is not None else None
    keys = ([own] if own else []) + list(upstream)
    return tuple(dict.fromkeys(keys))


def _resource(key: str, table: str, database_path: str) -> dict[str, str]:
    """The table as an event resource, as Prefect's ``AssetContext.asset_as_resource`` writes an
    asset with properties (name, URL, description), plus the database as our own label."""
    parts = key.removeprefix("duckdb://").split("/")
    resource = {
        "prefect.resource.id": key,
        "prefect.resource.name": ".".join(parts),
        "prefect.asset.description": f"Table {table} in {database_path}, loaded by prefect-etl-blocks."[:2500],
        "prefect-etl-blocks.database": database_path,
    }
    if not database_path.startswith(("ducklake:", ":memory:")) and os.path.isabs(database_path):
        from pathlib import Path

        resource["prefect.asset.url"] = Path(database_path).as_uri()
    return resource


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any], upstream: tuple[str, ...]) -> Any:
    try:
        from prefect.events import emit_event

        for key in upstream:  # as Prefect: the references first, without related resources
            emit_event(event=REFERENCED, resource={"prefect.resource.id": key}, related=[])
        related = [{"prefect.resource.id": key, "prefect.resource.role": "asset"} for key in upstream]
        related.append({"prefect.resource.id": MATERIALIZED_BY, "prefect.resource.role": "asset-materialized-by"})
        return emit_event(event=event, resource=resource, related=related, payload=payload)
    except Exception as exc:  # noqa: BLE001 - a lost event must not fail a committed load
        _log.warning("Could not emit the Prefect event %s for %s: %s", event, resource["prefect.resource.id"], exc)
        return None


def emit_load_succeeded(
    database_path: str,
    result: Any,
    fingerprint: str | None = None,
    *,
    upstream: Iterable[str] = (),
    shape: dict[str, Any] | None = None,
) -> Any:
    """Emit the references and the materialization event of a committed load (inside a
    Prefect run only; nothing for a dry run, which kept nothing)."""
    if not in_prefect_run() or getattr(result, "dry_run", False):
        return None
    key = asset_key(database_path, result.table)
    payload = {
        "rows": result.rows,
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        **(shape or {}),
        "strategy": result.mode,
        "load_id": result.load_id,
        "database": database_path,
        "source_fingerprint": fingerprint or files_fingerprint(result.files),
        "files": len(result.files),
        "schema_changes": list(result.schema_changes),
        # DuckLake: the snapshot the load committed (rollback() undoes it); None on a file.
        "snapshot_id": getattr(result, "snapshot_id", None),
    }
    payload["quarantined"] = getattr(result, "quarantined", 0)
    _track_for_downstream(key)
    return _emit(SUCCEEDED, _resource(key, result.table, database_path), payload, tuple(dict.fromkeys(upstream)))


def _track_for_downstream(key: str) -> None:
    """Offer the table to tasks downstream of this task run, as a ``@materialize`` task offers
    its assets: a ``@materialize`` task that takes this task's result (or waits for it) then
    names the table as an upstream asset (Prefect's ``AssetContext.update_tracked_assets``)."""
    try:
        from prefect.assets import Asset
        from prefect.context import FlowRunContext, TaskRunContext

        flow_run, task_run = FlowRunContext.get(), TaskRunContext.get()
        tracked = getattr(flow_run, "task_run_assets", None)
        if task_run is None or not isinstance(tracked, dict):
            return
        tracked.setdefault(task_run.task_run.id, set()).add(Asset(key=key))
    except Exception as exc:  # noqa: BLE001 - lineage must never fail a committed load
        _log.debug("Could not offer %s to downstream tasks: %s", key, exc)


def emit_load_failed(
    database_path: str,
    table: str,
    mode: str | None,
    error: BaseException,
    fingerprint: str | None = None,
    *,
    upstream: Iterable[str] = (),
) -> Any:
    """Emit the references and the failure event of a load that raised (inside a Prefect run
    only)."""
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
        "database": database_path,
        "source_fingerprint": fingerprint,
    }
    return _emit(FAILED, _resource(key, table, database_path), payload, tuple(dict.fromkeys(upstream)))


__all__ = [
    "FAILED",
    "MATERIALIZED_BY",
    "REFERENCED",
    "SUCCEEDED",
    "asset_key",
    "check_asset_keys",
    "emit_load_failed",
    "emit_load_succeeded",
    "source_asset_key",
    "source_fingerprint",
    "table_shape",
    "upstream_keys",
]
