"""Tasks under the session's Prefect test harness: results, retries and load artifacts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.checks import unique
from prefect_etl_blocks.errors import (
    DuckDBLockTimeoutError,
    QueryError,
    ResultStorageError,
    SchemaMismatchError,
    SourceUnavailableError,
)
from prefect_etl_blocks.tasks import (
    RETRY_OPTIONS,
    artifact_key,
    extract_parquet,
    load_to_duckdb,
    retry_transient,
    run_duckdb_query,
)


def test_extract_load_query_in_a_flow_publishes_an_artifact(parquet_dir: Path, tmp_path: Path, sales_frame: pl.DataFrame) -> None:
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))

    @flow
    def pipeline() -> tuple[int, pl.DataFrame]:
        frame = extract_parquet(ParquetSource(path=str(parquet_dir), filter="value > 0"))
        rows = load_to_duckdb(frame, "analytics.sales", db)
        top = run_duckdb_query("SELECT category, count(*) AS n FROM analytics.sales WHERE value > ? GROUP BY 1 ORDER BY 1", db, [0])
        return rows, top

    rows, top = pipeline()
    assert rows == sales_frame.filter(pl.col("value") > 0).height
    assert top["n"].sum() == rows

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        ours = [a for a in artifact if a.key == "duckdb-load-analytics-sales"]
    assert ours, [a.key for a in artifact]
    markdown = ours[0].data
    assert f"**{rows:,}** rows written (replace)" in markdown
    assert "| order_id | BIGINT |" in markdown and "## Sample (5 rows)" in markdown


def test_load_task_streams_a_parquet_source(parquet_file: Path, tmp_path: Path, sales_frame: pl.DataFrame) -> None:
    db = DuckDBConnection(database=str(tmp_path / "p.duckdb"))

    @flow
    def pipeline() -> int:
        return load_to_duckdb(ParquetSource(path=str(parquet_file)), "raw", db)

    assert pipeline() == sales_frame.height
    assert pipeline() == sales_frame.height  # run twice: replaced
    assert db.fetch_one("SELECT count(*) FROM raw") == (sales_frame.height,)


def test_bad_data_fails_without_retrying(parquet_file: Path) -> None:
    calls = []
    source = ParquetSource(path=str(parquet_file), expected_schema={"value": "String"})

    @flow
    def pipeline() -> None:
        calls.append(1)
        extract_parquet.with_options(retry_delay_seconds=0)(source)

    state = pipeline(return_state=True)
    assert state.is_failed()
    with pytest.raises(SchemaMismatchError, match="column 'value' has dtype Float64, expected String"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    extract_runs = [r for r in runs if r.flow_run_id == state.state_details.flow_run_id]
    assert [r.run_count for r in extract_runs] == [1]


def test_artifact_keys_are_valid() -> None:
    assert artifact_key("duckdb-load", 'Analytics."Daily Summary"') == "duckdb-load-analytics-daily-summary"
    assert artifact_key("duckdb-load", "東京") == "duckdb-load-unnamed"


# ---------------------------------------------------------------- retry taxonomy (issue 11)
_HOLD_FILE = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold_file(path: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_FILE, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _run_counts(state) -> list[int]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    return [r.run_count for r in runs if r.flow_run_id == state.state_details.flow_run_id]


def test_retry_transient_classifies_by_cause() -> None:
    class State:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self):
            raise self.exc

    assert retry_transient(None, None, State(ResultStorageError("bucket unreachable")))
    assert retry_transient(None, None, State(DuckDBLockTimeoutError("busy")))
    assert retry_transient(None, None, State(ConnectionResetError("peer reset")))
    assert not retry_transient(None, None, State(duckdb.CatalogException("Table with name nope does not exist!")))
    assert not retry_transient(None, None, State(SchemaMismatchError("qty")))
    assert RETRY_OPTIONS["retry_condition_fn"] is retry_transient


def test_a_data_error_runs_once(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "d.duckdb"))
    db.execute("CREATE TABLE stock (qty INTEGER)")
    fast = dict(retries=2, retry_delay_seconds=0)

    @flow
    def pipeline() -> None:
        load_to_duckdb.with_options(**fast)(pl.DataFrame({"qty": [40.7]}), "stock", db, mode="append")

    state = pipeline(return_state=True)
    with pytest.raises(SchemaMismatchError, match='column "qty" is INTEGER but the data has DOUBLE'):
        state.result()
    assert _run_counts(state) == [1]

    @flow
    def typo() -> None:
        run_duckdb_query.with_options(**fast)("SELECT * FROM stokc", db)

    state = typo(return_state=True)
    with pytest.raises(QueryError, match="Table with name stokc does not exist"):
        state.result()
    assert _run_counts(state) == [1]


@pytest.mark.timeout(120)
def test_a_lock_held_then_released_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.duckdb")
    db = DuckDBConnection(database=path, lock_timeout_seconds=0.3)
    holder = _hold_file(path, 3)
    try:
        @flow
        def pipeline() -> int:
            return load_to_duckdb.with_options(retries=30, retry_delay_seconds=0.2)(
                pl.DataFrame({"x": [1, 2]}), "t", db
            )

        state = pipeline(return_state=True)
        assert state.result() == 2
    finally:
        holder.kill()
        holder.wait()
    (count,) = _run_counts(state)
    assert count > 1
    assert db.fetch_all("SELECT * FROM t ORDER BY x") == [(1,), (2,)]


@pytest.mark.timeout(120)
def test_a_lock_wait_inside_a_task_timeout_is_reported_as_a_lock_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "slow.duckdb")
    db = DuckDBConnection(database=path, lock_timeout_seconds=60)
    holder = _hold_file(path, 30)
    try:
        @flow
        def pipeline() -> int:
            return load_to_duckdb.with_options(retries=0, timeout_seconds=2)(pl.DataFrame({"x": [1]}), "t", db)

        state = pipeline(return_state=True)
        with pytest.raises(DuckDBLockTimeoutError, match=f'DuckDB file "{path}" is locked by process {holder.pid}'):
            state.result()
    finally:
        holder.kill()
        holder.wait()


def test_load_artifact_shows_strategy_counts_schema_changes_and_checks(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "a.duckdb"))
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": [1, 2]}), "facts")

    @flow
    def pipeline() -> int:
        return load_to_duckdb(
            pl.DataFrame({"id": [2, 3], "v": [20, 30], "note": ["x", "y"]}), "facts", db, mode="upsert", keys="id",
            on_schema_change="append_new_columns", checks=["v > 0", unique("id")],
        )

    assert pipeline() == 2
    with get_client(sync_client=True) as client:
        ours = [a for a in client.read_latest_artifacts() if a.key == "duckdb-load-facts"]
    markdown = ours[0].data
    assert "Strategy: `upsert`, keys `id`; on_schema_change: `append_new_columns`" in markdown
    assert "| inserted | updated | deleted |\n|---|---|---|\n| 1 | 1 | 0 |" in markdown
    assert "**Schema changes:** added column note VARCHAR" in markdown
    assert "| v > 0 | data | passed |" in markdown and "| unique(id) | table | passed |" in markdown


def test_an_unreachable_object_store_is_retried(tmp_path: Path) -> None:
    from tests.test_loading import _unreachable_credentials

    db = DuckDBConnection(database=str(tmp_path / "s.duckdb"))
    source = ParquetSource(path="s3://petl-absent/x.parquet", aws_credentials=_unreachable_credentials())

    @flow
    def pipeline() -> None:
        load_to_duckdb.with_options(retries=2, retry_delay_seconds=0)(source, "t", db)

    state = pipeline(return_state=True)
    with pytest.raises(SourceUnavailableError):
        state.result()
    assert _run_counts(state) == [3]


def test_eight_mapped_loads_with_their_own_blocks_all_succeed_without_retries(tmp_path: Path) -> None:
    """Issue 11: ``load_to_duckdb.map`` on the thread pool, each run with its own block on one
    file, failed 7 of 8 times with transaction conflicts; now the writers take turns."""
    from prefect import unmapped

    path = str(tmp_path / "mapped.duckdb")
    DuckDBConnection(database=path).execute("CREATE TABLE log (w BIGINT, i BIGINT)")
    frames = [pl.DataFrame({"w": [w] * 50, "i": list(range(50))}) for w in range(8)]
    blocks = [DuckDBConnection(database=path) for _ in range(8)]

    @flow
    def pipeline() -> list[int]:
        futures = load_to_duckdb.with_options(retries=0).map(frames, unmapped("log"), blocks, mode=unmapped("append"))
        return [f.result() for f in futures]

    assert pipeline() == [50] * 8
    assert DuckDBConnection(database=path).fetch_all("SELECT w, count(*) FROM log GROUP BY w ORDER BY w") == [
        (w, 50) for w in range(8)
    ]
