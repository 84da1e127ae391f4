"""The fast paths of issue 22 (the fixed cost of a load) keep every guarantee they shortcut.

* Listing a folder without a ``stat`` per file (``listing.local_paths``) names exactly the files
  ``list_local`` names: hidden and ``_`` files, nested and hidden folders, file and folder
  symlinks, broken symlinks, folders and FIFOs named ``*.parquet``.
* Size, mtime and footer read from one open file (``local_footer_identities``) equal what a
  ``stat`` and ``parquet_footer_sha256`` give, footers larger than the first read included.
* A file rewritten between the listing and its footer read is recorded as it was read: the next
  run neither refuses it as changed nor loads it again; one rewritten after its footer was read
  is caught by the next run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import polars as pl
import pytest

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.core import files as core_files
from prefect_etl_blocks.core.files import local_footer_identities, parquet_footer_sha256
from prefect_etl_blocks.core.listing import list_local, local_paths, unique_sorted
from prefect_etl_blocks.core.loading import file_manifest


def _parquet(path: Path, ids: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": ids}).write_parquet(path)


def _tree(root: Path) -> Path:
    """Every kind of entry a folder listing must sort out."""
    _parquet(root / "a.parquet", [1])
    _parquet(root / "sub" / "b.parquet", [2])
    _parquet(root / "sub" / "deeper" / "c.parquet", [3])
    _parquet(root / ".hidden" / "d.parquet", [4])
    _parquet(root / "sub" / ".e.parquet", [5])
    _parquet(root / "_f.parquet", [6])
    _parquet(root / "_underscored" / "g.parquet", [7])
    _parquet(root / "dir.parquet" / "h.parquet", [8])
    (root / "notes.txt").write_text("not parquet")
    (root / "upper.PARQUET").write_bytes(b"case matters")
    os.symlink(root / "sub" / "b.parquet", root / "link.parquet")
    os.symlink(root / "missing.parquet", root / "broken.parquet")
    outside = root.parent / f"{root.name}-outside"
    _parquet(outside / "i.parquet", [9])
    os.symlink(outside, root / "linked_dir")
    os.symlink(outside / "i.parquet", root / "sub" / "_hidden_link.parquet")
    os.mkfifo(root / "fifo.parquet")
    return root


def test_local_paths_name_what_list_local_names(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    expected = [f.path for f in unique_sorted(list_local(str(root)))]
    assert len(expected) == 6  # a, b (also through link.parquet), c, g, h, i (through linked_dir)
    for spelling in (str(root), str(root) + "/", str(root / "sub" / ".."), str(root / "*.parquet"),
                     str(root / "**" / "*.parquet"), str(root / "a.parquet")):
        assert local_paths(spelling) == [f.path for f in unique_sorted(list_local(spelling))], spelling
    assert local_paths(str(tmp_path / "nothing")) == []
    source = ParquetSource(path=str(root))
    assert source.list_paths() == source.files()


def test_footer_identities_come_from_one_open_file(tmp_path: Path) -> None:
    narrow = tmp_path / "narrow.parquet"
    _parquet(narrow, list(range(100)))
    wide = tmp_path / "wide.parquet"  # a footer far larger than the first read
    pl.DataFrame({f"column_{i}": [i] for i in range(600)}).write_parquet(wide)
    data = wide.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    assert length > core_files._FOOTER_READ_BYTES
    for path in (narrow, wide):
        info = path.stat()
        [(size, version, footer)] = local_footer_identities([str(path)])
        assert (size, version) == (info.st_size, str(info.st_mtime_ns))
        assert footer == parquet_footer_sha256(path)
    assert local_footer_identities([str(wide)])[0][2] == hashlib.sha256(data[-8 - length : -8]).hexdigest()


def test_a_file_rewritten_after_listing_is_recorded_as_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    _parquet(folder / "a.parquet", [1, 2])
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    assert db.load_parquet(source, "raw", incremental=True) == 2
    _parquet(folder / "b.parquet", [3])
    listed = file_manifest.listed_identities

    def rewrite_after_listing(src: object, content_check: bool) -> list[tuple]:
        # The listing has happened when the footers are read; b.parquet changes right then.
        original = core_files.local_footer_identities

        def read(paths: list[str]) -> list[tuple]:
            _parquet(folder / "b.parquet", [3, 4, 5])
            return original(paths)

        monkeypatch.setattr(file_manifest, "local_footer_identities", read)
        try:
            return listed(src, content_check)
        finally:
            monkeypatch.setattr(file_manifest, "local_footer_identities", original)

    monkeypatch.setattr(
        "prefect_etl_blocks.core.loading.incremental_files.listed_identities", rewrite_after_listing
    )
    assert db.load_parquet(source, "raw", incremental=True) == 3  # the file as it was read
    monkeypatch.undo()
    assert db.load_parquet(source, "raw", incremental=True) == 0  # not "changed", not loaded twice
    assert sorted(db.query("SELECT id FROM raw")["id"].to_list()) == [1, 2, 3, 4, 5]


def test_a_file_rewritten_after_its_footer_was_read_is_caught_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    _parquet(folder / "a.parquet", [1])
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    db.load_parquet(source, "raw", incremental=True, lineage_column="_prefect_etl_file")
    _parquet(folder / "b.parquet", [2])
    original = file_manifest.local_footer_identities

    def read_then_rewrite(paths: list[str]) -> list[tuple]:
        out = original(paths)
        _parquet(folder / "b.parquet", [2, 3])  # after its footer was hashed, before its rows are read
        return out

    monkeypatch.setattr(file_manifest, "local_footer_identities", read_then_rewrite)
    db.load_parquet(source, "raw", incremental=True)
    monkeypatch.undo()
    db.load_parquet(source, "raw", incremental=True)  # sees b.parquet changed: replaces its rows
    assert sorted(db.query("SELECT id FROM raw")["id"].to_list()) == [1, 2, 3]
    assert db.load_parquet(source, "raw", incremental=True) == 0
    con = duckdb.connect()
    assert con.sql(f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')").fetchall() == [(3,)]


def test_a_table_resolved_once_stays_in_its_catalog(tmp_path: Path) -> None:
    """The load resolves its table once and hands the answer down (ledger row, manifest): with
    two attached databases holding a ``main.t`` each, every row and every piece of state lands in
    the catalog the name was bound to."""
    other = tmp_path / "other.duckdb"
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"), init_sql=[f"ATTACH '{other}' AS other"])
    folder = tmp_path / "data"
    _parquet(folder / "a.parquet", [10, 11, 12])
    db.load_frame(pl.DataFrame({"id": [1]}), "t")
    db.load_frame(pl.DataFrame({"id": [2, 3]}), "other.t")
    db.load_frame(pl.DataFrame({"id": [4]}), "t", mode="append")
    db.load_parquet(ParquetSource(path=str(folder)), "other.files", incremental=True)
    db.load_parquet(ParquetSource(path=str(folder)), "other.files", incremental=True)  # nothing new
    with db.get_connection() as con:
        assert con.sql("SELECT count(*) FROM w.main.t").fetchall() == [(2,)]
        assert con.sql("SELECT count(*) FROM other.main.t").fetchall() == [(2,)]
        assert con.sql("SELECT table_name, inserted FROM w._prefect_etl.loads ORDER BY started_at").fetchall() == [
            ("main.t", 1), ("main.t", 1),
        ]
        assert con.sql(
            "SELECT table_name, inserted FROM other._prefect_etl.loads ORDER BY started_at"
        ).fetchall() == [("main.t", 2), ("main.files", 3), ("main.files", 0)]
        assert con.sql("SELECT table_name, count(*) FROM other._prefect_etl.files GROUP BY ALL").fetchall() == [
            ("main.files", 1),
        ]
        assert con.sql("SELECT count(*) FROM w._prefect_etl.files").fetchall() == [(0,)]


def test_an_old_ledger_gets_its_new_columns_on_the_first_load(tmp_path: Path) -> None:
    """The one catalog query also reads the ledger's width: a ledger an earlier version created
    (fewer columns) is still brought up to date by the next plain load."""
    path = str(tmp_path / "w.duckdb")
    DuckDBConnection(database=path).load_frame(pl.DataFrame({"id": [1]}), "t")
    with duckdb.connect(path) as con:
        for column in ("quarantined", "read_snapshot_id", "rollback_of"):
            con.execute(f"ALTER TABLE _prefect_etl.loads DROP COLUMN {column}")
    DuckDBConnection(database=path).load_frame(pl.DataFrame({"id": [2]}), "t", mode="append")
    with duckdb.connect(path) as con:
        columns = [c for c, in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'loads'").fetchall()]
        assert columns[-3:] == ["quarantined", "read_snapshot_id", "rollback_of"]
        assert con.execute("SELECT count(*) FROM _prefect_etl.loads").fetchall() == [(2,)]


def test_upsert_joins_on_equality_only_when_the_data_has_no_null_key() -> None:
    """Data without NULL keys is matched with ``=`` (a faster join), which then matches exactly
    what ``IS NOT DISTINCT FROM`` matches: a NULL key in the table stays apart; data with a NULL
    key still matches the table's NULL key."""
    db = DuckDBConnection()
    db.load_frame(pl.DataFrame({"id": [1, None], "v": [1, 2]}), "t")
    result = db.load_frame(pl.DataFrame({"id": [1, 3], "v": [10, 30]}), "t", mode="upsert", keys="id", return_result=True)
    assert (result.inserted, result.updated) == (1, 1)
    result = db.load_frame(pl.DataFrame({"id": [None, 4], "v": [20, 40]}), "t", mode="upsert", keys="id", return_result=True)
    assert (result.inserted, result.updated) == (1, 1)
    assert db.fetch_all("SELECT id, v FROM t ORDER BY id NULLS FIRST") == [(None, 20), (1, 10), (3, 30), (4, 40)]
