"""The fixed cost of a DuckLake load (issue 22) against a real PostgreSQL catalog: what a fresh
block's load sends (read from DuckDB's own query log, which also lists DuckLake's queries to the
catalog), and that the shortcuts keep names and snapshot ids exact. Run in the DuckLake venv."""

# ruff: noqa: F811  (fixtures are imported by name until tests/conftest.py lists their modules)
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from prefect_etl_blocks.checks import Check, CheckResult
from prefect_etl_blocks.ducklake import DuckLakeConnection
from tests.fixtures.postgres import PostgresServer, pg_database, pg_server  # noqa: F401

pytestmark = [pytest.mark.ducklake, pytest.mark.timeout(300)]

#: The query DuckLake sends the catalog database when a transaction first needs the lake.
NEWEST_SNAPSHOT = "SELECT MAX(snapshot_id) FROM"


@pytest.fixture
def lake(pg_server: PostgresServer, pg_database: str, tmp_path: Path) -> DuckLakeConnection:
    return DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "data"))


def fresh(lake: DuckLakeConnection) -> DuckLakeConnection:
    """A new block with the same fields, as a Prefect task makes one per run."""
    return DuckLakeConnection(**{name: getattr(lake, name) for name in ("catalog", "data_path")})


def _logged(lake: DuckLakeConnection, body) -> list[tuple[int, str]]:
    """(connection id, statement) of every query the block's DuckDB instance ran for ``body()``,
    in order: DuckLake's queries to the catalog database included, the reading of the log not."""
    lake.execute("CALL enable_logging('QueryLog')")
    lake.execute("CALL truncate_duckdb_logs()")
    body()
    lake.execute("SELECT 'petl-end'")
    rows = lake.fetch_all("SELECT connection_id, message FROM duckdb_logs WHERE type = 'QueryLog' ORDER BY timestamp")
    lake.execute("CALL disable_logging()")
    end = next(c for c, m in rows if m == "SELECT 'petl-end'")
    return rows[: next(i for i, (c, _) in enumerate(rows) if c == end)]


def test_a_fresh_block_load_asks_the_catalog_only_for_its_transaction(lake: DuckLakeConnection) -> None:
    """No ``USE`` (each starts a DuckLake transaction: a catalog round trip), and after its
    COMMIT the load reads the newest snapshot id alone, without scanning the ledger."""
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    rows = _logged(lake, lambda: fresh(lake).load_frame(pl.DataFrame({"id": [2]}), "t", mode="append"))
    load = next(c for c, m in rows if m.startswith('INSERT INTO "lake"."_prefect_etl".loads'))
    mine = [m for c, m in rows if c == load]
    assert not [m for m in mine if m.upper().startswith("USE")], mine
    after_commit = mine[mine.index("COMMIT") + 1:]
    assert after_commit == ["SELECT id FROM ducklake_current_snapshot(?)"]
    # DuckLake asked the catalog for its newest snapshot twice: for the load's transaction and
    # for the id it committed (before: six times, also for USE lake on opening, the name's
    # resolution, USE memory, and USE lake at the end).
    assert sum(NEWEST_SNAPSHOT in m for _, m in rows) == 2, rows
    assert lake.fetch_all("SELECT id FROM t ORDER BY id") == [(1,), (2,)]


class _RivalCommits(Check):
    """A check that has another writer (its own DuckDB instance) commit to another table while
    the load's transaction is open, and passes."""

    name = "rival"
    scope = "data"

    def __init__(self, rival: DuckLakeConnection) -> None:
        self.rival = rival

    def evaluate(self, con, relation: str) -> CheckResult:
        self.rival.execute("INSERT INTO side VALUES (1)")
        return CheckResult(self.name, self.scope, 0)


def test_snapshot_ids_stay_exact_when_a_rival_commits_during_the_load(lake: DuckLakeConnection) -> None:
    """The committed snapshot is taken as ``read + 1`` only when the load's own transaction
    committed: a dry run overtaken by a rival's commit reports none (the newest snapshot is
    the rival's), and a load overtaken by one reports its own commit, not the rival's."""
    lake.load_frame(pl.DataFrame({"id": [1]}), "t")
    lake.execute("CREATE TABLE side (id INTEGER)")
    rival = lake.model_copy(update={"settings": {"threads": 1}})  # its own DuckDB instance
    before = lake.current_snapshot()
    dry = lake.load_frame(pl.DataFrame({"id": [2]}), "t", mode="append", dry_run=True,
                          checks=[_RivalCommits(rival)], return_result=True)
    assert dry.dry_run and dry.snapshot_id is None
    assert lake.current_snapshot() == before + 1  # the rival's commit, right after what the dry run read
    assert lake.fetch_all("SELECT count(*) FROM t") == [(1,)]
    load = fresh(lake).load_frame(pl.DataFrame({"id": [3]}), "t", mode="append",
                                  checks=[_RivalCommits(rival)], return_result=True)
    assert load.snapshot_id == lake.current_snapshot() == before + 3
    history = lake.load_history("t").filter(pl.col("load_id") == load.load_id)
    assert history["read_snapshot_id"].to_list() == [before + 1]
    plain = fresh(lake).load_frame(pl.DataFrame({"id": [4]}), "t", mode="append", return_result=True)
    assert plain.snapshot_id == lake.current_snapshot() == before + 4


def test_a_fresh_block_resolves_names_as_use_lake_would(pg_server: PostgresServer, pg_database: str,
                                                        tmp_path: Path) -> None:
    """A fresh load's connection never ``USE``s the lake: names still land where a held
    connection (on the lake) puts them, including a schema of the lake and another attached
    database named by its alias."""
    block = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "data"),
                               init_sql=[f"ATTACH '{tmp_path / 'side.duckdb'}' AS side"])
    one = pl.DataFrame({"id": [1]})
    block.execute("CREATE SCHEMA sales")
    spellings = ["t", "sales.t", "lake.u", "LAKE.sales.v", '"SIDE".w', "side.main.x"]
    fresh_results = [block.model_copy().load_frame(one, name, return_result=True) for name in spellings]
    with block:
        held_results = [block.load_frame(one, name, mode="append", return_result=True) for name in spellings]
    where = {
        "t": "lake.main.t", "sales.t": "lake.sales.t", "lake.u": "lake.main.u", "LAKE.sales.v": "lake.sales.v",
        '"SIDE".w': "side.main.w", "side.main.x": "side.main.x",
    }
    for name, table in where.items():
        assert block.fetch_all(f"SELECT count(*) FROM {table}") == [(2,)], name
    assert [r.snapshot_id is None for r in fresh_results] == [False, False, False, False, True, True]
    assert [r.snapshot_id is None for r in held_results] == [False, False, False, False, True, True]
