"""The fast paths of issue 22 (the fixed cost of a load) keep every guarantee they shortcut.

* Listing a folder without a ``stat`` per file (``listing.local_paths``) names exactly the files
  ``list_local`` names: hidden and ``_`` files, nested and hidden folders, file and folder
  symlinks, broken symlinks, folders and FIFOs named ``*.parquet``.
* Size, mtime and footer read from one open file (``local_footer_identities``) equal what a
  ``stat`` and ``parquet_footer_sha256`` give, footers larger than the first read included.
* A file rewritten between the listing and its footer read is recorded as it was read: the next
  run neither refuses it as changed nor loads it again; one rewritten after its footer was read
  is caught by the next run.
* The stat key (device, inode, ctime): a file whose size, mtime and key are those recorded with
  its footer is not opened again; an in-place rewrite that keeps size and mtime, a ``chmod``, a
  file changed within the margin, an old manifest and ``content_check="always"`` all read the
  footer; and over random file events the table equals the files on disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.core import files as core_files
from prefect_etl_blocks.core.errors import LoadConfigError, SchemaMismatchError
from prefect_etl_blocks.core.files import local_footer_identities, parquet_footer_sha256
from prefect_etl_blocks.core.listing import list_local, local_paths, unique_sorted
from prefect_etl_blocks.core.loading import file_manifest
from prefect_etl_blocks.core.loading.incremental_files import load_new_files


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
    original = file_manifest.local_footer_stats

    def read(paths: list[str]) -> list[tuple]:
        # The listing (and its stat of b.parquet) has happened when the footers are read, in
        # the load's transaction; b.parquet changes right then.
        _parquet(folder / "b.parquet", [3, 4, 5])
        return original(paths)

    monkeypatch.setattr(file_manifest, "local_footer_stats", read)
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
    original = file_manifest.local_footer_stats

    def read_then_rewrite(paths: list[str]) -> list[tuple]:
        out = original(paths)
        _parquet(folder / "b.parquet", [2, 3])  # after its footer was hashed, before its rows are read
        return out

    monkeypatch.setattr(file_manifest, "local_footer_stats", read_then_rewrite)
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


# ----------------------------------------------------------------------------- the stat key
# An incremental run reads a file's footer only when its size, mtime or stat key (device, inode,
# ctime) moved since the footer was recorded. These tests shorten the "racily clean" margin
# (core_files.RACY_NS) to 50 ms and wait it out, as files are old in production.
SHORT = 50_000_000
LIN = "_prefect_etl_file"


def _wait_out_the_margin() -> None:
    time.sleep(SHORT / 1e9 * 1.5)


def _rows(path: Path, ids: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame({"id": ids, "v": [7] * len(ids)}, schema={"id": pl.Int64, "v": pl.Int64})
    frame.write_parquet(path)


def _rewrite_in_place(path: Path, ids: list[int], *, keep_mtime: bool) -> None:
    """Overwrite ``path``'s bytes through its own inode (no new file), optionally setting its
    mtime back: the rewrite a size-and-mtime check cannot see."""
    before = os.stat(path)
    scratch = path.with_suffix(".scratch")
    _rows(scratch, ids)
    data = scratch.read_bytes()
    scratch.unlink()
    with open(path, "r+b") as out:
        out.write(data)
        out.truncate()
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_ino == before.st_ino


class _FooterReads:
    """Counts the files whose footer a load opens (``file_manifest.local_footer_stats``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        original = file_manifest.local_footer_stats

        def counted(paths: list[str]) -> list[tuple]:
            self.paths += [os.path.basename(p) for p in paths]
            return original(paths)

        monkeypatch.setattr(file_manifest, "local_footer_stats", counted)

    def take(self) -> list[str]:
        out, self.paths = sorted(self.paths), []
        return out


def _manifest_keys(db: DuckDBConnection) -> dict[str, str | None]:
    rows = db.fetch_all("SELECT path, stat_key FROM _prefect_etl.files ORDER BY path")
    return {os.path.basename(p): k for p, k in rows}


def test_a_file_unchanged_since_its_footer_was_recorded_is_not_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    folder = tmp_path / "data"
    for name in ("a", "b", "c"):
        _rows(folder / f"{name}.parquet", [ord(name)])
    _wait_out_the_margin()
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    reads = _FooterReads(monkeypatch)
    assert db.load_parquet(source, "raw", incremental=True) == 3
    assert reads.take() == ["a.parquet", "b.parquet", "c.parquet"]
    assert all(_manifest_keys(db).values())  # each recorded with its stat key
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == []  # nothing new: no file opened
    _rows(folder / "d.parquet", [100])
    # A margin no run outlasts: d.parquet is "racily clean" however slow the machine.
    monkeypatch.setattr(core_files, "RACY_NS", 10**12)
    assert db.load_parquet(source, "raw", incremental=True) == 1
    assert reads.take() == ["d.parquet"]  # only the new one
    assert _manifest_keys(db)["d.parquet"] is None  # read within the margin: no key
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == ["d.parquet"]  # so it is opened again, the others are not
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    _wait_out_the_margin()
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == ["d.parquet"]  # read once more, now old enough: its key is recorded
    assert _manifest_keys(db)["d.parquet"] is not None
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == []


def test_content_check_always_opens_every_file_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    folder = tmp_path / "data"
    _rows(folder / "a.parquet", [1])
    _rows(folder / "b.parquet", [2])
    _wait_out_the_margin()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    reads = _FooterReads(monkeypatch)
    assert load_new_files(con, source, "raw").inserted == 2
    reads.take()
    assert load_new_files(con, source, "raw", content_check="always").inserted == 0
    assert reads.take() == ["a.parquet", "b.parquet"]
    assert load_new_files(con, source, "raw").inserted == 0
    assert reads.take() == []
    with pytest.raises(LoadConfigError, match="content_check='sometimes'"):
        load_new_files(con, source, "raw", content_check="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("keep_mtime", [True, False])
def test_an_in_place_rewrite_of_an_old_file_is_caught_by_its_ctime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_mtime: bool
) -> None:
    """Same inode, same size, mtime set back: only the ctime moved, and the stat key holds it."""
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    folder = tmp_path / "data"
    _rows(folder / "a.parquet", [1, 2, 3])
    _rows(folder / "b.parquet", [9])
    _wait_out_the_margin()
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    db.load_parquet(source, "raw", incremental=True, lineage_column=LIN)
    assert all(_manifest_keys(db).values())
    size = os.stat(folder / "a.parquet").st_size
    _rewrite_in_place(folder / "a.parquet", [4, 5, 6], keep_mtime=keep_mtime)
    assert os.stat(folder / "a.parquet").st_size == size
    reads = _FooterReads(monkeypatch)
    result = db.load_parquet(source, "raw", incremental=True, return_result=True)
    assert reads.take() == ["a.parquet"]
    assert (result.inserted, result.deleted) == (3, 3)
    assert sorted(db.query("SELECT id FROM raw")["id"].to_list()) == [4, 5, 6, 9]


def test_a_chmod_reads_the_footer_again_and_loads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    folder = tmp_path / "data"
    _rows(folder / "a.parquet", [1])
    _wait_out_the_margin()
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    db.load_parquet(source, "raw", incremental=True)
    key = _manifest_keys(db)["a.parquet"]
    os.chmod(folder / "a.parquet", 0o600)  # moves the ctime, not the content
    _wait_out_the_margin()
    reads = _FooterReads(monkeypatch)
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == ["a.parquet"]
    assert _manifest_keys(db)["a.parquet"] not in (None, key)  # the new key is recorded
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == []


def test_an_old_manifest_gets_its_stat_key_column_on_the_first_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    folder = tmp_path / "data"
    _rows(folder / "a.parquet", [1])
    _wait_out_the_margin()
    path = str(tmp_path / "w.duckdb")
    source = ParquetSource(path=str(folder))
    DuckDBConnection(database=path).load_parquet(source, "raw", incremental=True)
    with duckdb.connect(path) as con:  # the manifest as an earlier version left it
        con.execute("ALTER TABLE _prefect_etl.files DROP COLUMN stat_key")
    _rows(folder / "b.parquet", [2])
    _wait_out_the_margin()
    db = DuckDBConnection(database=path)
    reads = _FooterReads(monkeypatch)
    assert db.load_parquet(source, "raw", incremental=True) == 1
    assert reads.take() == ["a.parquet", "b.parquet"]  # a had no key: opened once more
    assert all(_manifest_keys(db).values())
    assert db.load_parquet(source, "raw", incremental=True) == 0
    assert reads.take() == []
    assert sorted(db.query("SELECT id FROM raw")["id"].to_list()) == [1, 2]


def test_stat_key_vouches_only_for_files_older_than_the_margin(tmp_path: Path) -> None:
    _rows(tmp_path / "a.parquet", [1])
    info = os.stat(tmp_path / "a.parquet")
    at = info.st_ctime_ns + core_files.RACY_NS
    assert core_files.stat_key(info, at - 1) is None  # changed less than RACY_NS ago: not yet
    assert core_files.stat_key(info, at) == f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}"
    assert core_files.stat_key(info, info.st_ctime_ns - 10**9) is None  # a ctime in the future


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 3)),
        st.tuples(st.just("rewrite"), st.integers(0, 9), st.integers(1, 3)),
        st.tuples(st.just("rewrite_in_place"), st.integers(0, 9), st.booleans()),
        st.tuples(st.just("chmod"), st.integers(0, 9)),
        st.tuples(st.just("delete"), st.integers(0, 9)),
        st.tuples(st.just("wait")),
        st.tuples(st.just("run")),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_property_with_stat_keys_the_table_equals_the_files_on_disk(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, events: list
) -> None:
    """Random file events, waits past the margin (so stat keys are trusted) and runs: after each
    run the table holds exactly the rows of the files on disk, each once."""
    monkeypatch.setattr(core_files, "RACY_NS", SHORT)
    root = tmp_path_factory.mktemp("stat")
    folder = root / "in"
    _rows(folder / "seed.parquet", [-1])
    db = DuckDBConnection(database=str(root / "wh.duckdb"))
    source = ParquetSource(path=str(folder))
    counter = iter(range(10**6))
    for event in [*events, ("wait",), ("run",)]:
        files = sorted(folder.glob("*.parquet"))
        kind = event[0]
        if kind == "add":
            _rows(folder / f"f{next(counter):04}.parquet", [next(counter) for _ in range(event[1])])
        elif kind == "rewrite" and files:
            _rows(files[event[1] % len(files)], [next(counter) for _ in range(event[2])])
        elif kind == "rewrite_in_place" and files:
            target = files[event[1] % len(files)]
            n = pl.read_parquet(target).height  # same row count: usually the same size
            _rewrite_in_place(target, [next(counter) for _ in range(n)], keep_mtime=event[2])
        elif kind == "chmod" and files:
            os.chmod(files[event[1] % len(files)], 0o600 if next(counter) % 2 else 0o644)
        elif kind == "delete" and len(files) > 1:
            files[event[1] % len(files)].unlink()
        elif kind == "wait":
            _wait_out_the_margin()
        elif kind == "run":
            db.load_parquet(source, "raw", incremental=True, lineage_column=LIN, on_missing_file="delete")
            expected = sorted(
                (i, str(f)) for f in sorted(folder.glob("*.parquet")) for i in pl.read_parquet(f)["id"].to_list()
            )
            assert sorted(db.fetch_all(f'SELECT id, "{LIN}" FROM raw')) == expected


NAMES = st.text(alphabet=st.sampled_from("aZ_.é İ1"), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(schema=NAMES, name=NAMES, catalog=NAMES, other=NAMES, shape=st.integers(0, 4))
def test_the_old_key_check_matches_the_migrations_own_predicate(
    schema: str, name: str, catalog: str, other: str, shape: int
) -> None:
    """``migrate_keys`` reads the distinct keys and picks old ones in Python; that test must say
    exactly what the SQL predicate its renames use says, for any spelling of any key."""
    from prefect_etl_blocks.core.loading import table_keys

    ref = table_keys.TableRef(catalog, schema, name)
    keys = [
        f"{catalog}.{schema}.{name}".casefold(), f"{other}.{schema}.{name}".casefold(),
        f"{schema}.{name}", ref.key, f"{other}.{ref.key}",
    ]
    key = keys[shape]
    where, params = table_keys.old_key_sql(ref)
    con = duckdb.connect()
    in_sql = con.execute(f"SELECT {where} FROM (SELECT ?::VARCHAR AS table_name)", [*params, key]).fetchall()[0][0]
    assert table_keys.is_old_key(ref, key) == (bool(in_sql) and key != ref.key)


def test_a_corrupt_new_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    """New files' footers are parsed by the scan itself (once) unless the source declares an
    ``expected_schema``; a footer the scan cannot read still fails the load with an error naming
    the file, and the table, manifest and ledger stay as they were."""
    from prefect_etl_blocks.core.errors import CorruptParquetError

    folder = tmp_path / "data"
    _rows(folder / "a.parquet", [1, 2])
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    db.load_parquet(source, "raw", incremental=True)
    data = bytearray((folder / "a.parquet").read_bytes())
    length = int.from_bytes(data[-8:-4], "little")
    data[-8 - length : -8] = b"\xab" * length  # the footer garbled; its length and magic intact
    _rows(folder / "b.parquet", [3])
    (folder / "c.parquet").write_bytes(bytes(data))
    _rows(folder / "d.parquet", [4])
    with pytest.raises(CorruptParquetError, match=r"c\.parquet is not a readable Parquet file"):
        db.load_parquet(source, "raw", incremental=True)
    assert db.fetch_all("SELECT count(*) FROM raw") == [(2,)]
    assert db.fetch_all("SELECT count(*) FROM _prefect_etl.files") == [(1,)]
    assert db.load_history("raw").height == 1
    typed = ParquetSource(path=str(folder / "[abd].parquet"), expected_schema={"id": "Int32"})
    with pytest.raises(SchemaMismatchError, match="expected Int32"):  # still checked per file
        db.load_parquet(typed, "raw", incremental=True)


def test_loading_a_lazy_frame_does_not_resolve_its_schema_to_tell_it_from_files(tmp_path: Path) -> None:
    """The load asks whether its source is files (a runtime protocol check, which reads every
    protocol attribute with ``hasattr``); for a LazyFrame that must not resolve the schema
    (``LazyFrame.columns`` would, with a PerformanceWarning)."""
    import warnings

    from prefect_etl_blocks.core.loading.sources import is_file_source

    path = tmp_path / "a.parquet"
    _rows(path, [1, 2])
    lazy = pl.scan_parquet(path)
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", pl.exceptions.PerformanceWarning)
        assert not is_file_source(lazy) and not is_file_source(lazy.collect())
        assert db.load_frame(lazy, "t") == 2
    assert is_file_source(ParquetSource(path=str(path)))


def test_a_local_listing_runs_beside_the_catalog_reads_and_its_errors_reach_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local source is listed on a thread while the load reads the catalog and the manifest
    (``file_manifest.ListingAhead``): the load still sees every file, what the listing raises
    reaches the caller with the table and ledger as they were, and no listing thread outlives
    its load."""
    import threading

    from prefect_etl_blocks.errors import SourceNotFoundError

    folder = tmp_path / "data"
    _parquet(folder / "a.parquet", [1, 2])
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    source = ParquetSource(path=str(folder))
    listed_on: list[str] = []
    original = ParquetSource.list_paths

    def watched(self: ParquetSource) -> list[str]:
        listed_on.append(threading.current_thread().name)
        return original(self)

    monkeypatch.setattr(ParquetSource, "list_paths", watched)
    assert db.load_parquet(source, "raw", incremental=True) == 2
    _parquet(folder / "b.parquet", [3])
    assert db.load_parquet(source, "raw", incremental=True) == 1
    assert listed_on == ["prefect-etl-listing"] * 2
    (folder / "a.parquet").unlink()
    (folder / "b.parquet").unlink()
    with pytest.raises(SourceNotFoundError, match="matched no Parquet files"):
        db.load_parquet(source, "raw", incremental=True)
    assert sorted(db.query("SELECT id FROM raw")["id"].to_list()) == [1, 2, 3]
    assert db.load_history("raw").height == 2
    assert not [t for t in threading.enumerate() if t.name == "prefect-etl-listing"]


#: What a catalog may hold for the probe: each state table missing, present, or (the ledger)
#: an older one with fewer columns; the target missing, a table, a view, a view or a table with
#: a column named ``rowid``, a table with columns named as the probe's aliases, or a table
#: spelled in another case.
TARGET_SHAPES = ("missing", "table", "view", "rowid view", "rowid table", "alias columns", "other case", "schema only")


@settings(max_examples=60, deadline=None)
@given(
    state=st.fixed_dictionaries({name: st.sampled_from(("missing", "present", "older")) for name in ("loads", "files", "cursors")}),
    shape=st.sampled_from(TARGET_SHAPES),
    schema=st.sampled_from(("main", "Sales", "odd name")),
    outer=st.booleans(),
)
def test_the_bound_probe_answers_as_the_catalog_scan_and_a_failed_bind_leaves_the_transaction_usable(
    state: dict[str, str], shape: str, schema: str, outer: bool
) -> None:
    """``catalog.probe`` binds the target and the state tables in one statement that never runs
    and scans ``duckdb_tables()`` only when that bind fails. Its answer must be the scan's for
    every catalog (a view or a table with a ``rowid`` column is not taken for a plain table, an
    older ledger is seen as older), the columns it reports must be the table's, and a failed
    bind inside an open transaction must leave that transaction usable (a failed ``execute``
    aborts it on DuckDB 2.0)."""
    from prefect_etl_blocks.core.loading import catalog, ledger
    from prefect_etl_blocks.core.loading.contracts import relation_types

    con = duckdb.connect()
    con.execute("CREATE TABLE kept (x INTEGER)")
    if any(v != "missing" for v in state.values()):
        con.execute(f"CREATE SCHEMA {ledger.STATE_SCHEMA}")
    for name, how in state.items():
        if how != "missing":
            columns = ledger._DDL[name] if how == "present" else "table_name VARCHAR, load_id VARCHAR"
            con.execute(f"CREATE TABLE {ledger.STATE_SCHEMA}.{name} ({columns})")
    quoted = f'"{schema}"'
    if shape != "missing" and schema != "main":
        con.execute(f"CREATE SCHEMA {quoted}")
    made = {
        "table": f'CREATE TABLE {quoted}."Orders" (id INTEGER, "Amount €" DECIMAL(10, 2))',
        "view": f'CREATE VIEW {quoted}."Orders" AS SELECT 1 AS id',
        "rowid view": f'CREATE VIEW {quoted}."Orders" AS SELECT 1 AS rowid, 2 AS id',
        "rowid table": f'CREATE TABLE {quoted}."Orders" (rowid INTEGER, id INTEGER)',
        "alias columns": f'CREATE TABLE {quoted}."Orders" (s0 INTEGER, t VARCHAR, s1 INTEGER)',
        "other case": f'CREATE TABLE {quoted}."ORDERS" (id INTEGER)',
    }.get(shape)
    if made:
        con.execute(made)
    parts = ["memory", schema, "Orders"]
    if outer:
        con.execute("BEGIN")
        con.execute("INSERT INTO kept VALUES (1)")
    found = catalog.probe(con, parts)
    scanned = catalog._scanned(con, parts)
    assert (found.schema_exists, found.table_exists, found.state_tables, found.loads_columns, found.files_columns) == (
        scanned.schema_exists, scanned.table_exists, scanned.state_tables, scanned.loads_columns, scanned.files_columns
    )
    if found.columns is not None:
        assert list(found.columns) == relation_types(con, ".".join(f'"{p}"' for p in parts))
    expect_bound = shape in ("table", "alias columns", "other case") and all(v != "missing" for v in state.values())
    assert (found.columns is not None) == expect_bound
    if outer:
        con.execute("INSERT INTO kept VALUES (2)")
        con.execute("COMMIT")
        assert con.sql("SELECT x FROM kept ORDER BY x").fetchall() == [(1,), (2,)]


def test_a_load_into_a_new_table_joins_an_open_transaction_after_its_probe_bind_failed(tmp_path: Path) -> None:
    """The probe of a table that does not exist yet fails to bind inside the caller's open
    transaction; the load must still join it, and the caller's commit must keep both loads."""
    from prefect_etl_blocks.core.loading import load, transaction

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    load(con, pl.DataFrame({"id": [1]}), "orders")
    with transaction(con):
        load(con, pl.DataFrame({"id": [2]}), "orders", mode="append")
        assert load(con, pl.DataFrame({"id": [1], "qty": [3]}), "order_lines").created
    assert con.sql("SELECT id FROM orders ORDER BY id").fetchall() == [(1,), (2,)]
    assert con.sql("SELECT id, qty FROM order_lines").fetchall() == [(1, 3)]
    assert con.sql("SELECT count(*) FROM _prefect_etl.loads").fetchall() == [(3,)]


@pytest.mark.parametrize("name", ["raw", "main.raw", "w.raw", "w.main.raw", "other.raw", "other.main.raw", "sales.raw"])
def test_an_incremental_load_joins_an_open_transaction_for_every_spelling_of_its_table(tmp_path: Path, name: str) -> None:
    """An incremental load takes the transaction id its name's resolution saw
    (``table_keys.resolve_with_txid``) instead of asking ``in_transaction``: inside the caller's
    open transaction it must join it (the caller's rollback takes its rows and manifest away),
    and outside one it must commit on its own, whatever the spelling of the table (the
    resolution runs a different statement for one, two and three parts)."""
    from prefect_etl_blocks.core.loading import transaction

    folder = tmp_path / "data"
    _parquet(folder / "a.parquet", [1, 2])
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    con.execute("CREATE SCHEMA sales")
    source = ParquetSource(path=str(folder))
    with pytest.raises(RuntimeError, match="the caller gives up"):
        with transaction(con):
            assert load_new_files(con, source, name).inserted == 2
            raise RuntimeError("the caller gives up")
    catalog = "other" if name.startswith("other.") else "w"
    assert con.sql(f"SELECT count(*) FROM duckdb_tables() WHERE database_name = '{catalog}' AND table_name = 'raw'").fetchall() == [(0,)]
    assert load_new_files(con, source, name).inserted == 2  # on its own: commits
    con.close()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    assert load_new_files(con, source, name).inserted == 0
    assert con.sql(f"SELECT count(*) FROM {name}").fetchall() == [(2,)]
