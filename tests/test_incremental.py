"""Incremental loads, exactly once: file manifests and cursors kept with the data.

* File-incremental ``load_parquet(..., incremental=True)``: only new files are read, a rewritten
  file replaces its rows, a vanished file is kept or deleted, a run with nothing new reads no
  data; local folders, globs, hive layouts and ``s3://`` (moto over HTTP).
* A hypothesis property over random file events (add, rewrite, delete, nothing) and runs: the
  table always equals a plain-Polars reference built from the files on disk.
* Runs killed by SIGKILL at random moments and then re-run, and two processes loading at once:
  no row is missing or duplicated.
* Cursor loads (``cursor=``, ``initial_value``, ``lag``, ``keys``) against a reference model
  with random arrivals, late rows and duplicate boundary rows.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.loading.incremental import LINEAGE_COLUMN

LIN = LINEAGE_COLUMN


def _write(path: Path, ids: list[int], tag: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": ids, "v": [tag] * len(ids)}, schema={"id": pl.Int64, "v": pl.Int64}).write_parquet(path)


def _reference(files: list[Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(f).with_columns(pl.lit(str(f)).alias(LIN)) for f in files]
    empty = pl.DataFrame(schema={"id": pl.Int64, "v": pl.Int64, LIN: pl.String})
    return pl.concat([empty, *frames]).sort(["id", "v", LIN])


def _table(db: DuckDBConnection, table: str = "raw") -> pl.DataFrame:
    if not db.table_exists(table):
        return pl.DataFrame(schema={"id": pl.Int64, "v": pl.Int64, LIN: pl.String})
    return db.query(f'SELECT id, v, "{LIN}" FROM {table}').sort(["id", "v", LIN])


def _current(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


# ----------------------------------------------------------------------------- files: basics
def test_only_new_files_load_and_a_rerun_loads_nothing(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1, 2], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    first = db.load_parquet(source, "raw", incremental=True, lineage_column=LIN, return_result=True)
    assert (first.mode, first.inserted, first.files) == ("append", 2, (str(data / "a.parquet"),))
    assert db.load_parquet(source, "raw", incremental=True) == 0
    _write(data / "b.parquet", [3], 0)
    again = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert (again.inserted, again.files) == (1, (str(data / "b.parquet"),))
    assert _table(db).equals(_reference(_current(data)))
    # Asked for at creation, the lineage column is the table's last; later loads keep it unasked.
    assert db.query("SELECT * FROM raw LIMIT 0").columns == ["id", "v", LIN]


def test_by_default_the_table_holds_only_the_source_columns(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1, 2], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    assert db.load_parquet(source, "raw", incremental=True) == 2
    _write(data / "b.parquet", [3], 0)
    assert db.load_parquet(source, "raw", incremental=True) == 1
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert db.query("SELECT * FROM raw ORDER BY id").rows() == [(1, 0), (2, 0), (3, 0)]
    assert db.load_history("raw")["files"].to_list() == [[str(data / "a.parquet")], [str(data / "b.parquet")], []]


def test_a_rewritten_file_replaces_its_rows_and_a_deleted_file_is_kept_or_deleted(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1, 2], 0)
    _write(data / "b.parquet", [3], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    db.load_parquet(source, "raw", incremental=True, lineage_column=LIN)
    _write(data / "a.parquet", [1, 2, 7], 1)
    result = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert (result.inserted, result.deleted, result.files_deleted) == (3, 2, (str(data / "a.parquet"),))
    assert _table(db).equals(_reference(_current(data)))
    (data / "b.parquet").unlink()
    kept = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert (kept.inserted, kept.deleted) == (0, 0)
    assert _table(db).height == 4  # b's row stays by default
    deleted = db.load_parquet(source, "raw", incremental=True, on_missing_file="delete", return_result=True)
    assert (deleted.deleted, deleted.files_deleted) == (1, (str(data / "b.parquet"),))
    assert _table(db).equals(_reference(_current(data)))


def test_a_same_size_same_mtime_rewrite_is_caught_by_the_footer(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1, 2, 3], 5)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    db.load_parquet(source, "raw", incremental=True, lineage_column=LIN)
    stat = os.stat(data / "a.parquet")
    _write(data / "a.parquet", [4, 5, 6], 5)  # same layout, other statistics
    os.utime(data / "a.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(data / "a.parquet").st_size == stat.st_size
    result = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert (result.inserted, result.deleted) == (3, 3)
    assert _table(db)["id"].to_list() == [4, 5, 6]


def test_nothing_new_reads_no_parquet_data(tmp_path: Path) -> None:
    """The no-op run must not scan data: a file whose data pages are corrupted behind an
    intact footer (same size and mtime) would fail any read of its rows."""
    data = tmp_path / "in"
    path = data / "a.parquet"
    data.mkdir()
    pl.DataFrame({"id": range(50_000), "v": range(50_000)}).write_parquet(path, compression="uncompressed")
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    assert db.load_parquet(source, "raw", incremental=True) == 50_000
    stat = os.stat(path)
    raw = bytearray(path.read_bytes())
    raw[4:200_004] = b"\xff" * 200_000  # data pages, far from the footer at the end
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(pl.exceptions.ComputeError):  # the file really is unreadable now
        pl.read_parquet(path)
    with pytest.raises(duckdb.Error):
        duckdb.sql(f"SELECT sum(id) FROM read_parquet('{path}')").fetchall()
    started = time.perf_counter()
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert time.perf_counter() - started < 5
    assert db.fetch_one("SELECT count(*) FROM raw")[0] == 50_000


def test_glob_and_hive_layouts(tmp_path: Path) -> None:
    data = tmp_path / "hive"
    _write(data / "year=2024" / "p.parquet", [1], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    assert db.load_parquet(source, "raw", incremental=True) == 1
    _write(data / "year=2025" / "p.parquet", [2, 3], 0)
    result = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert result.files == (str(data / "year=2025" / "p.parquet"),)
    rows = db.query("SELECT id, year FROM raw ORDER BY id").rows()
    assert [(i, int(y)) for i, y in rows] == [(1, 2024), (2, 2025), (3, 2025)]

    flat = tmp_path / "flat"
    _write(flat / "x1.parquet", [1], 0)
    _write(flat / "skip.csv.parquet.bak", [9], 0)
    glob_source = ParquetSource(path=str(flat / "x*.parquet"))
    assert db.load_parquet(glob_source, "g", incremental=True) == 1
    _write(flat / "x2.parquet", [2], 0)
    assert db.load_parquet(glob_source, "g", incremental=True) == 1
    assert db.load_parquet(glob_source, "g", incremental=True) == 0
    assert sorted(db.query("SELECT id FROM g")["id"]) == [1, 2]


def test_s3_prefix_through_moto(tmp_path: Path, aws_credentials, s3_client, bucket: str) -> None:
    def put(key: str, ids: list[int], tag: int) -> None:
        local = tmp_path / "upload.parquet"
        _write(local, ids, tag)
        s3_client.put_object(Bucket=bucket, Key=key, Body=local.read_bytes())

    put("in/a.parquet", [1, 2], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=f"s3://{bucket}/in/", aws_credentials=aws_credentials)
    assert db.load_parquet(source, "raw", incremental=True, lineage_column=LIN) == 2
    assert db.load_parquet(source, "raw", incremental=True) == 0
    put("in/b.parquet", [3], 0)
    put("in/a.parquet", [1, 2, 4], 1)  # a new ETag
    result = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert (result.inserted, result.deleted) == (4, 2)
    assert sorted(result.files) == [f"s3://{bucket}/in/a.parquet", f"s3://{bucket}/in/b.parquet"]
    rows = db.query(f'SELECT id, v, "{LIN}" FROM raw ORDER BY id').rows()
    assert rows == [
        (1, 1, f"s3://{bucket}/in/a.parquet"), (2, 1, f"s3://{bucket}/in/a.parquet"),
        (3, 0, f"s3://{bucket}/in/b.parquet"), (4, 1, f"s3://{bucket}/in/a.parquet"),
    ]
    s3_client.delete_object(Bucket=bucket, Key="in/b.parquet")
    assert db.load_parquet(source, "raw", incremental=True, on_missing_file="delete", return_result=True).deleted == 1


def test_refusals_leave_everything_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    with pytest.raises(LoadConfigError, match="replace would"):
        db.load_parquet(source, "raw", mode="replace", incremental=True)
    with pytest.raises(LoadConfigError, match="not both"):
        db.load_parquet(source, "raw", incremental=True, cursor="id")
    with pytest.raises(LoadConfigError, match="simple column name"):
        db.load_parquet(source, "raw", incremental=True, lineage_column='x"; DROP')
    with pytest.raises(LoadConfigError, match="needs a lineage column"):
        db.load_parquet(source, "plain", incremental=True, on_missing_file="delete")
    db.load_parquet(source, "plain", incremental=True)
    assert db.query("SELECT * FROM plain").columns == ["id", "v"]  # lineage is opt-in
    _write(data / "a.parquet", [1, 2], 3)
    with pytest.raises(LoadConfigError, match="has no lineage column") as refused:
        db.load_parquet(source, "plain", incremental=True)
    assert "would duplicate rows" in str(refused.value) and "lineage_column='_prefect_etl_file'" in str(refused.value)
    with pytest.raises(LoadConfigError, match="already holds files loaded without that column"):
        db.load_parquet(source, "plain", incremental=True, lineage_column=LIN, on_schema_change="append_new_columns")
    assert db.query("SELECT * FROM plain").rows() == [(1, 0)]
    assert db.load_history("plain").height == 1  # the refused load left no ledger row


def test_a_dropped_table_starts_over_and_reset_incremental_forgets(tmp_path: Path) -> None:
    data = tmp_path / "in"
    _write(data / "a.parquet", [1], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))
    db.load_parquet(source, "raw", incremental=True)
    db.execute("DROP TABLE raw")
    assert db.load_parquet(source, "raw", incremental=True) == 1  # not "nothing new"
    assert db.reset_incremental("raw") == 1
    assert db.load_parquet(source, "raw", incremental=True) == 1  # reloaded, as warned
    assert db.fetch_one("SELECT count(*) FROM raw")[0] == 2


# ----------------------------------------------------------------------------- files: property
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5)),
        st.tuples(st.just("rewrite"), st.integers(0, 20), st.integers(0, 5)),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("run")),
    ),
    min_size=1,
    max_size=12,
)


class _Files:
    """The folder the property test mutates; ids are unique across every write."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.next_id = 0
        self.next_name = 0

    def _ids(self, n: int) -> list[int]:
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n + 1
        return ids

    def apply(self, event: tuple) -> None:
        files = _current(self.folder)
        if event[0] == "add":
            _write(self.folder / f"f{self.next_name:03}.parquet", self._ids(event[1]), self.next_name)
            self.next_name += 1
        elif event[0] == "rewrite" and files:
            _write(files[event[1] % len(files)], self._ids(event[2]), self.next_id)
        elif event[0] == "delete" and files:
            files[event[1] % len(files)].unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_property_table_equals_the_files_on_disk(tmp_path_factory: pytest.TempPathFactory, events: list) -> None:
    root = tmp_path_factory.mktemp("prop")
    folder = root / "in"
    folder.mkdir()
    files = _Files(folder)
    _write(folder / "seed.parquet", [-1], -1)
    db = DuckDBConnection(database=str(root / "wh.duckdb"))
    source = ParquetSource(path=str(folder / "*.parquet"), hive_partitioning=False)
    for event in [*events, ("run",)]:
        if event[0] == "run":
            if not _current(folder):
                continue  # an empty folder is an error (SourceNotFoundError), not "nothing new"
            db.load_parquet(source, "raw", incremental=True, lineage_column=LIN, on_missing_file="delete")
            assert _table(db).equals(_reference(_current(folder)))
        else:
            files.apply(event)
    ledger = db.load_history("raw")
    assert ledger["incremental"].to_list() == ["files"] * ledger.height


# ----------------------------------------------------------------------------- files: crashes
_CHILD = textwrap.dedent(
    """
    import sys
    from prefect_etl_blocks import DuckDBConnection, ParquetSource
    db = DuckDBConnection(database=sys.argv[1])
    source = ParquetSource(path=sys.argv[2], hive_partitioning=False)
    print("ready", flush=True)
    for line in sys.stdin:
        db.load_parquet(source, "raw", incremental=True, lineage_column="_prefect_etl_file", on_missing_file="delete")
        print("done", flush=True)
    """
)


def _child(db_path: Path, pattern: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db_path), pattern],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _write_big(path: Path, start: int, rows: int, tag: int) -> None:
    pl.DataFrame({"id": pl.int_range(start, start + rows, eager=True), "v": pl.repeat(tag, rows, eager=True, dtype=pl.Int64)}).write_parquet(path)


def test_runs_killed_at_random_points_then_rerun_give_every_row_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("PETL_CRASH_SEED", "12")))
    folder = tmp_path / "in"
    folder.mkdir()
    pattern = str(folder / "*.parquet")
    db_path = tmp_path / "wh.duckdb"
    db = DuckDBConnection(database=str(db_path))
    rows, next_id, killed_mid_load = 150_000, 0, 0
    _write_big(folder / "f000.parquet", 0, rows, 0)
    next_id = rows
    proc = _child(db_path, pattern)
    # How long a load of one new file takes here, to aim the kills inside it.
    proc.stdin.write("go\n")
    proc.stdin.flush()
    t0 = time.perf_counter()
    assert proc.stdout.readline().strip() == "done"
    span = time.perf_counter() - t0
    try:
        for round_ in range(1, 7):
            before = _reference(_current(folder))
            action = rng.choice(["add", "add", "rewrite", "delete"])
            existing = _current(folder)
            if action == "add" or len(existing) < 2:
                _write_big(folder / f"f{round_:03}.parquet", next_id, rows, round_)
            elif action == "rewrite":
                _write_big(rng.choice(existing), next_id, rows, round_)
            else:
                rng.choice(existing).unlink()
            next_id += rows
            after = _reference(_current(folder))
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(rng.uniform(0, span * 1.2))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Atomic: exactly the old or the new state, never a mix.
            now = _table(db)
            assert now.equals(before) or now.equals(after), f"round {round_}: partial load"
            killed_mid_load += int(now.equals(before) and not finished)
            db.load_parquet(ParquetSource(path=pattern, hive_partitioning=False), "raw",
                            incremental=True, lineage_column=LIN, on_missing_file="delete")
            assert _table(db).equals(after)
            assert db.fetch_all("SELECT count(*) FROM duckdb_tables() WHERE temporary") == [(0,)]
            proc = _child(db_path, pattern)
    finally:
        proc.kill()
        proc.wait()
    assert killed_mid_load >= 1  # at least one kill landed before the commit


_RACE = textwrap.dedent(
    """
    import sys
    from prefect_etl_blocks import DuckDBConnection, ParquetSource
    db = DuckDBConnection(database=sys.argv[1], lock_timeout_seconds=120)
    r = db.load_parquet(ParquetSource(path=sys.argv[2]), "raw", incremental=True, return_result=True)
    print(len(r.files), flush=True)
    """
)


def test_two_processes_loading_at_once_load_each_file_once(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(20):
        _write_big(folder / f"f{i:03}.parquet", i * 20_000, 20_000, i)
    db_path = tmp_path / "wh.duckdb"
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(db_path), str(folder)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = sorted(int(p.communicate(timeout=120)[0].strip()) for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert counts == [0, 20]
    db = DuckDBConnection(database=str(db_path))
    assert db.fetch_one("SELECT count(*), count(DISTINCT id) FROM raw") == (400_000, 400_000)
    files = db.load_history("raw")["files"].explode().drop_nulls()
    assert files.len() == files.n_unique() == 20


# ----------------------------------------------------------------------------- cursors
def test_cursor_append_loads_only_rows_past_the_mark(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    t = dt.datetime(2026, 1, 1)
    batch = pl.DataFrame({"id": [1, 2, 3], "updated_at": [t, t + dt.timedelta(hours=1), t + dt.timedelta(hours=2)]})
    first = db.load_frame(batch, "ev", cursor="updated_at", initial_value=t, return_result=True)
    assert (first.inserted, first.cursor) == (2, ("updated_at", str(t), "2026-01-01 02:00:00"))
    again = db.load_frame(batch, "ev", cursor="updated_at", return_result=True)
    assert again.inserted == 0 and again.cursor[1:] == ("2026-01-01 02:00:00", "2026-01-01 02:00:00")
    assert db.fetch_one("SELECT count(*) FROM ev")[0] == 2
    history = db.load_history("ev")
    assert history["cursor_to"].to_list() == ["2026-01-01 02:00:00"] * 2


def test_cursor_with_keys_deduplicates_the_boundary_and_lag_catches_late_rows(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    db.load_frame(pl.DataFrame({"id": [1, 2], "ts": [10, 20], "v": ["a", "b"]}), "ev", cursor="ts", keys="id", lag=5)
    boundary = db.load_frame(
        pl.DataFrame({"id": [2, 3, 4, 5], "ts": [20, 30, 17, 3], "v": ["b", "c", "late", "too-late"]}),
        "ev", cursor="ts", keys="id", lag=5, return_result=True,
    )
    assert (boundary.inserted, boundary.updated) == (2, 1)  # 3 and the late 4 (17 >= 20 - 5)
    assert db.query("SELECT id, ts, v FROM ev ORDER BY id").rows() == [
        (1, 10, "a"), (2, 20, "b"), (3, 30, "c"), (4, 17, "late"),
    ]
    with pytest.raises(LoadConfigError, match="needs keys|would duplicate"):
        db.load_frame(pl.DataFrame({"id": [1], "ts": [1]}), "other", cursor="ts", lag=1)
    db.load_frame(pl.DataFrame({"id": [1], "ts": [dt.date(2026, 1, 1)]}), "d", cursor="ts", keys="id")
    with pytest.raises(LoadConfigError, match="timedelta"):
        db.load_frame(pl.DataFrame({"id": [1], "ts": [dt.date(2026, 1, 1)]}), "d", cursor="ts", keys="id", lag=1)


def test_cursor_on_a_parquet_source_pushes_the_mark_into_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    frame = pl.DataFrame({"id": range(100_000), "ts": range(100_000)})
    frame.write_parquet(path, row_group_size=10_000)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(path))
    assert db.load_parquet(source, "ev", cursor="ts", initial_value=89_999) == 10_000
    pl.concat([frame, pl.DataFrame({"id": [100_000], "ts": [100_000]})]).write_parquet(path, row_group_size=10_000)
    assert db.load_parquet(source, "ev", cursor="ts") == 1
    # The predicate reaches DuckDB's Parquet reader (row groups below the mark are skipped).
    con = duckdb.connect()
    from prefect_etl_blocks.loading.staging import parquet_relation

    plan = parquet_relation(con, source, ["id", "ts"]).filter(
        duckdb.ColumnExpression("ts") > duckdb.ConstantExpression(99_999)
    ).explain()
    assert "Filters" in plan or "ts>99999" in plan.replace(" ", "")


def test_cursor_on_s3_parquet(tmp_path: Path, aws_credentials, s3_client, bucket: str) -> None:
    local = tmp_path / "e.parquet"
    pl.DataFrame({"id": [1, 2, 3], "ts": [1, 2, 3]}).write_parquet(local)
    s3_client.put_object(Bucket=bucket, Key="e/e.parquet", Body=local.read_bytes())
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=f"s3://{bucket}/e/", aws_credentials=aws_credentials)
    assert db.load_parquet(source, "ev", cursor="ts", initial_value=1) == 2
    assert db.load_parquet(source, "ev", cursor="ts") == 0


BATCHES = st.lists(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 30)), min_size=0, max_size=8),
    min_size=1, max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(batches=BATCHES, lag=st.sampled_from([None, 0, 3, 10]), initial=st.sampled_from([None, 5]))
def test_property_cursor_with_keys_matches_a_reference(batches: list, lag: int | None, initial: int | None) -> None:
    db = DuckDBConnection()  # in memory: the property is about the SQL, not the file
    mark, reference = initial, {}
    for batch in batches:
        rows = [(k, ts, k * 100 + ts) for k, ts in batch]
        frame = pl.DataFrame(rows, schema={"k": pl.Int64, "ts": pl.Int64, "v": pl.Int64}, orient="row")
        db.load_frame(frame, "ev", cursor="ts", keys="k", lag=lag, initial_value=initial)
        lower = None if mark is None else mark - (lag or 0)
        kept = [r for r in rows if lower is None or r[1] >= lower]
        latest: dict[int, tuple] = {}
        for r in kept:
            if r[0] not in latest or r[1] > latest[r[0]][1]:
                latest[r[0]] = r
        reference.update(latest)
        if kept:
            mark = max([r[1] for r in kept] + ([mark] if mark is not None else []))
        got = db.query("SELECT k, ts, v FROM ev ORDER BY k").rows() if db.table_exists("ev") else []
        assert got == sorted(reference.values())
    db.close()


@settings(max_examples=40, deadline=None)
@given(batches=BATCHES)
def test_property_cursor_append_matches_a_reference(batches: list) -> None:
    db = DuckDBConnection()
    mark, reference = None, []
    for batch in batches:
        frame = pl.DataFrame(batch, schema={"k": pl.Int64, "ts": pl.Int64}, orient="row")
        db.load_frame(frame, "ev", cursor="ts")
        kept = [r for r in batch if mark is None or r[1] > mark]
        reference += kept
        if kept:
            mark = max(r[1] for r in kept)
        got = db.query("SELECT k, ts FROM ev ORDER BY k, ts").rows() if db.table_exists("ev") else []
        assert got == sorted(reference)
    db.close()


_CURSOR_CHILD = textwrap.dedent(
    """
    import sys
    import polars as pl
    from prefect_etl_blocks import DuckDBConnection
    db = DuckDBConnection(database=sys.argv[1])
    rows = int(sys.argv[2])

    def batch(i):
        # Each batch repeats the previous batch's last rows (boundary duplicates) and brings
        # late rows within the lag, plus new ones.
        ts = pl.int_range((i - 1) * rows, (i + 1) * rows, eager=True) // 2
        return pl.DataFrame({"k": ts % (rows * 3), "ts": ts, "v": ts * 10 + i % 2})

    # One load in memory first: what a process imports on its first load (the package's names
    # are lazy) must not count in the span the parent times, or every kill lands after a
    # warm load has finished.
    DuckDBConnection().load_frame(batch(0), "warm", cursor="ts", keys="k", lag=rows // 4)
    print("ready", flush=True)
    for line in sys.stdin:
        db.load_frame(batch(int(line)), "ev", cursor="ts", keys="k", lag=rows // 4)
        print("done", flush=True)
    """
)


def _cursor_reference(batches: int, rows: int) -> list[tuple]:
    mark, table = None, {}
    for i in range(batches):
        ts = [t // 2 for t in range((i - 1) * rows, (i + 1) * rows)]
        batch = [(t % (rows * 3), t, t * 10 + i % 2) for t in ts]
        lower = None if mark is None else mark - rows // 4
        kept = [r for r in batch if lower is None or r[1] >= lower]
        latest: dict[int, tuple] = {}
        for r in kept:
            if r[0] not in latest or r[1] >= latest[r[0]][1]:
                latest[r[0]] = r
        table.update(latest)
        if kept:
            mark = max([r[1] for r in kept] + ([mark] if mark is not None else []))
    return sorted(table.values())


def test_cursor_loads_killed_at_random_points_then_rerun_give_every_row_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("PETL_CRASH_SEED", "7")))
    rows = 40_000
    db_path = tmp_path / "wh.duckdb"
    db = DuckDBConnection(database=str(db_path))

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CURSOR_CHILD, str(db_path), str(rows)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def table() -> list[tuple]:
        return db.query("SELECT k, ts, v FROM ev ORDER BY k").rows() if db.table_exists("ev") else []

    proc = start()
    proc.stdin.write("0\n")
    proc.stdin.flush()
    t0 = time.perf_counter()
    assert proc.stdout.readline().strip() == "done"
    span = time.perf_counter() - t0
    killed_mid_load = 0
    try:
        for i in range(1, 6):
            before, after = _cursor_reference(i, rows), _cursor_reference(i + 1, rows)
            proc.stdin.write(f"{i}\n")
            proc.stdin.flush()
            time.sleep(rng.uniform(0, span * 1.2))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            now = table()
            assert now == before or now == after, f"batch {i}: partial load"
            killed_mid_load += int(now == before and not finished)
            proc = start()
            proc.stdin.write(f"{i}\n")  # the retry: the same batch again
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"
            assert table() == after  # a batch that committed before the kill is not doubled
    finally:
        proc.kill()
        proc.wait()
    assert killed_mid_load >= 1


def test_load_to_duckdb_incremental_needs_a_parquet_source(tmp_path: Path) -> None:
    from prefect import flow

    from prefect_etl_blocks.tasks import load_to_duckdb

    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))

    @flow
    def nightly() -> int:
        return load_to_duckdb(pl.DataFrame({"id": [1]}), "t", db, incremental=True)

    with pytest.raises(LoadConfigError, match="ParquetSource"):
        nightly()
    assert not db.table_exists("t")


def test_async_twins_take_the_incremental_options(tmp_path: Path) -> None:
    import asyncio

    data = tmp_path / "in"
    _write(data / "a.parquet", [1, 2], 0)
    db = DuckDBConnection(database=str(tmp_path / "wh.duckdb"))
    source = ParquetSource(path=str(data))

    async def main() -> tuple[int, int, int, int]:
        first = await db.aload_parquet(source, "raw", incremental=True)
        second = await db.aload_parquet(source, "raw", incremental=True)
        cursor = await db.aload_frame(pl.DataFrame({"id": [1, 2], "ts": [1, 2]}), "ev", cursor="ts", initial_value=1)
        removed = await db.areset_incremental("raw")
        return first, second, cursor, removed

    assert asyncio.run(main()) == (2, 0, 1, 1)
