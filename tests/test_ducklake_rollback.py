"""Rollback on DuckLake (issue 24): ``DuckLakeConnection.rollback`` and ``prefect-etl rollback``
against a PostgreSQL-catalogued lake (Debian's server on loopback), and the refusal on a DuckDB
file. The DuckLake tests run in the DuckLake venv (``ci/ducklake-leg.sh``); the DuckDB-file
test runs in both."""

# ruff: noqa: F811  (fixtures are imported by name until tests/conftest.py lists their modules)
from __future__ import annotations

import re
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect import flow

from prefect_etl_blocks import DuckDBConnection
from prefect_etl_blocks.duckdb import LoadResult
from prefect_etl_blocks.ducklake import DuckLakeConnection
from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.lineage import SUCCEEDED, asset_key
from prefect_etl_blocks.tools.cli import main
from tests.fixtures.postgres import PostgresServer, pg_database, pg_server  # noqa: F401
from tests.test_ducklake import _CommitsFirst  # a check that has a rival commit first
from tests.test_lineage import _events  # the events of an asset, read from the server


@pytest.fixture
def lake(pg_server: PostgresServer, pg_database: str, tmp_path: Path) -> DuckLakeConnection:
    return DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(pg_database)}", data_path=str(tmp_path / "data"))


def rows(lake: DuckLakeConnection, table: str, version: int | None = None) -> pl.DataFrame:
    """The table's rows in a fixed order (columns and types as they are)."""
    at = f" AT (VERSION => {version})" if version is not None else ""
    return lake.query(f"SELECT * FROM {table}{at} ORDER BY ALL")


def ledger_row(lake: DuckLakeConnection, load_id: str) -> dict:
    history = lake.load_history()
    return history.filter(pl.col("load_id") == load_id).to_dicts()[0]


FIRST = pl.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
SECOND = pl.DataFrame({"id": [3, 4], "v": ["C", "d"]})


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_rollback_restores_each_strategy_exactly_and_can_itself_be_rolled_back(lake: DuckLakeConnection) -> None:
    """One table per strategy (and one whose columns the load changed), in one lake: the other
    tables' later loads do not count as changes to a table."""
    for mode in ("append", "upsert", "replace", "scd2", "schema change"):
        table = "sales." + mode.replace(" ", "_")
        lake.load_frame(FIRST, table, mode="scd2" if mode == "scd2" else "replace", keys="id")
        before = rows(lake, table)
        if mode == "schema change":
            data = SECOND.with_columns(qty=pl.Series([1.5, 2.5]))
            load = lake.load_frame(data, table, mode="append", on_schema_change="append_new_columns",
                                   return_result=True)
        else:
            keys = "id" if mode in ("upsert", "scd2") else None
            load = lake.load_frame(SECOND, table, mode=mode, keys=keys,
                                   return_result=True)
        after = rows(lake, table)
        assert not after.equals(before), mode

        # The snapshot ids are exact: the load committed load.snapshot_id, its ledger row
        # records the snapshot it read, and the table at each is the table after and before.
        assert load.snapshot_id == lake.current_snapshot(), mode
        assert ledger_row(lake, load.load_id)["read_snapshot_id"] == load.snapshot_id - 1, mode
        assert_frame_equal(rows(lake, table, load.snapshot_id), after)
        assert_frame_equal(rows(lake, table, load.snapshot_id - 1), before)

        undo = lake.rollback(table, load.load_id)
        assert_frame_equal(rows(lake, table), before)  # columns and types too
        assert (undo.mode, undo.snapshot_id) == ("rollback", lake.current_snapshot()), mode
        recorded = ledger_row(lake, undo.load_id)
        assert (recorded["strategy"], recorded["rollback_of"]) == ("rollback", load.load_id), mode
        assert (recorded["inserted"], recorded["deleted"]) == (undo.inserted, undo.deleted), mode
        if mode == "append":  # only the difference is written: the appended rows go, nothing else
            assert (undo.inserted, undo.deleted) == (0, 2)
        if mode == "schema change":
            assert undo.schema_changes == ("dropped column qty",)

        # Nothing was lost: rolling the rollback back restores what the load had done.
        redo = lake.rollback(table, undo.load_id)
        assert_frame_equal(rows(lake, table), after)
        assert ledger_row(lake, redo.load_id)["rollback_of"] == undo.load_id, mode

    # A load that created its table: the rollback drops it, and undoing that brings it back.
    created = lake.load_frame(FIRST, "sales.new", return_result=True)
    undo = lake.rollback("sales.new", created.load_id)
    assert not lake.table_exists("sales.new") and undo.deleted == 3
    lake.rollback("sales.new", undo.load_id)
    assert_frame_equal(rows(lake, "sales.new"), FIRST)

    # A column named rowid hides DuckLake's row id: such a table is written back whole.
    odd = pl.DataFrame({"rowid": [1, 2], "v": ["a", "b"]})
    lake.load_frame(odd, "sales.odd")
    again = lake.load_frame(pl.DataFrame({"rowid": [1], "v": ["again"]}), "sales.odd", mode="append",
                            return_result=True)
    lake.rollback("sales.odd", again.load_id)
    assert_frame_equal(rows(lake, "sales.odd"), odd)


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_rollback_is_refused_after_later_changes_unless_forced_and_after_expiry(lake: DuckLakeConnection) -> None:
    table = "events"
    lake.load_frame(FIRST, table)
    after_first = rows(lake, table)
    second = lake.load_frame(SECOND, table, mode="append", return_result=True)
    third = lake.load_frame(pl.DataFrame({"id": [5], "v": ["e"]}), table, mode="append", return_result=True)
    after_third = rows(lake, table)

    with pytest.raises(LoadConfigError) as refused:
        lake.rollback(table, second.load_id)
    message = str(refused.value)
    assert f"the table changed after it, in snapshot(s) {third.snapshot_id} (1 later load(s) ({third.load_id}))" in message
    assert "force=True (prefect-etl rollback --force)" in message

    # A write that bypasses the ledger counts too (found in the lake's snapshot changes), but
    # moving rows between files (flushing inlined rows, compaction) does not.
    lake.execute("CALL ducklake_flush_inlined_data('lake')")
    lake.compact(table)
    lake.execute("DELETE FROM events WHERE id = 1")
    with pytest.raises(LoadConfigError, match=r"1 commit\(s\) outside prefect-etl-blocks' ledger"):
        lake.rollback(table, third.load_id)
    assert_frame_equal(rows(lake, table), after_third.filter(pl.col("id") != 1))  # refused: unchanged

    forced = lake.rollback(table, second.load_id, force=True)
    assert_frame_equal(rows(lake, table), after_first)
    assert ledger_row(lake, forced.load_id)["rollback_of"] == second.load_id

    # Unknown loads, and loads of another table, are named as such.
    with pytest.raises(LoadConfigError, match="no load 'nope' is recorded"):
        lake.rollback(table, "nope")
    other = lake.load_frame(FIRST, "other", return_result=True)
    with pytest.raises(LoadConfigError, match="that load went into 'main.other'"):
        lake.rollback(table, other.load_id)

    # Once the snapshot before a load is expired, that state is gone: refused even with force.
    last = lake.load_frame(SECOND, table, mode="append", return_result=True)
    lake.expire_snapshots(versions=[last.snapshot_id - 1])
    with pytest.raises(LoadConfigError, match=f"snapshot {last.snapshot_id - 1}, the table as it was just before"):
        lake.rollback(table, last.load_id, force=True)


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_a_retried_load_records_the_attempt_that_committed_and_rolls_back_to_just_before_it(
    lake: DuckLakeConnection,
) -> None:
    """The rival's delete committed between the two attempts: the ledger row holds the snapshot
    the second attempt read, and the rollback keeps the rival's delete."""
    lake.load_frame(pl.DataFrame({"day": ["d0", "d1", "d1"], "qty": [1, 2, 3]}), "daily")
    rival = lake.model_copy(update={"settings": {"threads": 1}})  # its own DuckDB instance

    @flow
    def load_then_undo() -> tuple[LoadResult, LoadResult]:
        load = lake.load_frame(pl.DataFrame({"day": ["d1"], "qty": [9]}), "daily", mode="delete-insert",
                               keys="day", checks=[_CommitsFirst(rival)], return_result=True)
        assert lake.last_load_attempts == 2
        return load, lake.rollback("daily", load.load_id)

    load, undo = load_then_undo()
    rival_commit = load.snapshot_id - 1
    assert ledger_row(lake, load.load_id)["read_snapshot_id"] == rival_commit
    assert lake.fetch_all(f"SELECT count(*) FROM daily AT (VERSION => {rival_commit}) WHERE day = 'd0'") == [(0,)]
    assert lake.fetch_all("SELECT day, qty FROM daily ORDER BY ALL") == [("d1", 2), ("d1", 3)]
    # The load's event, and the rollback's, carry the snapshot each committed.
    # Other tests' lakes are keyed alike (duckdb://lake/...): wait for these two loads' events.
    deadline = time.monotonic() + 60
    while True:
        payloads = {e.payload["load_id"]: e.payload for e in _events(asset_key(lake.database_path, "daily"), SUCCEEDED, 2)}
        if {load.load_id, undo.load_id} <= set(payloads) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert payloads[load.load_id]["snapshot_id"] == load.snapshot_id
    assert (payloads[undo.load_id]["strategy"], payloads[undo.load_id]["snapshot_id"]) == ("rollback", undo.snapshot_id)


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_rollback_puts_the_incremental_state_back_and_runs_from_the_cli(
    lake: DuckLakeConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = pl.DataFrame({"id": [1, 2, 3], "ts": [10, 20, 30]})
    lake.load_frame(batch.head(2), "feed", cursor="ts", keys="id")
    load = lake.load_frame(batch, "feed", cursor="ts", keys="id", return_result=True)
    assert load.inserted == 1
    lake.save("rollback-lake", overwrite=True)

    assert main(["rollback", "--block", "rollback-lake", "feed", load.load_id]) == 0
    out = capsys.readouterr().out
    undo_id = lake.load_history("feed").filter(pl.col("rollback_of") == load.load_id)["load_id"].item()
    assert f"Rolled back load {load.load_id} of feed: 0 row(s) put back, 1 taken out;" in out
    assert f"To undo this rollback: prefect-etl rollback --block rollback-lake feed {undo_id}" in out
    assert rows(lake, "feed")["id"].to_list() == [1, 2]
    # The cursor's mark went back too: the same batch loads its last row again.
    assert lake.load_frame(batch, "feed", cursor="ts", keys="id", return_result=True).inserted == 1

    # Refused: one line on stderr that names --force; with it, the rollback goes ahead.
    assert main(["rollback", "--block", "ducklake-connection/rollback-lake", "feed", load.load_id]) == 1
    assert "prefect-etl rollback: Refused to roll back load" in capsys.readouterr().err
    assert main(["rollback", "--block", "rollback-lake", "feed", load.load_id, "--force"]) == 0
    assert rows(lake, "feed")["id"].to_list() == [1, 2]
    assert main(["rollback", "--block", "no-such-lake", "feed", load.load_id]) == 1
    assert "no saved ducklake-connection or duckdb-connection block named 'no-such-lake'" in capsys.readouterr().err


    # The example of docs/blocks/ducklake_connection.md#rollback (marked no-run there: the docs
    # tests run on DuckDB 2.0) runs against the block saved as "lake".
    lake.save("lake", overwrite=True)
    page = (Path(__file__).parents[1] / "docs" / "blocks" / "ducklake_connection.md").read_text()
    example = re.search(r"## Rollback\n.*?```python\n(.*?)```", page, re.S).group(1)
    exec(compile(example, "ducklake_connection.md#rollback", "exec"), {})


def test_rollback_on_a_duckdb_file_is_refused_saying_why_and_what_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    load = db.load_frame(FIRST, "sales.orders", return_result=True)
    expected = (
        f"Cannot roll back 'sales.orders' to before load {load.load_id}: a DuckDB database file "
        f"({db.database_path}) keeps no history of its tables, only their current rows (a committed "
        "load cannot be undone from the file alone). Instead: restore the file from a backup taken "
        "before the load; or undo it by hand from load_history('sales.orders') (its row says what "
        "the load inserted, updated and deleted); or load into a DuckLakeConnection, whose "
        "rollback() restores a table from its snapshots."
    )
    with pytest.raises(LoadConfigError) as refused:
        db.rollback("sales.orders", load.load_id, force=True)
    assert str(refused.value) == expected
    assert_frame_equal(db.query("SELECT * FROM sales.orders ORDER BY id"), FIRST)
    db.save("rollback-file", overwrite=True)
    assert main(["rollback", "--block", "rollback-file", "sales.orders", load.load_id]) == 1
    assert capsys.readouterr().err == f"prefect-etl rollback: {expected}\n"
