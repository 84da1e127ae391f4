"""Tasks under the session's Prefect test harness: results, retries and load artifacts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import SchemaMismatchError
from prefect_etl_blocks.tasks import artifact_key, extract_parquet, load_to_duckdb, run_duckdb_query


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
