"""Loads that join Prefect transactions, on real DuckDB files and real Prefect flows.

A transaction that rolls back leaves every table it loaded, the ledger and the incremental
state exactly as before; one that commits publishes all its loads at once, and another process
sees none of them until then (it cannot even open the file). Loads without a transaction of the
flow author's commit on their own, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect.transactions import CommitMode, atransaction, transaction

from prefect_etl_blocks import DuckDBConnection
from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.runtime.transactions import open_units
from prefect_etl_blocks.tasks import load_to_duckdb


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every table of the file (ours in ``_prefect_etl`` included), its rows sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
        return {
            f"{s}.{t}": sorted(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall(), key=repr)
            for s, t in sorted(tables)
        }
    finally:
        con.close()


def other_process(path: Path, sql: str) -> str:
    """``sql``'s first value as read by a separate Python process, or its error's class."""
    code = textwrap.dedent(
        f"""
        import duckdb
        try:
            con = duckdb.connect({str(path)!r}, read_only=True)
            print(con.execute({sql!r}).fetchall()[0][0])
        except duckdb.Error as exc:
            print(type(exc).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBConnection:
    """A file with ``orders`` (two rows, a cursor mark on ``ts``) and its ledger."""
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    db.load_frame(pl.DataFrame({"id": [1, 2], "ts": [10, 20]}), "orders", cursor="ts", keys="id")
    return db


@task
def quality_test() -> None:
    raise ValueError("the loaded data is wrong")


def test_a_later_failing_task_rolls_back_every_load_ledger_and_state(
    warehouse: DuckDBConnection, caplog: pytest.LogCaptureFixture
) -> None:
    path = Path(warehouse.database_path)
    before = snapshot(path)

    @flow
    def nightly() -> None:
        with transaction():
            load_to_duckdb(pl.DataFrame({"id": [2, 3], "ts": [20, 30]}), "orders", warehouse, cursor="ts", keys="id")
            load_to_duckdb(pl.DataFrame({"k": [1]}), "analytics.daily", warehouse)
            warehouse.load_frame(pl.DataFrame({"id": [9], "ts": [90]}), "orders", mode="append")
            quality_test()

    with caplog.at_level(logging.INFO), pytest.raises(ValueError, match="data is wrong"):
        nightly()
    assert snapshot(path) == before  # rows, the new table and schema, ledger rows, cursor mark
    assert open_units() == 0
    rolled = [r.getMessage() for r in caplog.records if "Rolled back loads" in r.getMessage()]
    assert len(rolled) == 1
    assert "orders (load_id" in rolled[0] and "analytics.daily (load_id" in rolled[0]
    assert "1 rows" in rolled[0]  # the cursor load past the mark: id 3 (and id 2 updated)


def test_a_committing_transaction_publishes_every_load_at_once(warehouse: DuckDBConnection) -> None:
    path = Path(warehouse.database_path)
    seen_during: list[str] = []

    @task
    def peek() -> None:
        seen_during.append(other_process(path, "SELECT count(*) FROM orders"))
        # In this process the flow's loads are visible (the same connection, not yet committed).
        seen_during.append(str(warehouse.query("SELECT count(*) FROM orders").item()))

    @flow
    def nightly() -> None:
        with transaction():
            load_to_duckdb(pl.DataFrame({"id": [3], "ts": [30]}), "orders", warehouse, cursor="ts", keys="id")
            load_to_duckdb(pl.DataFrame({"k": [1, 2]}), "daily", warehouse)
            peek()
        seen_during.append(other_process(path, "SELECT count(*) FROM orders"))

    nightly()
    assert seen_during == ["IOException", "3", "3"]  # locked during, all of it after
    assert other_process(path, "SELECT count(*) FROM daily") == "2"
    history = warehouse.load_history()
    assert history["table_name"].to_list() == ["main.orders", "main.orders", "main.daily"]
    assert history["flow_run_id"].null_count() == 1  # the fixture's load ran outside a flow
    assert other_process(path, "SELECT cursor_to FROM _prefect_etl.loads ORDER BY finished_at DESC LIMIT 1 OFFSET 1") == "30"


def test_nested_transactions_commit_with_the_outermost(warehouse: DuckDBConnection) -> None:
    path = Path(warehouse.database_path)
    before = snapshot(path)

    @flow
    def nested(fail: bool) -> None:
        with transaction():
            with transaction():
                load_to_duckdb(pl.DataFrame({"id": [3], "ts": [30]}), "orders", warehouse, cursor="ts", keys="id")
            load_to_duckdb(pl.DataFrame({"k": [1]}), "daily", warehouse)
            if fail:
                quality_test()

    with pytest.raises(ValueError):
        nested(True)
    assert snapshot(path) == before
    nested(False)
    assert warehouse.query("SELECT count(*) FROM orders").item() == 3
    assert warehouse.table_exists("daily")

    @flow
    def eager() -> None:  # an EAGER inner transaction commits at its own end, as Prefect's do
        with transaction():
            with transaction(commit_mode=CommitMode.EAGER):
                load_to_duckdb(pl.DataFrame({"k": [1]}), "eager", warehouse)
            quality_test()

    with pytest.raises(ValueError):
        eager()
    assert warehouse.query("SELECT count(*) FROM eager").item() == 1


def test_an_inner_rollback_that_was_caught_rolls_back_the_whole_transaction(warehouse: DuckDBConnection) -> None:
    """DuckDB has no savepoints: the inner transaction's load cannot be undone alone, so the
    outer one rolls back too instead of committing it."""
    path = Path(warehouse.database_path)
    before = snapshot(path)
    outcome: list[bool] = []

    @flow
    def nightly() -> None:
        with transaction() as outer:
            try:
                with transaction():
                    load_to_duckdb(pl.DataFrame({"k": [1]}), "daily", warehouse)
                    raise RuntimeError("inner")
            except RuntimeError:
                pass
            with pytest.raises(LoadConfigError, match="already rolled back"):
                warehouse.load_frame(pl.DataFrame({"k": [2]}), "other")
        outcome.append(outer.is_committed())

    nightly()
    assert outcome == [False]
    assert snapshot(path) == before
    assert open_units() == 0


def test_an_async_flow_joins_an_async_transaction(warehouse: DuckDBConnection) -> None:
    path = Path(warehouse.database_path)
    before = snapshot(path)

    @task
    async def aquality(fail: bool) -> None:
        if fail:
            raise ValueError("bad")

    @flow
    async def nightly(fail: bool) -> None:
        async with atransaction():
            await warehouse.aload_frame(pl.DataFrame({"id": [3], "ts": [30]}), "orders", cursor="ts", keys="id")
            await warehouse.aload_frame(pl.DataFrame({"k": [1]}), "daily")
            await aquality(fail)

    with pytest.raises(ValueError):
        asyncio.run(nightly(True))
    assert snapshot(path) == before
    asyncio.run(nightly(False))
    assert other_process(path, "SELECT count(*) FROM orders") == "3"
    assert open_units() == 0


def test_concurrent_tasks_in_threads_share_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    db = DuckDBConnection(database=str(path))

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def fan_out(fail: bool) -> None:
        with transaction():
            futures = [load_to_duckdb.submit(pl.DataFrame({"i": [i]}), f"part_{i}", db) for i in range(6)]
            for future in futures:
                future.result()
            if fail:
                quality_test()

    with pytest.raises(ValueError):
        fan_out(True)
    assert not path.exists() or snapshot(path) == {}
    fan_out(False)
    assert sorted(t for t in snapshot(path) if t.startswith("main.")) == [f"main.part_{i}" for i in range(6)]
    assert db.load_history().height == 6


def test_transactional_false_commits_on_its_own_and_true_requires_a_transaction(warehouse: DuckDBConnection) -> None:
    @flow
    def nightly() -> None:
        with transaction():
            warehouse.load_frame(pl.DataFrame({"k": [1]}), "audit_log", transactional=False)
            quality_test()

    with pytest.raises(ValueError):
        nightly()
    assert warehouse.query("SELECT count(*) FROM audit_log").item() == 1
    with pytest.raises(LoadConfigError, match="transactional=True .* no Prefect transaction is active"):
        warehouse.load_frame(pl.DataFrame({"k": [1]}), "audit_log", transactional=True)

    path = Path(warehouse.database_path)

    @task
    def peek() -> str:
        return other_process(path, "SELECT count(*) FROM audit_log")

    @flow
    def in_a_task_only() -> str:
        # A task run's own Prefect transaction is not one to join: this load commits at once.
        load_to_duckdb(pl.DataFrame({"k": [2]}), "audit_log", warehouse, mode="append")
        seen = peek()
        load_to_duckdb(pl.DataFrame({"k": [1]}), "audit_log", warehouse, transactional=True)
        return seen

    with pytest.raises(LoadConfigError, match="a task run's own transaction does not count"):
        in_a_task_only()
    assert other_process(path, "SELECT count(*) FROM audit_log") == "2"


@pytest.mark.parametrize("loaded_first", [True, False])
def test_a_forked_process_inside_a_transaction_refuses_to_load(
    warehouse: DuckDBConnection, tmp_path: Path, loaded_first: bool
) -> None:
    """A process forked inside the transaction holds a copy of it that will never commit: its
    load is refused, naming the way out, rather than committed on its own."""
    elsewhere = DuckDBConnection(database=str(tmp_path / "elsewhere.duckdb"))
    with transaction():
        if loaded_first:
            warehouse.load_frame(pl.DataFrame({"k": [1]}), "daily")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave at once, never running the parent's code
            try:
                elsewhere.load_frame(pl.DataFrame({"k": [1]}), "daily")
                message = b"loaded"
            except LoadConfigError as exc:
                message = str(exc).encode()
            os.write(write, message)
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
    assert "another process" in message and "transactional=False" in message
    assert not Path(elsewhere.database_path).exists()


def test_a_process_pool_worker_cannot_join_and_transactional_true_refuses(tmp_path: Path) -> None:
    """Prefect does not send the flow's transaction to a process-pool worker (its context holds
    none), so a load there cannot join it; ``transactional=True`` makes that an error instead
    of a commit of its own."""
    db = DuckDBConnection(database=str(tmp_path / "pp.duckdb"))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def fan_out() -> tuple[str, int, Any]:
        with transaction():
            refused = load_to_duckdb.submit(pl.DataFrame({"i": [1]}), "joined", db, transactional=True)
            alone = load_to_duckdb.submit(pl.DataFrame({"i": [1]}), "alone", db, transactional=False)
            unset = load_to_duckdb.submit(pl.DataFrame({"i": [1]}), "unset", db)
            refused.wait()
            unset.wait()
            return str(refused.state.result(raise_on_failure=False)), alone.result(), unset.task_run_id

    message, rows, unset_run = fan_out()
    assert "no Prefect transaction is active here" in message and "process-pool or Dask workers" in message
    assert rows == 1 and db.table_exists("alone") and not db.table_exists("joined")
    # Left unset, the worker's load commits on its own, and never silently: its log says so.
    assert db.table_exists("unset")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    async def warnings() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[unset_run])))
            return [log.message for log in logs if "commits on its own" in log.message]

    deadline = time.monotonic() + 30
    while not (found := asyncio.run(warnings())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found and "worker process" in found[0] and "transactional=True" in found[0], found


_CRASH_LOOP = textwrap.dedent(
    """
    import sys
    import polars as pl
    from prefect.transactions import transaction
    from prefect_etl_blocks import DuckDBConnection
    db = DuckDBConnection(database=sys.argv[1])
    rows = 20_000

    def batch(i):
        with transaction():
            db.load_frame(pl.DataFrame({"i": pl.repeat(i, rows, eager=True)}), "a", mode="append")
            db.load_frame(pl.DataFrame({"i": pl.repeat(i, rows, eager=True)}), "b", mode="append",
                          cursor="i", initial_value=-1)
            db.load_frame(pl.DataFrame({"i": [i]}), "c", mode="replace")

    batch(0)  # imports done and the tables there: the kill lands inside the loop below
    print("ready", flush=True)
    i = 1
    while True:
        batch(i)
        i += 1
    """
)


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_inside_transactions_leaves_all_or_nothing(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "k.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_LOOP, str(path)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(random.Random(seed).uniform(0.1, 2.0))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    con = duckdb.connect(str(path))
    try:
        tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
        assert tables == {"a", "b", "c"}
        a = con.execute("SELECT count(*), count(DISTINCT i), max(i) FROM a").fetchone()
        b = con.execute("SELECT count(*), count(DISTINCT i), max(i) FROM b").fetchone()
        c = con.execute("SELECT i FROM c").fetchall()
        loads = con.execute("SELECT table_name, count(*) FROM _prefect_etl.loads GROUP BY 1 ORDER BY 1").fetchall()
        mark = con.execute("SELECT mark FROM _prefect_etl.cursors").fetchall()
    finally:
        con.close()
    batches = a[1]
    assert a == (batches * 20_000, batches, batches - 1) and b == a
    assert c == [(batches - 1,)]
    assert loads == [("main.a", batches), ("main.b", batches), ("main.c", batches)]
    assert mark == [(str(batches - 1),)]


# ---------------------------------------------------------------------- DuckLake


@pytest.fixture
def lake(pg_server: Any, pg_database: str, tmp_path: Path) -> Any:
    """A fresh lake (PostgreSQL catalog, local data) with ``t`` loaded once by a cursor load."""
    from prefect_etl_blocks.ducklake import DuckLakeConnection

    block = DuckLakeConnection(
        catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "data"), lock_timeout_seconds=60
    )
    block.load_frame(pl.DataFrame({"id": [1, 2], "ts": [10, 20]}), "t", cursor="ts", keys="id")
    return block


def lake_state(block: Any) -> dict[str, Any]:
    """What a rollback must leave as it was: tables, ledger, state, and the snapshot list."""
    tables = block.query(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'lake' ORDER BY 1, 2"
    ).rows()
    out: dict[str, Any] = {"snapshots": block.current_snapshot()}
    for schema, name in tables:
        out[f"{schema}.{name}"] = sorted(block.query(f'SELECT * FROM "{schema}"."{name}"').rows(), key=repr)
    return out


def lake_process(block: Any, sql: str) -> str:
    """``sql``'s first value as read by a separate Python process attached to the same lake."""
    code = (
        "import sys\n"
        "from prefect_etl_blocks.ducklake import DuckLakeConnection\n"
        "lake = DuckLakeConnection(catalog=sys.argv[1], data_path=sys.argv[2])\n"
        "print(lake.query(sys.argv[3]).item())\n"
    )
    args = [sys.executable, "-c", code, block.catalog.get_secret_value(), block.data_path, sql]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout.strip()


def reader_of(block: Any) -> Any:
    """Another DuckDB instance on the same lake, as another process would have."""
    return block.model_copy(update={"settings": {**block.settings, "threads": 1}})


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_a_lake_transaction_is_one_snapshot_or_none(lake: Any) -> None:
    before = lake_state(lake)
    reader = reader_of(lake)
    during: list[Any] = []

    @task
    def peek() -> None:
        during.append(lake_process(lake, "SELECT count(*) FROM t"))  # the snapshot before it
        during.append(reader.current_snapshot())
        during.append(lake.query("SELECT count(*) FROM t").item())  # this transaction's own view

    @flow
    def nightly(fail: bool) -> None:
        with transaction():
            load_to_duckdb(pl.DataFrame({"id": [3], "ts": [30]}), "t", lake, cursor="ts", keys="id")
            load_to_duckdb(pl.DataFrame({"k": [1]}), "analytics.daily", lake)
            peek()
            if fail:
                quality_test()

    with pytest.raises(ValueError):
        nightly(True)
    assert during == ["2", before["snapshots"], 3]
    assert lake_state(lake) == before  # no rows, table, schema, ledger row, mark or snapshot
    nightly(False)
    assert lake.current_snapshot() == before["snapshots"] + 1  # both loads: one snapshot
    assert lake_process(lake, "SELECT count(*) FROM t") == "3"
    assert reader.query("SELECT count(*) FROM analytics.daily").item() == 1
    assert open_units() == 0


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_a_conflict_at_the_lake_commit_rolls_the_transaction_back(
    lake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    writer = reader_of(lake)
    with caplog.at_level(logging.INFO), transaction() as txn:
        lake.load_frame(pl.DataFrame({"id": [2], "ts": [25]}), "t", mode="upsert", keys="id")
        writer.load_frame(pl.DataFrame({"id": [2], "ts": [26]}), "t", mode="upsert", keys="id", transactional=False)
    assert not txn.is_committed()
    assert lake.query("SELECT ts FROM t WHERE id = 2").item() == 26
    assert any("TransactionConflictError" in r.getMessage() or "conflicted" in (r.exc_text or "") for r in caplog.records)
    assert open_units() == 0


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_a_lake_dry_run_keeps_nothing(lake: Any) -> None:
    before = lake_state(lake)
    dry = lake.load_frame(pl.DataFrame({"id": [2, 3], "ts": [20, 30]}), "t", cursor="ts", keys="id",
                          dry_run=True, return_result=True)
    assert lake_state(lake) == before
    real = lake.load_frame(pl.DataFrame({"id": [2, 3], "ts": [20, 30]}), "t", cursor="ts", keys="id",
                           return_result=True)
    assert (dry.inserted, dry.updated, dry.dry_run) == (real.inserted, real.updated, True)


def test_lineage_events_wait_for_the_transaction_and_a_rollback_reports_a_failure(tmp_path: Path) -> None:
    """A load inside a transaction is published only when the transaction commits: its
    ``materialization.succeeded`` event is sent then (still relating the task run that loaded);
    one whose transaction rolls back gets ``materialization.failed`` instead, never a success."""
    import uuid

    from prefect_etl_blocks.runtime.lineage import FAILED, SUCCEEDED, asset_key
    from tests.test_lineage import _events

    path = str(tmp_path / f"tx_events_{uuid.uuid4().hex[:8]}.duckdb")
    db = DuckDBConnection(database=path)
    frame = pl.DataFrame({"id": [1, 2]})

    @flow
    def committed_and_rolled_back() -> None:
        with transaction():
            load_to_duckdb(frame, "kept", db)
        with pytest.raises(ValueError), transaction():
            load_to_duckdb(frame, "undone", db)
            quality_test()

    committed_and_rolled_back()
    kept, undone = asset_key(path, "kept"), asset_key(path, "undone")
    succeeded = _events(kept, SUCCEEDED, 1)
    assert len(succeeded) == 1
    assert any(r.role == "task-run" for r in succeeded[0].related)
    failed = _events(undone, FAILED, 1)
    assert [e.payload["error"] for e in failed] == ["TransactionRolledBack"]
    assert "rolled back with its Prefect transaction" in failed[0].payload["message"]
    assert _events(undone, SUCCEEDED, 1, timeout=3) == []
    assert db.table_exists("kept") and not db.table_exists("undone")
