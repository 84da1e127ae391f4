"""Property tests of the load engine (hypothesis, frames from ``polars.testing.parametric``).

* Schema contracts: for random (table dtype, incoming dtype) pairs an append either stores the
  incoming values exactly (cast without loss) or raises ``SchemaMismatchError`` and leaves the
  table the same, DESCRIBE and contents; nothing else may happen.
* Strategies: every ``mode`` agrees with a reference model written in plain Polars, on data
  with NULL keys, from frames, LazyFrames and Arrow readers (and ``s3://`` through moto).
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from polars.testing.parametric import column, dataframes

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import SchemaMismatchError
from prefect_etl_blocks.loading import load

DTYPES = [
    pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt32, pl.UInt64,
    pl.Float32, pl.Float64, pl.Decimal(10, 2), pl.Decimal(18, 4),
    pl.String, pl.Boolean, pl.Date, pl.Datetime("us"), pl.Datetime("ms"), pl.Datetime("us", "UTC"),
    pl.List(pl.Int32), pl.List(pl.Int64), pl.List(pl.String),
]


def _frame(dtype: pl.DataType, start: int) -> st.SearchStrategy[pl.DataFrame]:
    return dataframes(
        cols=[column("a", dtype=dtype, allow_null=True)],
        min_size=1, max_size=6, allow_nan=False, allow_infinity=False,
    ).map(lambda f: f.with_row_index("i", offset=start).with_columns(pl.col("i").cast(pl.Int64)))


def _same(stored: object, given_value: object) -> bool:
    """Equal after a lossless cast (DuckDB may hand back a wider Python type)."""
    if isinstance(stored, list) and isinstance(given_value, list):
        return len(stored) == len(given_value) and all(_same(a, b) for a, b in zip(stored, given_value, strict=True))
    if isinstance(stored, dt.datetime) and type(given_value) is dt.date:
        return stored == dt.datetime.combine(given_value, dt.time())
    if isinstance(stored, dt.datetime) and isinstance(given_value, dt.datetime):
        if (stored.tzinfo is None) != (given_value.tzinfo is None):
            return False
    if isinstance(stored, decimal.Decimal) or isinstance(given_value, decimal.Decimal):
        return decimal.Decimal(str(stored)) == decimal.Decimal(str(given_value))
    if type(stored) is bool or type(given_value) is bool:
        return type(stored) is type(given_value) and stored == given_value
    return stored == given_value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), table_dtype=st.sampled_from(DTYPES), incoming_dtype=st.sampled_from(DTYPES))
def test_append_stores_values_exactly_or_refuses_and_keeps_the_table(
    data: st.DataObject, table_dtype: pl.DataType, incoming_dtype: pl.DataType
) -> None:
    db = DuckDBConnection()
    try:
        db.load_frame(data.draw(_frame(table_dtype, 0)), "t")
        describe = db.fetch_all("DESCRIBE t")
        contents = db.fetch_all("SELECT * FROM t ORDER BY i")
        incoming = data.draw(_frame(incoming_dtype, 1000))
        try:
            db.load_frame(incoming, "t", mode="append")
        except SchemaMismatchError as exc:
            event("refused")
            assert "The table was not changed" in str(exc)
            assert db.fetch_all("DESCRIBE t") == describe
            assert db.fetch_all("SELECT * FROM t ORDER BY i") == contents
            return
        event("loaded")
        assert db.fetch_all("DESCRIBE t") == describe  # the column type never changes here
        assert db.fetch_all("SELECT * FROM t WHERE i < 1000 ORDER BY i") == contents
        stored = [row[1] for row in db.fetch_all("SELECT i, a FROM t WHERE i >= 1000 ORDER BY i")]
        given_values = incoming["a"].to_list()
        assert len(stored) == len(given_values)
        for s, g in zip(stored, given_values, strict=True):
            assert (s is None and g is None) or _same(s, g), (table_dtype, incoming_dtype, s, g)
    finally:
        db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), table_dtype=st.sampled_from(DTYPES), incoming_dtype=st.sampled_from(DTYPES))
def test_evolving_widens_or_refuses_never_converts(
    data: st.DataObject, table_dtype: pl.DataType, incoming_dtype: pl.DataType
) -> None:
    db = DuckDBConnection()
    try:
        db.load_frame(data.draw(_frame(table_dtype, 0)), "t")
        contents = db.fetch_all("SELECT * FROM t ORDER BY i")
        describe = db.fetch_all("DESCRIBE t")
        incoming = data.draw(_frame(incoming_dtype, 1000))
        try:
            db.load_frame(incoming, "t", mode="append", on_schema_change="append_new_columns")
        except SchemaMismatchError:
            assert db.fetch_all("DESCRIBE t") == describe
            assert db.fetch_all("SELECT * FROM t ORDER BY i") == contents
            return
        old = db.fetch_all("SELECT * FROM t WHERE i < 1000 ORDER BY i")
        assert all(_same(a[1], b[1]) or a[1] is None and b[1] is None for a, b in zip(old, contents, strict=True))
        stored = [row[0] for row in db.fetch_all("SELECT a FROM t WHERE i >= 1000 ORDER BY i")]
        for s, g in zip(stored, incoming["a"].to_list(), strict=True):
            assert (s is None and g is None) or _same(s, g), (table_dtype, incoming_dtype, s, g)
    finally:
        db.close()


# ------------------------------------------------------------------ strategies vs Polars
KEY = pl.Int8
_rows = dataframes(
    cols=[column("k", dtype=KEY, allow_null=True), column("v", dtype=pl.Int64, allow_null=True)],
    max_size=12,
).map(lambda f: f.with_columns(pl.col("k") % 5))  # few distinct keys: many matches


def _unique_keys(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.unique(subset="k", keep="first", maintain_order=True)


def reference(mode: str, old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """What each strategy must produce, in plain Polars (NULL keys match NULL keys)."""
    if mode == "replace":
        return new
    if mode == "append":
        return pl.concat([old, new])
    if mode == "delete-insert":
        return pl.concat([old.join(new.select("k").unique(), on="k", how="anti", nulls_equal=True), new])
    if mode == "insert-only":
        return pl.concat([old, new.join(old.select("k").unique(), on="k", how="anti", nulls_equal=True)])
    if mode == "upsert":
        updated = old.join(new, on="k", how="left", nulls_equal=True, suffix="_new").select(
            "k", pl.when(pl.col("k").is_in(new["k"].implode(), nulls_equal=True)).then(pl.col("v_new")).otherwise(pl.col("v")).alias("v")
        )
        return pl.concat([updated, new.join(old.select("k").unique(), on="k", how="anti", nulls_equal=True)])
    raise AssertionError(mode)


def _as(kind: str, frame: pl.DataFrame) -> object:
    if kind == "frame":
        return frame
    if kind == "lazy":
        return frame.lazy().select("k", "v")
    table = frame.to_arrow()
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3))


def _rows_of(frame: pl.DataFrame) -> list[tuple]:
    return sorted(frame.rows(), key=repr)


@pytest.mark.parametrize("kind", ["frame", "lazy", "reader"])
@pytest.mark.parametrize("mode", ["replace", "append", "upsert", "delete-insert", "insert-only"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=_rows, new=_rows)
def test_strategy_matches_the_polars_reference(mode: str, kind: str, old: pl.DataFrame, new: pl.DataFrame) -> None:
    if mode in ("upsert", "insert-only"):
        new = _unique_keys(new)
    db = DuckDBConnection()
    try:
        db.execute("CREATE TABLE t (k TINYINT, v BIGINT)")
        db.load_frame(old, "t", mode="append")
        db.load_frame(_as(kind, new), "t", mode=mode, keys="k")
        got = db.query("SELECT k, v FROM t")
        assert _rows_of(got) == _rows_of(reference(mode, old, new))
    finally:
        db.close()


def scd2_reference(old: pl.DataFrame, new: pl.DataFrame, t0: dt.datetime, t1: dt.datetime) -> list[tuple]:
    """SCD2 after loading ``old`` at t0 and ``new`` at t1: rows (k, v, valid_from, valid_to, current)."""
    incoming = dict(new.rows())  # keys are unique; None is a key like any other
    rows = []
    for k, v in old.rows():
        # Python's != on None is SQL's IS DISTINCT FROM.
        if k in incoming and incoming[k] != v:
            rows.append((k, v, t0, t1, False))
        else:
            rows.append((k, v, t0, None, True))
    current = {r[0] for r in rows if r[4]}
    current_values = {r[0]: r[1] for r in rows if r[4]}
    for k, v in new.rows():
        if k not in current or current_values[k] != v:
            rows.append((k, v, t1, None, True))
    return sorted(rows, key=repr)


@pytest.mark.parametrize("kind", ["frame", "lazy", "reader"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=_rows.map(_unique_keys), new=_rows.map(_unique_keys))
def test_scd2_matches_the_polars_reference(kind: str, old: pl.DataFrame, new: pl.DataFrame) -> None:
    t0, t1 = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)
    db = DuckDBConnection()
    try:
        with db.get_connection() as con:
            con.execute("CREATE TABLE h (k TINYINT, v BIGINT, valid_from TIMESTAMP, valid_to TIMESTAMP, is_current BOOLEAN)")
            load(con, old, "h", mode="scd2", keys="k", as_of=t0)
            load(con, _as(kind, new), "h", mode="scd2", keys="k", as_of=t1)
            got = sorted(con.execute("SELECT * FROM h").fetchall(), key=repr)
        assert got == scd2_reference(old, new, t0, t1)
    finally:
        db.close()


@pytest.mark.parametrize("mode", ["replace", "append", "upsert", "delete-insert", "insert-only"])
def test_strategy_from_an_s3_source_matches_the_reference(
    mode: str, s3_client, bucket: str, aws_credentials, tmp_path: Path
) -> None:
    old = pl.DataFrame({"k": [None, 1, 2, 2], "v": [1, 2, 3, 4]}, schema={"k": KEY, "v": pl.Int64})
    new = pl.DataFrame({"k": [None, 2, 4], "v": [10, 30, 40]}, schema={"k": KEY, "v": pl.Int64})
    local = tmp_path / "new.parquet"
    new.write_parquet(local)
    s3_client.upload_file(str(local), bucket, "new.parquet")
    db = DuckDBConnection(database=str(tmp_path / "s3.duckdb"))
    db.execute("CREATE TABLE t (k TINYINT, v BIGINT)")
    db.load_frame(old, "t", mode="append")
    source = ParquetSource(path=f"s3://{bucket}/new.parquet", aws_credentials=aws_credentials)
    db.load_parquet(source, "t", mode=mode, keys="k")
    assert _rows_of(db.query("SELECT k, v FROM t")) == _rows_of(reference(mode, old, new))


_names = st.lists(st.sampled_from(["a", "B", "c", "d"]), min_size=1, max_size=4, unique=True)


@pytest.mark.parametrize("policy", ["fail", "append_new_columns", "sync_all_columns", "ignore"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table_cols=_names, data_cols=_names, rows=st.integers(1, 3))
def test_on_schema_change_matches_its_definition(policy: str, table_cols: list[str], data_cols: list[str], rows: int) -> None:
    db = DuckDBConnection()
    try:
        db.load_frame(pl.DataFrame({c: [0] for c in table_cols}), "t")
        incoming = pl.DataFrame({c: list(range(1, rows + 1)) for c in data_cols})
        new = [c for c in data_cols if c not in table_cols]
        missing = [c for c in table_cols if c not in data_cols]
        before = db.fetch_all("SELECT * FROM t")
        if (policy == "fail" and (new or missing)) or (policy == "ignore" and not set(data_cols) & set(table_cols)):
            with pytest.raises(SchemaMismatchError):
                db.load_frame(incoming, "t", mode="append", on_schema_change=policy)
            assert db.fetch_all("SELECT * FROM t") == before and db.query("SELECT * FROM t").columns == table_cols
            return
        db.load_frame(incoming, "t", mode="append", on_schema_change=policy)
        expected_cols = {
            "fail": table_cols,
            "ignore": table_cols,
            "append_new_columns": table_cols + new,
            "sync_all_columns": [c for c in table_cols if c in data_cols] + new,
        }[policy]
        got = db.query("SELECT * FROM t")
        assert got.columns == expected_cols
        loaded = got.slice(1)
        for col in expected_cols:
            want = incoming[col].to_list() if col in data_cols else [None] * rows
            assert loaded[col].to_list() == want, col
        if policy != "sync_all_columns":
            assert got.row(0) == tuple(0 if c in table_cols else None for c in expected_cols)
    finally:
        db.close()
