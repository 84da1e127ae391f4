"""Dry runs: ``dry_run=True`` runs the whole load and reports it, then keeps nothing.

The property: for any frame and strategy, the dry run's counts, schema changes and checks are
the real load's that follows, and the dry run leaves every table, column, schema, ledger row
and incremental state exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.transactions import transaction

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.checks import unique
from prefect_etl_blocks.errors import DataCheckError, LoadConfigError


def snapshot(db: DuckDBConnection) -> dict[str, object]:
    """Every table of the database with its columns and rows (ledger and state included)."""
    tables = db.query(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1, 2"
    ).rows()
    schemas = db.query("SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() ORDER BY 1")
    out: dict[str, object] = {"schemas": schemas["schema_name"].to_list()}
    for schema, name in tables:
        frame = db.query(f'SELECT * FROM "{schema}"."{name}"')
        out[f"{schema}.{name}"] = (frame.schema, sorted(frame.rows(), key=repr))
    return out


def same_outcome(dry, real) -> None:  # noqa: ANN001 - two LoadResults
    assert dry.dry_run and not real.dry_run
    for field in ("inserted", "updated", "deleted", "created", "schema_created", "schema_changes", "mode", "keys"):
        assert getattr(dry, field) == getattr(real, field), field
    assert [(c.name, c.failing) for c in dry.checks] == [(c.name, c.failing) for c in real.checks]


rows = st.lists(
    st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(-5, 5)), st.sampled_from(["a", "b", "c"])),
    max_size=12,
    unique_by=lambda r: r[0],
)
MODES = ["replace", "append", "upsert", "delete-insert", "insert-only", "scd2", "cursor"]


def frame(data: list[tuple], extra: bool = False) -> pl.DataFrame:
    out = pl.DataFrame(data, schema={"id": pl.Int64, "qty": pl.Int64, "cat": pl.String}, orient="row")
    return out.with_columns(note=pl.lit("n")) if extra else out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=rows, second=rows, mode=st.sampled_from(MODES), new_column=st.booleans(), exists=st.booleans())
def test_a_dry_run_reports_the_real_load_and_keeps_nothing(
    first: list[tuple], second: list[tuple], mode: str, new_column: bool, exists: bool
) -> None:
    db = DuckDBConnection()
    try:
        options: dict = {"checks": ["qty IS NULL OR qty > -100", unique("id")], "return_result": True}
        if mode == "cursor":
            options |= {"cursor": "id", "keys": "id"}
        else:
            options |= {"mode": mode, "keys": None if mode in ("replace", "append") else "id"}
        if new_column:
            options["on_schema_change"] = "append_new_columns"
        if exists:
            db.load_frame(frame(first), "stock", **options)
        before = snapshot(db)
        table = "stock" if exists else "analytics.stock"
        try:
            dry = db.load_frame(frame(second, new_column), table, dry_run=True, **options)
        except DataCheckError as exc:  # a failing check fails the dry run as it fails the load
            assert snapshot(db) == before
            with pytest.raises(DataCheckError) as real_error:
                db.load_frame(frame(second, new_column), table, **options)
            assert str(real_error.value) == str(exc)
            assert snapshot(db) == before
            return
        assert snapshot(db) == before
        real = db.load_frame(frame(second, new_column), table, **options)
        same_outcome(dry, real)
        assert db.last_load is real
    finally:
        db.close()


def test_a_dry_run_of_new_files_keeps_the_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame({"id": [1, 2]}).write_parquet(folder / "day1.parquet")
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    dry = db.load_parquet(source, "raw", incremental=True, dry_run=True, return_result=True)
    assert (dry.inserted, dry.files, dry.created) == (2, (str(folder / "day1.parquet"),), True)
    assert not db.table_exists("raw") and db.load_history().is_empty()
    assert db.load_parquet(source, "raw", incremental=True) == 2  # the file was still new


def test_a_dry_run_whose_checks_fail_raises_and_keeps_nothing() -> None:
    """A dry run is the load rehearsed: it fails where the real load would, with the same
    error (every failing check, its count and sample), and nothing is kept."""
    db = DuckDBConnection()
    db.load_frame(pl.DataFrame({"id": [1], "qty": [1]}), "stock")
    before = snapshot(db)
    passing = db.load_frame(pl.DataFrame({"id": [2], "qty": [3]}), "stock", mode="append", checks=["qty >= 0"],
                            dry_run=True, return_result=True)
    assert [(c.name, c.passed) for c in passing.checks] == [("qty >= 0", True)] and passing.inserted == 1
    assert snapshot(db) == before
    with pytest.raises(DataCheckError, match=r"qty >= 0: 1 failing row"):
        db.load_frame(pl.DataFrame({"id": [2], "qty": [-1]}), "stock", mode="append", checks=["qty >= 0"], dry_run=True)
    assert snapshot(db) == before


def test_a_dry_run_inside_a_transaction_that_loaded_the_database_is_refused(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    with transaction():
        db.load_frame(pl.DataFrame({"id": [1]}), "a")
        with pytest.raises(LoadConfigError, match="dry_run=True into 'b'.*no savepoints"):
            db.load_frame(pl.DataFrame({"id": [1]}), "b", dry_run=True)
    assert db.table_exists("a") and not db.table_exists("b")


def test_a_dry_run_before_the_first_load_of_a_transaction_runs_alone(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    with transaction():
        dry = db.load_frame(pl.DataFrame({"id": [1, 2]}), "a", mode="append", dry_run=True, return_result=True)
        db.load_frame(pl.DataFrame({"id": [1]}), "a", mode="append")
    assert dry.inserted == 2 and db.query("SELECT count(*) FROM a").item() == 1


def test_the_load_task_reports_a_dry_run_as_one_and_keeps_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``load_to_duckdb(dry_run=True)`` returns what the load would do, says "dry run" in its
    log line and artifact (not "Loaded into"), and shows no sample of the unchanged table."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from prefect_etl_blocks.tasks import load_to_duckdb

    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "facts_dry")
    before = snapshot(db)

    @flow
    def rehearse() -> object:
        frame = pl.DataFrame({"id": [2, 3], "v": ["B", "c"]})
        return load_to_duckdb(frame, "facts_dry", db, mode="upsert", keys="id", dry_run=True, return_result=True)

    with caplog.at_level("INFO"):
        result = rehearse()
    assert (result.dry_run, result.inserted, result.updated) == (True, 1, 1)
    assert snapshot(db) == before
    lines = [r.getMessage() for r in caplog.records if "facts_dry" in r.getMessage()]
    assert any(line.startswith("Dry run into facts_dry (upsert)") and "nothing was kept" in line for line in lines), lines
    assert not any(line.startswith("Loaded into") for line in lines), lines

    import asyncio

    async def artifacts() -> list:
        async with get_client() as client:
            return [a for a in await client.read_latest_artifacts() if a.key in ("duckdb-dry-run-facts-dry", "duckdb-load-facts-dry")]

    found = asyncio.run(artifacts())
    assert [a.key for a in found] == ["duckdb-dry-run-facts-dry"]
    assert "Nothing was kept" in found[0].data and "| 1 | 1 | 0 | 0 |" in found[0].data
