"""Issue 19, part 4: processes running the same load on a new DuckLake table all succeed.

The race to create the table (or the state tables) is a commit conflict like any other: it is
waited out and the load runs again, so every process succeeds and every row lands once.
"""

# ruff: noqa: F811  (fixtures are imported by name)
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from prefect_etl_blocks.ducklake import DuckLakeConnection, close_instances
from tests.fixtures.postgres import PostgresServer, pg_database, pg_server  # noqa: F401
from tests.fixtures.races import KINDS, race

pytestmark = [pytest.mark.ducklake, pytest.mark.timeout(600)]

PROCESSES, FILES, ROWS = 4, 40, 25


def write_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    for f in range(FILES):
        ids = range(f * ROWS, (f + 1) * ROWS)
        pl.DataFrame({"id": list(ids), "ts": list(ids), "v": [f] * ROWS}).write_parquet(folder / f"part-{f:03}.parquet")


TABLES = {"files": "raw", "cursor": "events", "upsert": "kv"}


@pytest.mark.parametrize("kind", KINDS)
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
        outcome = race(lake, kind, str(folder), table=TABLES[kind], cursor="ts", processes=PROCESSES)
        assert outcome == {w: "ok" for w in range(PROCESSES)}, (trial, outcome)
        total, distinct = lake.fetch_one(f"SELECT count(*), count(DISTINCT id) FROM {TABLES[kind]}")
        assert (total, distinct) == (FILES * ROWS, FILES * ROWS), (trial, kind)
        if kind == "files":
            manifest = lake.fetch_one("SELECT count(*), count(DISTINCT path) FROM _prefect_etl.files")
            assert manifest == (FILES, FILES)
        close_instances()
