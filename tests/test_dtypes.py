"""Every Polars dtype loads exactly, or is refused clearly (issue 19, "every Polars dtype").

* Named regression for the issue's "Int128 columns": Int128 / UInt128 load as HUGEINT /
  UHUGEINT over their whole range (Polars exports them in a format pyarrow refuses).
* ``polars.testing.parametric`` frames of every dtype round-trip through ``load_frame`` and
  ``query`` (DataFrame and LazyFrame), equal value for value and dtype for dtype where DuckDB
  has the type, or raise ``UnsupportedDtypeError`` (a ``DataError``) with nothing written.
* The same through ``load_parquet``, the ``load_to_duckdb`` task and a DuckLake.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal
from polars.testing.parametric import dataframes

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.compat import DUCKDB_VERSION
from prefect_etl_blocks.errors import DataError, UnsupportedDtypeError

HUGE = pl.DataFrame({
    "i": pl.Series([2**127 - 1, -(2**127), 0, None], dtype=pl.Int128),
    "u": pl.Series([2**128 - 1, 0, 2**64, None], dtype=pl.UInt128),
    "nested": pl.Series([[2**127 - 1], None, [], [-(2**127), None]], dtype=pl.List(pl.Int128)),
    "s": pl.Series([{"a": 2**100}, None, {"a": None}, {"a": -1}], dtype=pl.Struct({"a": pl.Int128})),
})


def test_int128_columns_load_as_hugeint_over_their_whole_range(tmp_path: Path) -> None:
    """Issue 19, "Int128 columns": no raw ``ArrowInvalid: '_pli128'``; every value exact."""
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    assert db.load_frame(HUGE, "h") == 4
    types = db.fetch_one("SELECT typeof(i), typeof(u), typeof(nested), typeof(s) FROM h LIMIT 1")
    assert types == ("HUGEINT", "UHUGEINT", "HUGEINT[]", "STRUCT(a HUGEINT)")
    assert db.fetch_one("SELECT CAST(max(i) AS VARCHAR), CAST(max(u) AS VARCHAR) FROM h") == (str(2**127 - 1), str(2**128 - 1))
    assert_frame_equal(db.query("SELECT * FROM h"), HUGE)
    db.load_frame(HUGE.lazy(), "h", mode="append")  # streamed, the same
    assert db.fetch_one("SELECT count(DISTINCT i), count(*) FROM h") == (3, 8)


def _session_zone(db: DuckDBConnection) -> str:
    return db.query("SELECT current_setting('TimeZone') AS z")["z"][0]


def _read_back(dtype: Any, zone: str) -> Any:
    """The dtype a column of ``dtype`` reads back as (the table in docs/blocks/duckdb_connection.md)."""
    if isinstance(dtype, pl.BaseExtension):
        return _read_back(dtype.ext_storage(), zone)
    if isinstance(dtype, pl.Categorical | pl.Enum) or dtype in (pl.Categorical, pl.Object):
        return pl.String
    if dtype == pl.Float16:
        return pl.Float32
    if isinstance(dtype, pl.Datetime) and dtype.time_zone:
        return pl.Datetime("ns" if dtype.time_unit == "ns" else "us", zone)  # TIMESTAMPTZ(_NS)
    if isinstance(dtype, pl.Duration):
        return pl.Duration("us")
    if dtype == pl.Null and DUCKDB_VERSION < (2,):
        return pl.Int32
    if isinstance(dtype, pl.List):
        return pl.List(_read_back(dtype.inner, zone))
    if isinstance(dtype, pl.Array):
        return pl.Array(_read_back(dtype.inner, zone), dtype.size)
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _read_back(f.dtype, zone)) for f in dtype.fields])
    return dtype


def _refused(dtype: Any) -> bool:
    """Whether ``dtype`` (at any depth) has no faithful DuckDB type."""
    if isinstance(dtype, pl.Duration) and dtype.time_unit == "ns":
        return True
    if isinstance(dtype, pl.Datetime) and dtype.time_zone and dtype.time_unit == "ns":
        return DUCKDB_VERSION < (2,)
    if isinstance(dtype, pl.List | pl.Array):
        return _refused(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(_refused(f.dtype) for f in dtype.fields)
    return False


def _round_trip(db: DuckDBConnection, frame: pl.DataFrame, lazy: bool) -> None:
    db.execute("DROP TABLE IF EXISTS t")
    if any(_refused(d) for d in frame.dtypes):
        with pytest.raises(UnsupportedDtypeError, match=r"column '.+' has dtype .* Nothing was written"):
            db.load_frame(frame.lazy() if lazy else frame, "t")
        assert not db.table_exists("t")
        return
    db.load_frame(frame.lazy() if lazy else frame, "t")
    zone = _session_zone(db)
    storage = [pl.col(n).ext.storage() for n, d in frame.schema.items() if isinstance(d, pl.BaseExtension)]
    expected = frame.with_columns(storage).cast({name: _read_back(d, zone) for name, d in frame.schema.items()})
    assert_frame_equal(db.query("SELECT * FROM t"), expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=dataframes(max_cols=3, max_size=5, excluded_dtypes=[pl.Extension]))  # see the test below
def test_property_every_dtype_round_trips_or_is_refused(frame: pl.DataFrame) -> None:
    db = DuckDBConnection()
    _round_trip(db, frame, lazy=False)
    _round_trip(db, frame, lazy=True)
    db.close()


def test_extension_dtypes_load_as_their_storage() -> None:
    from polars.testing.parametric.strategies.dtype import TestExtension

    db = DuckDBConnection()
    frame = pl.DataFrame({"x": pl.Series([1, None, -(2**31)], dtype=pl.Int32).ext.to(TestExtension)})
    db.load_frame(frame, "t")
    assert_frame_equal(db.query("SELECT * FROM t"), frame.select(pl.col("x").ext.storage()))


def test_object_columns_of_strings_load_and_others_are_refused_by_name() -> None:
    db = DuckDBConnection()
    strings = pl.DataFrame({"o": pl.Series(["a", None, "é"], dtype=pl.Object)})
    db.load_frame(strings, "ok")
    assert db.query("SELECT o FROM ok")["o"].to_list() == ["a", None, "é"]  # today: 8 raw pointer bytes
    objects = pl.DataFrame({"id": [1, 2], "o": pl.Series([{"x": 1}, None], dtype=pl.Object)})
    with pytest.raises(UnsupportedDtypeError, match=r"column 'o' has dtype Object.*dict \{'x': 1\}.*map_elements"):
        db.load_frame(objects, "bad")
    with pytest.raises(UnsupportedDtypeError, match=r"LazyFrame column 'o' has dtype Object"):
        db.load_frame(strings.lazy(), "bad")
    assert not db.table_exists("bad")


def test_nanosecond_durations_are_refused_with_the_cast_to_use() -> None:
    db = DuckDBConnection()
    frame = pl.DataFrame({"d": pl.Series([dt.timedelta(microseconds=1)]).cast(pl.Duration("ns"))})
    with pytest.raises(DataError, match=r"column 'd' has dtype Duration\(time_unit='ns'\).*dt.cast_time_unit\(\"us\"\)"):
        db.load_frame(frame, "t")
    assert not db.table_exists("t")
    db.load_frame(frame.with_columns(pl.col("d").dt.cast_time_unit("us")), "t")
    assert db.query("SELECT d FROM t")["d"].to_list() == [dt.timedelta(microseconds=1)]


def test_decimal_time_and_duration_limits_are_exact() -> None:
    db = DuckDBConnection()
    frame = pl.DataFrame({
        "d38": pl.Series([decimal.Decimal("9" * 38), decimal.Decimal("-" + "9" * 38)], dtype=pl.Decimal(38, 0)),
        "t": pl.Series([0, 86_399_999_999_999]).cast(pl.Time),
        "dur": pl.Series([2**63 - 1, -(2**63) + 1]).cast(pl.Duration("us")),
        "f16": pl.Series([65504.0, -6.1e-05], dtype=pl.Float16),
    })
    db.load_frame(frame, "t")
    assert db.fetch_one("SELECT typeof(d38), typeof(t), typeof(dur), typeof(f16) FROM t LIMIT 1") == (
        "DECIMAL(38,0)", "TIME_NS", "INTERVAL", "FLOAT",
    )
    assert_frame_equal(db.query("SELECT * FROM t"), frame.with_columns(pl.col("f16").cast(pl.Float32)))


def test_load_parquet_and_the_task_load_every_dtype(tmp_path: Path) -> None:
    from prefect import flow

    from prefect_etl_blocks.tasks import load_to_duckdb

    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    # (Parquet itself has no duration or fixed-size list: those arrive as BIGINT and LIST.)
    frame = pl.DataFrame({
        "t": [dt.time(1, 2, 3, 4)], "f16": pl.Series([0.5], dtype=pl.Float16),
        "d": pl.Series([decimal.Decimal("1.5")], dtype=pl.Decimal(38, 1)), "cat": pl.Series(["x"], dtype=pl.Categorical),
    })
    frame.write_parquet(tmp_path / "f.parquet")
    db.load_parquet(ParquetSource(path=str(tmp_path / "f.parquet")), "p")
    assert_frame_equal(db.query("SELECT * FROM p"), frame.cast({"cat": pl.String, "f16": pl.Float32}))

    @flow
    def load_huge() -> int:
        return load_to_duckdb(HUGE, "task_h", db)

    assert load_huge() == 4
    assert_frame_equal(db.query("SELECT * FROM task_h"), HUGE)
    bad = pl.DataFrame({"d": pl.Series([1]).cast(pl.Duration("ns"))})

    @flow
    def load_bad() -> int:
        return load_to_duckdb(bad, "task_bad", db)

    with pytest.raises(UnsupportedDtypeError):
        load_bad()
    assert not db.table_exists("task_bad")


@pytest.mark.ducklake
def test_every_dtype_loads_into_a_ducklake_or_is_refused(tmp_path: Path) -> None:
    from prefect_etl_blocks.ducklake import DuckLakeConnection

    lake = DuckLakeConnection(catalog=str(tmp_path / "c.ducklake"), data_path=str(tmp_path / "data"))
    lake.load_frame(HUGE.drop("s"), "h")
    assert_frame_equal(lake.query("SELECT * FROM h"), HUGE.drop("s"))
    frame = pl.DataFrame({
        "t": [dt.time(1, 2, 3, 4)], "dur": [dt.timedelta(days=2, microseconds=1)],
        "ns": pl.Series([1_700_000_000_000_000_001]).cast(pl.Datetime("ns")),
    })
    lake.load_frame(frame, "f")
    assert_frame_equal(lake.query("SELECT * FROM f"), frame)
    zoned = pl.DataFrame({"z": pl.Series([1]).cast(pl.Datetime("ns", "UTC"))})  # DuckDB 1.5: no TIMESTAMPTZ_NS
    with pytest.raises(UnsupportedDtypeError, match="TIMESTAMP WITH TIME ZONE"):
        lake.load_frame(zoned, "z")
    assert not lake.table_exists("z")
