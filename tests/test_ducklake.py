"""DuckLakeConnection against real parts: a PostgreSQL catalog (Debian's server on loopback),
Parquet data in a local folder or on S3 (moto's server over HTTP), extensions installed offline
from the DuckDB 1.5.5 wheels. Run in the DuckLake venv: ``ci/ducklake-leg.sh``."""

# ruff: noqa: F811  (fixtures are imported by name until tests/conftest.py lists their modules)
from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import time
import traceback
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from prefect_etl_blocks.checks import Check, CheckResult, unique
from prefect_etl_blocks.ducklake import DuckLakeConnection, close_instances, scrub
from prefect_etl_blocks.errors import (
    DataCheckError,
    LoadConfigError,
    QueryError,
    SchemaMismatchError,
    SourceUnavailableError,
    TransactionConflictError,
)
from tests.fixtures.postgres import PG_PASSWORD, PostgresServer, pg_database, pg_server  # noqa: F401
from tests.fixtures.s3 import aws_credentials, bucket, s3_client, s3_server  # noqa: F401

pytestmark = [pytest.mark.ducklake, pytest.mark.timeout(300)]

WRITERS, APPENDS, ROWS = 4, 5, 20_000


@pytest.fixture
def lake(pg_server: PostgresServer, pg_database: str, tmp_path: Path) -> DuckLakeConnection:
    """A fresh lake: PostgreSQL catalog (password-checked role), local data folder."""
    return DuckLakeConnection(
        catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "data"),
        lock_timeout_seconds=60,
    )


def other(lake: DuckLakeConnection) -> DuckLakeConnection:
    """A second block on the same lake with its own DuckDB instance, as another process would
    have (blocks with identical settings share one instance per process)."""
    return lake.model_copy(update={"settings": {**lake.settings, "threads": 1}})


# ---------------------------------------------------------------------- many writers at once
def _append_worker(block: DuckLakeConnection, writer: int) -> int:
    attempts = 0
    for batch in range(APPENDS):
        start = (writer * APPENDS + batch) * ROWS
        frame = pl.DataFrame({"id": pl.int_range(start, start + ROWS, eager=True), "writer": writer})
        block.load_frame(frame, "events", mode="append")
        attempts += block.last_load_attempts
    return attempts


def _run_writers(lake: DuckLakeConnection) -> list[int]:
    lake.execute("CREATE TABLE events (id BIGINT, writer INTEGER)")
    seen: list[int] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(WRITERS) as pool:
        pending = pool.starmap_async(_append_worker, [(lake, w) for w in range(WRITERS)])
        # A reader polls while the writers commit: it only ever sees whole commits.
        with lake:
            while not pending.ready():
                seen.append(lake.fetch_all("SELECT count(*) FROM events")[0][0])
                time.sleep(0.05)
        pending.get(timeout=240)
    assert all(n % ROWS == 0 for n in seen), sorted(set(seen))
    assert seen == sorted(seen)
    # It did read while commits were landing, not only before and after them.
    assert any(0 < n < WRITERS * APPENDS * ROWS for n in seen), sorted(set(seen))
    return seen


def test_four_processes_append_concurrently_with_no_row_lost_local(lake: DuckLakeConnection) -> None:
    _run_writers(lake)
    total, distinct = lake.fetch_one("SELECT count(*), count(DISTINCT id) FROM events")
    assert (total, distinct) == (WRITERS * APPENDS * ROWS, WRITERS * APPENDS * ROWS)
    per_writer = lake.fetch_all("SELECT writer, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert per_writer == [(w, APPENDS * ROWS) for w in range(WRITERS)]
    files = list(Path(lake.data_path).rglob("*.parquet"))
    assert len(files) >= WRITERS * APPENDS


def test_four_processes_append_concurrently_with_no_row_lost_s3(
    pg_server: PostgresServer, pg_database: str, aws_credentials, bucket: str, s3_client  # noqa: F811
) -> None:
    lake = DuckLakeConnection(
        catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=f"s3://{bucket}/lake/",
        aws_credentials=aws_credentials,
    )
    _run_writers(lake)
    assert lake.fetch_one("SELECT count(*), count(DISTINCT id) FROM events") == (400_000, 400_000)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="lake/").get("Contents", [])]
    assert sum(k.endswith(".parquet") for k in keys) >= WRITERS * APPENDS


def _attach_at_once(block: DuckLakeConnection, writer: int, barrier, results) -> None:
    try:
        barrier.wait(timeout=120)
        block.load_frame(pl.DataFrame({"writer": [writer]}), f"first_{writer}")
        results.put((writer, "ok"))
    except BaseException as exc:  # reported to the test, which names it
        results.put((writer, f"{type(exc).__name__}: {exc}"))


def test_processes_attaching_a_new_catalog_at_once_all_succeed(pg_server: PostgresServer, tmp_path: Path) -> None:
    """The first ATTACH creates the catalog's tables; Dask workers starting together on a new
    lake all do it at once. Before the fix most trials lost one or more workers to
    'duplicate key value violates unique constraint' (4 of 6 trials in our reproduction)."""
    context = multiprocessing.get_context("spawn")
    for trial in range(3):
        lake = DuckLakeConnection(
            catalog=f"postgres:{pg_server.dsn(pg_server.create_database())}",
            data_path=str(tmp_path / f"data{trial}"),
        )
        barrier, results = context.Barrier(WRITERS), context.Queue()
        workers = [context.Process(target=_attach_at_once, args=(lake, w, barrier, results)) for w in range(WRITERS)]
        for worker in workers:
            worker.start()
        outcome = dict(results.get(timeout=240) for _ in workers)
        for worker in workers:
            worker.join(timeout=60)
        assert outcome == {w: "ok" for w in range(WRITERS)}, (trial, outcome)
        tables = lake.fetch_all("SELECT table_name FROM information_schema.tables ORDER BY 1")
        assert [t for (t,) in tables if t.startswith("first_")] == [f"first_{w}" for w in range(WRITERS)]
        close_instances()


# ---------------------------------------------------------------------- the engine's features
def test_every_mode_through_the_engine_run_twice(lake: DuckLakeConnection) -> None:
    first = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    second = pl.DataFrame({"id": [3, 4], "v": ["C", "d"]})
    expected = {
        "replace": [(3, "C"), (4, "d")],
        "append": [(1, "a"), (2, "b"), (3, "c"), (3, "C"), (4, "d")],
        "upsert": [(1, "a"), (2, "b"), (3, "C"), (4, "d")],
        "delete-insert": [(1, "a"), (2, "b"), (3, "C"), (4, "d")],
        "insert-only": [(1, "a"), (2, "b"), (3, "c"), (4, "d")],
    }
    with lake:
        for mode, rows in expected.items():
            table = "modes." + mode.replace("-", "_")
            keys = None if mode in ("replace", "append") else "id"
            lake.load_frame(first, table, mode=mode, keys=keys)
            lake.load_frame(second, table, mode=mode, keys=keys)
            lake.load_frame(second, table, mode=mode, keys=keys) if mode != "append" else None
            assert lake.fetch_all(f"SELECT id, v FROM {table} ORDER BY id, v DESC") == rows, mode
        lake.load_frame(first, "modes.history", mode="scd2", keys="id")
        lake.load_frame(second, "modes.history", mode="scd2", keys="id")
        current = lake.fetch_all("SELECT id, v FROM modes.history WHERE is_current ORDER BY id")
        assert current == [(1, "a"), (2, "b"), (3, "C"), (4, "d")]
        assert lake.fetch_one("SELECT count(*) FROM modes.history WHERE NOT is_current") == (1,)
        with pytest.raises(LoadConfigError, match='already exists'):
            lake.load_frame(first, "modes.replace", mode="fail")


def test_schema_contract_and_checks_leave_the_lake_as_it_was(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"id": [1, 2], "qty": [5, 7]}), "stock")
    before = lake.current_snapshot()
    with pytest.raises(SchemaMismatchError, match="extra"):
        lake.load_frame(pl.DataFrame({"id": [3], "qty": [1], "extra": ["x"]}), "stock", mode="append")
    with pytest.raises(DataCheckError, match="qty >= 0"):
        lake.load_frame(pl.DataFrame({"id": [3], "qty": [-1]}), "stock", mode="append", checks=["qty >= 0"])
    with pytest.raises(DataCheckError, match=r"unique\(id\)"):
        lake.load_frame(pl.DataFrame({"id": [2], "qty": [1]}), "stock", mode="append", checks=[unique("id")])
    assert lake.current_snapshot() == before
    assert lake.fetch_all("SELECT * FROM stock ORDER BY id") == [(1, 5), (2, 7)]
    result = lake.load_frame(pl.DataFrame({"id": [3], "qty": [1], "extra": ["x"]}), "stock", mode="append",
                             on_schema_change="append_new_columns", return_result=True)
    assert result.schema_changes and lake.fetch_one("SELECT extra FROM stock WHERE id = 3") == ("x",)


def test_load_parquet_and_a_frame_give_the_same_table(lake: DuckLakeConnection, tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": list(range(1000)), "amount": [i * 0.5 for i in range(1000)]})
    frame.write_parquet(tmp_path / "part.parquet")
    assert lake.load_parquet(str(tmp_path / "part.parquet"), "from_file") == 1000
    lake.load_frame(frame.lazy(), "from_frame")
    assert_frame_equal(lake.query("SELECT * FROM from_file ORDER BY id"), lake.query("SELECT * FROM from_frame ORDER BY id"))


def _rows(draw_keys: list[int], values: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"id": draw_keys, "v": values[: len(draw_keys)]}, schema={"id": pl.Int64, "v": pl.String})


@st.composite
def keyed_frames(draw: st.DrawFn, min_size: int) -> pl.DataFrame:
    keys = draw(st.lists(st.integers(0, 12), unique=True, min_size=min_size, max_size=8))
    values = draw(st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=len(keys), max_size=len(keys)))
    return _rows(keys, values)


def _model(mode: str, old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """What each mode must leave in the table, in plain Polars."""
    if mode == "append":
        return pl.concat([old, new])
    if mode == "insert-only":
        return pl.concat([old, new.filter(~pl.col("id").is_in(old["id"].implode()))])
    return pl.concat([old.filter(~pl.col("id").is_in(new["id"].implode())), new])  # upsert, delete-insert


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=keyed_frames(1), second=keyed_frames(0),
       mode=st.sampled_from(["append", "upsert", "delete-insert", "insert-only"]))
def test_keyed_modes_match_a_polars_model(lake: DuckLakeConnection, first: pl.DataFrame, second: pl.DataFrame,
                                          mode: str) -> None:
    table = f"model_{uuid.uuid4().hex[:12]}"
    keys = None if mode == "append" else "id"
    lake.load_frame(first, table, mode="replace")
    lake.load_frame(second, table, mode=mode, keys=keys)
    got = lake.query(f"SELECT id, v FROM {table}").sort("id", "v", nulls_last=True)
    want = _model(mode, first, second).sort("id", "v", nulls_last=True)
    assert_frame_equal(got, want)


class _CommitsFirst(Check):
    """A check that, the first time it runs, has another writer commit a conflicting delete
    (so this load's COMMIT must conflict), and passes."""

    name = "interfere"
    scope = "data"

    def __init__(self, rival: DuckLakeConnection) -> None:
        self.rival, self.runs = rival, 0

    def evaluate(self, con, relation: str) -> CheckResult:
        self.runs += 1
        if self.runs == 1:
            self.rival.execute("DELETE FROM daily WHERE day = 'd0'")
        return CheckResult(self.name, self.scope, 0)


def test_commit_conflict_is_retried_from_the_start(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"day": ["d0", "d1", "d1"], "qty": [1, 2, 3]}), "daily")
    check = _CommitsFirst(other(lake))
    result = lake.load_frame(pl.DataFrame({"day": ["d1"], "qty": [9]}), "daily", mode="delete-insert",
                             keys="day", checks=[check], return_result=True)
    assert lake.last_load_attempts == 2 and check.runs == 2
    assert (result.deleted, result.inserted) == (2, 1)
    assert lake.fetch_all("SELECT day, qty FROM daily ORDER BY day") == [("d1", 9)]


def test_a_one_shot_stream_is_not_read_twice_its_conflict_is_raised(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"day": ["d0", "d1"], "qty": [1, 2]}), "daily")
    stream = pa.RecordBatchReader.from_batches(
        pa.schema([("day", pa.string()), ("qty", pa.int64())]),
        [pa.record_batch({"day": ["d1"], "qty": [9]})],
    )
    with pytest.raises(TransactionConflictError, match="one-shot stream") as caught:
        lake.load_frame(stream, "daily", mode="delete-insert", keys="day", checks=[_CommitsFirst(other(lake))])
    assert caught.value.retryable
    assert lake.fetch_all("SELECT day, qty FROM daily ORDER BY day") == [("d1", 2)]


def test_a_reader_sees_only_committed_snapshots(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    reader = other(lake)
    with lake.get_connection() as writer:
        writer.execute("BEGIN TRANSACTION")
        writer.execute("INSERT INTO t SELECT range FROM range(2, 100)")
        assert writer.execute("SELECT count(*) FROM t").fetchall() == [(99,)]
        assert reader.fetch_all("SELECT count(*) FROM t") == [(1,)]
        writer.execute("COMMIT")
    assert reader.fetch_all("SELECT count(*) FROM t") == [(99,)]
    first = int(reader.snapshots()["snapshot_id"].min())
    assert reader.fetch_one(f"SELECT count(*) FROM t AT (VERSION => {first + 1})") == (1,)


def test_maintenance_compacts_expires_and_cleans_up(lake: DuckLakeConnection) -> None:
    lake = lake.model_copy(update={"settings": {"ducklake_default_data_inlining_row_limit": 0}})
    for i in range(6):
        lake.load_frame(pl.DataFrame({"id": [i] * 50}), "small", mode="append")
    data = Path(lake.data_path)

    def table_files() -> list[Path]:  # the load ledger (_prefect_etl) keeps files of its own
        return [p for p in data.rglob("*.parquet") if "_prefect_etl" not in p.parts]

    assert len(table_files()) == 6
    merged = lake.compact("main.small")
    assert merged.row(0, named=True)["files_processed"] == 6
    assert merged.row(0, named=True)["files_created"] == 1
    expired = lake.expire_snapshots(dt.timedelta(0))
    assert expired.height >= 6
    removed = lake.cleanup_old_files(cleanup_all=True)
    assert removed.height == 6
    assert len(table_files()) == 1
    assert lake.fetch_one("SELECT count(*), sum(id) FROM small") == (300, 50 * sum(range(6)))
    with pytest.raises(LoadConfigError, match="older_than"):
        lake.expire_snapshots()


# ---------------------------------------------------------------------- secrets and errors
def test_the_catalog_password_never_shows(pg_server: PostgresServer, pg_database: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    good = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "d"))
    good.load_frame(pl.DataFrame({"id": [1]}), "t")  # the role's password really is checked
    uri = DuckLakeConnection(catalog=f"postgres:{pg_server.url(pg_database, driver='postgresql')}",
                             data_path=str(tmp_path / "d"))
    assert uri.fetch_one("SELECT count(*) FROM t") == (1,)
    missing = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn('no_such_db')}", data_path=str(tmp_path / "d"))
    texts = [repr(good), str(good), repr(uri), good.model_dump_json(), good.database_path, uri.database_path]
    with pytest.raises(SourceUnavailableError, match="no_such_db") as caught:
        missing.fetch_one("SELECT 1")
    texts.append("".join(traceback.format_exception(caught.value)))
    with pytest.raises(Exception) as failed_load:
        good.load_frame(pl.DataFrame({"id": ["x"]}), "t", mode="append")
    texts.append("".join(traceback.format_exception(failed_load.value)))
    texts.append(caplog.text)
    assert "********" in repr(good) and "********" in repr(uri)
    for text in texts:
        assert PG_PASSWORD not in text


def test_wrong_password_is_a_clear_error_without_it(pg_server: PostgresServer, pg_database: str, tmp_path: Path) -> None:
    wrong = "Wrong-Pass-0000"
    lake = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database, password=wrong)}",
                              data_path=str(tmp_path / "d"))
    with pytest.raises(SourceUnavailableError, match="password authentication failed") as caught:
        lake.query("SELECT 1")
    assert wrong not in "".join(traceback.format_exception(caught.value))


def test_a_refused_catalog_is_not_echoed() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is empty") as caught:
        DuckLakeConnection(catalog=f"postgres:password={PG_PASSWORD}")
    assert PG_PASSWORD not in str(caught.value)


def test_scrub_masks_values_and_password_pairs() -> None:
    assert scrub("dbname=x password=abc123 host=h", []) == "dbname=x password=******** host=h"
    assert scrub("url postgresql://u:abc123@h/db", ["abc123"]) == "url postgresql://u:********@h/db"


def test_a_data_path_that_differs_from_the_catalog_is_refused(lake: DuckLakeConnection, tmp_path: Path) -> None:
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    moved = lake.model_copy(update={"data_path": str(tmp_path / "elsewhere")})
    with pytest.raises(LoadConfigError, match="differs from the data path stored"):
        moved.fetch_one("SELECT 1")
    assert lake.model_copy(update={"data_path": None}).fetch_one("SELECT count(*) FROM t") == (1,)


def test_read_only_lake_reads_and_refuses_loads(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"id": [1, 2]}), "t")
    reader = lake.model_copy(update={"read_only": True})
    assert reader.query("SELECT count(*) AS n FROM t")["n"].to_list() == [2]
    with pytest.raises(LoadConfigError, match="read_only"):
        reader.load_frame(pl.DataFrame({"id": [3]}), "t", mode="append")


def test_query_mistakes_are_data_errors_named_as_on_a_file(lake: DuckLakeConnection) -> None:
    """The lake's DatabaseBlock methods classify DuckDB's refusals as DuckDBConnection's do: a
    mistyped name or bad syntax is a QueryError (a DataError, never retried)."""
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    for call in (lake.fetch_all, lake.fetch_one, lake.execute, lake.query):
        with pytest.raises(QueryError, match="no_such_table"):
            call("SELECT * FROM no_such_table")
    with pytest.raises(QueryError, match="syntax"):
        lake.fetch_many("SELEC 1")
    assert lake.fetch_all("SELECT id FROM t") == [(1,)]


def test_async_twins_work_in_async_code(lake: DuckLakeConnection) -> None:
    async def flow_body() -> tuple:
        await lake.aload_frame(pl.DataFrame({"id": [1, 2]}), "t")
        total = await lake.fetch_one("SELECT count(*) FROM t")
        summed = await lake.aquery("SELECT sum(id) AS s FROM t")
        return total, summed["s"].to_list()

    assert asyncio.run(flow_body()) == ((2,), [3])


def test_execute_many_and_loads_join_an_open_transaction(lake: DuckLakeConnection) -> None:
    lake.execute("CREATE TABLE t (id INTEGER)")
    with lake.get_connection() as con:
        con.execute("BEGIN TRANSACTION")
        lake.execute_many("INSERT INTO t VALUES (?)", [[1], [2]])
        lake.load_frame(pl.DataFrame({"id": [3]}, schema={"id": pl.Int32}), "t", mode="append")
        assert other(lake).fetch_one("SELECT count(*) FROM t") == (0,)
        con.execute("ROLLBACK")
    assert lake.fetch_one("SELECT count(*) FROM t") == (0,)
    lake.execute_many("INSERT INTO t VALUES (?)", [[1], [2]])
    assert lake.fetch_all("SELECT id FROM t ORDER BY id") == [(1,), (2,)]


def test_blocks_with_one_configuration_share_an_instance_until_closed(lake: DuckLakeConnection) -> None:
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    twin = lake.model_copy()
    with lake.get_connection() as a, twin.get_connection() as b:
        assert a is not b
        a.execute("CREATE TEMP TABLE only_here AS SELECT 1 AS x")
        assert b.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
        assert b.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'only_here'").fetchall() == [(0,)]
    assert close_instances() >= 1
    assert twin.fetch_one("SELECT count(*) FROM t") == (1,)  # attaches again


# The methods shared with DuckDBConnection (prefect_etl_blocks.warehouse) carry DuckDB examples,
# which the main suite runs; the lake's own examples are in its class docstring.
def test_docstring_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples in the lake's docstring (a local DuckDB metadata file as catalog) run."""
    import re
    import textwrap

    monkeypatch.chdir(tmp_path)
    doc = textwrap.dedent(DuckLakeConnection.__doc__)
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if '.load("BLOCK_NAME")' not in b]
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(textwrap.dedent(code), "DuckLakeConnection docstring", "exec"), {})


_HOLD = """
import sys, time
from prefect_etl_blocks.ducklake import DuckLakeConnection
lake = DuckLakeConnection(catalog=sys.argv[1], data_path=sys.argv[2])
with lake:
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_duckdb_metadata_file_held_by_another_process_is_waited_for(tmp_path: Path) -> None:
    import subprocess
    import sys

    from prefect_etl_blocks.errors import DuckDBLockTimeoutError

    catalog, data = str(tmp_path / "catalog.ducklake"), str(tmp_path / "data")
    DuckLakeConnection(catalog=catalog, data_path=data).load_frame(pl.DataFrame({"id": [1]}), "t")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, catalog, data, "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        impatient = DuckLakeConnection(catalog=catalog, data_path=data, lock_timeout_seconds=0.5)
        with pytest.raises(DuckDBLockTimeoutError, match="locked by another process; waited 0.5 s"):
            impatient.fetch_one("SELECT count(*) FROM t")
        patient = DuckLakeConnection(catalog=catalog, data_path=data, lock_timeout_seconds=30)
        assert patient.fetch_one("SELECT count(*) FROM t") == (1,)  # once the holder is done
    finally:
        holder.kill()
        holder.wait(timeout=10)


def _load_partition(lake: DuckLakeConnection, path: str) -> int:
    return lake.load_parquet(path, "sales", mode="append")


def test_dask_workers_load_their_partitions_straight_into_the_lake_on_s3(
    pg_server: PostgresServer, pg_database: str, aws_credentials, bucket: str, tmp_path: Path  # noqa: F811
) -> None:
    from dask.distributed import Client, LocalCluster

    paths = []
    for p in range(8):
        path = tmp_path / f"part-{p}.parquet"
        pl.DataFrame({"id": pl.int_range(p * 5000, (p + 1) * 5000, eager=True), "part": p}).write_parquet(path)
        paths.append(str(path))
    lake = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=f"s3://{bucket}/lake/",
                              aws_credentials=aws_credentials)
    lake.execute("CREATE TABLE sales (id BIGINT, part BIGINT)")
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        client.wait_for_workers(4)
        futures = client.map(_load_partition, [lake] * len(paths), paths, pure=False)
        assert client.gather(futures) == [5000] * 8
        writers = {w for f in futures for w in client.who_has([f])[f.key]}
    assert len(writers) >= 2  # several processes wrote, none funnelled through one
    assert lake.fetch_one("SELECT count(*), count(DISTINCT id), count(DISTINCT part) FROM sales") == (40_000, 40_000, 8)


def test_incremental_files_cursor_ledger_and_reset_in_the_lake(lake: DuckLakeConnection, tmp_path: Path) -> None:
    """Incremental file loads, cursor loads, the ledger and reset work on a lake as on a file;
    the state lives in the lake's own ``_prefect_etl`` schema."""
    from prefect_etl_blocks import ParquetSource

    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame({"id": [1, 2], "v": [1.0, 2.0]}).write_parquet(folder / "a.parquet")
    source = ParquetSource(path=str(folder))
    assert lake.load_parquet(source, "raw", incremental=True, lineage_column="_prefect_etl_file") == 2
    assert lake.load_parquet(source, "raw", incremental=True) == 0  # nothing new; lineage kept unasked
    pl.DataFrame({"id": [3], "v": [3.0]}).write_parquet(folder / "b.parquet")
    assert lake.load_parquet(source, "raw", incremental=True) == 1
    pl.DataFrame({"id": [1, 2], "v": [10.0, 20.0]}).write_parquet(folder / "a.parquet")  # rewritten
    assert lake.load_parquet(source, "raw", incremental=True) == 2
    assert lake.fetch_all("SELECT id, v FROM raw ORDER BY id") == [(1, 10.0), (2, 20.0), (3, 3.0)]
    # Without lineage (the default) the lake table holds the source's columns only, and a
    # rewritten file is refused rather than loaded twice.
    assert lake.load_parquet(source, "plain", incremental=True) == 3
    assert lake.query("SELECT * FROM plain LIMIT 0").columns == ["id", "v"]
    pl.DataFrame({"id": [1], "v": [7.0]}).write_parquet(folder / "b.parquet")
    with pytest.raises(LoadConfigError, match="has no lineage column"):
        lake.load_parquet(source, "plain", incremental=True)

    assert lake.load_frame(pl.DataFrame({"id": [1, 2], "ts": [1, 2]}), "events", cursor="ts") == 2
    assert lake.load_frame(pl.DataFrame({"id": [2, 3], "ts": [2, 3]}), "events", cursor="ts") == 1
    assert lake.fetch_all("SELECT id FROM events ORDER BY id") == [(1,), (2,), (3,)]

    history = lake.load_history("raw")
    assert history["inserted"].to_list() == [2, 0, 1, 2] and set(history["incremental"]) == {"files"}
    assert set(lake.load_history()["strategy"]) == {"append"}
    assert lake.reset_incremental("raw") > 0
    assert lake.load_parquet(source, "raw", incremental=True) == 3  # read everything again, as warned


# ---------------------------------------------------------------------- issue 19: identities
def test_lake_table_spellings_and_state_from_the_previous_version_name_one_table(
    lake: DuckLakeConnection, tmp_path: Path
) -> None:
    """The lake's tables resolve as DuckDB resolves them (catalog = the lake alias), and state the
    previous version recorded under ``lake.main.raw`` with relative paths loads nothing again."""
    from prefect_etl_blocks import ParquetSource

    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(2):
        pl.DataFrame({"id": [2 * n, 2 * n + 1]}).write_parquet(folder / f"{n}.parquet")
    source = ParquetSource(path=str(folder))
    assert lake.load_parquet(source, "raw", incremental=True) == 4
    for spelling in ("main.raw", "lake.main.raw", '"RAW"', "LAKE.raw"):
        assert lake.load_parquet(source, spelling, incremental=True) == 0, spelling
    assert lake.load_history("lake.main.raw")["table_name"].to_list() == ["main.raw"] * 5
    # The previous version's state: key "lake.main.old", paths relative to the working directory.
    lake.load_frame(pl.DataFrame({"id": [0, 1, 2, 3]}), "old")
    stats = [(folder / f"{n}.parquet").stat() for n in range(2)]
    relative = [os.path.relpath(folder / f"{n}.parquet") for n in range(2)]
    rows = ", ".join(
        f"('lake.main.old', '{path}', {st.st_size}, '{st.st_mtime_ns}', NULL, 'l1', now()::TIMESTAMP)"
        for path, st in zip(relative, stats, strict=True)
    )
    lake.execute(f"INSERT INTO _prefect_etl.files (table_name, path, size, version, footer_sha256, load_id, loaded_at) VALUES {rows}")
    assert lake.load_parquet(source, "old", incremental=True) == 0
    assert lake.fetch_one("SELECT count(*) FROM old") == (4,)
    assert set(lake.fetch_all("SELECT table_name FROM _prefect_etl.files")) == {("main.raw",), ("main.old",)}
