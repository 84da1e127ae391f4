"""DuckDBConnection on real DuckDB files: DatabaseBlock methods, loads, identifiers, atomicity,
cross-process writers."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import decimal
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from polars.testing.parametric import column, dataframes

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.core.identifiers import quote_parts
from prefect_etl_blocks.duckdb import quote_table, split_table_name
from prefect_etl_blocks.errors import (
    DuckDBLockTimeoutError,
    ExtensionLoadError,
    InvalidIdentifierError,
    LoadError,
    SchemaMismatchError,
)


@pytest.fixture
def db(tmp_path: Path) -> DuckDBConnection:
    return DuckDBConnection(database=str(tmp_path / "nested" / "dir" / "warehouse.duckdb"))


def test_file_database_creates_parent_folders_and_persists(db: DuckDBConnection) -> None:
    db.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert Path(db.database).exists()
    again = DuckDBConnection(database=db.database)
    assert again.fetch_all("SELECT x FROM t") == [(1,)]


def test_database_block_methods_bind_parameters(db: DuckDBConnection) -> None:
    db.execute("CREATE TABLE people (id INTEGER, name VARCHAR)")
    db.execute_many("INSERT INTO people VALUES (?, ?)", [(1, "Ada"), (2, "Bob'); DROP TABLE people; --"), (3, "Cy")])
    assert db.fetch_one("SELECT name FROM people WHERE id = ?", [2]) == ("Bob'); DROP TABLE people; --",)
    assert db.fetch_all("SELECT id FROM people WHERE id >= $low ORDER BY id", {"low": 2}) == [(2,), (3,)]
    assert db.fetch_one("SELECT name FROM people WHERE id = 99") is None


def test_fetch_many_continues_where_it_stopped_and_resets(db: DuckDBConnection) -> None:
    """Prefect's DatabaseBlock convention: an exhausted result returns [] and keeps doing so
    (it used to start the query again) until reset_connections() or close()."""
    db.execute("CREATE TABLE n AS SELECT range AS i FROM range(5)")
    sql = "SELECT i FROM n ORDER BY i"
    assert db.fetch_many(sql, size=2) == [(0,), (1,)]
    assert db.fetch_many(sql, size=2) == [(2,), (3,)]
    assert db.fetch_many(sql, size=2) == [(4,)]
    assert db.fetch_many(sql, size=2) == []
    assert db.fetch_many(sql, size=2) == []
    db.reset_connections()
    assert db.fetch_many(sql, size=3) == [(0,), (1,), (2,)]
    db.reset_cursors()  # the earlier name still works
    assert db.fetch_many(sql, size=3) == [(0,), (1,), (2,)]
    db.close()
    assert db.fetch_many(sql, size=3) == [(0,), (1,), (2,)]
    db.close()
    db.close()  # idempotent


def test_sync_calls_never_return_coroutines(db: DuckDBConnection) -> None:
    result = db.fetch_one("SELECT 42")
    assert result == (42,)
    assert not asyncio.iscoroutine(db.query("SELECT 1 AS a"))


def test_async_callers_await_the_same_methods(db: DuckDBConnection) -> None:
    async def main() -> tuple:
        await db.execute("CREATE TABLE a AS SELECT 7 AS v")
        rows = await db.load_frame(pl.DataFrame({"v": [8]}), "a", mode="append")
        frame = await db.query("SELECT v FROM a ORDER BY v")
        return rows, frame, await db.fetch_all("SELECT count(*) FROM a")

    rows, frame, count = asyncio.run(main())
    assert rows == 1 and frame["v"].to_list() == [7, 8] and count == [(2,)]


def test_context_manager_keeps_one_connection_and_releases_file(db: DuckDBConnection) -> None:
    with db as held:
        held.execute("CREATE TABLE c AS SELECT 1 AS x")
        with held.get_connection() as con:
            assert con.sql("SELECT x FROM c").fetchall() == [(1,)]
        assert held._connection is not None
    assert db._connection is None  # file released for other processes


def test_pickle_and_deepcopy_drop_the_live_connection(db: DuckDBConnection) -> None:
    with db:
        db.execute("CREATE TABLE p AS SELECT 1 AS x")
        clone = pickle.loads(pickle.dumps(db))
        copied = copy.deepcopy(db)
    assert clone._connection is None and copied._connection is None
    assert clone.database == db.database and clone.fetch_one("SELECT x FROM p") == (1,)


def test_settings_and_init_sql_apply_on_connect(tmp_path: Path) -> None:
    db = DuckDBConnection(
        database=str(tmp_path / "s.duckdb"),
        settings={"threads": 1, "memory_limit": "256MB"},
        init_sql=["CREATE SCHEMA IF NOT EXISTS staging", "SET VARIABLE answer = 42"],
    )
    assert db.fetch_one("SELECT current_setting('threads')") == (1,)
    assert db.fetch_one("SELECT getvariable('answer')") == (42,)
    assert db.fetch_one("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'staging'") == (1,)


def test_bundled_extension_loads_and_missing_one_is_named(tmp_path: Path) -> None:
    assert DuckDBConnection(extensions=["json"]).fetch_one("SELECT json_valid('{}')") == (True,)
    with pytest.raises(ExtensionLoadError, match="DuckDB extension 'spatial' could not be loaded"):
        DuckDBConnection(database=str(tmp_path / "e.duckdb"), extensions=["spatial"]).fetch_one("SELECT 1")
    with pytest.raises(ValueError, match="extension name 'x; DROP' is not valid"):
        DuckDBConnection(extensions=["x; DROP"])


def test_read_only_refuses_writes_and_missing_files(db: DuckDBConnection, tmp_path: Path) -> None:
    db.load_frame(pl.DataFrame({"a": [1]}), "t")
    reader = DuckDBConnection(database=db.database, read_only=True)
    assert reader.query("SELECT * FROM t")["a"].to_list() == [1]
    with pytest.raises(ValueError, match="is read_only"):
        reader.load_frame(pl.DataFrame({"a": [2]}), "t")
    with pytest.raises(FileNotFoundError, match="does not exist, and read_only=True cannot create it"):
        DuckDBConnection(database=str(tmp_path / "absent.duckdb"), read_only=True).fetch_one("SELECT 1")


# ---------------------------------------------------------------- loads
def test_load_modes_replace_append_fail(db: DuckDBConnection) -> None:
    frame = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    assert db.load_frame(frame, "analytics.items") == 2
    assert db.load_frame(frame, "analytics.items") == 2  # run twice: replaced, not duplicated
    assert db.fetch_one("SELECT count(*) FROM analytics.items") == (2,)
    assert db.load_frame(frame.select("v", "id"), "analytics.items", mode="append") == 2  # by name
    assert db.fetch_all("SELECT id, v FROM analytics.items ORDER BY id, v") == [(1, "a"), (1, "a"), (2, "b"), (2, "b")]
    with pytest.raises(ValueError, match='Table "analytics.items" already exists. Use mode="replace"'):
        db.load_frame(frame, "analytics.items", mode="fail")
    assert db.load_frame(frame, "analytics.fresh", mode="fail") == 2
    with pytest.raises(ValueError, match="mode='merge' is not a load mode"):
        db.load_frame(frame, "x", mode="merge")  # type: ignore[arg-type]


def test_upsert_updates_matches_and_inserts_the_rest(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"k1": [1, 1, 2], "k2": ["a", "b", "a"], "v": [10, 20, 30]}), "u")
    written = db.load_frame(
        pl.DataFrame({"k1": [1, 3], "k2": ["b", "z"], "v": [99, 5]}), "u", mode="upsert", keys=["k1", "k2"]
    )
    assert written == 2
    assert db.fetch_all("SELECT k1, k2, v FROM u ORDER BY k1, k2") == [
        (1, "a", 10), (1, "b", 99), (2, "a", 30), (3, "z", 5),
    ]
    # run twice: same result
    db.load_frame(pl.DataFrame({"k1": [1, 3], "k2": ["b", "z"], "v": [99, 5]}), "u", mode="upsert", keys=["k1", "k2"])
    assert db.fetch_one("SELECT count(*) FROM u") == (4,)


def test_upsert_errors_name_the_problem_and_keep_the_table(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"id": [1], "v": [1]}), "u")
    with pytest.raises(ValueError, match=r"needs keys=\[\.\.\.\]"):
        db.load_frame(pl.DataFrame({"id": [1], "v": [2]}), "u", mode="upsert")
    with pytest.raises(ValueError, match=r"upsert keys \['nope'\] are not columns"):
        db.load_frame(pl.DataFrame({"id": [1], "v": [2]}), "u", mode="upsert", keys=["nope"])
    with pytest.raises(LoadError, match=r"key \{'id': 5\} appears more than once"):
        db.load_frame(pl.DataFrame({"id": [5, 5], "v": [1, 2]}), "u", mode="upsert", keys=["id"])
    assert db.fetch_all("SELECT * FROM u") == [(1, 1)]


def test_load_accepts_lazyframe_arrow_and_pandas(db: DuckDBConnection) -> None:
    import pandas as pd

    assert db.load_frame(pl.LazyFrame({"a": range(1000)}).filter(pl.col("a") % 2 == 0), "lazy") == 500
    assert db.load_frame(pa.table({"a": [1, 2, 3]}), "arrow") == 3
    assert db.load_frame(pd.DataFrame({"a": [1.5]}), "pandas") == 1
    with pytest.raises(TypeError, match="load_frame\\(\\) takes a pl.DataFrame"):
        db.load_frame([1, 2], "bad")


def test_failed_replace_leaves_the_old_table_exactly(db: DuckDBConnection) -> None:
    original = pl.DataFrame({"id": [1, 2, 3], "v": ["x", "y", "z"]})
    db.load_frame(original, "keep")

    def batches():
        yield pa.record_batch({"id": [100], "v": ["new"]})
        raise RuntimeError("source exploded in batch 2")

    reader = pa.RecordBatchReader.from_batches(pa.schema([("id", pa.int64()), ("v", pa.string())]), batches())
    with pytest.raises(LoadError, match='Loading into table "keep" \\(replace\\) failed.*left exactly as it was'):
        db.load_frame(reader, "keep")
    assert_frame_equal(db.query("SELECT * FROM keep ORDER BY id"), original)

    # A string into a BIGINT column is refused before anything is written (it used to surface
    # as a LoadError from DuckDB's cast; the schema contract now names the column and value).
    with pytest.raises(SchemaMismatchError, match='column "id" is BIGINT but the data has VARCHAR'):
        db.load_frame(pl.DataFrame({"id": ["not a number"], "v": ["q"]}), "keep", mode="append")
    assert_frame_equal(db.query("SELECT * FROM keep ORDER BY id"), original)


def test_failed_parquet_replace_leaves_the_old_table(db: DuckDBConnection, tmp_path: Path) -> None:
    db.load_frame(pl.DataFrame({"a": [1]}), "t")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    with pytest.raises(Exception, match=str(bad)):
        db.load_parquet(str(bad), "t")
    assert db.fetch_all("SELECT * FROM t") == [(1,)]


def test_load_parquet_local_folder_filter_columns_and_hive(db: DuckDBConnection, parquet_dir: Path, hive_dir: Path, sales_frame: pl.DataFrame) -> None:
    source = ParquetSource(path=str(parquet_dir), columns=["order_id", "value"], filter="value > 0")
    expected = sales_frame.filter(pl.col("value") > 0).height
    assert db.load_parquet(source, "raw.sales") == expected
    assert db.load_parquet(source, "raw.sales") == expected  # idempotent replace
    assert db.query("SELECT * FROM raw.sales").columns == ["order_id", "value"]
    assert db.fetch_one("SELECT min(value) > 0 FROM raw.sales") == (True,)
    hive = ParquetSource(path=str(hive_dir), filter="region = 'EU'")
    rows = db.load_parquet(hive, "eu")
    assert rows == sales_frame.filter(pl.col("region") == "EU").height
    assert db.fetch_all("SELECT DISTINCT region FROM eu") == [("EU",)]


def test_load_parquet_from_s3_streams_through_polars(db: DuckDBConnection, parquet_object: str, aws_credentials, sales_frame: pl.DataFrame) -> None:
    source = ParquetSource(path=parquet_object, aws_credentials=aws_credentials, filter="value > 0")
    assert db.load_parquet(source, "s3_sales") == sales_frame.filter(pl.col("value") > 0).height
    assert db.fetch_one("SELECT sum(order_id) FROM s3_sales") == (
        sales_frame.filter(pl.col("value") > 0)["order_id"].sum(),
    )


# ---------------------------------------------------------------- identifiers
@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("daily", ["daily"]),
        ("analytics.daily_summary", ["analytics", "daily_summary"]),
        ('"odd.name"', ["odd.name"]),
        ('s."with ""quote"""', ["s", 'with "quote"']),
        ("db.s.t", ["db", "s", "t"]),
    ],
)
def test_split_table_name(name: str, parts: list[str]) -> None:
    assert split_table_name(name) == parts


@pytest.mark.parametrize("name", ["", ".", "a.", ".a", "a..b", "a.b.c.d", '"open', 'a"b', "nul\x00byte"])
def test_unusable_table_names_are_refused(db: DuckDBConnection, name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        db.load_frame(pl.DataFrame({"a": [1]}), name)
    assert issubclass(InvalidIdentifierError, ValueError)


def test_injection_attempt_is_a_literal_table_name(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"a": [1]}), "victim")
    evil = 'x"; DROP TABLE victim; --'
    db.load_frame(pl.DataFrame({"a": [2]}), f'"{evil.replace(chr(34), chr(34) * 2)}"')
    assert db.fetch_all("SELECT * FROM victim") == [(1,)]
    assert db.table_exists(f'"{evil.replace(chr(34), chr(34) * 2)}"')


_name_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00."), min_size=1, max_size=20
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=_name_text, table=_name_text)
def test_any_name_round_trips_literally(schema: str, table: str) -> None:
    db = DuckDBConnection()
    qualified = f'"{schema.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}"'
    assert split_table_name(qualified) == [schema, table]
    assert db.load_frame(pl.DataFrame({"v": [1, 2]}), qualified) == 2
    assert db.table_exists(qualified)
    assert db.fetch_one(f"SELECT count(*) FROM {quote_table(qualified)}") == (2,)
    db.close()


_dotted_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(schema=_dotted_text, table=_dotted_text)
def test_quoted_parts_name_exactly_the_schema_and_table_they_were_made_of(schema: str, table: str) -> None:
    """quote_parts is how the engine writes a resolved name into SQL: dots, quotes and spaces
    inside a part stay inside it, for the splitter and for DuckDB alike."""
    assert split_table_name(quote_parts([schema, table])) == [schema, table]
    assume(schema.lower() not in {"main", "information_schema", "pg_catalog", "temp"})  # DuckDB's own
    with duckdb.connect() as con:
        con.execute(f"CREATE SCHEMA {quote_parts([schema])}")
        con.execute(f"CREATE TABLE {quote_parts(['memory', schema, table])} (v INTEGER)")
        assert con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall() == [(schema, table)]


# ---------------------------------------------------------------- round trips
_frames = dataframes(
    cols=[
        column("i", dtype=pl.Int64, allow_null=True),
        column("f", dtype=pl.Float64, allow_null=True),
        column("s", dtype=pl.String, allow_null=True),
        column("d", dtype=pl.Date, allow_null=True),
        column("ts", dtype=pl.Datetime("us"), allow_null=True),
        column("b", dtype=pl.Boolean, allow_null=True),
        column("dec", dtype=pl.Decimal(18, 3), allow_null=True),
        column("li", dtype=pl.List(pl.Int32), allow_null=True),
    ],
    max_size=30,
    allow_nan=False,
    allow_infinity=False,
)


@settings(max_examples=60, deadline=None)
@given(frame=_frames)
def test_frames_round_trip_through_load_and_query(frame: pl.DataFrame) -> None:
    db = DuckDBConnection()
    assert db.load_frame(frame, "rt") == frame.height
    back = db.query("SELECT * FROM rt")
    assert_frame_equal(back, frame, check_dtypes=True)
    db.close()


def test_unicode_dates_decimals_and_lists_round_trip_concretely(db: DuckDBConnection) -> None:
    frame = pl.DataFrame(
        {
            "name": ["Zoë", "東京", None],
            "day": [dt.date(2026, 1, 1), None, dt.date(1970, 1, 1)],
            "amount": pl.Series([decimal.Decimal("1.25"), None, decimal.Decimal("-3.50")], dtype=pl.Decimal(10, 2)),
            "tags": [["a", "b"], [], None],
        }
    )
    db.load_frame(frame, "u")
    assert_frame_equal(db.query("SELECT * FROM u"), frame)


# ---------------------------------------------------------------- cross-process writers
_WRITER = textwrap.dedent(
    """
    import sys, polars as pl
    from prefect_etl_blocks import DuckDBConnection
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = DuckDBConnection(database=path, lock_timeout_seconds=60)
    for i in range(n):
        db.load_frame(pl.DataFrame({"writer": [tag] * 100, "i": [i] * 100}), "log", mode="append")
    print("done", tag)
    """
)


def _run(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(180)
def test_two_processes_writing_one_file_both_succeed(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.duckdb")
    DuckDBConnection(database=path).execute("CREATE TABLE log (writer VARCHAR, i INTEGER)")
    procs = [_run(_WRITER, path, tag, "15") for tag in ("a", "b")]
    for proc in procs:
        out, err = proc.communicate(timeout=170)
        assert proc.returncode == 0, err[-2000:]
    counts = DuckDBConnection(database=path, read_only=True).fetch_all(
        "SELECT writer, count(*) FROM log GROUP BY writer ORDER BY writer"
    )
    assert counts == [("a", 1500), ("b", 1500)]


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from prefect_etl_blocks import DuckDBConnection
    db = DuckDBConnection(database=sys.argv[1])
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@pytest.mark.timeout(120)
def test_lock_timeout_names_the_file_and_the_holder_then_waits_successfully(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.duckdb")
    holder = _run(_HOLDER, path, "6")
    assert holder.stdout.readline().strip() == "holding"
    try:
        impatient = DuckDBConnection(database=path, lock_timeout_seconds=0.5)
        with pytest.raises(DuckDBLockTimeoutError) as info:
            impatient.fetch_one("SELECT 1")
        message = str(info.value)
        assert path in message and f"process {holder.pid}" in message and "lock_timeout_seconds" in message
        patient = DuckDBConnection(database=path, lock_timeout_seconds=60)
        started = time.monotonic()
        assert patient.fetch_one("SELECT x FROM held") == (1,)  # waited for the holder to finish
        assert time.monotonic() - started > 1
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- bounded memory
_MEASURE_LOAD = textwrap.dedent(
    """
    import sys, threading, time, psutil
    from prefect_etl_blocks import DuckDBConnection, ParquetSource
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    db = DuckDBConnection(database=sys.argv[1], settings={"memory_limit": "100MB", "threads": 2, "temp_directory": sys.argv[3]})
    rows = db.load_parquet(ParquetSource(path=sys.argv[2]), "big")
    done.set()
    sampler.join()
    print(rows, peak[0] - before)
    """
)


def _measure_load(tmp_path: Path, folder: Path) -> tuple[int, int]:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE_LOAD, str(tmp_path / f"{folder.name}.duckdb"), str(folder), str(tmp_path / "spill")],
        capture_output=True, text=True, timeout=220,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows, growth = map(int, result.stdout.split())
    return rows, growth


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_load_parquet_memory_does_not_grow_with_the_data(tmp_path: Path) -> None:
    """Four times the data, about the same peak memory: the load streams, it never materialises."""
    import numpy as np

    rng = np.random.default_rng(1)
    rows_per_file = 1_000_000
    sizes = {}
    for name, files in (("small", 2), ("large", 8)):
        folder = tmp_path / name
        folder.mkdir()
        sizes[name] = 0
        for i in range(files):
            part = pl.DataFrame(
                {
                    "id": np.arange(i * rows_per_file, (i + 1) * rows_per_file, dtype=np.int64),
                    "value": rng.normal(size=rows_per_file),
                    "qty": rng.integers(0, 100, rows_per_file),
                    "label": pl.Series(rng.integers(0, 50_000, rows_per_file)).cast(pl.String),
                }
            )
            sizes[name] += part.estimated_size()
            part.write_parquet(folder / f"part-{i}.parquet")
    small_rows, small_growth = _measure_load(tmp_path, tmp_path / "small")
    large_rows, large_growth = _measure_load(tmp_path, tmp_path / "large")
    assert (small_rows, large_rows) == (2 * rows_per_file, 8 * rows_per_file)
    mib = 2**20
    assert large_growth < small_growth * 1.5 + 32 * mib, (
        f"RSS grew {large_growth / mib:.0f} MiB for {sizes['large'] / mib:.0f} MiB of data, "
        f"{small_growth / mib:.0f} MiB for {sizes['small'] / mib:.0f} MiB"
    )
    assert large_growth < sizes["large"], "peak memory reached the size of the whole dataset"


def test_a_held_connection_mixes_fetches_queries_and_loads(db: DuckDBConnection) -> None:
    """DuckDB 2.0 refuses work on a connection whose last result is unfinished; every method
    finishes its own, so they mix freely inside ``with db:`` (as a flow that passes its held
    block to ``load_to_duckdb`` does)."""
    with db:
        db.execute("CREATE TABLE big AS SELECT range AS i FROM range(100000)")
        assert db.fetch_one("SELECT i FROM big ORDER BY i") == (0,)
        assert db.query("SELECT count(*) AS n FROM big")["n"].to_list() == [100000]
        db.execute("INSERT INTO big VALUES (1), (2)")
        assert db.load_frame(pl.DataFrame({"i": [5]}), "big", mode="append") == 1
        assert db.query("SELECT count(*) AS n FROM big")["n"].to_list() == [100003]


def test_sql_refused_by_duckdb_is_a_query_error_with_a_fix(db: DuckDBConnection) -> None:
    from prefect_etl_blocks.errors import DataError, QueryError

    db.execute("CREATE TABLE sales (id INTEGER)")
    with pytest.raises(QueryError, match=r"Table with name slaes does not exist.*Check the table and column names") as info:
        db.query("SELECT * FROM slaes")
    assert isinstance(info.value, DataError) and isinstance(info.value.__cause__, duckdb.CatalogException)
    with pytest.raises(QueryError, match="Referenced column \"nope\" not found"):
        db.fetch_all("SELECT nope FROM sales")
    with pytest.raises(QueryError, match="Fix the SQL syntax"):
        db.execute("SELEC 1")
    with pytest.raises(QueryError):
        db.fetch_many("SELECT * FROM absent", size=1)
    assert db._cursors == {} and db._connection is None  # the file is not left locked


@pytest.mark.parametrize("method", ["get_connection", "load_frame", "load_parquet", "load_history"])
def test_method_docstring_examples_run(method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples of the methods DuckDBConnection shares with DuckLakeConnection
    (prefect_etl_blocks.warehouse) run as written."""
    import re

    monkeypatch.chdir(tmp_path)
    doc = textwrap.dedent(getattr(DuckDBConnection, method).__doc__)
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 1
    exec(compile(textwrap.dedent(blocks[0]), f"DuckDBConnection.{method}", "exec"), {})


def test_a_copy_never_shares_the_held_connection(db: DuckDBConnection) -> None:
    db.execute("CREATE TABLE t AS SELECT 1 AS x")
    with db:
        assert db._connection is not None
        twins = [db.model_copy(), copy.copy(db), copy.deepcopy(db), pickle.loads(pickle.dumps(db))]
        for twin in twins:
            assert (twin._connection, twin._held, twin._cursors) == (None, 0, {})
    assert db._connection is None
    for twin in twins:  # each opens (and closes) its own once the file is free
        assert twin.fetch_all("SELECT x FROM t") == [(1,)]
        assert twin._connection is None
