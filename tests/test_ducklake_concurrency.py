"""Issue 19, part 4: processes running the same load on a new DuckLake table all succeed.

The race to create the table (or the state tables) is a commit conflict like any other: it is
waited out and the load runs again, so every process succeeds and every row lands once.
"""

# ruff: noqa: F811  (fixtures are imported by name)
from __future__ import annotations

import multiprocessing
from pathlib import Path

import polars as pl
import pytest

from prefect_etl_blocks import ParquetSource
from prefect_etl_blocks.ducklake import DuckLakeConnection, close_instances
from tests.fixtures.postgres import PostgresServer, pg_database, pg_server  # noqa: F401

pytestmark = [pytest.mark.ducklake, pytest.mark.timeout(600)]

PROCESSES, FILES, ROWS = 4, 40, 25


def write_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    for f in range(FILES):
        ids = range(f * ROWS, (f + 1) * ROWS)
        pl.DataFrame({"id": list(ids), "ts": list(ids), "v": [f] * ROWS}).write_parquet(folder / f"part-{f:03}.parquet")


def same_load(block, kind: str, folder: str, barrier, results, worker: int) -> None:
    """One process of the race: ``kind`` is ``files``, ``cursor`` or ``upsert``."""
    try:
        barrier.wait(timeout=120)
        if kind == "files":
            block.load_parquet(ParquetSource(path=folder), "raw", incremental=True)
        else:
            frame = pl.read_parquet(f"{folder}/*.parquet")
            if kind == "cursor":
                block.load_frame(frame, "events", mode="append", cursor="ts")
            else:
                block.load_frame(frame, "kv", mode="upsert", keys="id")
        results.put((worker, "ok"))
    except BaseException as exc:  # reported to the test, which names it
        results.put((worker, f"{type(exc).__name__}: {exc}"))


def race(block, kind: str, folder: Path) -> dict[int, str]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=same_load, args=(block, kind, str(folder), barrier, results, w))
        for w in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcome = dict(results.get(timeout=400) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    return outcome


TABLES = {"files": "raw", "cursor": "events", "upsert": "kv"}


@pytest.mark.parametrize("kind", ["files", "cursor", "upsert"])
def test_processes_running_the_same_load_on_a_new_lake_table_all_succeed(
    pg_server: PostgresServer, tmp_path: Path, kind: str
) -> None:
    """Before the fix one of four processes failed with 'Transaction conflict - attempting to
    create table "raw" in schema "main" - but this table has been created by another transaction
    already'."""
    folder = tmp_path / "files"
    write_files(folder)
    for trial in range(2 if kind == "files" else 1):  # the table race failed trial 0 before
        lake = DuckLakeConnection(
            catalog=f"postgres:{pg_server.dsn(pg_server.create_database())}",
            data_path=str(tmp_path / f"data{trial}"),
        )  # the default lock_timeout_seconds and commit_retries
        lake.execute("SELECT 1")  # the catalog exists; the race is the table's
        outcome = race(lake, kind, folder)
        assert outcome == {w: "ok" for w in range(PROCESSES)}, (trial, outcome)
        total, distinct = lake.fetch_one(f"SELECT count(*), count(DISTINCT id) FROM {TABLES[kind]}")
        assert (total, distinct) == (FILES * ROWS, FILES * ROWS), (trial, kind)
        if kind == "files":
            manifest = lake.fetch_one("SELECT count(*), count(DISTINCT path) FROM _prefect_etl.files")
            assert manifest == (FILES, FILES)
        close_instances()
