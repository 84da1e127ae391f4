"""Lineage events: a load inside a Prefect run emits ``prefect.asset.materialization.succeeded``
(or ``.failed``) for ``duckdb://<database>/<schema>/<table>``, read back from the harness's
Prefect server through the events API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import DataCheckError
from prefect_etl_blocks.lineage import FAILED, SUCCEEDED, asset_key, emit_load_succeeded
from prefect_etl_blocks.tasks import load_to_duckdb


def _events(key: str, name: str, want: int, timeout: float = 60.0) -> list[Any]:
    """The events ``name`` of resource ``key`` on the server, waiting until ``want`` arrived
    (the client sends them in the background and the server persists them in batches)."""

    async def read() -> list[Any]:
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[key])
                ),
                limit=50,
            )
            return list(page.events)

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_asset_key_uses_the_dbt_duckdb_scheme() -> None:
    assert asset_key("/data/wh.duckdb", "orders") == "duckdb:///data/wh.duckdb/main/orders"
    assert asset_key("/data/wh.duckdb", "sales.Orders") == "duckdb:///data/wh.duckdb/sales/Orders"


def test_nothing_is_emitted_outside_a_prefect_run(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    result = db.load_frame(pl.DataFrame({"id": [1]}), "t", return_result=True)
    assert emit_load_succeeded(db.database_path, result) is None


def test_a_load_in_a_flow_emits_a_materialization_with_its_metadata(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    pl.DataFrame({"id": [1, 2]}).write_parquet(data / "a.parquet")
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))

    @flow
    def nightly() -> str:
        load_to_duckdb(ParquetSource(path=str(data)), "raw.items", db, incremental=True)
        return db.last_load.load_id

    load_id = nightly()
    key = asset_key(db.database_path, "raw.items")
    events = _events(key, SUCCEEDED, 1)
    assert len(events) == 1
    payload = events[0].payload
    assert (payload["rows"], payload["inserted"], payload["strategy"]) == (2, 2, "append")
    assert payload["load_id"] == load_id == db.load_history("raw.items")["load_id"][0]
    assert payload["source_fingerprint"] and len(payload["source_fingerprint"]) == 64
    roles = {r.role for r in events[0].related}
    assert {"flow-run", "task-run"} <= roles


def test_a_failed_load_emits_a_failure_event(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))

    @flow
    def nightly() -> None:
        db.load_frame(pl.DataFrame({"qty": [-1]}), "stock", checks=["qty >= 0"])

    with pytest.raises(DataCheckError):
        nightly()
    key = asset_key(db.database_path, "stock")
    events = _events(key, FAILED, 1)
    assert len(events) == 1
    assert events[0].payload["error"] == "DataCheckError"
    assert events[0].payload["strategy"] == "replace"
    assert not db.table_exists("stock")
