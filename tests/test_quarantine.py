"""Quarantine (issue 23): with ``on_check_failure="quarantine"`` rows failing a row-level check
go to ``<schema>.<table>__quarantine`` in the load's transaction and the rest are published.

Against real DuckDB files (and a DuckLake on PostgreSQL, marked ``ducklake``): every strategy
compared with loading the passing rows alone, cursor and file loads, schema evolution of the
quarantine table, refusals, a SIGKILL inside quarantining loads, the ledger, the CLI, the
Prefect artifact and event, and a hypothesis property: published + quarantined = the input,
each row exactly once, each quarantined row under the first check it failed.
"""

from __future__ import annotations

import datetime as dt
import random
import textwrap
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing.parametric import column, dataframes

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.checks import accepted_values, freshness, not_null, row_count, unique
from prefect_etl_blocks.core.loading.options import LoadOptions
from prefect_etl_blocks.core.loading.run import run_load
from prefect_etl_blocks.errors import DataCheckError, InvalidIdentifierError, SchemaMismatchError
from prefect_etl_blocks.tools.cli_history import history_lines
from tests.fixtures.races import kill_while_loading

ORDERS = pl.DataFrame(
    {
        "id": [1, 2, None, 4, 5],
        "status": ["new", "void", "paid", "paid", "new"],
        "qty": [1, 2, 3, -1, None],
    }
)
CHECKS = [not_null("id"), accepted_values("status", ["new", "paid"]), "qty >= 0"]
STATUS_CHECK = "accepted_values(status, ['new', 'paid'])"


def _db(tmp_path: Path, name: str = "w.duckdb") -> DuckDBConnection:
    return DuckDBConnection(database=str(tmp_path / name))


def _rows(db: DuckDBConnection, sql: str) -> list[tuple]:
    return sorted(db.fetch_all(sql), key=repr)


# ---------------------------------------------------------------------- the contract
def test_failing_rows_go_to_the_quarantine_table_and_the_rest_are_published(tmp_path: Path) -> None:
    db = _db(tmp_path)
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    result = db.load_frame(
        ORDERS, "analytics.orders", checks=CHECKS, on_check_failure="quarantine", return_result=True
    )
    after = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    # A NULL qty passes "qty >= 0" (NULL counts as passing, as in a CHECK constraint).
    assert (result.inserted, result.quarantined) == (2, 3)
    assert db.fetch_all("SELECT id FROM analytics.orders ORDER BY id") == [(1,), (5,)]
    assert _rows(db, "SELECT id, status, qty, _load_id, _check FROM analytics.orders__quarantine") == sorted(
        [
            (2, "void", 2, result.load_id, STATUS_CHECK),
            (None, "paid", 3, result.load_id, "not_null(id)"),
            (4, "paid", -1, result.load_id, "qty >= 0"),
        ],
        key=repr,
    )
    described = db.fetch_all("SELECT column_name, column_type FROM (DESCRIBE analytics.orders__quarantine)")
    assert described == [
        ("id", "BIGINT"), ("status", "VARCHAR"), ("qty", "BIGINT"),
        ("_load_id", "VARCHAR"), ("_check", "VARCHAR"), ("_quarantined_at", "TIMESTAMP"),
    ]
    (stamp,) = {r[0] for r in db.fetch_all("SELECT _quarantined_at FROM analytics.orders__quarantine")}
    assert before <= stamp <= after
    report = result.quarantine
    assert report.table == "analytics.orders__quarantine" and report.rows == 3
    assert report.by_check == (("not_null(id)", 1), (STATUS_CHECK, 1), ("qty >= 0", 1))
    assert sorted((r["id"] or 0, r["_check"]) for r in report.sample) == [
        (0, "not_null(id)"), (2, STATUS_CHECK), (4, "qty >= 0")
    ]
    history = db.load_history("analytics.orders")
    assert history["quarantined"].to_list() == [3] and history["load_id"][0] == result.load_id
    # A second load adds to the quarantine table; a load with nothing to quarantine leaves it.
    again = db.load_frame(ORDERS, "analytics.orders", mode="append", checks=CHECKS,
                          on_check_failure="quarantine", return_result=True)
    assert again.quarantined == 3
    clean = db.load_frame(ORDERS.filter(pl.col("id") == 1), "analytics.orders", mode="append",
                          checks=CHECKS, on_check_failure="quarantine", return_result=True)
    assert (clean.quarantined, clean.quarantine) == (0, None)
    assert db.fetch_all("SELECT _load_id, count(*) FROM analytics.orders__quarantine GROUP BY 1 ORDER BY 2, 1") == sorted(
        [(result.load_id, 3), (again.load_id, 3)]
    )
    assert db.load_history("analytics.orders")["quarantined"].to_list() == [3, 3, 0]


def test_a_row_failing_several_checks_is_quarantined_once_under_the_first(tmp_path: Path) -> None:
    db = _db(tmp_path)
    bad = pl.DataFrame({"id": [None], "status": ["void"], "qty": [-5]})
    first = db.load_frame(bad, "a", checks=["qty >= 0", *CHECKS[:2]], on_check_failure="quarantine", return_result=True)
    second = db.load_frame(bad, "b", checks=list(reversed(CHECKS)), on_check_failure="quarantine", return_result=True)
    assert (first.quarantined, second.quarantined) == (1, 1)
    assert db.fetch_all("SELECT _check FROM a__quarantine") == [("qty >= 0",)]
    assert db.fetch_all("SELECT _check FROM b__quarantine") == [("qty >= 0",)]
    third = db.load_frame(bad, "c", checks=[CHECKS[1], CHECKS[0]], on_check_failure="quarantine", return_result=True)
    assert third.quarantine.by_check == ((STATUS_CHECK, 1),)
    assert db.fetch_all("SELECT count(*) FROM c") == [(0,)]  # created, empty


def test_the_default_still_fails_the_whole_load(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.load_frame(ORDERS.head(1), "orders")
    with pytest.raises(DataCheckError, match="3 check"):
        db.load_frame(ORDERS, "orders", mode="append", checks=CHECKS)
    assert db.fetch_all("SELECT id FROM orders") == [(1,)]
    assert not db.table_exists("orders__quarantine")
    # Without a row-level check there is nothing to quarantine: nothing is created either.
    db.load_frame(ORDERS, "orders", mode="append", checks=[row_count(min=1)], on_check_failure="quarantine")
    assert not db.table_exists("orders__quarantine")


def test_unique_quarantines_every_row_of_a_key_repeated_in_the_batch(tmp_path: Path) -> None:
    db = _db(tmp_path)
    batch = pl.DataFrame({"id": [1, 1, 2, None, None, 3], "v": ["a", "b", "c", "d", "e", "f"]})
    checks = [not_null("id"), unique("id")]
    result = db.load_frame(batch, "t", mode="upsert", keys="id", checks=checks,
                           on_check_failure="quarantine", return_result=True)
    assert (result.inserted, result.quarantined) == (2, 4)
    assert db.fetch_all("SELECT id, v FROM t ORDER BY id") == [(2, "c"), (3, "f")]
    assert _rows(db, "SELECT v, _check FROM t__quarantine") == [
        ("a", "unique(id)"), ("b", "unique(id)"), ("d", "not_null(id)"), ("e", "not_null(id)")
    ]
    # unique() still checks the resulting table: an append repeating a key already there fails
    # the whole load, and neither table changes.
    with pytest.raises(DataCheckError, match=r"unique\(id\): 1 duplicated values"):
        db.load_frame(pl.DataFrame({"id": [2, None], "v": ["x", "y"]}), "t", mode="append",
                      checks=checks, on_check_failure="quarantine")
    assert db.fetch_all("SELECT count(*) FROM t") == [(2,)]
    assert db.fetch_all("SELECT count(*) FROM t__quarantine") == [(4,)]


@pytest.mark.parametrize(
    "table_check",
    [row_count(min=10), freshness("at", max_age=dt.timedelta(days=1))],
    ids=["row_count", "freshness"],
)
def test_table_level_checks_still_fail_the_whole_load(tmp_path: Path, table_check) -> None:
    db = _db(tmp_path)
    old = dt.datetime(2020, 1, 1)
    first = pl.DataFrame({"id": [1, None], "at": [dt.datetime.now(), old]})
    db.load_frame(first, "t", checks=[not_null("id")], on_check_failure="quarantine")
    quarantined = db.fetch_all("SELECT * FROM t__quarantine")
    with pytest.raises(DataCheckError, match=r"row_count\(min=10\)|freshness\(at"):
        db.load_frame(pl.DataFrame({"id": [2, None], "at": [old, old]}), "t", mode="replace",
                      checks=[not_null("id"), table_check], on_check_failure="quarantine")
    assert db.fetch_all("SELECT id FROM t") == [(1,)]
    assert db.fetch_all("SELECT * FROM t__quarantine") == quarantined
    assert db.load_history("t").height == 1


# ---------------------------------------------------------------------- every strategy
STRATEGIES = ["replace", "append", "upsert", "delete-insert", "insert-only", "scd2"]


@pytest.mark.parametrize("mode", STRATEGIES)
def test_every_strategy_sees_only_the_passing_rows(tmp_path: Path, mode: str) -> None:
    """The quarantining load leaves the table exactly as loading the passing rows alone does."""
    db = _db(tmp_path)
    existing = pl.DataFrame({"id": [1, 2, 3], "status": ["new", "new", "paid"], "qty": [1, 1, 1]})
    batch = pl.DataFrame(
        {"id": [2, 3, 3, 4, None, 5, 7], "status": ["paid", "new", "paid", "void", "new", "new", "new"],
         "qty": [7, 8, 9, 1, 1, -2, 0]}
    )
    checks = [not_null("id"), unique("id"), accepted_values("status", ["new", "paid"]), "qty >= 0"]
    expected = [(3, "unique(id)"), (3, "unique(id)"), (4, STATUS_CHECK), (None, "not_null(id)"), (5, "qty >= 0")]
    passing = [2, 7]
    keys = "id" if mode != "replace" else None
    if mode == "append":  # unique("id") also checks the table: append only new ids
        existing = existing.filter(pl.col("id") != 2)
    if mode == "scd2":  # the table keeps versions, so unique("id") on it fails, in either mode
        checks, batch, expected, passing = checks[:1] + checks[2:], batch.filter(pl.col("qty") != 9), expected[2:], [2, 3, 7]
    for name in ("quarantined", "reference"):
        db.load_frame(existing, name, mode="replace")
        if mode == "scd2":
            db.execute(f"DROP TABLE {name}")
            db.load_frame(existing, name, mode="scd2", keys="id")
    result = db.load_frame(batch, "quarantined", mode=mode, keys=keys, checks=checks,
                           on_check_failure="quarantine", return_result=True)
    db.load_frame(batch.filter(pl.col("id").is_in(passing)), "reference", mode=mode, keys=keys, checks=checks)
    assert result.quarantined == len(expected)
    columns = "id, status, qty" + (", is_current" if mode == "scd2" else "")
    assert _rows(db, f"SELECT {columns} FROM quarantined") == _rows(db, f"SELECT {columns} FROM reference")
    assert _rows(db, "SELECT id, _check FROM quarantined__quarantine") == sorted(expected, key=repr)


def test_a_stream_is_read_once_and_split(tmp_path: Path) -> None:
    db = _db(tmp_path)
    table = ORDERS.to_arrow()
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    result = db.load_frame(reader, "orders", checks=CHECKS, on_check_failure="quarantine", return_result=True)
    assert (result.inserted, result.quarantined) == (2, 3)
    lazy = db.load_frame(ORDERS.lazy(), "orders", mode="append", checks=CHECKS,
                         on_check_failure="quarantine", return_result=True)
    assert (lazy.inserted, lazy.quarantined) == (2, 3)


# ---------------------------------------------------------------------- incremental loads
def test_a_cursor_load_quarantines_and_moves_its_mark_past_the_rows_it_read(tmp_path: Path) -> None:
    db = _db(tmp_path)
    batch = pl.DataFrame({"id": [1, 2, 3], "ts": [10, 20, 30], "qty": [1, -1, 1]})
    first = db.load_frame(batch, "events", cursor="ts", keys="id", checks=["qty >= 0"],
                          on_check_failure="quarantine", return_result=True)
    assert (first.inserted, first.quarantined, first.cursor) == (2, 1, ("ts", None, "30"))
    # The quarantined row was read: the next run does not take it again (fix it and load it
    # explicitly from the quarantine table).
    more = pl.concat([batch, pl.DataFrame({"id": [4, 5], "ts": [40, 50], "qty": [-4, 5]})])
    second = db.load_frame(more, "events", cursor="ts", keys="id", checks=["qty >= 0"],
                           on_check_failure="quarantine", return_result=True)
    assert (second.quarantined, second.cursor) == (1, ("ts", "30", "50"))
    assert db.fetch_all("SELECT id FROM events ORDER BY id") == [(1,), (3,), (5,)]
    assert db.fetch_all("SELECT id, _load_id FROM events__quarantine ORDER BY id") == [
        (2, first.load_id), (4, second.load_id)
    ]
    assert db.load_history("events")["quarantined"].to_list() == [1, 1]


def test_a_file_load_quarantines_rows_of_the_new_files_only(tmp_path: Path) -> None:
    db = _db(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame({"id": [1, None], "qty": [1, 2]}).write_parquet(folder / "a.parquet")
    source = ParquetSource(path=str(folder))
    first = db.load_parquet(source, "raw.items", incremental=True, checks=[not_null("id")],
                            lineage_column="_prefect_etl_file", on_check_failure="quarantine",
                            return_result=True)
    pl.DataFrame({"id": [None, 3], "qty": [3, 4]}).write_parquet(folder / "b.parquet")
    second = db.load_parquet(source, "raw.items", incremental=True, checks=[not_null("id")],
                             lineage_column="_prefect_etl_file", on_check_failure="quarantine",
                             return_result=True)
    assert (first.quarantined, second.quarantined) == (1, 1)
    assert db.fetch_all("SELECT id FROM raw.items ORDER BY id") == [(1,), (3,)]
    # The lineage column travels with the rows, so a quarantined row names its file.
    assert db.fetch_all("SELECT qty, _prefect_etl_file FROM raw.items__quarantine ORDER BY qty") == [
        (2, str(folder / "a.parquet")), (3, str(folder / "b.parquet"))
    ]


# ---------------------------------------------------------------------- the quarantine table itself
def test_the_quarantine_table_takes_new_source_columns(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.load_frame(pl.DataFrame({"id": [None, 1], "qty": [1, 2]}).cast({"qty": pl.Int32}), "t",
                  checks=[not_null("id")], on_check_failure="quarantine")
    wider = pl.DataFrame({"id": [None], "qty": [3_000_000_000], "note": ["new column"]})
    db.load_frame(wider, "t", mode="append", on_schema_change="append_new_columns",
                  checks=[not_null("id")], on_check_failure="quarantine")
    assert db.fetch_all("SELECT column_name, column_type FROM (DESCRIBE t__quarantine)") == [
        ("id", "BIGINT"), ("qty", "BIGINT"), ("_load_id", "VARCHAR"), ("_check", "VARCHAR"),
        ("_quarantined_at", "TIMESTAMP"), ("note", "VARCHAR"),
    ]
    assert db.fetch_all("SELECT qty, note FROM t__quarantine ORDER BY qty") == [(1, None), (3_000_000_000, "new column")]
    # A column missing from the data is NULL in the new quarantined rows.
    db.load_frame(pl.DataFrame({"id": [None], "note": ["no qty"]}), "t", mode="append",
                  on_schema_change="append_new_columns", checks=[not_null("id")], on_check_failure="quarantine")
    assert db.fetch_all("SELECT qty FROM t__quarantine WHERE note = 'no qty'") == [(None,)]


def test_a_change_across_kinds_is_refused_naming_the_quarantine_table(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.load_frame(pl.DataFrame({"id": [None, 1], "qty": [1, 2]}), "t", checks=[not_null("id")],
                  on_check_failure="quarantine")
    before = db.fetch_all("SELECT * FROM t__quarantine")
    text = pl.DataFrame({"id": [None, 2], "qty": ["one", "two"]})
    with pytest.raises(SchemaMismatchError) as caught:  # replace recreates t; the quarantine cannot
        db.load_frame(text, "t", mode="replace", checks=[not_null("id")], on_check_failure="quarantine")
    message = str(caught.value)
    assert 'Table "t__quarantine" column "qty" is BIGINT but the data has VARCHAR' in message
    assert "rename the quarantine table 't__quarantine' to keep it" in message
    assert db.fetch_all("SELECT id, qty FROM t") == [(1, 2)]
    assert db.fetch_all("SELECT * FROM t__quarantine") == before


def test_a_table_or_view_in_the_way_is_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.execute("CREATE TABLE orders__quarantine (note VARCHAR)")
    db.execute("CREATE VIEW items__quarantine AS SELECT 1 AS x")
    with pytest.raises(SchemaMismatchError, match=r"'orders__quarantine' exists but is not a quarantine table "
                       r"\(it has no column\(s\) \['_load_id', '_check', '_quarantined_at'\]\)"):
        db.load_frame(ORDERS, "orders", checks=CHECKS, on_check_failure="quarantine")
    with pytest.raises(SchemaMismatchError, match=r"'items__quarantine' exists but is not a quarantine table \(it is a view\)"):
        db.load_frame(ORDERS, "items", checks=CHECKS, on_check_failure="quarantine")
    assert not db.table_exists("orders") and not db.table_exists("items")
    assert db.fetch_all("SELECT count(*) FROM orders__quarantine") == [(0,)]


def test_a_name_with_no_room_for_its_quarantine_table_is_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    longest = "t" * (255 - len("__quarantine"))
    db.load_frame(ORDERS, longest, checks=CHECKS, on_check_failure="quarantine")
    assert db.fetch_all(f'SELECT count(*) FROM "{longest}__quarantine"') == [(3,)]
    with pytest.raises(InvalidIdentifierError, match="would be 256 bytes, and names over 255 bytes"):
        db.load_frame(ORDERS, "analytics." + longest + "t", checks=CHECKS, on_check_failure="quarantine")
    assert db.fetch_all("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'analytics'") == [(0,)]


def test_data_columns_named_like_the_quarantine_columns_are_refused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with pytest.raises(SchemaMismatchError, match=r"The data has column\(s\) \['_Check'\], which the quarantine table"):
        db.load_frame(ORDERS.with_columns(_Check=pl.lit("x")), "orders", checks=CHECKS, on_check_failure="quarantine")
    assert not db.table_exists("orders")
    # With the default, such a column is just data.
    db.load_frame(ORDERS.with_columns(_Check=pl.lit("x")), "orders")


def test_a_check_that_cannot_run_is_named(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with pytest.raises(DataCheckError, match=r"Check 'qtty > 0' could not run on the data: .*qtty"):
        db.load_frame(ORDERS, "orders", checks=["qtty > 0"], on_check_failure="quarantine")
    assert not db.table_exists("orders")


# ---------------------------------------------------------------------- property
def _reference(frame: pl.DataFrame, checks: list[str]) -> pl.Series:
    """The first failing check of each row, by a plain-Polars model (None: passes)."""
    fails = {
        "not_null(id)": pl.col("id").is_null(),
        "accepted_values(status, ['a', 'b'])": pl.col("status").is_not_null() & ~pl.col("status").is_in(["a", "b"]),
        "qty >= 0": pl.col("qty").is_not_null() & (pl.col("qty") < 0),
        "unique(id)": pl.col("id").is_not_null() & (pl.len().over("id") > 1),
    }
    expression = pl.lit(None, dtype=pl.String)
    for name in reversed(checks):
        expression = pl.when(fails[name].fill_null(False)).then(pl.lit(name)).otherwise(expression)
    return frame.with_columns(expression.alias("_check")).get_column("_check")


_BUILT = {
    "not_null(id)": not_null("id"),
    "accepted_values(status, ['a', 'b'])": accepted_values("status", ["a", "b"]),
    "qty >= 0": "qty >= 0",
    "unique(id)": unique("id"),
}
_FRAMES = dataframes(
    cols=[
        column("id", dtype=pl.Int64, strategy=st.integers(0, 6)),
        column("status", dtype=pl.String, strategy=st.sampled_from(["a", "b", "c", ""])),
        column("qty", dtype=pl.Int32, strategy=st.integers(-3, 3)),
    ],
    max_size=25, allow_null=True,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    frame=_FRAMES,
    mode=st.sampled_from(STRATEGIES),
    existing=st.booleans(),
    picked=st.lists(st.sampled_from(sorted(_BUILT)), unique=True, max_size=4),
)
def test_published_plus_quarantined_is_the_input_each_row_once(
    data: st.DataObject, frame: pl.DataFrame, mode: str, existing: bool, picked: list[str]
) -> None:
    # Any further columns of any of these dtypes ride along, and must come back untouched.
    extra = data.draw(dataframes(
        min_cols=0, max_cols=2, min_size=frame.height, max_size=frame.height,
        allowed_dtypes=[pl.Boolean, pl.Float64, pl.Date, pl.Datetime("us"), pl.List(pl.Int16), pl.Binary],
    ))
    if extra.width:
        frame = pl.concat([frame, extra.rename({c: f"x_{c}" for c in extra.columns})], how="horizontal")
    if mode in ("upsert", "insert-only", "scd2"):  # keys must be unique and present per load
        picked = [*picked, *(c for c in ("not_null(id)", "unique(id)") if c not in picked)]
    con = duckdb.connect()
    if existing:
        run_load(con, frame.clear(), "t", LoadOptions(mode="scd2" if mode == "scd2" else "replace",
                                                      keys="id" if mode == "scd2" else None))
    keys = None if mode in ("replace", "append") else "id"
    options = LoadOptions(mode=mode, keys=keys, checks=[_BUILT[c] for c in picked], on_check_failure="quarantine")
    result = run_load(con, frame, "t", options)
    expected = _reference(frame, picked)
    assert result.quarantined == expected.is_not_null().sum()
    con.register("input", frame.with_columns(expected).to_arrow())
    names = ", ".join(f'"{c}"' for c in frame.columns)
    quarantine = f"SELECT {names}, _check FROM t__quarantine" if result.quarantined else f"SELECT {names}, NULL FROM input LIMIT 0"
    published = f"SELECT {names}, NULL::VARCHAR FROM t"
    # Both ways round, as multisets (EXCEPT ALL keeps duplicates; NULLs compare equal here).
    both = f"({published}) UNION ALL ({quarantine})"
    assert con.sql(f"SELECT count(*) FROM (({both}) EXCEPT ALL (SELECT {names}, _check FROM input))").fetchall() == [(0,)]
    assert con.sql(f"SELECT count(*) FROM ((SELECT {names}, _check FROM input) EXCEPT ALL ({both}))").fetchall() == [(0,)]


# ---------------------------------------------------------------------- a crash
_LOOP = textwrap.dedent(
    """
    import sys
    import polars as pl
    from prefect_etl_blocks import DuckDBConnection
    from prefect_etl_blocks.checks import not_null
    path, rows = sys.argv[1], int(sys.argv[2])
    db = DuckDBConnection(database=path)
    keys = pl.int_range(0, rows, eager=True)
    def batch(i):  # every tenth id is NULL: a tenth of each load goes to quarantine
        frame = pl.DataFrame({"k": keys + i * rows, "v": pl.repeat(i, rows, eager=True)})
        return frame.with_columns(id=pl.when(pl.col("k") % 10 == 0).then(None).otherwise(pl.col("k")))
    i = db.fetch_one("SELECT max(v) + 1 FROM t")[0] if db.table_exists("t") else 0  # after a kill
    db.load_frame(batch(i), "t", mode="append", checks=[not_null("id")], on_check_failure="quarantine")
    print("ready", flush=True)
    i += 1
    while True:
        db.load_frame(batch(i).lazy(), "t", mode="append", checks=[not_null("id")], on_check_failure="quarantine")
        i += 1
    """
)


@pytest.mark.timeout(180)
def test_sigkill_inside_quarantining_loads_leaves_both_tables_whole(tmp_path: Path) -> None:
    rows = 100_000
    path = str(tmp_path / "crash.duckdb")
    rng = random.Random("quarantine")
    for _ in range(2):
        kill_while_loading([_LOOP, path, str(rows)], rng.uniform(0.2, 1.5))
        db = DuckDBConnection(database=path)
        published = db.fetch_all("SELECT v, count(*) FROM t GROUP BY v ORDER BY v")
        quarantined = db.fetch_all("SELECT v, count(*) FROM t__quarantine GROUP BY v ORDER BY v")
        # Each committed load is whole in both tables, and no load is in one table only.
        assert [v for v, _ in published] == [v for v, _ in quarantined] == list(range(len(published)))
        assert {n for _, n in published} == {rows - rows // 10} and {n for _, n in quarantined} == {rows // 10}
        ledger = db.fetch_all("SELECT count(*), sum(quarantined) FROM _prefect_etl.loads")
        assert ledger == [(len(published), len(published) * (rows // 10))]
        assert db.fetch_one("SELECT count(DISTINCT _load_id) FROM t__quarantine")[0] == len(published)
        assert db.fetch_all(
            "SELECT table_name FROM duckdb_tables() WHERE table_name NOT IN ('t', 't__quarantine') "
            "AND schema_name <> '_prefect_etl'"
        ) == []
        db.close()


# ---------------------------------------------------------------------- the CLI
def test_history_shows_the_quarantined_rows_when_there_are_any(tmp_path: Path) -> None:
    db = _db(tmp_path)
    db.load_frame(ORDERS, "orders")
    plain = history_lines(db.load_history(), width=100)
    assert plain[0].split()[-1] == "new" and "quarantined" not in plain[0]
    db.load_frame(ORDERS, "orders", mode="append", checks=CHECKS, on_check_failure="quarantine")
    lines = history_lines(db.load_history(), width=100)
    assert lines[0].split()[-1] == "quarantined"
    assert [line.split()[-1] for line in lines[1:3]] == ["0", "3"]
    assert max(len(line) for line in history_lines(db.load_history(), width=50)) <= 50


# ---------------------------------------------------------------------- in a Prefect run
def test_in_a_run_the_load_publishes_its_quarantine_artifact_and_event(tmp_path: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from prefect_etl_blocks.lineage import SUCCEEDED, asset_key
    from prefect_etl_blocks.runtime.quarantine_artifact import cell
    from prefect_etl_blocks.tasks import load_to_duckdb
    from tests.test_lineage import _events

    db = _db(tmp_path, f"w_{uuid.uuid4().hex[:8]}.duckdb")  # an asset key no other test's loads share
    hostile = ORDERS.with_columns(status=pl.Series(["new", "<img src=x onerror=alert(1)>|`x`\n#", "paid", "paid", "new"]))
    many = pl.DataFrame({"id": [None] * 25, "status": ["new"] * 25, "qty": list(range(25))})

    @flow
    def nightly() -> tuple[str, str]:
        task_load = load_to_duckdb(hostile, "orders", db, checks=CHECKS, on_check_failure="quarantine", return_result=True)
        block_load = db.load_frame(many, "analytics.stock", checks=CHECKS, on_check_failure="quarantine", return_result=True)
        return task_load.load_id, block_load.load_id

    first, second = nightly()
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a.data for a in client.read_latest_artifacts()}
    report = artifacts["duckdb-quarantine-orders"]
    assert "# Quarantined 3 row(s) into orders\\_\\_quarantine" in report and f"`_load_id = '{first}'`" in report
    assert f"| {cell(STATUS_CHECK)} | 1 |" in report and cell(STATUS_CHECK).startswith("accepted\\_values\\(")
    # The refused values are shown inert: no tag opens, no cell or line breaks.
    assert "<img" not in report and "&lt;img src=x onerror=alert\\(1\\)>\\|\\`x\\` \\#" in report
    assert "**Quarantined:** 3 row(s) into orders\\_\\_quarantine" in artifacts["duckdb-load-orders"]
    # A block load in the flow publishes one too, with at most 10 sample rows.
    stock = artifacts["duckdb-quarantine-analytics-stock"]
    assert "## Sample (10 of 25 rows)" in stock and stock.count("| not\\_null\\(id\\) |") == 11
    events = _events(asset_key(db.database_path, "orders"), SUCCEEDED, 1)
    assert [e.payload["quarantined"] for e in events] == [3] and events[0].payload["load_id"] == first
    assert db.load_history("analytics.stock")["load_id"].to_list() == [second]


# ---------------------------------------------------------------------- DuckLake
@pytest.fixture
def lake(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh DuckLake on a PostgreSQL catalog (the fixtures of tests/fixtures/postgres.py)."""
    from prefect_etl_blocks.ducklake import DuckLakeConnection

    pg_server = request.getfixturevalue("pg_server")
    database = request.getfixturevalue("pg_database")
    return DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(database)}", data_path=str(tmp_path / "data"),
                              lock_timeout_seconds=60)


@pytest.mark.ducklake
@pytest.mark.timeout(300)
def test_on_a_lake_both_tables_commit_in_one_snapshot_and_a_conflict_reruns_it(lake) -> None:
    from tests.test_ducklake import _CommitsFirst, other

    before = lake.current_snapshot()
    result = lake.load_frame(ORDERS, "sales.orders", checks=CHECKS, on_check_failure="quarantine", return_result=True)
    assert (result.inserted, result.quarantined) == (2, 3)
    assert lake.current_snapshot() == before + 1  # the table, its quarantine and the ledger row
    assert _rows(lake, "SELECT id, _check FROM sales.orders__quarantine") == sorted(
        [(2, STATUS_CHECK), (None, "not_null(id)"), (4, "qty >= 0")], key=repr
    )
    assert lake.load_history("sales.orders")["quarantined"].to_list() == [3]
    # A table-level failure keeps nothing, in either table.
    with pytest.raises(DataCheckError, match=r"row_count\(min=100\)"):
        lake.load_frame(ORDERS, "sales.orders", mode="append", checks=[*CHECKS, row_count(min=100)],
                        on_check_failure="quarantine")
    assert lake.current_snapshot() == before + 1
    # A commit that conflicts runs again from the start: its rows are quarantined once.
    lake.load_frame(pl.DataFrame({"day": ["d0", "d1"], "qty": [1, 2]}), "daily")
    rival = _CommitsFirst(other(lake))
    again = lake.load_frame(pl.DataFrame({"day": ["d1", None], "qty": [9, 8]}), "daily", mode="delete-insert",
                            keys="day", checks=[not_null("day"), rival], on_check_failure="quarantine",
                            return_result=True)
    assert lake.last_load_attempts == 2 and rival.runs == 2 and again.quarantined == 1
    assert lake.fetch_all("SELECT day, qty FROM daily ORDER BY day") == [("d1", 9)]
    assert lake.fetch_all("SELECT day, qty, _load_id FROM daily__quarantine") == [(None, 8, again.load_id)]
