"""The load ledger (``_prefect_etl.loads``): one row per committed load, written in the load's
own transaction, for every strategy; its state schema is closed to user tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import polars as pl
import pytest
from prefect import flow, task

from prefect_etl_blocks import DuckDBConnection
from prefect_etl_blocks.checks import not_null
from prefect_etl_blocks.errors import DataCheckError, LoadConfigError
from prefect_etl_blocks.loading import load, transaction
from prefect_etl_blocks.loading.ledger import STATE_SCHEMA, history

FIRST = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
SECOND = pl.DataFrame({"id": [3, 4], "v": ["C", "d"]})


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("replace", (2, 0, 3)),
        ("append", (2, 0, 0)),
        ("upsert", (1, 1, 0)),
        ("delete-insert", (2, 0, 1)),
        ("insert-only", (1, 0, 0)),
        ("scd2", (2, 1, 0)),
    ],
)
def test_every_strategy_writes_one_ledger_row_with_its_counts(
    tmp_path: Path, mode: str, expected: tuple[int, int, int]
) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    db.load_frame(FIRST, "shop.items", mode=mode if mode == "scd2" else "replace", keys="id")
    result = db.load_frame(SECOND, "shop.items", mode=mode, keys="id", return_result=True)
    history = db.load_history("shop.items")
    assert history.height == 2
    row = history.row(1, named=True)
    assert (row["inserted"], row["updated"], row["deleted"]) == expected
    assert (row["inserted"], row["updated"], row["deleted"]) == (result.inserted, result.updated, result.deleted)
    assert row["load_id"] == result.load_id and len(row["load_id"]) == 36
    assert (row["table_name"], row["strategy"], row["created"]) == ("shop.items", mode, False)
    assert row["incremental"] is None and row["files"] == [] and row["cursor_column"] is None
    assert row["flow_run_id"] is None and row["task_run_id"] is None  # outside Prefect
    assert row["started_at"] <= row["finished_at"]
    assert history.row(0, named=True)["created"] is True


def test_fail_mode_and_schema_changes_and_checks_are_recorded(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    db.load_frame(FIRST, "items", mode="fail")
    wider = SECOND.with_columns(pl.lit(1.5).alias("price"))
    db.load_frame(wider, "items", mode="append", on_schema_change="append_new_columns",
                  checks=["id > 0", not_null("v")])
    rows = db.load_history("items").rows(named=True)
    assert [r["strategy"] for r in rows] == ["fail", "append"]
    assert rows[1]["schema_changes"] and "price" in rows[1]["schema_changes"][0]
    assert len(rows[1]["checks"]) == 2 and all(c.endswith(": passed") for c in rows[1]["checks"])


def test_a_failed_load_leaves_no_ledger_row(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    db.load_frame(FIRST, "items")
    with pytest.raises(DataCheckError):
        db.load_frame(SECOND, "items", mode="append", checks=["id < 4"])
    assert db.load_history("items").height == 1
    assert db.fetch_one("SELECT count(*) FROM items")[0] == 3


def test_the_ledger_row_commits_or_rolls_back_with_an_outer_transaction() -> None:
    con = duckdb.connect()
    with pytest.raises(RuntimeError), transaction(con):
        load(con, FIRST, "items")
        raise RuntimeError("later step failed")
    assert history(con).height == 0  # even the state schema it created rolled back
    assert con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
    with transaction(con):
        load(con, FIRST, "a")
        load(con, SECOND, "b")
    assert con.sql(f"SELECT table_name FROM {STATE_SCHEMA}.loads ORDER BY 1").fetchall() == [("main.a",), ("main.b",)]


def test_history_of_all_tables_filters_and_is_empty_before_any_load(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    empty = db.load_history()
    assert empty.height == 0 and "load_id" in empty.columns
    db.load_frame(FIRST, "a")
    db.load_frame(FIRST, "Shop.B")
    assert db.load_history()["table_name"].to_list() == ["main.a", "shop.b"]
    assert db.load_history("shop.b").height == 1
    assert db.load_history('"SHOP".b').height == 1  # identifiers are case-insensitive
    assert asyncio.run(db.aload_history("a")).height == 1


def test_user_tables_cannot_target_the_state_schema(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    for name in (f"{STATE_SCHEMA}.loads", f'"{STATE_SCHEMA.upper()}".mine'):
        with pytest.raises(LoadConfigError, match="load ledger"):
            db.load_frame(FIRST, name)
    with pytest.raises(LoadConfigError, match="load ledger"):
        db.reset_incremental(f"{STATE_SCHEMA}.files")
    assert db.load_history().height == 0
    # A user table called "loads" in another schema is just a table.
    db.load_frame(FIRST, "loads")
    assert db.fetch_one("SELECT count(*) FROM main.loads")[0] == 3


def test_prefect_run_ids_are_recorded_inside_a_flow(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))

    @task
    def step() -> str:
        from prefect.runtime import task_run

        db.load_frame(FIRST, "items")
        return str(task_run.get_id())

    @flow
    def nightly() -> tuple[str, str]:
        from prefect.runtime import flow_run

        return str(flow_run.get_id()), step()

    flow_id, task_id = nightly()
    row = db.load_history("items").row(0, named=True)
    assert (row["flow_run_id"], row["task_run_id"]) == (flow_id, task_id)


def test_the_core_records_the_run_ids_it_is_given_without_prefect() -> None:
    """The Prefect-free core takes the run ids as data (the blocks supply Prefect's); outside
    ``run_ids`` it records none."""
    from prefect_etl_blocks.core.loading.ledger import run_ids

    con = duckdb.connect()
    with run_ids("flow-1", "task-1"):
        load(con, FIRST, "items")
    load(con, SECOND, "items", mode="append")
    rows = history(con, "items").select("flow_run_id", "task_run_id").rows()
    assert rows == [("flow-1", "task-1"), (None, None)]


#: The ``loads`` table as versions before the quarantine/rollback columns created it.
_OLD_LOADS = (
    "load_id VARCHAR, table_name VARCHAR, strategy VARCHAR, incremental VARCHAR, inserted BIGINT, "
    "updated BIGINT, deleted BIGINT, created BOOLEAN, files VARCHAR[], files_deleted VARCHAR[], "
    "cursor_column VARCHAR, cursor_from VARCHAR, cursor_to VARCHAR, schema_changes VARCHAR[], "
    "checks VARCHAR[], flow_run_id VARCHAR, task_run_id VARCHAR, started_at TIMESTAMP, "
    "finished_at TIMESTAMP"
)


def test_a_ledger_an_earlier_version_created_gains_the_new_columns_on_its_next_load(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:
        con.execute(f"CREATE SCHEMA {STATE_SCHEMA}")
        con.execute(f"CREATE TABLE {STATE_SCHEMA}.loads ({_OLD_LOADS})")
        con.execute(
            f"CREATE TABLE {STATE_SCHEMA}.files (table_name VARCHAR, path VARCHAR, size BIGINT, "
            "version VARCHAR, footer_sha256 VARCHAR, load_id VARCHAR, loaded_at TIMESTAMP)"
        )
        con.execute(
            f"CREATE TABLE {STATE_SCHEMA}.cursors (table_name VARCHAR, cursor_column VARCHAR, "
            "mark VARCHAR, mark_type VARCHAR, load_id VARCHAR, updated_at TIMESTAMP)"
        )
        con.execute(
            f"INSERT INTO {STATE_SCHEMA}.loads (load_id, table_name, strategy, inserted, started_at) "
            "VALUES ('old-1', 'main.items', 'replace', 3, TIMESTAMP '2026-01-01 00:00:00')"
        )
    db = DuckDBConnection(database=path, read_only=True)
    before = db.load_history("items")
    # Read only, nothing migrated: the new columns read as null, in the documented order.
    assert before["load_id"].to_list() == ["old-1"]
    assert before.columns[-3:] == ["quarantined", "read_snapshot_id", "rollback_of"]
    assert before["quarantined"].to_list() == [None]

    writer = DuckDBConnection(database=path)
    writer.load_frame(FIRST, "items", mode="append")
    after = writer.load_history("items")
    assert after["load_id"].to_list()[0] == "old-1"
    assert after["inserted"].to_list() == [3, 3]
    assert after["quarantined"].to_list() == [None, 0]
    assert after.columns == before.columns
    with duckdb.connect(path, read_only=True) as con:
        columns = [r[0] for r in con.execute(f"DESCRIBE {STATE_SCHEMA}.loads").fetchall()]
    assert columns[-3:] == ["quarantined", "read_snapshot_id", "rollback_of"]
