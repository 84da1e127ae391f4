"""Lineage events: a load inside a Prefect run emits ``prefect.asset.materialization.succeeded``
(or ``.failed``) for ``duckdb://<catalog>/<schema>/<table>`` (prefect-dbt's key for the table),
plus ``prefect.asset.referenced`` for its source and ``upstream=`` assets, shaped as Prefect's own
``@materialize`` events, read back from the harness's Prefect server through the events API.
Keys: the same as prefect-dbt's for relations dbt-duckdb names (real dbt parse), one key per
dataset whatever the path's spelling, always a key Prefect accepts (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect import flow
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.core.asset_keys import (
    MAX_KEY_LENGTH,
    RESTRICTED_CHARACTERS,
    duckdb_catalog_name,
    source_key,
    table_key,
)
from prefect_etl_blocks.errors import DataCheckError, LoadConfigError
from prefect_etl_blocks.lineage import (
    FAILED,
    MATERIALIZED_BY,
    REFERENCED,
    SUCCEEDED,
    asset_key,
    emit_load_succeeded,
    source_asset_key,
)
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
    # Issue 23 changed the key from the file path to the catalog, as prefect-dbt keys it.
    assert asset_key("/data/wh.duckdb", "orders") == "duckdb://wh/main/orders"
    assert asset_key("/data/wh.duckdb", "sales.Orders") == "duckdb://wh/sales/Orders"
    assert asset_key(":memory:", "t") == "duckdb://memory/main/t"
    assert asset_key("ducklake:postgres:dbname=lake host=db (data /x)", "s.t") == "duckdb://lake/s/t"


def test_nothing_is_emitted_outside_a_prefect_run(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    result = db.load_frame(pl.DataFrame({"id": [1]}), "t", return_result=True)
    assert emit_load_succeeded(db.database_path, result) is None


def test_a_load_in_a_flow_emits_a_materialization_with_its_metadata(tmp_path: Path) -> None:
    data = tmp_path / "in"
    data.mkdir()
    pl.DataFrame({"id": [1, 2]}).write_parquet(data / "a.parquet")
    db = DuckDBConnection(database=str(tmp_path / f"wh_{uuid.uuid4().hex[:8]}.duckdb"))  # a key of its own

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
    db = DuckDBConnection(database=str(tmp_path / f"wh_{uuid.uuid4().hex[:8]}.duckdb"))  # a key of its own

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


# ---------------------------------------------------------------------------- keys (issue 23)
def _prefect_accepts(key: str) -> bool:
    from prefect.assets import Asset

    Asset(key=key)  # raises when Prefect refuses the key
    return True


def test_refused_characters_include_prefects() -> None:
    from prefect.types import names

    assert set(names.RESTRICTED_ASSET_CHARACTERS) <= RESTRICTED_CHARACTERS
    assert names.MAX_ASSET_KEY_LENGTH == MAX_KEY_LENGTH


_FILE_NAME = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stem=_FILE_NAME)
def test_catalog_name_is_the_one_duckdb_gives_the_file(stem: str) -> None:
    folder = Path(tempfile.mkdtemp())
    path = folder / stem
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error:  # a name DuckDB cannot open as a file (a folder, say): no catalog
        return
    try:
        [(catalog,)] = con.execute("SELECT current_database()").fetchall()
    finally:
        con.close()
    assert duckdb_catalog_name(str(path)) == catalog


_IDENT = st.text(st.characters(blacklist_characters='"\x00', blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(catalog=_IDENT, schema=_IDENT, table=_IDENT)
def test_table_keys_are_prefect_dbts_for_the_relation_dbt_duckdb_renders(catalog: str, schema: str, table: str) -> None:
    from dbt.adapters.duckdb.relation import DuckDBRelation
    from prefect_dbt.utilities import format_resource_id

    relation = DuckDBRelation.create(database=catalog, schema=schema, identifier=table).render()
    quoted = ".".join('"' + p + '"' for p in (schema, table))
    assert table_key(catalog, quoted) == format_resource_id("duckdb", relation)


@pytest.mark.slow  # dbt parses a project: about 5 s (the rendering test above is the fast twin)
def test_table_key_joins_a_real_dbt_duckdb_project_reading_the_table(tmp_path: Path) -> None:
    """dbt-duckdb's own manifest: a source and a model over our table, keyed by prefect-dbt."""
    from dbt.cli.main import dbtRunner
    from prefect_dbt.utilities import format_resource_id

    database = tmp_path / "shop.v2.duckdb"  # DuckDB (and dbt-duckdb) call this catalog "shop"
    db = DuckDBConnection(database=str(database))
    db.load_frame(pl.DataFrame({"id": [1]}), "raw.items")
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: probe\nversion: '1.0'\nprofile: probe\n")
    (tmp_path / "profiles.yml").write_text(
        f"probe:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: '{database}'\n"
    )
    (tmp_path / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: items\n"
    )
    (tmp_path / "models" / "clean_items.sql").write_text("select * from {{ source('raw', 'items') }}\n")
    done = dbtRunner().invoke(
        ["parse", "--project-dir", str(tmp_path), "--profiles-dir", str(tmp_path), "--quiet"]
    )
    assert done.success, done.exception
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    source = manifest["sources"]["source.probe.raw.items"]["relation_name"]
    model = manifest["nodes"]["model.probe.clean_items"]["relation_name"]
    assert format_resource_id("duckdb", source) == asset_key(db.database_path, "raw.items") == "duckdb://shop/raw/items"
    assert format_resource_id("duckdb", model) == asset_key(db.database_path, "clean_items")


_DIR_NAME = st.text(
    st.characters(blacklist_characters="/\x00*?[", blacklist_categories=("Cs",)), min_size=1, max_size=40
).filter(lambda n: n not in (".", "..") and "=" not in n and len(n.encode()) < 200 and not n.startswith("~"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_DIR_NAME)
def test_every_spelling_of_a_local_dataset_has_one_valid_key(name: str) -> None:
    base = Path(os.path.realpath(tempfile.mkdtemp()))
    dataset = base / name
    (dataset / "part=1").mkdir(parents=True)
    (base / "link").symlink_to(dataset)
    spellings = [
        str(dataset), f"{dataset}/", f"{base}//{name}", f"{base}/./{name}", f"{dataset}/../{name}",
        f"{dataset}/*.parquet", f"{dataset}/**/*.parquet", f"{dataset}/part=*/*.parquet",
        f"{dataset}/part=1/", str(base / "link"), f"{base}/link/*/*.parquet",
    ]
    here = os.getcwd()
    os.chdir(base)
    try:
        spellings += [name, f"./{name}/", f"{name}/*.parquet"]
        keys = {source_key(s) for s in spellings}
    finally:
        os.chdir(here)
    assert len(keys) == 1, keys
    [key] = keys
    assert key.startswith("file:///") and len(key) <= MAX_KEY_LENGTH and _prefect_accepts(key)
    assert source_key(str(base / (name + "x"))) != key  # another dataset, another key
    assert source_asset_key(ParquetSource(path=f"{dataset}/*.parquet")) == key


@settings(max_examples=60, deadline=None)
@given(
    bucket=st.from_regex(r"[a-z0-9][a-z0-9-]{2,20}", fullmatch=True),
    prefix=st.lists(_DIR_NAME, min_size=1, max_size=3),
)
def test_every_spelling_of_an_s3_dataset_has_one_valid_key(bucket: str, prefix: list[str]) -> None:
    p = "/".join(prefix)
    spellings = [
        f"s3://{bucket}/{p}", f"s3://{bucket}/{p}/", f"S3://{bucket.upper()}/{p}", f"s3a://{bucket}/{p}",
        f"s3://key:secret@{bucket}/{p}/*.parquet", f"s3://{bucket}/{p}/**/*.parquet",
        f"s3://{bucket}/{p}/dt=*/x.parquet", f"s3://{bucket}/{p}/dt=2024-01-01/",
    ]
    keys = {source_key(s) for s in spellings}
    assert len(keys) == 1, keys
    [key] = keys
    assert key.startswith(f"s3://{bucket}/") and len(key) <= MAX_KEY_LENGTH and _prefect_accepts(key)


@settings(max_examples=200, deadline=None)
@given(path=st.text(max_size=700), remote=st.booleans())
def test_any_path_gives_a_key_prefect_accepts(path: str, remote: bool) -> None:
    key = source_key(("s3://bucket/" if remote else "/") + path)
    assert len(key) <= MAX_KEY_LENGTH and _prefect_accepts(key)


@settings(max_examples=100, deadline=None)
@given(a=_DIR_NAME, b=_DIR_NAME)
def test_different_folders_have_different_keys(a: str, b: str) -> None:
    assert (source_key(f"/data/{a}") == source_key(f"/data/{b}")) == (a == b)


def test_upstream_keys_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    with pytest.raises(LoadConfigError) as refused:
        db.load_frame(pl.DataFrame({"id": [1]}), "t", upstream=["s3://raw/my orders"])
    assert str(refused.value).startswith(
        "upstream asset key 's3://raw/my orders' is not a valid Prefect asset key: Asset key "
        "cannot contain ' '."
    )
    with pytest.raises(LoadConfigError, match="'crm.customers' is not a valid Prefect asset key"):
        db.load_parquet(str(tmp_path), "t", upstream="crm.customers")
    with pytest.raises(LoadConfigError) as masked:
        db.load_frame(pl.DataFrame({"id": [1]}), "t", upstream=["postgres://etl:s3cret pw@db/crm"])
    assert "s3cret" not in str(masked.value) and "'postgres://etl:***@db/crm'" in str(masked.value)
    assert not db.table_exists("t") and db.load_history().height == 0
    assert db.load_frame(pl.DataFrame({"id": [1]}), "t", upstream=[Asset(key="postgres://crm/customers")]) == 1


def _task_run_name(event: Any) -> str:
    return next((r.get("prefect.resource.name", "") for r in event.related if r.role == "task-run"), "")


def _shape(event: Any) -> tuple[Any, ...]:
    """What must be alike: name, the Prefect labels of the resource, the related roles, the
    upstream assets related, the tool, and whether the payload is metadata (a dict)."""
    labels = sorted(k for k in event.resource.keys() if k.startswith("prefect."))
    roles = sorted({r.role for r in event.related})
    assets = sorted(r.id for r in event.related if r.role == "asset")
    by = sorted(r.id for r in event.related if r.role == "asset-materialized-by")
    return event.event, labels, roles, assets, by, isinstance(event.payload, dict)


def test_a_parquet_load_names_its_source_as_materialize_does(tmp_path: Path) -> None:
    data = tmp_path / "raw orders"  # a space: the key escapes it
    (data / "day=1").mkdir(parents=True)
    pl.DataFrame({"id": [1, 2], "qty": [3.5, 4.0]}).write_parquet(data / "day=1" / "a.parquet")
    # A catalog name of its own: keys no longer hold the file's path, and the harness's server
    # keeps every test's events, so another "shop" file's loads would share these keys.
    shop = f"shop_{uuid.uuid4().hex[:8]}"
    db = DuckDBConnection(database=str(tmp_path / f"{shop}.duckdb"))
    source = ParquetSource(path=f"{data}/day=*/*.parquet")
    source_key_ = source_asset_key(source)
    assert source_key_ == "file://" + str(data).replace(" ", "~20")
    table_key_ = asset_key(db.database_path, "raw.orders")
    reference = Asset(
        key="duckdb://reference/main/orders",
        properties=AssetProperties(name="reference.main.orders", description="d", url="file:///x"),
    )

    @materialize(reference, asset_deps=[source_key_], by=MATERIALIZED_BY)
    def by_prefect() -> None:
        add_asset_metadata(reference, {"rows": 2})

    @materialize(f"duckdb://{shop}/main/report")
    def report(loaded: Any) -> None:
        """Downstream of the load: Prefect relates the loaded table as its upstream asset."""

    @flow
    def nightly() -> None:
        by_prefect()
        loaded = load_to_duckdb(
            source, "raw.orders", db, upstream=[Asset(key="postgres://crm/public/customers")],
            return_result=True,  # an object Prefect can trace to its task run (an int is not)
        )
        report(loaded)

    nightly()
    referenced = _events(source_key_, REFERENCED, 2)
    ours = next(e for e in referenced if _task_run_name(e).startswith("load-to-duckdb"))
    theirs = next(e for e in referenced if _task_run_name(e).startswith("by_prefect"))
    assert _shape(ours) == _shape(theirs) and ours.resource.id == theirs.resource.id
    assert _events("postgres://crm/public/customers", REFERENCED, 1)

    [ours] = _events(table_key_, SUCCEEDED, 1)
    [theirs] = _events(reference.key, SUCCEEDED, 1)
    assert _shape(ours)[:3] == _shape(theirs)[:3] and _shape(ours)[4:] == _shape(theirs)[4:]
    assert _shape(theirs)[3] == [source_key_]
    assert _shape(ours)[3] == sorted([source_key_, "postgres://crm/public/customers"])
    payload = ours.payload
    assert (payload["rows"], payload["row_count"]) == (2, 2)
    assert payload["schema"] == {"id": "BIGINT", "qty": "DOUBLE", "day": "BIGINT"}  # hive column too
    assert payload["database"] == db.database_path == ours.resource["prefect-etl-blocks.database"]
    assert ours.resource["prefect.asset.url"] == (tmp_path / f"{shop}.duckdb").as_uri()
    assert table_key_ == f"duckdb://{shop}/raw/orders"
    [downstream] = _events(f"duckdb://{shop}/main/report", SUCCEEDED, 1)
    assert [r.id for r in downstream.related if r.role == "asset"] == [table_key_]


def test_an_s3_load_names_its_prefix_and_a_failed_load_its_upstream(
    aws_credentials: Any, parquet_object: str, tmp_path: Path
) -> None:
    db = DuckDBConnection(database=str(tmp_path / "lake_side.duckdb"))
    source = ParquetSource(path=parquet_object, aws_credentials=aws_credentials)
    bucket = parquet_object.split("/")[2]

    @flow
    def nightly() -> None:
        db.load_parquet(source, "raw.sales", incremental=True)
        db.load_parquet(source, "raw.sales_checked", checks=["1 = 0"])

    with pytest.raises(DataCheckError):
        nightly()
    # An object is its own dataset; its key is the object's URI.
    assert source_asset_key(source) == f"s3://{bucket}/raw/sales.parquet"
    [good] = _events(asset_key(db.database_path, "raw.sales"), SUCCEEDED, 1)
    assert [r.id for r in good.related if r.role == "asset"] == [f"s3://{bucket}/raw/sales.parquet"]
    [bad] = _events(asset_key(db.database_path, "raw.sales_checked"), FAILED, 1)
    assert [r.id for r in bad.related if r.role == "asset"] == [f"s3://{bucket}/raw/sales.parquet"]
    assert len(_events(f"s3://{bucket}/raw/sales.parquet", REFERENCED, 2)) == 2


@pytest.mark.ducklake
def test_a_ducklake_table_is_keyed_by_the_lakes_catalog_alias(tmp_path: Path) -> None:
    from prefect_etl_blocks import DuckLakeConnection

    lake = DuckLakeConnection(catalog=f"{tmp_path}/c.ducklake", data_path=str(tmp_path / "data"))

    @flow
    def nightly() -> None:
        lake.load_frame(pl.DataFrame({"id": [1, 2, 3]}), "sales.orders", upstream="s3://raw/orders")

    nightly()
    key = asset_key(lake.database_path, "sales.orders")
    assert key == "duckdb://lake/sales/orders"  # dbt-duckdb: attach the lake with alias "lake"
    [event] = _events(key, SUCCEEDED, 1)
    assert (event.payload["row_count"], event.payload["schema"]) == (3, {"id": "BIGINT"})
    assert event.payload["database"] == lake.database_path == event.resource["prefect-etl-blocks.database"]
    assert [r.id for r in event.related if r.role == "asset"] == ["s3://raw/orders"]
