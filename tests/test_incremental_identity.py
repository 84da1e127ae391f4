"""Issue 19, parts 1 and 4: one identity for each thing an incremental load remembers.

* A file is its resolved absolute path (``./``, ``..``, a trailing ``/``, a glob, symlinks and
  the working directory do not matter) or its ``s3://bucket/key``.
* A table is its catalog, schema and name as DuckDB resolves them: ``t``, ``main.t``, ``"t"``
  and ``w.main.t`` are one table; two databases' ``main.t`` are two.
* State written by the previous version under the old keys (table and path spellings as
  typed) is migrated on first use: nothing loads twice after an upgrade.
* ``content_check`` switched on or off never makes an unchanged file "changed".
* Processes running the same load into a new table on a DuckDB file all succeed, rows once.
* A hypothesis property: any sequence of loads under any spellings, from any working
  directory, ends with each file's rows once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.loading import history, ledger
from prefect_etl_blocks.loading.incremental import (
    LINEAGE_COLUMN,
    load_cursor,
    load_new_files,
    reset_incremental,
)
from prefect_etl_blocks.parquet import s3_identity
from tests.fixtures.races import KINDS, race

ROWS = 5


def write(path: Path, first_id: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": range(first_id, first_id + ROWS), "v": [first_id] * ROWS}).write_parquet(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``root/data`` with two files of five rows each, and ``root/w.duckdb`` to load into."""
    write(tmp_path / "data" / "a.parquet", 0)
    write(tmp_path / "data" / "b.parquet", 100)
    return tmp_path


def count(con: duckdb.DuckDBPyConnection, table: str = "t") -> tuple[int, int]:
    return con.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchall()[0]


# ----------------------------------------------------------------------------- path spellings
def test_every_spelling_of_a_folder_names_the_same_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: before, each spelling loaded both files again (50 rows, not 10)."""
    monkeypatch.chdir(root)
    con = duckdb.connect(str(root / "w.duckdb"))
    for path in ["data", "./data", "data/", str(root / "data"), "data/*.parquet", "./data/../data//"]:
        result = load_new_files(con, ParquetSource(path=path), "t")
        assert result.inserted == (2 * ROWS if path == "data" else 0), path
    monkeypatch.chdir(root / "data")
    assert load_new_files(con, ParquetSource(path="."), "t").inserted == 0
    assert count(con) == (2 * ROWS, 2 * ROWS)
    recorded = con.execute("SELECT path FROM _prefect_etl.files ORDER BY 1").fetchall()
    assert recorded == [(os.path.realpath(root / "data" / n),) for n in ("a.parquet", "b.parquet")]


def test_another_working_directory_does_not_change_a_files_identity(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backfill run from one folder and a deployment run from another name the same files."""
    (root / "deploy").mkdir()
    con = duckdb.connect(str(root / "w.duckdb"))
    monkeypatch.chdir(root)
    assert load_new_files(con, ParquetSource(path="data"), "t").inserted == 2 * ROWS
    monkeypatch.chdir(root / "deploy")
    assert load_new_files(con, ParquetSource(path="../data"), "t").inserted == 0
    write(root / "data" / "c.parquet", 200)
    assert load_new_files(con, ParquetSource(path="../data/*.parquet"), "t").inserted == ROWS
    assert count(con) == (3 * ROWS, 3 * ROWS)


def test_a_symlinked_folder_names_the_same_files(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "link").symlink_to(root / "data", target_is_directory=True)
    (root / "also.parquet").symlink_to(root / "data" / "a.parquet")
    con = duckdb.connect(str(root / "w.duckdb"))
    monkeypatch.chdir(root)
    assert load_new_files(con, ParquetSource(path="link"), "t").inserted == 2 * ROWS
    assert load_new_files(con, ParquetSource(path="data"), "t").inserted == 0
    assert load_new_files(con, ParquetSource(path="also.parquet"), "t").inserted == 0
    assert count(con) == (2 * ROWS, 2 * ROWS)


def test_the_block_path_with_each_spelling_keeps_ten_rows(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's report, through the block: ``incremental=True, mode="append"``."""
    monkeypatch.chdir(root)
    db = DuckDBConnection(database=str(root / "w.duckdb"))
    for path in ["data", "./data", "data/", str(root / "data"), "data/*.parquet"]:
        db.load_parquet(ParquetSource(path=path), "t", mode="append", incremental=True)
    assert db.fetch_one("SELECT count(*) FROM t") == (2 * ROWS,)


def test_s3_identity_keeps_scheme_bucket_and_key_only() -> None:
    assert s3_identity("S3://key:secret@Bucket/raw/a.parquet?versionId=3") == "s3://bucket/raw/a.parquet"
    assert s3_identity("s3://bucket/raw/a.parquet") == "s3://bucket/raw/a.parquet"


# ----------------------------------------------------------------------------- table spellings
@pytest.mark.parametrize("spelling", ["t2", "main.t2", '"t2"', "w.main.t2", "W.Main.T2", '"w"."main"."t2"'])
def test_every_spelling_of_a_table_is_one_table(root: Path, spelling: str) -> None:
    """The issue's case: ``w.main.t2`` had a manifest of its own and loaded every file again."""
    con = duckdb.connect(str(root / "w.duckdb"))
    source = ParquetSource(path=str(root / "data"))
    assert load_new_files(con, source, "t2").inserted == 2 * ROWS
    assert load_new_files(con, source, spelling).inserted == 0
    assert count(con, "t2") == (2 * ROWS, 2 * ROWS)
    assert len(history(con, spelling)) == 2
    assert reset_incremental(con, spelling) == 2  # the manifest of both loads, whatever the spelling


def test_two_databases_main_t_are_two_tables(root: Path) -> None:
    con = duckdb.connect(str(root / "w.duckdb"))
    con.execute(f"ATTACH '{root / 'other.duckdb'}' AS other")
    source = ParquetSource(path=str(root / "data"))
    assert load_new_files(con, source, "t").inserted == 2 * ROWS
    assert load_new_files(con, source, "other.main.t").inserted == 2 * ROWS
    # `other.t` is DuckDB's catalog `other`, schema `main`: the same table again. Before, it was
    # taken as a schema `other`, found no table there, forgot the manifest and loaded it twice.
    assert load_new_files(con, source, "other.t").inserted == 0
    assert count(con, "w.main.t") == (2 * ROWS, 2 * ROWS)
    assert count(con, "other.main.t") == (2 * ROWS, 2 * ROWS)


def test_a_table_in_a_database_attached_under_another_name_keeps_its_state(root: Path) -> None:
    source = ParquetSource(path=str(root / "data"))
    with duckdb.connect(str(root / "w.duckdb")) as con:
        assert load_new_files(con, source, "w.main.t").inserted == 2 * ROWS
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{root / 'w.duckdb'}' AS renamed")
        assert load_new_files(con, source, "renamed.main.t").inserted == 0
        assert count(con, "renamed.main.t") == (2 * ROWS, 2 * ROWS)


def test_case_folds_as_duckdb_folds_it(root: Path) -> None:
    """DuckDB folds ASCII letters only ("Ä" and "ä" are two tables), and so does the key."""
    con = duckdb.connect(str(root / "w.duckdb"))
    source = ParquetSource(path=str(root / "data"))
    assert load_new_files(con, source, '"Straße"').inserted == 2 * ROWS
    assert load_new_files(con, source, "STRAßE").inserted == 0
    assert load_new_files(con, source, '"t"').inserted == 2 * ROWS
    assert load_new_files(con, source, "T").inserted == 0
    assert ledger.resolve(con, ["Ä"]).key != ledger.resolve(con, ["ä"]).key
    assert ledger.resolve(con, ["MAIN", "T"]).key == "main.t"


# ----------------------------------------------------------------------------- migration
# The state the previous version (commit b6f334f: ledger.table_key, paths as typed) wrote when
# run from `root`: `load_new_files(con, ParquetSource(path="data"), "w.main.t", content_check=False)`,
# then the same with path="./data" into "t" (a.parquet only), and
# `load_cursor(con, <ts 10, 20>, "w.main.events", cursor="ts")`. Produced by running that
# version's code and copied here as literal rows (load ids and times shortened).
OLD_STATE = """
INSERT INTO _prefect_etl.files VALUES
 ('w.main.t', 'data/a.parquet', {size_a}, '{mtime_a}', NULL, 'l1', TIMESTAMP '2026-11-30 10:00:00'),
 ('w.main.t', 'data/b.parquet', {size_b}, '{mtime_b}', NULL, 'l1', TIMESTAMP '2026-11-30 10:00:00'),
 ('main.t', './data/a.parquet', {size_a}, '{mtime_a}', NULL, 'l2', TIMESTAMP '2026-11-30 11:00:00');
INSERT INTO _prefect_etl.loads VALUES
 ('l1', 'w.main.t', 'append', 'files', 10, 0, 0, true, ['data/a.parquet', 'data/b.parquet'], [],
  NULL, NULL, NULL, [], [], NULL, NULL, TIMESTAMP '2026-11-30 10:00:00', TIMESTAMP '2026-11-30 10:00:01');
INSERT INTO _prefect_etl.cursors VALUES ('w.main.events', 'ts', '20', 'BIGINT', 'l3', TIMESTAMP '2026-11-30 12:00:00');
"""
OLD_DDL = """
CREATE SCHEMA _prefect_etl;
CREATE TABLE _prefect_etl.loads (load_id VARCHAR, table_name VARCHAR, strategy VARCHAR,
 incremental VARCHAR, inserted BIGINT, updated BIGINT, deleted BIGINT, created BOOLEAN,
 files VARCHAR[], files_deleted VARCHAR[], cursor_column VARCHAR, cursor_from VARCHAR,
 cursor_to VARCHAR, schema_changes VARCHAR[], checks VARCHAR[], flow_run_id VARCHAR,
 task_run_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE _prefect_etl.files (table_name VARCHAR, path VARCHAR, size BIGINT, version VARCHAR,
 footer_sha256 VARCHAR, load_id VARCHAR, loaded_at TIMESTAMP);
CREATE TABLE _prefect_etl.cursors (table_name VARCHAR, cursor_column VARCHAR, mark VARCHAR,
 mark_type VARCHAR, load_id VARCHAR, updated_at TIMESTAMP);
"""


def old_state(con: duckdb.DuckDBPyConnection, root: Path, lineage: bool = False) -> None:
    """The table and state exactly as the previous version left them (see OLD_STATE)."""
    stats = {n: (root / "data" / f"{n}.parquet").stat() for n in ("a", "b")}
    con.execute(OLD_DDL)
    con.execute(OLD_STATE.format(
        size_a=stats["a"].st_size, mtime_a=stats["a"].st_mtime_ns,
        size_b=stats["b"].st_size, mtime_b=stats["b"].st_mtime_ns,
    ))
    column = f", ('data/' || (CASE WHEN id < 100 THEN 'a' ELSE 'b' END) || '.parquet') AS {LINEAGE_COLUMN}"
    con.execute(
        f"CREATE TABLE t AS SELECT *{column if lineage else ''} FROM read_parquet('{root}/data/*.parquet')"
    )
    con.execute("CREATE TABLE events AS SELECT 20::BIGINT AS ts")


def test_state_written_by_the_previous_version_is_migrated_and_nothing_loads_twice(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)
    con = duckdb.connect(str(root / "w.duckdb"))
    old_state(con, root)
    result = load_new_files(con, ParquetSource(path="data"), "t")
    assert (result.inserted, result.files) == (0, ())
    assert count(con) == (2 * ROWS, 2 * ROWS)
    files = con.execute("SELECT table_name, path FROM _prefect_etl.files ORDER BY path").fetchall()
    assert files == [("main.t", os.path.realpath(root / "data" / n)) for n in ("a.parquet", "b.parquet")]
    assert history(con, "t")["load_id"].to_list()[0] == "l1"  # the old ledger row is the table's
    # The cursor mark recorded under the old key holds too: rows at or below it do not load.
    load_cursor(con, pl.DataFrame({"ts": [10, 20, 30]}), "events", cursor="ts")
    assert con.execute("SELECT ts FROM events ORDER BY ts").fetchall() == [(20,), (30,)]


def test_old_lineage_values_follow_the_migrated_paths(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a lineage column the rows of a changed file are found by it: after the upgrade a
    rewritten file replaces its rows instead of adding a second copy."""
    monkeypatch.chdir(root)
    con = duckdb.connect(str(root / "w.duckdb"))
    old_state(con, root, lineage=True)
    write(root / "data" / "a.parquet", 0)  # rewritten: new mtime
    result = load_new_files(con, ParquetSource(path="./data"), "t")
    assert (result.inserted, result.deleted) == (ROWS, ROWS)
    assert count(con) == (2 * ROWS, 2 * ROWS)
    lineage = con.execute(f"SELECT DISTINCT {LINEAGE_COLUMN} FROM t ORDER BY 1").fetchall()
    assert lineage == [(os.path.realpath(root / "data" / n),) for n in ("a.parquet", "b.parquet")]


# ----------------------------------------------------------------------------- content_check
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("lineage", [None, LINEAGE_COLUMN])
def test_changing_content_check_never_makes_an_unchanged_file_changed(
    root: Path, first: bool, lineage: str | None
) -> None:
    """Before: with a lineage column every file was deleted and read again; without one the
    load failed with '2 file(s) ... changed since'."""
    con = duckdb.connect(str(root / "w.duckdb"))
    source = ParquetSource(path=str(root / "data"))
    assert load_new_files(con, source, "t", content_check=first, lineage_column=lineage).inserted == 2 * ROWS
    result = load_new_files(con, source, "t", content_check=not first)
    assert (result.inserted, result.deleted, result.files) == (0, 0, ())
    assert load_new_files(con, source, "t", content_check=first).inserted == 0
    assert count(con) == (2 * ROWS, 2 * ROWS)


def test_a_footer_recorded_later_still_catches_a_same_size_same_mtime_rewrite(root: Path) -> None:
    con = duckdb.connect(str(root / "w.duckdb"))
    source = ParquetSource(path=str(root / "data"))
    load_new_files(con, source, "t", content_check=False)
    load_new_files(con, source, "t")  # records the footers of the unchanged files
    path = root / "data" / "a.parquet"
    stat = path.stat()
    pl.DataFrame({"id": range(50, 50 + ROWS), "v": [7] * ROWS}).write_parquet(path)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(LoadConfigError, match="changed since"):
        load_new_files(con, source, "t")


# ----------------------------------------------------------------------------- processes
PROCESSES, FILES = 4, 40


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", KINDS)
def test_processes_running_the_same_load_on_a_new_file_table_all_succeed(tmp_path: Path, kind: str) -> None:
    for f in range(FILES):
        write(tmp_path / "data" / f"part-{f:03}.parquet", f * ROWS)
    database = str(tmp_path / "w.duckdb")
    block = DuckDBConnection(database=database, lock_timeout_seconds=120)
    outcome = race(block, kind, str(tmp_path / "data"), table="raw", cursor="id", processes=PROCESSES)
    assert outcome == {w: "ok" for w in range(PROCESSES)}
    with duckdb.connect(database) as con:
        assert count(con, "raw") == (FILES * ROWS, FILES * ROWS)


# ----------------------------------------------------------------------------- the property
CWDS = ("", "data", "sub", "sub/deeper")
TABLES = ("t", "main.t", '"t"', "w.main.t", "T", '"W"."MAIN"."T"', "w.t")


def folder_spellings(root: Path, cwd: str) -> list[str]:
    """Ways to name ``root/data`` (or its files) from ``root/cwd``."""
    rel = os.path.relpath(root / "data", root / cwd)
    return [
        rel, rel + "/", f"./{rel}", f"{rel}/*.parquet", f"{rel}//", str(root / "data"),
        f"{os.path.relpath(root / 'link', root / cwd)}", f"{os.path.relpath(root / 'sub', root / cwd)}/../data",
        f"{os.path.relpath(root / 'sub' / 'up', root / cwd)}/data", "~/" + os.path.relpath(root / "data", Path.home()),
    ]


step = st.tuples(
    st.sampled_from(CWDS), st.integers(0, 9), st.sampled_from(TABLES), st.booleans(), st.booleans()
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=6), lineage=st.booleans())
def test_property_any_spelling_from_any_directory_loads_each_file_once(steps: list, lineage: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(os.path.realpath(tmp))
        write(root / "data" / "f0.parquet", 0)
        (root / "sub" / "deeper").mkdir(parents=True)
        (root / "link").symlink_to(root / "data", target_is_directory=True)
        (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # sub/up/data is data
        files = 1
        with duckdb.connect(str(root / "w.duckdb")) as con:
            for cwd, spelling, table, add_file, content_check in steps:
                if add_file:
                    write(root / "data" / f"f{files}.parquet", files * 1000)
                    files += 1
                mp.chdir(root / cwd)
                path = folder_spellings(root, cwd)[spelling]
                load_new_files(
                    con, ParquetSource(path=path), table, content_check=content_check,
                    lineage_column=LINEAGE_COLUMN if lineage else None,
                )
            assert count(con, "w.main.t") == (files * ROWS, files * ROWS), steps
