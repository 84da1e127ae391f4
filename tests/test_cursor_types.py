"""Cursor loads are exact for every cursor type DuckDB can order (issue 19, "every cursor type
exact"): the mark is kept as the text of a value of the column's own DuckDB type and compared
in SQL, never through a Python value, so nanoseconds, 128-bit integers, decimals and
single-precision floats keep every digit.

* Named regressions for the issue's "Nanosecond cursors" and "Time cursors".
* Refusals (cursor types, lag, NULL cursors, inexact initial values) leave nothing written.
* A hypothesis property: any sequence of batches over a generated cursor dtype (values at each
  type's limits, ties at the mark, NULLs), with or without keys and lag, leaves the table equal
  to a plain-Python model, every cursor value stored exactly and the mark never moving back.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.compat import DUCKDB_VERSION
from prefect_etl_blocks.errors import LoadConfigError, LoadError

NS = pl.Series([1_700_000_000_000_000_000, 1_700_000_000_000_000_500]).cast(pl.Datetime("ns"))


def _plus_ns(series: pl.Series, ns: int) -> pl.Series:
    return (series.cast(pl.Int64) + ns).cast(pl.Datetime("ns"))


def _marks(db: DuckDBConnection) -> list[tuple]:
    return db.fetch_all("SELECT table_name, cursor_column, mark, mark_type FROM _prefect_etl.cursors ORDER BY 1, 2")


# ----------------------------------------------------------------------------- regressions
def test_nanosecond_cursors_load_each_row_once(tmp_path: Path) -> None:
    """Issue 19, "Nanosecond cursors": the mark 22:13:20.0000005 is kept to the nanosecond."""
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    batch = pl.DataFrame({"id": [1, 2], "ts": NS})
    for _ in range(3):
        db.load_frame(batch, "events", mode="append", cursor="ts")
    assert db.fetch_one("SELECT count(*) FROM events")[0] == 2
    assert _marks(db) == [("main.events", "ts", "2023-11-14 22:13:20.0000005", "TIMESTAMP_NS")]
    later = pl.DataFrame({"id": [3, 4], "ts": _plus_ns(NS, 1)})
    assert db.load_frame(later, "events", mode="append", cursor="ts") == 1  # only ...000000501
    assert _marks(db)[0][2] == "2023-11-14 22:13:20.000000501"


def test_time_cursors_load_after_the_first_load(tmp_path: Path) -> None:
    """Issue 19, "Time cursors": TIME_NS columns compare with their mark (no BinderException)."""
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    times = [dt.time(1), dt.time(2), dt.time(3, 0, 0, 1)]
    batch = pl.DataFrame({"id": [1, 2, 3], "t": times})
    assert db.load_frame(batch, "ev", cursor="t") == 3
    assert db.load_frame(batch, "ev", cursor="t") == 0
    extra = pl.DataFrame({"id": [4], "t": pl.Series([10_800_000_001_001]).cast(pl.Time)})  # 03:00:00.000001001
    assert db.load_frame(extra, "ev", cursor="t") == 1
    assert _marks(db)[0][2:] == ("03:00:00.000001001", "TIME_NS")
    # with keys and a lag reaching back past midnight, every row is re-read and upserted
    keyed = pl.DataFrame({"id": [1, 5], "t": [dt.time(0, 30), dt.time(3, 30)]})
    result = db.load_frame(keyed, "kv", cursor="t", keys="id", lag=dt.timedelta(hours=5), return_result=True)
    result = db.load_frame(keyed, "kv", cursor="t", keys="id", lag=dt.timedelta(hours=5), return_result=True)
    assert (result.inserted, result.updated) == (0, 2)


# ----------------------------------------------------------------------------- exact marks and lag
def test_nanosecond_lag_keeps_nanoseconds() -> None:
    db = DuckDBConnection()
    ts = pl.Series([1_000_000_000_000_000_500, 1_000_000_000_000_001_499, 1_000_000_000_000_001_500]).cast(pl.Datetime("ns"))
    db.load_frame(pl.DataFrame({"k": [1], "ts": ts[2:]}), "ev", cursor="ts", keys="k")
    # mark ...001500 - 1 µs = ...000500: 000500 is in, nothing below it is
    late = pl.DataFrame({"k": [2, 3], "ts": pl.concat([ts[:1], _plus_ns(ts[:1], -1)])})
    result = db.load_frame(late, "ev", cursor="ts", keys="k", lag=dt.timedelta(microseconds=1), return_result=True)
    assert result.inserted == 1
    assert db.query("SELECT k FROM ev ORDER BY k")["k"].to_list() == [1, 2]


@pytest.mark.parametrize(
    ("values", "lag", "late", "loads"),
    [
        (pl.Series([10, 20], dtype=pl.UInt8), 25, pl.Series([0], dtype=pl.UInt8), 1),  # below 0: all
        (pl.Series([2**127 - 1], dtype=pl.Int128), 2**127, pl.Series([-1, -2], dtype=pl.Int128), 1),
        (pl.Series([decimal.Decimal("1.00")], dtype=pl.Decimal(10, 2)), decimal.Decimal("0.005"),
         pl.Series([decimal.Decimal("0.99"), decimal.Decimal("1.00")], dtype=pl.Decimal(10, 2)), 1),
        (pl.Series([0.1], dtype=pl.Float32), 0.0, pl.Series([0.1], dtype=pl.Float32), 1),  # float32 0.1, not 0.1
        (pl.Series([dt.date(2026, 1, 10)]), dt.timedelta(days=1, hours=1),
         pl.Series([dt.date(2026, 1, 8), dt.date(2026, 1, 9)]), 1),
        (pl.Series([dt.datetime(2026, 3, 29, 3)]).dt.replace_time_zone("Europe/Paris"), dt.timedelta(hours=2),
         pl.Series([dt.datetime(2026, 3, 28, 22, 59), dt.datetime(2026, 3, 28, 23)]).dt.replace_time_zone("UTC"), 1),
    ],
    ids=["utinyint-below-zero", "hugeint", "decimal-rounds-up", "float32", "date", "timestamptz-fixed-length"],
)
def test_lag_is_exact_in_the_column_type(values: pl.Series, lag: Any, late: pl.Series, loads: int) -> None:
    db = DuckDBConnection()
    db.load_frame(pl.DataFrame({"k": range(len(values)), "c": values}), "ev", cursor="c", keys="k")
    batch = pl.DataFrame({"k": range(100, 100 + len(late)), "c": late.cast(values.dtype)})
    result = db.load_frame(batch, "ev", cursor="c", keys="k", lag=lag, return_result=True)
    assert (result.inserted, result.updated) == (loads, 0)


def test_the_mark_never_moves_back_and_initial_value_is_cast_exactly() -> None:
    db = DuckDBConnection()
    frame = pl.DataFrame({"k": [1, 2], "c": pl.Series([2**100, 2**100 + 1], dtype=pl.Int128)})
    assert db.load_frame(frame, "ev", cursor="c", initial_value=2**100) == 1  # a Python int, as HUGEINT
    late = pl.DataFrame({"k": [3], "c": pl.Series([5], dtype=pl.Int128)})
    result = db.load_frame(late, "ev", cursor="c", return_result=True)
    assert result.cursor == ("c", str(2**100 + 1), str(2**100 + 1))
    db2 = DuckDBConnection()
    ts = pl.DataFrame({"k": [1, 2], "c": NS})
    assert db2.load_frame(ts, "ev", cursor="c", initial_value="2023-11-14 22:13:20.0000004") == 1  # text
    assert db2.load_frame(ts, "other", cursor="c", initial_value=dt.datetime(2023, 11, 14, 22, 13, 20)) == 1


@pytest.mark.parametrize(
    ("column", "initial", "match"),
    [
        (pl.Series([1, 2]), 1.5, "no exact BIGINT value"),
        (pl.Series([dt.datetime(2026, 1, 1)]), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "do not compare exactly"),
        (pl.Series(["a"]), 3, "do not compare exactly"),
        (pl.Series([1]), "soon", "no exact BIGINT value"),
    ],
    ids=["fraction-for-integer", "zoned-for-naive", "number-for-string", "bad-text"],
)
def test_an_initial_value_without_an_exact_column_value_is_refused(column: pl.Series, initial: Any, match: str) -> None:
    db = DuckDBConnection()
    with pytest.raises(LoadConfigError, match=match):
        db.load_frame(pl.DataFrame({"c": column}), "ev", cursor="c", initial_value=initial)
    assert not db.table_exists("ev")


def test_a_cursor_column_that_changes_type_keeps_its_mark_when_exact() -> None:
    db = DuckDBConnection()
    db.load_frame(pl.DataFrame({"c": pl.Series([1, 2], dtype=pl.Int32)}), "ev", cursor="c")
    wider = pl.DataFrame({"c": pl.Series([2, 3], dtype=pl.Int64)})
    assert db.load_frame(wider, "ev", cursor="c", on_schema_change="append_new_columns") == 1
    db.load_frame(pl.DataFrame({"c": NS}), "ns", cursor="c")
    coarser = pl.DataFrame({"c": NS.cast(pl.Datetime("us"))})
    with pytest.raises(LoadConfigError, match=r"no exact TIMESTAMP value.*cast it back to TIMESTAMP_NS"):
        db.load_frame(coarser, "ns", cursor="c")


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "column",
    [
        pl.Series([[1], [2]]),
        pl.Series([{"a": 1}, {"a": 2}]),
        pl.Series([True, False]),
        pl.Series([b"a", b"b"]),
        pl.Series([dt.timedelta(1), dt.timedelta(2)]),
        pl.Series([None, None], dtype=pl.Null),
    ],
    ids=["list", "struct", "boolean", "blob", "interval", "null"],
)
def test_a_type_that_cannot_be_a_cursor_is_refused_before_anything_is_written(column: pl.Series) -> None:
    db = DuckDBConnection()
    # (DuckDB 1.5 reads a Null column as INTEGER: refused there for its NULLs.)
    error, match = (LoadError, r"NULL\) in the cursor column 'c'") if column.dtype == pl.Null and DUCKDB_VERSION < (2,) else (
        LoadConfigError, r"cursor column 'c' of the data loaded into 'ev' is .* cannot be a cursor")
    with pytest.raises(error, match=match):
        db.load_frame(pl.DataFrame({"c": column, "k": [1, 2]}), "ev", cursor="c", keys="k")
    assert not db.table_exists("ev")
    assert db.fetch_one("SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_prefect_etl'")[0] == 0


@pytest.mark.parametrize(
    ("column", "lag", "match"),
    [
        (pl.Series(["a", "b"]), 1, "has no meaning on the VARCHAR cursor"),
        (pl.Series([1, 2]), dt.timedelta(1), "must be a number, not a timedelta"),
        (pl.Series([dt.date(2026, 1, 1)] * 2), 1, "must be a datetime.timedelta"),
        (pl.Series([1, 2]), -1, "is negative"),
        (pl.Series([1.0, 2.0]), math.inf, "must be a finite number"),
        (pl.Series([1, 2]), True, "must be a number"),
    ],
    ids=["string", "timedelta-on-number", "number-on-date", "negative", "infinite", "bool"],
)
def test_lag_without_a_meaning_is_refused_before_anything_is_written(column: pl.Series, lag: Any, match: str) -> None:
    db = DuckDBConnection()
    frame = pl.DataFrame({"c": column, "k": [1, 2]})
    db.load_frame(frame, "ev", cursor="c", keys="k")
    before = _marks(db)
    with pytest.raises(LoadConfigError, match=match):
        db.load_frame(frame.with_columns(k=pl.Series([3, 4])), "ev", cursor="c", keys="k", lag=lag)
    assert db.fetch_one("SELECT count(*) FROM ev")[0] == 2 and _marks(db) == before


def test_null_cursors_are_refused_by_name_and_nothing_is_written() -> None:
    db = DuckDBConnection()
    with pytest.raises(LoadError, match=r"1 row\(s\) .*\(NULL\) in the cursor column 'ts'"):
        db.load_frame(pl.DataFrame({"id": [1, 2], "ts": [1, None]}), "ev", cursor="ts")
    assert not db.table_exists("ev")
    db.load_frame(pl.DataFrame({"id": [1], "ts": [5]}), "ev", cursor="ts")
    with pytest.raises(LoadError, match="NULL"):  # even below the mark: it would never load
        db.load_frame(pl.DataFrame({"id": [2, 3], "ts": [9, None]}), "ev", cursor="ts")
    assert db.fetch_all("SELECT id FROM ev") == [(1,)] and _marks(db)[0][2] == "5"


# ----------------------------------------------------------------------------- Parquet sources
def test_nanosecond_cursor_on_local_and_s3_parquet(tmp_path: Path, aws_credentials, s3_client, bucket: str) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame({"id": [1, 2], "ts": NS}).write_parquet(path)
    s3_client.put_object(Bucket=bucket, Key="e/e.parquet", Body=path.read_bytes())
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    for source, table in ((ParquetSource(path=str(path)), "local"),
                          (ParquetSource(path=f"s3://{bucket}/e/", aws_credentials=aws_credentials), "remote")):
        assert db.load_parquet(source, table, cursor="ts", initial_value="2023-11-14 22:13:20.0000004") == 1
        assert db.load_parquet(source, table, cursor="ts") == 0
        assert db.load_parquet(source, table + "_k", cursor="ts", keys="id", lag=dt.timedelta(microseconds=1)) == 2
        result = db.load_parquet(source, table + "_k", cursor="ts", keys="id", lag=dt.timedelta(0), return_result=True)
        assert (result.inserted, result.updated) == (0, 1)  # only the row at the mark, upserted


# ----------------------------------------------------------------------------- the property
I64 = 2**63 - 1
# DuckDB 1.5 cannot write the first day of TIMESTAMP's and TIMESTAMP_NS's ranges, nor the last
# millisecond of TIMESTAMPTZ's, as text that reads back (2.0 can): the property stays inside.
NEW = DUCKDB_VERSION >= (2,)
US_MIN = -I64 + 1 if NEW else -9_223_372_022_400_000_000
NS_MIN = -I64 + 1 if NEW else -9_223_286_400_000_000_000
TZ_MAX = I64 - 1 if NEW else 9_223_372_036_854_774_999


@dataclass(frozen=True)
class Kind:
    """A cursor dtype for the property: how to draw its values and place them in DuckDB's order."""

    name: str
    dtype: Any
    values: st.SearchStrategy
    lags: st.SearchStrategy | None  # None: lag has no meaning
    ns_per_unit: int = 0  # temporal kinds: values are integers in this unit

    def series(self, values: list) -> pl.Series:
        if self.ns_per_unit:
            base = pl.Series(values, dtype=pl.Int32 if self.dtype == pl.Date else pl.Int64)
            if isinstance(self.dtype, pl.Datetime) and self.dtype.time_zone:
                return base.cast(pl.Datetime(self.dtype.time_unit)).dt.replace_time_zone(self.dtype.time_zone)
            return base.cast(self.dtype)
        return pl.Series(values, dtype=self.dtype)

    def order(self, value: Any) -> Any:
        """DuckDB's order: NaN above everything (and equal to itself), strings byte-wise."""
        if isinstance(value, float):
            return (1, 0.0) if math.isnan(value) else (0, value)
        if isinstance(value, str):
            return value.encode()
        return value * self.ns_per_unit if self.ns_per_unit else value

    def lower(self, mark: Any, lag: Any) -> Any:
        """The model's ``mark - lag`` in the order's terms (None: no lower bound)."""
        if lag is None:
            return self.order(mark)
        if self.ns_per_unit:
            low = self.order(mark) - (lag // dt.timedelta(microseconds=1)) * 1000
            return None if self.dtype == pl.Time and low < 0 else low
        if isinstance(mark, float):
            return self.order(mark - float(lag))
        with decimal.localcontext() as ctx:
            ctx.prec = 200
            return mark - lag


def _ints(bits: int, signed: bool) -> st.SearchStrategy:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.one_of(st.sampled_from([lo, lo + 1, 0 if signed else lo + 2, hi - 1, hi]), st.integers(lo, hi))


def _temporal(lo: int, hi: int) -> st.SearchStrategy:
    return st.one_of(st.sampled_from([lo, lo + 1, hi - 1, hi]), st.integers(lo, hi), st.integers(max(lo, -5), min(hi, 5)))


_MAX_DEC = decimal.Decimal("99999999999999999999999999999999999.999")
_MIN_DEC = decimal.Decimal("-99999999999999999999999999999999999.999")  # not -_MAX_DEC: 28-digit context
KINDS = [
    Kind("int8", pl.Int8, _ints(8, True), st.integers(0, 300)),
    Kind("int64", pl.Int64, _ints(64, True), st.one_of(st.integers(0, 5), st.integers(0, 2**65))),
    Kind("int128", pl.Int128, _ints(128, True), st.one_of(st.integers(0, 5), st.integers(0, 2**129))),
    Kind("uint8", pl.UInt8, _ints(8, False), st.integers(0, 300)),
    Kind("uint64", pl.UInt64, _ints(64, False), st.integers(0, 2**65)),
    Kind("uint128", pl.UInt128, _ints(128, False), st.one_of(st.integers(0, 5), st.integers(0, 2**129))),
    Kind("float32", pl.Float32, st.floats(width=32), st.floats(0, 1e30)),
    Kind("float64", pl.Float64, st.floats(), st.floats(0, 1e300)),
    Kind("decimal", pl.Decimal(38, 3),
         st.one_of(st.sampled_from([_MIN_DEC, _MAX_DEC]), st.decimals(_MIN_DEC, _MAX_DEC, places=3)),
         st.decimals(0, 10**36, places=5)),
    Kind("date", pl.Date, _temporal(-(2**31) + 2, 2**31 - 2), st.timedeltas(min_value=dt.timedelta(0)), 86_400 * 10**9),
    Kind("datetime_ms", pl.Datetime("ms"), _temporal(-(9 * 10**15), 9 * 10**15), st.timedeltas(min_value=dt.timedelta(0)), 10**6),
    Kind("datetime_us", pl.Datetime("us"), _temporal(US_MIN, I64 - 1), st.timedeltas(min_value=dt.timedelta(0)), 10**3),
    Kind("datetime_ns", pl.Datetime("ns"), _temporal(NS_MIN, I64 - 1), st.timedeltas(min_value=dt.timedelta(0)), 1),
    Kind("datetime_us_utc", pl.Datetime("us", "UTC"), _temporal(US_MIN, TZ_MAX), st.timedeltas(min_value=dt.timedelta(0)), 10**3),
    Kind("time", pl.Time, _temporal(0, 86_400 * 10**9 - 1), st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=2)), 1),
    Kind("string", pl.String, st.text(st.characters(exclude_categories=("Cs",)), max_size=4), None),
]
if DUCKDB_VERSION >= (2,):  # TIMESTAMPTZ_NS
    KINDS.append(Kind("datetime_ns_utc", pl.Datetime("ns", "UTC"), _temporal(-I64 + 1, I64 - 1),
                      st.timedeltas(min_value=dt.timedelta(0)), 1))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(KINDS))
    raw = draw(st.lists(kind.values, min_size=1, max_size=6))
    pool: dict[Any, Any] = {}
    for v in raw:  # distinct in DuckDB's order (0.0 == -0.0, NaN == NaN)
        v = 0.0 if isinstance(v, float) and v == 0 else v
        pool.setdefault(kind.order(v), v)
    values = [pool[k] for k in sorted(pool)]
    keyed = draw(st.booleans())
    lag = draw(st.one_of(st.none(), kind.lags)) if keyed and kind.lags is not None else None
    initial = draw(st.one_of(st.none(), st.integers(0, len(values) - 1)))
    row = st.tuples(st.integers(0, 3), st.integers(0, len(values) - 1))
    batches = draw(st.lists(st.lists(row, max_size=6), min_size=1, max_size=5))
    nulls = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    return kind, values, keyed, lag, initial, batches, nulls


def _model_step(kind: Kind, values: list, keyed: bool, lag: Any, mark: int | None, rows: list, table: Any) -> tuple:
    """One batch in the model: the rows kept and the new mark (indices into ``values``)."""
    if mark is None:
        kept = rows
    elif keyed:
        low = kind.lower(values[mark], lag)
        kept = rows if low is None else [r for r in rows if kind.order(values[r[1]]) >= low]
    else:
        kept = [r for r in rows if kind.order(values[r[1]]) > kind.order(values[mark])]
    if keyed:
        latest: dict[int, tuple] = {}
        for r in kept:
            if r[0] not in latest or kind.order(values[r[1]]) > kind.order(values[latest[r[0]][1]]):
                latest[r[0]] = r
        table.update(latest)
    else:
        table.extend(kept)
    top = max((r[1] for r in kept), default=None, key=lambda i: kind.order(values[i]))
    if top is not None and (mark is None or kind.order(values[top]) > kind.order(values[mark])):
        return top, True
    return mark, False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios())
def test_property_any_batches_of_any_cursor_type_load_each_row_once(scenario: tuple) -> None:
    kind, values, keyed, lag, initial, batches, nulls = scenario
    db = DuckDBConnection()
    db.load_frame(pl.DataFrame({"i": range(len(values)), "c": kind.series(values)}), "pool")
    texts = dict(db.fetch_all("SELECT i, CAST(c AS VARCHAR) FROM pool"))
    mark = initial
    table: Any = {} if keyed else []
    loaded = advanced = False
    for rows, null in zip(batches, nulls, strict=True):
        frame = pl.DataFrame(
            {"k": [k for k, _ in rows], "i": [i for _, i in rows],
             "c": kind.series([values[i] for _, i in rows])},
            schema_overrides={"k": pl.Int64, "i": pl.Int64},
        )
        if null and rows:
            frame = frame.with_columns(c=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("c")))
        options: dict[str, Any] = {"cursor": "c", "initial_value": None if initial is None else texts[initial]}
        if keyed:
            frame = frame.with_columns(v=pl.col("k") * 1000 + pl.col("i"))  # ties per key are one row
            options.update(keys="k", lag=lag)
        if null and rows:
            with pytest.raises(LoadError, match="NULL"):
                db.load_frame(frame, "ev", **options)
        else:
            db.load_frame(frame, "ev", **options)
            mark, moved = _model_step(kind, values, keyed, lag, mark, rows, table)
            loaded, advanced = True, advanced or moved
        got = sorted(db.fetch_all("SELECT k, i FROM ev")) if db.table_exists("ev") else []
        expected = sorted(table.values()) if keyed else sorted(table)
        assert got == expected
        state = db.fetch_all("SELECT mark FROM _prefect_etl.cursors") if loaded else []
        assert [s for (s,) in state] == ([texts[mark]] if advanced else [])  # never moves back
    if db.table_exists("ev"):  # every cursor value stored exactly
        assert db.fetch_one("SELECT count(*) FROM ev JOIN pool USING (i) WHERE ev.c IS DISTINCT FROM pool.c")[0] == 0
    db.close()


def test_duckdb_orders_nan_above_infinity() -> None:
    """The model's order for floats is DuckDB's: NaN is the greatest value and equals itself."""
    con = duckdb.connect()
    assert con.sql("SELECT 'nan'::DOUBLE > 'inf'::DOUBLE, 'nan'::DOUBLE = 'nan'::DOUBLE").fetchall() == [(True, True)]
