"""One load vocabulary: ``LoadOptions`` refuses what a load would refuse, when it is built and
with the same words, and the core takes file sources through a protocol, without Prefect.

* Each refusal of ``LoadOptions`` is the error the block's ``load_frame`` / ``load_parquet``
  raise for the same arguments, word for word, and the block writes nothing.
* Options are checked before any work: a cursor load that would find nothing new still refuses
  a bad ``on_schema_change`` (it used to succeed, and fail only on a later run with rows).
* In a process without Prefect, file-incremental, cursor and plain loads run over a
  ``FileSource`` that is not a ``ParquetSource``, and Prefect is never imported.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.loading import LoadOptions

# (arguments, the start of the message); "parquet" marks options only load_parquet takes.
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"mode": "merge"}, "mode='merge' is not a load mode; use one of 'replace', "),
    ({"on_schema_change": "evolve"}, "on_schema_change='evolve' is not valid; use one of 'fail', "),
    ({"create": "sometimes"}, "create='sometimes' is not valid; use 'if_missing'"),
    ({"lag": 3}, "initial_value and lag apply to cursor loads: pass cursor='column' too."),
    ({"cursor": "ts", "mode": "upsert"}, "cursor load without keys appends; mode='upsert' needs keys=[...]."),
    ({"cursor": "ts", "keys": "id", "mode": "append"}, "cursor load with keys takes mode 'upsert' or 'insert-only'"),
    ({"cursor": "ts", "lag": 5}, "lag re-reads rows below the mark, which would duplicate them without keys"),
    ({"cursor": "ts", "keys": "id", "lag": -1}, "lag=-1 is negative"),
    ({"cursor": "ts", "keys": "id", "lag": "1h"}, "lag='1h' must be a number"),
    ({"scd2_columns": ["a", "a", "b"]}, "scd2_columns ['a', 'a', 'b'] must be three different names."),
    ({"incremental": True, "cursor": "ts"}, "load_parquet takes incremental=True (new files) or cursor=..."),
    ({"incremental": True, "mode": "replace"}, "incremental file loads take mode in "),
    ({"incremental": True, "on_missing_file": "drop"}, "on_missing_file='drop': use 'keep' or 'delete'."),
    ({"incremental": True, "lineage_column": "file name"}, "lineage_column='file name' must be a simple column name"),
]


@pytest.fixture
def parquet(tmp_path: Path) -> ParquetSource:
    pl.DataFrame({"id": [1, 2], "ts": [10, 20]}).write_parquet(tmp_path / "a.parquet")
    return ParquetSource(path=str(tmp_path / "a.parquet"))


@pytest.mark.parametrize(("arguments", "message"), REFUSED, ids=[str(a) for a, _ in REFUSED])
def test_options_refuse_what_the_block_refuses_with_the_same_words(
    arguments: dict[str, Any], message: str, parquet: ParquetSource, tmp_path: Path
) -> None:
    with pytest.raises(LoadConfigError) as built:
        LoadOptions(**arguments)
    assert str(built.value).startswith(message)
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    if arguments.get("incremental"):
        load = lambda: db.load_parquet(parquet, "t", **arguments)  # noqa: E731
    else:
        load = lambda: db.load_frame(pl.DataFrame({"id": [1], "ts": [1]}), "t", **arguments)  # noqa: E731
    with pytest.raises(LoadConfigError, match=re.escape(str(built.value))):
        load()
    assert not db.table_exists("t")
    assert db.load_history().height == 0


def test_options_are_frozen_and_normalised() -> None:
    options = LoadOptions(keys="id", checks=["qty >= 0"], scd2_columns={"valid_from": "f", "valid_to": "t", "is_current": "c"})
    assert options.keys == ("id",) and options.checks == ("qty >= 0",)
    assert options.scd2_columns.names() == ["f", "t", "c"]  # type: ignore[union-attr]
    assert (options.kind, options.strategy) == ("plain", "replace")
    assert (LoadOptions(incremental=True).kind, LoadOptions(incremental=True).strategy) == ("files", "append")
    assert LoadOptions(cursor="ts").strategy == "append" and LoadOptions(cursor="ts", keys=["id"]).strategy == "upsert"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mode = "append"  # type: ignore[misc]


def test_a_cursor_load_with_nothing_new_still_refuses_a_bad_on_schema_change(tmp_path: Path) -> None:
    db = DuckDBConnection(database=str(tmp_path / "w.duckdb"))
    batch = pl.DataFrame({"id": [1, 2], "ts": [10, 20]})
    assert db.load_frame(batch, "events", cursor="ts", keys="id") == 2
    with pytest.raises(LoadConfigError, match="on_schema_change='evolve' is not valid"):
        db.load_frame(batch, "events", cursor="ts", keys="id", on_schema_change="evolve")  # type: ignore[arg-type]
    assert db.load_history("events").height == 1  # the refused run recorded nothing


PREFECT_FREE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import duckdb
    import polars as pl

    from prefect_etl_blocks.core.files import local_identity
    from prefect_etl_blocks.core.loading import load_cursor, load_new_files
    from prefect_etl_blocks.core.loading.options import LoadOptions
    from prefect_etl_blocks.core.loading.run import run_load
    from prefect_etl_blocks.core.loading.sources import FileSource


    class Listed:
        def __init__(self, path):
            stat = Path(path).stat()
            self.path, self.size, self.version = local_identity(path), stat.st_size, str(stat.st_mtime_ns)


    class Folder:
        # A FileSource that is not a ParquetSource: local *.parquet files, nothing else.
        columns = None
        filter = None
        hive_partitioning = False
        is_remote = False

        def __init__(self, path):
            self.path = path

        def list_files(self):
            return [Listed(p) for p in sorted(Path(self.path).glob("*.parquet"))]

        def files(self):
            return [f.path for f in self.list_files()]

        def validate_data(self):
            return pl.scan_parquet(self.files()).collect_schema()

        def scan(self, validate=True):
            return pl.scan_parquet(self.files())

        def parsed_filter(self):
            return None

        def filter_sql(self):
            return None

        def polars_storage_options(self):
            return None

        def _hive_default(self, files):
            return False

        def _file_schema(self, path):
            return pl.scan_parquet(path).collect_schema()

        def _check_expected(self, schema, where, *, partial):
            return None


    folder = Path(sys.argv[1])
    source = Folder(str(folder))
    assert isinstance(source, FileSource)
    con = duckdb.connect()
    pl.DataFrame({"id": [1, 2], "ts": [10, 20]}).write_parquet(folder / "a.parquet")
    assert load_new_files(con, source, "raw").inserted == 2
    assert load_new_files(con, source, "raw").inserted == 0
    pl.DataFrame({"id": [3], "ts": [30]}).write_parquet(folder / "b.parquet")
    assert load_new_files(con, source, "raw").files == (local_identity(str(folder / "b.parquet")),)
    assert load_cursor(con, source, "events", cursor="ts", keys="id").inserted == 3
    assert load_cursor(con, source, "events", cursor="ts", keys="id").rows == 1  # the boundary row
    assert run_load(con, source, "copy", LoadOptions()).inserted == 3
    loaded = sorted(m for m in sys.modules if m == "prefect" or m.startswith(("prefect.", "prefect_aws")))
    assert not loaded, loaded
    print("ok")
    """
)


def test_the_core_loads_any_file_source_without_importing_prefect(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PREFECT_FREE, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_check_failure": "skip"}, "on_check_failure='skip' is not valid"),
        ({"dry_run": "yes"}, "dry_run='yes' must be True or False"),
        ({"transactional": 1}, "transactional=1 must be None, True or False"),
        ({"upstream": [1]}, "give asset keys as strings"),
    ],
)
def test_the_run_options_are_refused_at_construction(options: dict, message: str) -> None:
    with pytest.raises(LoadConfigError, match=re.escape(message)):
        LoadOptions(**options)


def test_upstream_is_a_tuple_of_keys_and_a_string_is_one_key() -> None:
    assert LoadOptions(upstream="s3://bucket/raw").upstream == ("s3://bucket/raw",)
    assert LoadOptions(upstream=["a://x", "b://y"]).upstream == ("a://x", "b://y")
    assert LoadOptions().upstream == ()
