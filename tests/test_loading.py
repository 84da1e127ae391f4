"""The load engine on real DuckDB files: every case from issue 11's "Why" as a regression test,
then strategies, schema contracts, checks, replace keeping constraints, and writers that share
one file inside a process."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.checks import (
    accepted_values,
    freshness,
    not_null,
    predicate,
    row_count,
    unique,
)
from prefect_etl_blocks.errors import (
    DataCheckError,
    DataError,
    InvalidIdentifierError,
    LoadConfigError,
    LoadError,
    SchemaMismatchError,
    SourceUnavailableError,
    TransactionConflictError,
)
from prefect_etl_blocks.loading import LoadResult, file_lock, load, transaction
from prefect_etl_blocks.loading.boundary import classify_load_error


@pytest.fixture
def db(tmp_path: Path) -> DuckDBConnection:
    return DuckDBConnection(database=str(tmp_path / "w.duckdb"))


def snapshot(db: DuckDBConnection, table: str) -> tuple[list, list]:
    """DESCRIBE plus full contents in a stable order: "byte for byte the same" for a table."""
    return db.fetch_all(f"DESCRIBE {table}"), db.fetch_all(f"SELECT * FROM {table} ORDER BY ALL")


def leftovers(db: DuckDBConnection) -> list:
    return db.fetch_all(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__petl%' "
        "UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal AND view_name LIKE '__petl%'"
    )


# ------------------------------------------------------------------ Why: silent coercion
@pytest.fixture
def qty_table(db: DuckDBConnection) -> DuckDBConnection:
    db.execute("CREATE TABLE stock (id BIGINT, qty INTEGER, label VARCHAR, day DATE)")
    db.execute("INSERT INTO stock VALUES (1, 10, 'a', DATE '2026-01-01')")
    return db


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_why_float_into_integer_is_refused_not_rounded(qty_table: DuckDBConnection, mode: str) -> None:
    before = snapshot(qty_table, "stock")
    frame = pl.DataFrame({"id": [2], "qty": [40.7], "label": ["b"], "day": [dt.date(2026, 1, 2)]})
    with pytest.raises(SchemaMismatchError) as info:
        qty_table.load_frame(frame, "stock", mode=mode, keys="id")
    message = str(info.value)
    assert 'Table "stock" column "qty" is INTEGER but the data has DOUBLE (for example 40.7)' in message
    assert "The table was not changed" in message
    assert snapshot(qty_table, "stock") == before
    assert qty_table.fetch_all("SELECT qty FROM stock") == [(10,)]  # never 41


@pytest.mark.parametrize(
    ("column", "value", "dtype", "table_type", "incoming"),
    [
        ("qty", "41", pl.String, "INTEGER", "VARCHAR"),  # string -> number
        ("qty", True, pl.Boolean, "INTEGER", "BOOLEAN"),  # bool -> number
        ("label", [1, 2], pl.List(pl.Int64), "VARCHAR", "BIGINT[]"),  # nested -> string
        ("label", dt.date(2026, 3, 1), pl.Date, "VARCHAR", "DATE"),  # temporal -> string
        ("label", 5, pl.Int64, "VARCHAR", "BIGINT"),  # anything -> string
        ("day", "2026-01-01", pl.String, "DATE", "VARCHAR"),  # string -> temporal
    ],
)
def test_why_no_conversion_across_kinds(
    qty_table: DuckDBConnection, column: str, value: object, dtype: pl.DataType, table_type: str, incoming: str
) -> None:
    before = snapshot(qty_table, "stock")
    row = {"id": [2], "qty": [3], "label": ["b"], "day": [dt.date(2026, 1, 2)]}
    frame = pl.DataFrame(row).with_columns(pl.Series(column, [value], dtype=dtype))
    with pytest.raises(SchemaMismatchError) as info:
        qty_table.load_frame(frame, "stock", mode="append")
    message = str(info.value)
    assert f'column "{column}" is {table_type} but the data has {incoming} (for example {value!r})' in message
    assert snapshot(qty_table, "stock") == before


def test_why_missing_column_fails_by_default_naming_it(qty_table: DuckDBConnection) -> None:
    before = snapshot(qty_table, "stock")
    frame = pl.DataFrame({"id": [2], "qty": [3], "label": ["b"]})
    with pytest.raises(SchemaMismatchError, match=r"the data lacks the table's column\(s\) \['day'\]"):
        qty_table.load_frame(frame, "stock", mode="append")
    with pytest.raises(SchemaMismatchError, match=r"the data has new column\(s\) \['extra'\]"):
        qty_table.load_frame(frame.with_columns(day=dt.date(2026, 1, 1), extra=1), "stock", mode="upsert", keys="id")
    assert snapshot(qty_table, "stock") == before


def test_narrowing_loads_when_every_value_fits_and_is_refused_otherwise(qty_table: DuckDBConnection) -> None:
    frame = pl.DataFrame({"id": [2], "qty": pl.Series([41], dtype=pl.Int64), "label": ["b"], "day": [dt.date(2026, 1, 2)]})
    assert qty_table.load_frame(frame, "stock", mode="append") == 1
    before = snapshot(qty_table, "stock")
    too_big = frame.with_columns(qty=pl.lit(3_000_000_000, dtype=pl.Int64))
    with pytest.raises(SchemaMismatchError, match=r'"qty" is INTEGER but the data has BIGINT \(for example 3000000000\): that value does not fit INTEGER exactly. Pass on_schema_change="append_new_columns" to widen'):
        qty_table.load_frame(too_big, "stock", mode="append")
    assert snapshot(qty_table, "stock") == before
    result = qty_table.load_frame(too_big, "stock", mode="append", on_schema_change="append_new_columns", return_result=True)
    assert result.schema_changes == ("widened column qty from INTEGER to BIGINT",)
    assert qty_table.fetch_all("SELECT qty FROM stock ORDER BY qty") == [(10,), (41,), (3_000_000_000,)]


def test_float_widens_in_place_only_when_evolving(db: DuckDBConnection) -> None:
    db.execute("CREATE TABLE m (x FLOAT)")
    exact = pl.DataFrame({"x": [0.5, 2.25]})  # exactly representable as FLOAT
    db.load_frame(exact, "m", mode="append")
    with pytest.raises(SchemaMismatchError, match=r'"x" is FLOAT but the data has DOUBLE \(for example 0.1\)'):
        db.load_frame(pl.DataFrame({"x": [0.1]}), "m", mode="append")
    db.load_frame(pl.DataFrame({"x": [0.1]}), "m", mode="append", on_schema_change="sync_all_columns")
    assert db.fetch_all("SELECT typeof(x), x FROM m ORDER BY x") == [("DOUBLE", 0.1), ("DOUBLE", 0.5), ("DOUBLE", 2.25)]


# ------------------------------------------------------------------ Why: names never change
def test_why_case_insensitive_duplicate_names_are_refused_before_writing(db: DuckDBConnection) -> None:
    with pytest.raises(InvalidIdentifierError, match="columns 'A' and 'a', which differ only in case"):
        db.load_frame(pa.table({"A": [1], "a": [2]}), "t")
    with pytest.raises(InvalidIdentifierError, match="differ only in case"):
        db.load_frame(pl.DataFrame({"A": [1]}).with_columns(pl.lit(2).alias("a")), "t", mode="upsert", keys="A")
    assert not db.table_exists("t")


@pytest.mark.parametrize("name", ["", "a\x00b", "tab\tname", "line\nbreak"])
def test_why_empty_and_control_character_names_are_refused(db: DuckDBConnection, name: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="nothing was written"):
        db.load_frame(pa.table({"ok": [1], name: [2]}), "t")
    assert not db.table_exists("t")


def test_why_nul_in_a_polars_name_is_an_error_not_a_panic(db: DuckDBConnection) -> None:
    frame = pl.DataFrame({"a\x00b": [1]})  # Polars panics (BaseException) if converted to Arrow
    with pytest.raises(InvalidIdentifierError, match="control character"):
        db.load_frame(frame, "t")
    with pytest.raises(InvalidIdentifierError):
        db.load_frame(frame.lazy(), "t")
    assert not db.table_exists("t")


def test_why_keys_string_is_one_column(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "t")
    result = db.load_frame(pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}), "t", mode="upsert", keys="id", return_result=True)
    assert result.keys == ("id",) and (result.inserted, result.updated) == (1, 1)
    assert db.fetch_all("SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]


# ------------------------------------------------------------------ Why: one-shot streams
def _reader(frame: pl.DataFrame) -> pa.RecordBatchReader:
    table = frame.to_arrow()
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))


@pytest.mark.parametrize("kind", ["lazy", "reader"])
@pytest.mark.parametrize("mode", ["upsert", "delete-insert", "insert-only", "scd2", "append", "replace"])
def test_why_every_strategy_reads_a_one_shot_stream_once(db: DuckDBConnection, kind: str, mode: str) -> None:
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "t", mode=mode if mode == "scd2" else "replace", keys="id")
    new = pl.DataFrame({"id": [2, 3], "v": ["B", "c"]})
    source = new.lazy().filter(pl.col("id") > 0) if kind == "lazy" else _reader(new)
    result = db.load_frame(source, "t", mode=mode, keys="id", return_result=True)
    assert result.inserted == {"upsert": 1, "delete-insert": 2, "insert-only": 1, "scd2": 2, "append": 2, "replace": 2}[mode]
    assert leftovers(db) == []


def test_why_upsert_from_s3_parquet_source_streams_once(db: DuckDBConnection, s3_client, bucket: str, aws_credentials, tmp_path: Path) -> None:
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "t")
    local = tmp_path / "u.parquet"
    pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}).write_parquet(local)
    s3_client.upload_file(str(local), bucket, "u.parquet")
    source = ParquetSource(path=f"s3://{bucket}/u.parquet", aws_credentials=aws_credentials)
    result = db.load_parquet(source, "t", mode="upsert", keys="id", return_result=True)
    assert (result.inserted, result.updated) == (1, 1)
    assert db.fetch_all("SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "B"), (3, "c")]


def test_why_load_parquet_leaves_no_views_even_on_failure(db: DuckDBConnection, parquet_file: Path) -> None:
    db.load_parquet(str(parquet_file), "raw")
    db.load_parquet(str(parquet_file), "raw", mode="upsert", keys="order_id")
    with pytest.raises(DataCheckError):
        db.load_parquet(str(parquet_file), "raw", mode="upsert", keys="order_id", checks=["value > 1e9"])
    assert leftovers(db) == []
    assert db.fetch_all("SELECT count(*) FROM duckdb_views() WHERE NOT internal") == [(0,)]


# ------------------------------------------------------------------ Why: writers in one process
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["upsert", "append", "replace"])
def test_why_eight_threads_each_with_own_block_share_one_file(tmp_path: Path, mode: str) -> None:
    path = str(tmp_path / "shared.duckdb")
    DuckDBConnection(database=path).load_frame(pl.DataFrame({"id": [-1], "w": [-1]}), "log")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        block = DuckDBConnection(database=path, lock_timeout_seconds=60)
        try:
            for i in range(5):
                frame = pl.DataFrame({"id": [worker * 100 + i], "w": [worker]})
                block.load_frame(frame, "log", mode=mode, keys="id")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = DuckDBConnection(database=path).fetch_all("SELECT count(*) FROM log")
    assert rows == [(1,)] if mode == "replace" else rows == [(41,)]


def test_file_lock_is_shared_per_resolved_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert file_lock(str(tmp_path / "x.duckdb")) is file_lock(str(tmp_path / "sub" / ".." / "x.duckdb"))
    holder = DuckDBConnection(database=str(tmp_path / "x.duckdb"))
    with holder:
        impatient = DuckDBConnection(database=str(tmp_path / "x.duckdb"), lock_timeout_seconds=0.2)
        with pytest.raises(TimeoutError, match="in use by another DuckDBConnection in this process"):
            impatient.fetch_one("SELECT 1")
    assert impatient.fetch_one("SELECT 1") == (1,)


def test_why_fetch_many_releases_the_file_when_exhausted(db: DuckDBConnection) -> None:
    db.execute("CREATE TABLE n AS SELECT range AS i FROM range(4)")
    sql = "SELECT i FROM n ORDER BY i"
    assert db.fetch_many(sql, size=2) == [(0,), (1,)]
    assert db._connection is not None  # mid-result: still open
    assert db.fetch_many(sql, size=2) == [(2,), (3,)]  # the last rows: exhausted
    assert db._connection is None and db._cursors == {(sql, "None"): (None, [])}
    other = DuckDBConnection(database=db.database, lock_timeout_seconds=0.5)
    assert other.fetch_one("SELECT count(*) FROM n") == (4,)
    assert db.fetch_many(sql, size=10) == []  # remembered as exhausted, holding nothing
    assert db._connection is None


# ------------------------------------------------------------------ Why: replace keeps constraints
def test_why_replace_keeps_primary_key_not_null_check_default_and_comments(db: DuckDBConnection) -> None:
    db.execute(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, qty INTEGER DEFAULT 0 CHECK (qty >= 0))"
    )
    db.execute("COMMENT ON TABLE p IS 'products'")
    db.execute("COMMENT ON COLUMN p.name IS 'display name'")
    db.execute("INSERT INTO p VALUES (1, 'a', 1), (2, 'b', 2)")
    result = db.load_frame(pl.DataFrame({"id": [2, 3], "name": ["B", "c"], "qty": [5, 6]}), "p", return_result=True)
    assert (result.inserted, result.deleted) == (2, 2)
    assert db.fetch_all("SELECT * FROM p ORDER BY id") == [(2, "B", 5), (3, "c", 6)]
    constraints = db.fetch_all(
        "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'p' ORDER BY ALL"
    )
    assert constraints == [("CHECK",), ("NOT NULL",), ("NOT NULL",), ("PRIMARY KEY",)]
    assert db.fetch_one("SELECT comment FROM duckdb_tables() WHERE table_name = 'p'") == ("products",)
    assert db.fetch_one("SELECT comment FROM duckdb_columns() WHERE table_name = 'p' AND column_name = 'name'") == ("display name",)

    before = snapshot(db, "p")
    for bad, why in [
        (pl.DataFrame({"id": [1, 1], "name": ["x", "y"], "qty": [1, 1]}), "PRIMARY KEY|primary key|Duplicate key"),
        (pl.DataFrame({"id": [1], "name": [None], "qty": [1]}, schema_overrides={"name": pl.String}), "NOT NULL"),
        (pl.DataFrame({"id": [1], "name": ["x"], "qty": [-1]}), "CHECK"),
    ]:
        with pytest.raises(LoadError, match=why):
            db.load_frame(bad, "p")
        assert snapshot(db, "p") == before
    # missing column with a default: the default applies under "ignore"
    db.load_frame(pl.DataFrame({"id": [9], "name": ["z"]}), "p", on_schema_change="ignore")
    assert db.fetch_all("SELECT * FROM p") == [(9, "z", 0)]


def test_replace_of_a_plain_table_follows_the_data(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"a": [1]}), "t")
    db.load_frame(pl.DataFrame({"b": ["x"], "c": [1.5]}), "t")
    assert db.query("SELECT * FROM t").columns == ["b", "c"]


# ------------------------------------------------------------------ on_schema_change
@pytest.fixture
def ab(db: DuckDBConnection) -> DuckDBConnection:
    db.load_frame(pl.DataFrame({"id": [1], "a": ["x"], "b": [1]}), "t")
    return db


def test_append_new_columns_adds_and_nulls_missing(ab: DuckDBConnection) -> None:
    result = ab.load_frame(pl.DataFrame({"id": [2], "a": ["y"], "c": [True]}), "t", mode="append",
                           on_schema_change="append_new_columns", return_result=True)
    assert result.schema_changes == ("added column c BOOLEAN", "column b missing from the data (NULL or its default)")
    assert ab.fetch_all("SELECT id, a, b, c FROM t ORDER BY id") == [(1, "x", 1, None), (2, "y", None, True)]


def test_sync_all_columns_drops_missing(ab: DuckDBConnection) -> None:
    ab.load_frame(pl.DataFrame({"id": [2], "a": ["y"], "c": [1.5]}), "t", mode="upsert", keys="id",
                  on_schema_change="sync_all_columns")
    assert ab.query("SELECT * FROM t ORDER BY id").rows() == [(1, "x", None), (2, "y", 1.5)]
    assert ab.query("SELECT * FROM t").columns == ["id", "a", "c"]


def test_ignore_drops_new_columns_and_nulls_missing(ab: DuckDBConnection) -> None:
    result = ab.load_frame(pl.DataFrame({"id": [2], "c": [1.5]}), "t", mode="append", on_schema_change="ignore", return_result=True)
    assert "ignored new column c" in result.schema_changes
    assert ab.query("SELECT * FROM t ORDER BY id").rows() == [(1, "x", 1), (2, None, None)]


def test_unknown_mode_and_on_schema_change_are_config_errors(ab: DuckDBConnection) -> None:
    with pytest.raises(LoadConfigError, match="on_schema_change='evolve' is not valid"):
        ab.load_frame(pl.DataFrame({"id": [1]}), "t", on_schema_change="evolve")  # type: ignore[arg-type]
    with pytest.raises(LoadConfigError, match=r'mode="delete-insert" into .* needs keys'):
        ab.load_frame(pl.DataFrame({"id": [1]}), "t", mode="delete-insert")
    assert issubclass(LoadConfigError, DataError) and issubclass(LoadConfigError, ValueError)


# ------------------------------------------------------------------ strategies
def test_delete_insert_replaces_whole_partitions(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"day": ["d1", "d1", "d2", "d3"], "v": [1, 2, 3, 4]}), "daily")
    result = db.load_frame(pl.DataFrame({"day": ["d2", "d2", "d4"], "v": [30, 31, 40]}), "daily",
                           mode="delete-insert", keys=["day"], return_result=True)
    assert (result.deleted, result.inserted) == (1, 3)
    assert db.fetch_all("SELECT * FROM daily ORDER BY ALL") == [
        ("d1", 1), ("d1", 2), ("d2", 30), ("d2", 31), ("d3", 4), ("d4", 40),
    ]


def test_insert_only_never_updates(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "t")
    result = db.load_frame(pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}), "t", mode="insert-only", keys="id", return_result=True)
    assert (result.inserted, result.updated) == (1, 0)
    assert db.fetch_all("SELECT * FROM t ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


def test_scd2_keeps_history_and_closes_changed_rows(db: DuckDBConnection) -> None:
    t0, t1, t2 = (dt.datetime(2026, 1, d) for d in (1, 2, 3))
    with db.get_connection() as con:
        load(con, pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), "h", mode="scd2", keys="id", as_of=t0)
        r1 = load(con, pl.DataFrame({"id": [1, 2, 3], "v": ["a", "B", "c"]}), "h", mode="scd2", keys="id", as_of=t1)
        r2 = load(con, pl.DataFrame({"id": [1, 2, 3], "v": ["a", "B", "c"]}), "h", mode="scd2", keys="id", as_of=t2)
    assert (r1.inserted, r1.updated) == (2, 1)
    assert (r2.inserted, r2.updated) == (0, 0)  # run twice: nothing changes
    assert db.fetch_all("SELECT * FROM h ORDER BY id, valid_from") == [
        (1, "a", t0, None, True),
        (2, "b", t0, t1, False),
        (2, "B", t1, None, True),
        (3, "c", t1, None, True),
    ]


def test_scd2_column_names_are_configurable_and_required(db: DuckDBConnection) -> None:
    cols = {"valid_from": "since", "valid_to": "until", "is_current": "live"}
    db.load_frame(pl.DataFrame({"id": [1], "v": [1]}), "h", mode="scd2", keys="id", scd2_columns=cols)
    assert db.query("SELECT * FROM h").columns == ["id", "v", "since", "until", "live"]
    db.load_frame(pl.DataFrame({"id": [1], "v": [2]}), "h", mode="scd2", keys="id", scd2_columns=cols)
    assert db.fetch_all("SELECT v, live FROM h ORDER BY v") == [(1, False), (2, True)]
    db.load_frame(pl.DataFrame({"id": [1], "v": [1]}), "plain")
    with pytest.raises(SchemaMismatchError, match=r"has no validity column\(s\)"):
        db.load_frame(pl.DataFrame({"id": [1], "v": [2]}), "plain", mode="scd2", keys="id")


@pytest.mark.parametrize("mode", ["upsert", "insert-only", "scd2"])
def test_duplicate_keys_are_refused_naming_the_key(db: DuckDBConnection, mode: str) -> None:
    db.load_frame(pl.DataFrame({"id": [1], "v": [1]}), "t", mode=mode, keys="id")
    before = snapshot(db, "t")
    with pytest.raises(LoadError, match=r"key \{'id': 5\} appears more than once in the data \(2 rows\)"):
        db.load_frame(pl.DataFrame({"id": [5, 5], "v": [1, 2]}), "t", mode=mode, keys="id")
    assert snapshot(db, "t") == before
    with pytest.raises(LoadError, match="appears more than once"):  # also into a new table
        db.load_frame(pl.DataFrame({"id": [5, 5], "v": [1, 2]}), "fresh", mode=mode, keys="id")
    assert not db.table_exists("fresh")


def test_upsert_matches_null_keys(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"k": [None, 1], "v": [1, 1]}, schema_overrides={"k": pl.Int64}), "t")
    db.load_frame(pl.DataFrame({"k": [None, 2], "v": [9, 9]}, schema_overrides={"k": pl.Int64}), "t", mode="upsert", keys="k")
    assert db.fetch_all("SELECT * FROM t ORDER BY k NULLS FIRST") == [(None, 9), (1, 1), (2, 9)]


def test_engine_works_on_a_plain_connection_and_joins_an_outer_transaction(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "plain.duckdb"))
    assert load(con, pl.DataFrame({"a": [1]}), "t").inserted == 1
    with pytest.raises(RuntimeError, match="outer failure"), transaction(con):
        load(con, pl.DataFrame({"a": [2]}), "t", mode="append")
        raise RuntimeError("outer failure")
    assert con.execute("SELECT * FROM t").fetchall() == [(1,)]
    con.close()


# ------------------------------------------------------------------ checks
def test_checks_pass_and_are_reported(db: DuckDBConnection) -> None:
    now = dt.datetime.now()
    frame = pl.DataFrame({"id": [1, 2], "status": ["new", "paid"], "qty": [3, 1], "at": [now, now]})
    result = db.load_frame(frame, "o", return_result=True, checks=[
        "qty > 0", not_null("id", "status"), unique("id"), accepted_values("status", ["new", "paid"]),
        row_count(min=1, max=10), freshness("at", max_age=dt.timedelta(hours=1)), predicate("id < 100", name="small ids"),
    ])
    assert [c.name for c in result.checks] == [
        "qty > 0", "not_null(id, status)", "unique(id)", "accepted_values(status, ['new', 'paid'])",
        "row_count(min=1, max=10)", "freshness(at, max_age=1:00:00)", "small ids",
    ]
    assert all(c.passed for c in result.checks)


def test_a_failing_check_names_it_with_count_and_sample_and_keeps_the_table(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"id": [1], "qty": [1]}), "o")
    before = snapshot(db, "o")
    bad = pl.DataFrame({"id": [2, 3, 4], "qty": [-1, 5, -7]})
    for mode in ("replace", "append", "upsert"):
        with pytest.raises(DataCheckError) as info:
            db.load_frame(bad, "o", mode=mode, keys="id", checks=["qty >= 0"])
        message = str(info.value)
        assert '1 check(s) failed loading into table "o"' in message
        assert "- qty >= 0: 2 failing row(s); sample: {'id': 2, 'qty': -1}; {'id': 4, 'qty': -7}" in message
        assert snapshot(db, "o") == before
    with pytest.raises(DataCheckError, match=r"unique\(id\): 1 duplicated values; sample: \{'id': 1, 'occurrences': 2\}"):
        db.load_frame(pl.DataFrame({"id": [1], "qty": [2]}), "o", mode="append", checks=[unique("id")])
    with pytest.raises(DataCheckError, match=r"row_count\(max=1\): 1 the table would have 2 rows"):
        db.load_frame(pl.DataFrame({"id": [7], "qty": [2]}), "o", mode="append", checks=[row_count(max=1)])
    with pytest.raises(DataCheckError, match=r"accepted_values\(qty, \[1\]\): 1 failing"):
        db.load_frame(pl.DataFrame({"id": [7], "qty": [2]}), "o", mode="append", checks=[accepted_values("qty", [1])])
    assert snapshot(db, "o") == before


def test_stale_data_fails_freshness(db: DuckDBConnection) -> None:
    old = pl.DataFrame({"day": [dt.date(2020, 1, 1)]})
    with pytest.raises(DataCheckError, match=r"freshness\(day, max_age=1 day, 0:00:00\)"):
        db.load_frame(old, "f", checks=[freshness("day", max_age=dt.timedelta(days=1))])
    assert not db.table_exists("f")


@pytest.mark.parametrize(
    "text",
    ["qty > 0; DROP TABLE o", "1) FROM o WHERE (1", "qty > 0) OR (1", "DELETE FROM o", "qty > 0 FROM o"],
)
def test_predicates_must_be_one_expression(db: DuckDBConnection, text: str) -> None:
    db.load_frame(pl.DataFrame({"qty": [1]}), "o")
    with pytest.raises(DataCheckError):
        db.load_frame(pl.DataFrame({"qty": [2]}), "o", mode="append", checks=[text])
    assert db.fetch_all("SELECT * FROM o") == [(1,)]


def test_a_check_on_an_unknown_column_is_a_data_check_error(db: DuckDBConnection) -> None:
    with pytest.raises(DataCheckError, match="could not run"):
        db.load_frame(pl.DataFrame({"qty": [2]}), "o", checks=["nope > 0"])
    assert not db.table_exists("o")


# ------------------------------------------------------------------ errors at the boundary
def test_errors_are_classified_at_the_boundary() -> None:
    conflict = classify_load_error(duckdb.TransactionException("TransactionContext Error: Conflict on update!"), table="t", mode="append", remote=False)
    assert isinstance(conflict, TransactionConflictError)
    network = classify_load_error(pl.exceptions.ComputeError("Generic S3 error: error sending request for url"), table="t", mode="append", remote=True)
    assert isinstance(network, SourceUnavailableError)
    missing = classify_load_error(duckdb.CatalogException("Catalog Error: Table with name x does not exist!"), table="t", mode="append", remote=False)
    assert isinstance(missing, LoadError) and "Check the table and column names" in str(missing)
    wrapped = classify_load_error(ConnectionResetError("peer reset"), table="t", mode="append", remote=False)
    assert isinstance(wrapped, SourceUnavailableError)


def test_last_load_and_return_result(db: DuckDBConnection) -> None:
    assert db.last_load is None
    rows = db.load_frame(pl.DataFrame({"a": [1, 2]}), "t")
    assert rows == 2 and isinstance(db.last_load, LoadResult)
    assert (db.last_load.mode, db.last_load.inserted, db.last_load.created) == ("replace", 2, True)


def test_lazyframe_source_is_not_collected_twice(db: DuckDBConnection, tmp_path: Path) -> None:
    path = tmp_path / "once.parquet"
    pl.DataFrame({"id": range(10), "v": range(10)}).write_parquet(path)
    db.load_frame(pl.DataFrame({"id": [1], "v": [0]}), "t")
    db.load_frame(pl.scan_parquet(path), "t", mode="upsert", keys="id")
    assert_frame_equal(db.query("SELECT * FROM t ORDER BY id"), pl.DataFrame({"id": range(10), "v": range(10)}))


def _unreachable_credentials():
    import socket

    from prefect_aws import AwsCredentials

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return AwsCredentials(
        aws_access_key_id="petl-test", aws_secret_access_key="petl-test-secret", region_name="us-east-1",
        aws_client_parameters={"endpoint_url": f"http://127.0.0.1:{port}"},
    )


def test_why_an_unreachable_object_store_is_transient_not_corrupt(db: DuckDBConnection) -> None:
    db.load_frame(pl.DataFrame({"a": [1]}), "t")
    source = ParquetSource(path="s3://petl-absent/x.parquet", aws_credentials=_unreachable_credentials())
    with pytest.raises(SourceUnavailableError, match="the object store did not answer .*Could not connect to the endpoint URL"):
        db.load_parquet(source, "t", mode="append")
    assert db.fetch_all("SELECT * FROM t") == [(1,)]


def test_scd2_refuses_data_that_has_the_validity_columns(db: DuckDBConnection) -> None:
    frame = pl.DataFrame({"id": [1], "valid_from": [1]})
    with pytest.raises(SchemaMismatchError, match=r"the data has column\(s\) \['valid_from'\], which the load fills"):
        db.load_frame(frame, "h", mode="scd2", keys="id")
    assert not db.table_exists("h")


def test_delete_insert_on_two_keys_with_nulls(db: DuckDBConnection) -> None:
    old = pl.DataFrame({"a": [1, 1, None, 2], "b": ["x", None, None, "y"], "v": [1, 2, 3, 4]})
    db.load_frame(old, "t")
    result = db.load_frame(pl.DataFrame({"a": [1, None], "b": [None, None], "v": [20, 30]}), "t",
                           mode="delete-insert", keys=["a", "b"], return_result=True)
    assert (result.deleted, result.inserted) == (2, 2)
    assert db.fetch_all("SELECT * FROM t ORDER BY v") == [(1, "x", 1), (2, "y", 4), (1, None, 20), (None, None, 30)]


# ------------------------------------------------------------------ create= (issue 20, part 5)
def _objects(db: DuckDBConnection) -> tuple[list, list, list]:
    """Every schema and table of the file, and the ledger: a refused load changes none of them."""
    return (
        db.fetch_all("SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() ORDER BY 1"),
        db.fetch_all("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2"),
        db.load_history().rows(),
    )


@pytest.fixture
def shop(db: DuckDBConnection) -> DuckDBConnection:
    db.load_frame(pl.DataFrame({"id": [1], "ts": [1]}), "analytics.orders")
    db.load_frame(pl.DataFrame({"id": [1], "ts": [1]}), "analytics.order_lines")
    db.load_frame(pl.DataFrame({"id": [1]}), "customers")
    return db


def test_a_load_says_which_table_and_schema_it_created(db: DuckDBConnection) -> None:
    first = db.load_frame(pl.DataFrame({"id": [1]}), "analytcs.orders", return_result=True)
    assert (first.created, first.schema_created) == (True, True)
    assert first.created_note == "created analytcs.orders (new schema analytcs)"
    second = db.load_frame(pl.DataFrame({"id": [2]}), "analytcs.orders", mode="append", return_result=True)
    assert (second.created, second.created_note) == (False, "")
    third = db.load_frame(pl.DataFrame({"id": [2]}), "analytcs.customers", return_result=True)
    assert third.created_note == "created analytcs.customers"  # the schema was there already
    assert db.load_frame(pl.DataFrame({"id": [1]}), "plain", return_result=True).created_note == "created plain"


@pytest.mark.parametrize(
    ("how", "table", "nearest"),
    [
        ("frame", "analytcs.orders", "analytics.orders, analytics.order_lines"),
        ("parquet", "analytics.ordres", "analytics.orders, analytics.order_lines"),
        ("incremental", "analytics.order", "analytics.orders, analytics.order_lines"),
        ("cursor", "customer", "customers"),
        ("async", "analytics.orderz", "analytics.orders, analytics.order_lines"),
    ],
)
def test_create_never_refuses_a_missing_table_naming_the_nearest_and_writes_nothing(
    shop: DuckDBConnection, parquet_file: Path, how: str, table: str, nearest: str
) -> None:
    import asyncio

    frame = pl.DataFrame({"id": [2], "ts": [2]})
    before = _objects(shop)
    with pytest.raises(LoadConfigError) as info:
        if how == "frame":
            shop.load_frame(frame, table, mode="append", create="never")
        elif how == "parquet":
            shop.load_parquet(str(parquet_file), table, create="never")
        elif how == "incremental":
            shop.load_parquet(ParquetSource(path=str(parquet_file)), table, incremental=True, create="never")
        elif how == "cursor":
            shop.load_frame(frame, table, cursor="ts", create="never")
        else:
            asyncio.run(shop.aload_frame(frame, table, create="never"))
    assert str(info.value) == (
        f'Table "{table}" does not exist and create="never" refuses to create it; nothing was '
        f"written. Existing tables nearest in name: {nearest}. Fix the name, create the table "
        'first, or pass create="if_missing".'
    )
    assert isinstance(info.value, DataError)
    assert _objects(shop) == before


def test_create_never_loads_into_an_existing_table_and_says_when_nothing_is_near(shop: DuckDBConnection) -> None:
    result = shop.load_frame(pl.DataFrame({"id": [2], "ts": [2]}), "ANALYTICS.Orders", mode="append",
                             create="never", return_result=True)
    assert (result.inserted, result.created_note) == (1, "")
    with pytest.raises(LoadConfigError, match=r"No existing table has a similar name \(3 table\(s\) in the database\)"):
        shop.load_frame(pl.DataFrame({"x": [1]}), "zzz", create="never")
    empty = DuckDBConnection(database=str(Path(shop.database).with_name("empty.duckdb")))
    with pytest.raises(LoadConfigError, match="The database has no tables yet."):
        empty.load_frame(pl.DataFrame({"x": [1]}), "s.t", create="never")
    assert not empty.fetch_all("SELECT * FROM duckdb_schemas() WHERE schema_name = 's'")
    with pytest.raises(LoadConfigError, match=r"create='sometimes' is not valid; use 'if_missing'"):
        shop.load_frame(pl.DataFrame({"x": [1]}), "customers", create="sometimes")


def test_create_never_on_a_plain_connection(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    with pytest.raises(LoadConfigError, match='Table "s.t" does not exist'):
        load(con, pl.DataFrame({"x": [1]}), "s.t", create="never")
    assert con.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name IN ('s', '_prefect_etl')").fetchall() == [(0,)]


def test_load_task_log_line_and_artifact_say_what_was_created(db: DuckDBConnection) -> None:
    import logging

    from prefect import flow
    from prefect.client.orchestration import get_client

    from prefect_etl_blocks.tasks import load_to_duckdb

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logging.getLogger("prefect.task_runs").addHandler(handler)
    try:

        @flow
        def pipeline() -> tuple[int, int]:
            first = load_to_duckdb(pl.DataFrame({"id": [1]}), "analytcs.orders", db)
            again = load_to_duckdb(pl.DataFrame({"id": [2]}), "analytcs.orders", db, mode="append")
            return first, again

        assert pipeline() == (1, 1)
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(handler)
    loaded = [r for r in records if r.startswith("Loaded into analytcs.orders")]
    assert len(loaded) == 2, records
    assert loaded[0].endswith("; created analytcs.orders (new schema analytcs)"), loaded[0]
    assert "created" not in loaded[1], loaded[1]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    ours = [a for a in artifacts if a.key == "duckdb-load-analytcs-orders"]
    assert len(ours) == 2
    created = [a for a in ours if "**created analytcs.orders (new schema analytcs)**: it did not exist" in a.data]
    assert len(created) == 1 and created[0].description.endswith("; created analytcs.orders (new schema analytcs)")


def test_load_task_with_create_never_fails_once_and_writes_nothing(shop: DuckDBConnection) -> None:
    from prefect import flow

    from prefect_etl_blocks.tasks import load_to_duckdb

    @flow
    def pipeline() -> int:
        return load_to_duckdb(pl.DataFrame({"id": [2]}), "analytcs.orders", shop, mode="append", create="never")

    before = _objects(shop)
    state = pipeline(return_state=True)
    with pytest.raises(LoadConfigError, match="Existing tables nearest in name: analytics.orders"):
        state.result()
    assert _objects(shop) == before


@pytest.mark.ducklake
def test_create_never_on_a_ducklake(tmp_path: Path) -> None:
    from prefect_etl_blocks.ducklake import DuckLakeConnection, close_instances

    lake = DuckLakeConnection(catalog=str(tmp_path / "catalog.ducklake"), data_path=str(tmp_path / "lake"))
    try:
        first = lake.load_frame(pl.DataFrame({"id": [1]}), "analytics.orders", return_result=True)
        assert first.created_note == "created analytics.orders (new schema analytics)"
        snapshots = lake.current_snapshot()
        with pytest.raises(LoadConfigError, match=r'Table "lake\.analytcs\.orders" does not exist .*nearest in name: lake\.analytics\.orders\.'):
            lake.load_frame(pl.DataFrame({"id": [2]}), "analytcs.orders", create="never")
        assert lake.current_snapshot() == snapshots  # nothing committed, not even a schema
        assert lake.load_frame(pl.DataFrame({"id": [2]}), "analytics.orders", mode="append", create="never") == 1
    finally:
        close_instances()


def test_a_two_part_name_naming_an_attached_database_loads_into_it(tmp_path: Path) -> None:
    """``other.t`` is table ``t`` of the database attached as ``other`` (DuckDB's binding rule):
    the load must not create a schema ``other`` in the current database, which made every later
    statement ambiguous."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    frame = pl.DataFrame({"a": [1, 2]})
    first = load(con, frame, "other.t")
    assert (first.created, first.schema_created) == (True, False)
    assert load(con, frame, "other.t", mode="append").inserted == 2
    assert con.sql("SELECT count(*) FROM other.main.t").fetchall() == [(4,)]
    schemas = con.sql("SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'w'").fetchall()
    assert ("other",) not in schemas


def test_a_column_without_values_fits_any_table_column(db: DuckDBConnection) -> None:
    """No value changes when a column holds only NULLs, so its type never refuses the load (on
    DuckDB 1.5 a Polars Null column is staged as INTEGER); one value still does."""
    db.load_frame(pl.DataFrame({"id": [1], "b": ["x"]}), "t")
    for empty in (pl.Series([None], dtype=pl.Int64), pl.Series([None], dtype=pl.Null)):
        db.load_frame(pl.DataFrame({"id": [2], "b": empty}), "t", mode="append")
    assert db.fetch_all("SELECT * FROM t ORDER BY id, b") == [(1, "x"), (2, None), (2, None)]
    with pytest.raises(SchemaMismatchError, match='column "b" is VARCHAR'):
        db.load_frame(pl.DataFrame({"id": [3], "b": [5]}), "t", mode="append")
    assert db.fetch_all("SELECT count(*) FROM t") == [(3,)]


@pytest.mark.parametrize("unwritten", [100, 3 * 4096], ids=["short", "header-room-without-magic"])
def test_a_file_another_process_is_still_creating_is_waited_for(tmp_path: Path, unwritten: int) -> None:
    """Processes opening a new database file at once: one writes DuckDB's header while the
    others find a file that "is not a valid DuckDB database file" (seen on DuckDB 1.5.0 in the
    lowest CI leg: a short file; and on 2.0 with the header's room allocated but its magic
    bytes not yet written). That is waited out within the lock timeout; an old file that is
    simply not a database still fails at once."""
    import os
    import time

    from prefect_etl_blocks.loading.connections import close_connection, connect_waiting

    path = tmp_path / "new.duckdb"
    path.write_bytes(b"\0" * unwritten)  # a creator's header, not yet written in full
    ready = tmp_path / "ready.duckdb"
    duckdb.connect(str(ready)).close()

    def finish_creating() -> None:
        time.sleep(0.4)
        os.replace(ready, path)

    creator = threading.Thread(target=finish_creating)
    creator.start()
    owner = object()
    started = time.monotonic()
    con = connect_waiting(str(path), read_only=False, config={}, timeout=20, owner=owner)
    creator.join()
    try:
        assert time.monotonic() - started >= 0.3
        assert con.sql("SELECT 42").fetchall() == [(42,)]
    finally:
        close_connection(con, str(path), owner)

    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(b"\0" * unwritten)
    old = time.time() - 60
    os.utime(garbage, (old, old))
    started = time.monotonic()
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB database file"):
        connect_waiting(str(garbage), read_only=False, config={}, timeout=20, owner=object())
    assert time.monotonic() - started < 5


def test_a_file_finished_between_the_failed_open_and_the_look_is_waited_for(tmp_path: Path) -> None:
    """The interleaving the lowest CI leg met in test_two_processes_loading_at_once: the open
    reads a header still being written and fails, then the creator finishes before the
    failure is looked into. The file now looks complete, but it has changed since the
    attempt, so the open is tried again; a young complete file that has not moved since the
    attempt is simply not a database."""
    from prefect_etl_blocks.core.loading.connections import _being_created, _file_state

    path = tmp_path / "new.duckdb"
    path.write_bytes(b"\0" * 100)
    before = _file_state(str(path))
    ready = tmp_path / "ready.duckdb"
    duckdb.connect(str(ready)).close()
    os.replace(ready, path)  # the creator finishes
    failure = duckdb.IOException(f'The file "{path}" exists, but it is not a valid DuckDB database file!')
    assert _being_created(str(path), failure, before)
    assert not _being_created(str(path), failure, _file_state(str(path)))
    assert _being_created(str(path), failure, None)  # there was no file when the attempt began
    lock_conflict = duckdb.IOException("Could not set lock on file: Conflicting lock is held")
    assert not _being_created(str(path), lock_conflict, before)
