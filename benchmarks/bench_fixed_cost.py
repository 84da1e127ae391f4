"""A load's fixed cost, both ways a load runs: a fresh ``DuckDBConnection(database=f)`` per load
(as a Prefect task makes one: open the file, load, close it) and one held connection (``with
db:``), each against native DuckDB doing the same SQL the same way.

* ``replace`` of ``ROWS`` (5M) rows vs ``CREATE OR REPLACE TABLE t AS SELECT * FROM arrow``;
  ``upsert`` of 500k rows (half new keys) into 5M vs one ``MERGE INTO``. Fresh: ours is
  ``DuckDBConnection(database=f).load_frame(...)``, native is ``duckdb.connect(f)`` + the SQL +
  ``close()`` (both pay the open and the checkpoint on close). Held: both on an open connection.
  The table is rebuilt and checkpointed before every timed run, outside the timing.
* ``1-row append``: ``over_native_ms`` is ours minus native (connect + INSERT + close), medians
  of ``APPENDS`` loads each; target at most 15 ms.
* ``incremental``: ``load_parquet(..., incremental=True)`` after 10 new files arrived beside
  1,000 loaded ones (10,000 rows each), as a share of a full reload (``mode="replace"``) of the
  same folder in the same mode. The native floor appends the 10 files by hand (``BEGIN; INSERT
  ... read_parquet([new files]); COMMIT``), knowing which are new. Then nothing new, three
  times: right after that load (its 10 files, younger than the racy margin, are opened again),
  and past the margin (``_age_past_the_racy_margin``): the first run records their stat keys,
  the next ``STEADY_RUNS`` are the steady state of a scheduled run (the targeted row). Its
  native floor, with a fresh block, is ``duckdb.connect`` + ``close``.
* ``profile:`` rows: where a fresh-block 1-row append and a fresh-block incremental run with
  nothing new spend their time (milliseconds per load, inclusive spans; see docs/benchmarks.md).

Every ours/native pair runs interleaved (the order alternates), medians over ``repeats``.
Run ``python -m benchmarks.bench_fixed_cost [repeats] [rows] [files]``.
"""

from __future__ import annotations

import collections
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from benchmarks._common import table

#: Shown after the table in RESULTS.md and docs/benchmarks.md (``benchmarks/__main__.py``).
NOTES = (Path(__file__).parent / "bench_fixed_cost.md").read_text()  # before/after, profile

ROWS = 5_000_000
UPDATE_ROWS = 500_000
FILES = 1_000
NEW = 10
APPENDS = 60
TARGETS = {"replace": 1.05, "upsert": 1.10}
APPEND_TARGET_MS = 15.0
INCREMENTAL_TARGET = 0.02
NOOP_TARGET = 0.01
#: Steady nothing-new runs timed per repeat, after the one that records the stat keys.
STEADY_RUNS = 3


def _pairs(ours: Callable[[], object], native: Callable[[], object], repeats: int,
           setup: Callable[[], object] = lambda: None) -> tuple[float, float]:
    """Medians of ``ours()`` and ``native()``, interleaved (order alternating), each after an
    untimed ``setup()``."""
    times: dict[str, list[float]] = {"ours": [], "native": []}
    for i in range(repeats):
        order = [("ours", ours), ("native", native)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            setup()
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return statistics.median(times["ours"]), statistics.median(times["native"])


def _frames(rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    from benchmarks.bench_loading import updates
    from benchmarks.bench_results import make_frame

    frame = make_frame(rows)
    return frame, updates(frame, min(UPDATE_ROWS, max(2, rows // 10)))


def _seed(path: str, frame: pl.DataFrame) -> None:
    """``t`` holds ``frame``, checkpointed (nothing left in the WAL for the timed load)."""
    con = duckdb.connect(path)
    con.register("seed_arrow", frame.to_arrow())
    con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM seed_arrow")
    con.close()


def _bulk_rows(tmp: Path, rows: int, repeats: int) -> list[dict[str, Any]]:
    from prefect_etl_blocks import DuckDBConnection

    frame, change = _frames(rows)
    columns = frame.columns
    sets = ", ".join(f"{c} = s.{c}" for c in columns if c != "order_id")
    merge = (f"MERGE INTO t USING change_arrow AS s ON t.order_id = s.order_id "
             f"WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT BY NAME")
    ours_f, native_f = str(tmp / "bulk_ours.duckdb"), str(tmp / "bulk_native.duckdb")
    out: list[dict[str, Any]] = []

    def native_fresh(sql: str, name: str, data: pl.DataFrame) -> Callable[[], None]:
        def body() -> None:
            con = duckdb.connect(native_f)
            con.register(name, data.to_arrow())
            con.execute(sql)
            con.close()
        return body

    def seed_both() -> None:
        _seed(ours_f, frame)
        _seed(native_f, frame)

    timed: dict[tuple[str, str], tuple[float, float]] = {}
    timed["replace", "fresh"] = _pairs(
        lambda: DuckDBConnection(database=ours_f).load_frame(frame, "t"),
        native_fresh("CREATE OR REPLACE TABLE t AS SELECT * FROM fresh_arrow", "fresh_arrow", frame),
        repeats, seed_both,
    )
    timed["upsert", "fresh"] = _pairs(
        lambda: DuckDBConnection(database=ours_f).load_frame(change, "t", mode="upsert", keys="order_id"),
        native_fresh(merge, "change_arrow", change), repeats, seed_both,
    )
    seed_both()
    db = DuckDBConnection(database=ours_f)
    native = duckdb.connect(native_f)
    with db, db.get_connection() as held:
        base_arrow = frame.to_arrow()

        def seed_held() -> None:
            for con in (held, native):
                con.register("seed_arrow", base_arrow)
                con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM seed_arrow")
                con.execute("CHECKPOINT")

        def native_held(sql: str, name: str, data: pl.DataFrame) -> Callable[[], None]:
            return lambda: (native.register(name, data.to_arrow()), native.execute(sql))

        timed["replace", "held"] = _pairs(
            lambda: db.load_frame(frame, "t"),
            native_held("CREATE OR REPLACE TABLE t AS SELECT * FROM fresh_arrow", "fresh_arrow", frame),
            repeats, seed_held,
        )
        timed["upsert", "held"] = _pairs(
            lambda: db.load_frame(change, "t", mode="upsert", keys="order_id"),
            native_held(merge, "change_arrow", change), repeats, seed_held,
        )
    native.close()
    labels = {
        "replace": (f"replace {rows:,} rows", "CTAS from Arrow"),
        "upsert": (f"upsert {change.height:,} into {rows:,}", "native MERGE INTO"),
    }
    for (key, mode), (ours_s, base_s) in timed.items():
        name, baseline = labels[key]
        row: dict[str, Any] = {
            "name": f"{name}, {'fresh block per load' if mode == 'fresh' else 'held connection'}",
            "baseline": f"{baseline} ({'connect + SQL + close' if mode == 'fresh' else 'held'})",
            "seconds": ours_s, "baseline_seconds": base_s, "ratio": ours_s / base_s,
        }
        if mode == "fresh":
            row["target"] = TARGETS[key]
        out.append(row)
    return out


def _append_rows(tmp: Path, loads: int) -> list[dict[str, Any]]:
    from prefect_etl_blocks import DuckDBConnection

    row = pl.DataFrame({"id": [1], "v": [0.5]})
    ours_f, native_f = str(tmp / "one_ours.duckdb"), str(tmp / "one_native.duckdb")
    DuckDBConnection(database=ours_f).load_frame(row, "t")
    _seed(native_f, row)

    def native_fresh() -> None:
        con = duckdb.connect(native_f)
        con.register("src", row.to_arrow())
        con.execute("INSERT INTO t SELECT * FROM src")
        con.close()

    fresh = _pairs(lambda: DuckDBConnection(database=ours_f).load_frame(row, "t", mode="append"),
                   native_fresh, loads)
    db = DuckDBConnection(database=ours_f)
    native = duckdb.connect(native_f)
    with db:
        held = _pairs(lambda: db.load_frame(row, "t", mode="append"),
                      lambda: (native.register("src", row.to_arrow()), native.execute("INSERT INTO t SELECT * FROM src")),
                      loads)
    native.close()
    out = []
    for mode, (ours_s, base_s), baseline in (
        ("fresh block per load", fresh, "connect + INSERT + close"), ("held connection", held, "INSERT (held)"),
    ):
        out.append({
            "name": f"1-row append, {mode}", "baseline": f"native {baseline}", "seconds": ours_s,
            "baseline_seconds": base_s, "ratio": ours_s / base_s, "over_native_ms": (ours_s - base_s) * 1e3,
            **({"target_over_ms": APPEND_TARGET_MS} if mode.startswith("fresh") else {}),
        })
    return out


def _incremental_rows(tmp: Path, files: int, repeats: int) -> list[dict[str, Any]]:
    return incremental_rows_in(
        tmp / "data", files,
        lambda source, mode, start: _incremental_mode(tmp, source, mode, files, start, repeats),
    )


def incremental_rows_in(
    folder: Path, files: int, one_mode: Callable[[Any, str, int], tuple[list[dict[str, Any]], int]]
) -> list[dict[str, Any]]:
    """Write ``files`` files into ``folder``, let them age past the racy margin, then the rows
    of ``one_mode(source, mode, next_file_index)`` for the fresh and the held mode."""
    from benchmarks.bench_incremental import _write
    from prefect_etl_blocks import ParquetSource

    folder.mkdir()
    for i in range(files):
        _write(folder, i)
    _age_past_the_racy_margin()
    source = ParquetSource(path=str(folder))
    out: list[dict[str, Any]] = []
    next_index = files
    for mode in ("fresh", "held"):
        rows, next_index = one_mode(source, mode, next_index)
        out += rows
    return out


def _incremental_mode(
    tmp: Path, source: Any, mode: str, files: int, next_index: int, repeats: int
) -> tuple[list[dict[str, Any]], int]:
    from prefect_etl_blocks import DuckDBConnection

    ours_f, full_f, native_f = (str(tmp / f"{mode}_{n}.duckdb") for n in ("inc", "full", "native"))
    db, full_db = DuckDBConnection(database=ours_f), DuckDBConnection(database=full_f)

    def block(which: DuckDBConnection) -> DuckDBConnection:
        return DuckDBConnection(database=which.database) if mode == "fresh" else which

    db.load_parquet(source, "inc", incremental=True)
    con = duckdb.connect(native_f)
    con.execute("CREATE TABLE native AS SELECT * FROM read_parquet($g)", {"g": str(Path(source.path) / "*.parquet")})
    con.close()
    held_native = duckdb.connect(native_f) if mode == "held" else None
    try:
        if mode == "held":
            db.__enter__()
            full_db.__enter__()
        times, next_index = incremental_repeats(
            Path(source.path), next_index, repeats,
            full_load=lambda: block(full_db).load_parquet(source, "full", mode="replace"),
            ours_load=lambda: block(db).load_parquet(source, "inc", incremental=True),
            native_con=lambda: (held_native or duckdb.connect(native_f), held_native is None),
            native_open=None if held_native else lambda: duckdb.connect(native_f).close(),
        )
    finally:
        if mode == "held":
            db.__exit__(None, None, None)
            full_db.__exit__(None, None, None)
        if held_native is not None:
            held_native.close()
    label = "fresh block per load" if mode == "fresh" else "held connection"
    return incremental_result_rows(times, files, label), next_index


# ----------------------------------------------------------------------------- profile
#: (label, module, attribute): the inclusive spans of the profile rows. A label may name several
#: functions (older and newer code paths); those absent from the code measured are skipped.
SPANS = (
    ("opening: lock wait + duckdb.connect", "prefect_etl_blocks.core.warehouse.duckdb_file", "connect_waiting"),
    ("opening: total (with settings, extensions, init_sql)", "prefect_etl_blocks.core.warehouse.duckdb_file.FileBackend", "open"),
    ("name resolution (ledger.resolve)", "prefect_etl_blocks.core.loading.ledger", "resolve"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.engine", "schema_exists"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.engine", "table_exists"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.engine", "probe"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.incremental_files", "table_exists"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.incremental_files", "probe"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.ledger", "ensure_state"),
    ("transaction: in_transaction", "prefect_etl_blocks.core.loading.connections", "in_transaction"),
    ("write: strategy (staging, contracts, SQL)", "prefect_etl_blocks.core.loading.engine", "_apply"),
    ("write: ledger row", "prefect_etl_blocks.core.loading.ledger", "record"),
    ("incremental: listing and a stat per file", "prefect_etl_blocks.core.loading.incremental_files", "listed"),
    ("incremental: listing (folder walk)", "prefect_etl_blocks.blocks.parquet.ParquetSource", "list_files"),
    ("incremental: listing (folder walk)", "prefect_etl_blocks.blocks.parquet.ParquetSource", "list_paths"),
    ("incremental: held against the manifest (footers read)", "prefect_etl_blocks.core.loading.incremental_files", "current_identities"),
    ("incremental: footers (size, mtime, SHA-256)", "prefect_etl_blocks.core.loading.incremental_files", "identities"),
    ("incremental: footers (size, mtime, SHA-256)", "prefect_etl_blocks.core.loading.file_manifest", "local_footer_identities"),
    ("incremental: footers (size, mtime, SHA-256)", "prefect_etl_blocks.core.loading.file_manifest", "local_footer_stats"),
    ("incremental: manifest (in the transaction)", "prefect_etl_blocks.core.loading.incremental_files", "read_manifest"),
    ("incremental: manifest (in the transaction)", "prefect_etl_blocks.core.loading.ledger", "migrate_keys"),
    ("checkpoint on close", "prefect_etl_blocks.core.warehouse.duckdb_file.FileBackend", "close"),
)


def write_new_files(folder: Path, start: int) -> tuple[list[str], int]:
    """Write the :data:`NEW` files of one repeat from index ``start``: their paths, the next index."""
    from benchmarks.bench_incremental import _write

    for index in range(start, start + NEW):
        _write(folder, index)
    return [str(folder / f"part-{index:05}.parquet") for index in range(start, start + NEW)], start + NEW


def native_insert(con: Any, files: list[str], *, close: bool) -> None:
    """The native floor of an incremental run: append ``files``, known to be new, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO native SELECT * FROM read_parquet($files)", {"files": files})
    con.execute("COMMIT")
    if close:
        con.close()


def incremental_repeats(
    folder: Path, next_index: int, repeats: int, *, full_load: Callable[[], object],
    ours_load: Callable[[], int], native_con: Callable[[], tuple[Any, bool]],
    native_open: Callable[[], None] | None,
) -> tuple[dict[str, list[float]], int]:
    """The timed loop of the incremental rows, for a DuckDB file and a DuckLake alike: per
    repeat, a full reload (``full_load``), then :data:`NEW` new files loaded by ``ours_load`` and
    natively on ``native_con()`` (a connection and whether to close it) in alternating order,
    then nothing new three times: right after that load (its files are inside the racy margin,
    so their footers are read again), and past the margin, where the first run records their
    stat keys and the next :data:`STEADY_RUNS` are the steady state of a scheduled run (several,
    because on this VM the first runs after an idle second are slower by about 5-10 ms, and
    the sleep of the margin is such a second). ``native_open``: the native floor of nothing new
    with a fresh connection (connect + close), timed last."""
    from benchmarks.bench_incremental import ROWS as FILE_ROWS

    times: dict[str, list[float]] = collections.defaultdict(list)
    for i in range(repeats):
        started = time.perf_counter()
        full_load()
        times["full"].append(time.perf_counter() - started)
        new, next_index = write_new_files(folder, next_index)

        def native_append(new: list[str] = new) -> None:
            con, close = native_con()
            native_insert(con, new, close=close)

        def ours_append() -> None:
            assert ours_load() == NEW * FILE_ROWS

        steps = [("inc", ours_append), ("native", native_append)]
        for name, fn in steps if i % 2 == 0 else steps[::-1]:
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
        _nothing_new(ours_load, times["noop_racy"])
        _age_past_the_racy_margin()
        _nothing_new(ours_load, times["noop_first"])
        for _ in range(STEADY_RUNS):
            _nothing_new(ours_load, times["noop"])
        if native_open is not None:
            started = time.perf_counter()
            native_open()
            times["native_open"].append(time.perf_counter() - started)
    return times, next_index


def incremental_result_rows(
    times: dict[str, list[float]], files: int, label: str, opening: str = "connect + close",
    targets: tuple[float, float] = (INCREMENTAL_TARGET, NOOP_TARGET),
) -> list[dict[str, Any]]:
    """The rows of :func:`incremental_repeats`' medians, each a share of the full reload;
    ``opening`` names what ``native_open`` timed."""
    from benchmarks.bench_incremental import ROWS as FILE_ROWS

    med = {name: statistics.median(values) for name, values in times.items()}
    baseline, full_s = f"full reload (replace), {label}", med["full"]

    def row(name: str, key: str, **extra: Any) -> dict[str, Any]:
        return {"name": f"{name}, {label}", "baseline": baseline, "seconds": med[key],
                "baseline_seconds": full_s, "ratio": med[key] / full_s, **extra}

    rows = [
        row(f"incremental, {NEW} new of {files} files x {FILE_ROWS:,} rows", "inc", target=targets[0],
            native_seconds=med["native"]),
        row(f"native floor: INSERT of {NEW} new files + COMMIT", "native"),
        row(f"incremental, nothing new, {files} files", "noop", target=targets[1]),
        row(f"nothing new, right after a load ({NEW} files inside the racy margin)", "noop_racy"),
        row(f"nothing new, first run past the margin (records {NEW} stat keys)", "noop_first"),
    ]
    if "native_open" in med:
        rows.append(row(f"native floor of nothing new: {opening}", "native_open"))
    return rows


def _nothing_new(load: Callable[[], int], times: list[float]) -> None:
    """Time one incremental ``load`` that must find nothing new into ``times``."""
    started = time.perf_counter()
    assert load() == 0
    times.append(time.perf_counter() - started)


def _age_past_the_racy_margin() -> None:
    """Wait until the files just written are older than ``core.files.RACY_NS``, as the files of
    a production folder are: their footers are then read once, by the first load, and not again
    while their stat keys hold. The 10 new files of each repeat are younger, so the nothing-new
    run right after them still opens those 10."""
    from prefect_etl_blocks.core.files import RACY_NS

    time.sleep(RACY_NS / 1e9 + 0.1)


def _resolve(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _profiled(body: Callable[[], object], loads: int) -> dict[str, float]:
    """Milliseconds per call of ``body`` spent in each span of :data:`SPANS` (inclusive)."""
    spent: dict[str, float] = collections.defaultdict(float)
    patched = []
    for label, where, attr in SPANS:
        owner = _resolve(where)
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None:
            continue

        def timed(*args: Any, _f: Any = original, _label: str = label, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - started

        setattr(owner, attr, functools.wraps(original)(timed))
        patched.append((owner, attr, original))
    try:
        body()  # warm-up
        spent.clear()
        started = time.perf_counter()
        for _ in range(loads):
            body()
        spent["total"] = time.perf_counter() - started
    finally:
        for owner, attr, original in patched:
            setattr(owner, attr, original)
    return {k: v / loads * 1e3 for k, v in spent.items()}


def _profile_rows(tmp: Path, loads: int, files: int) -> list[dict[str, Any]]:
    from benchmarks.bench_incremental import _write
    from prefect_etl_blocks import DuckDBConnection, ParquetSource

    row = pl.DataFrame({"id": [1], "v": [0.5]})
    path = str(tmp / "profile.duckdb")
    DuckDBConnection(database=path).load_frame(row, "t")
    append = _profiled(lambda: DuckDBConnection(database=path).load_frame(row, "t", mode="append"), loads)
    folder = tmp / "profile_data"
    folder.mkdir()
    for i in range(files):
        _write(folder, i)
    _age_past_the_racy_margin()
    source = ParquetSource(path=str(folder))
    inc_path = str(tmp / "profile_inc.duckdb")
    DuckDBConnection(database=inc_path).load_parquet(source, "inc", incremental=True)
    noop = _profiled(lambda: DuckDBConnection(database=inc_path).load_parquet(source, "inc", incremental=True),
                     max(5, loads // 6))
    labels = ["total", *dict.fromkeys(label for label, _, _ in SPANS)]
    return [
        {"name": f"profile: {label}", "baseline": "ms per fresh-block load",
         "append_1_row_ms": append.get(label, 0.0), "incremental_nothing_new_ms": noop.get(label, 0.0)}
        for label in labels
    ]


def run(repeats: int = 5, rows: int = ROWS, files: int = FILES) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="petl-bench-fixed-") as name:
        tmp = Path(name)
        return [
            *_append_rows(tmp, max(APPENDS, repeats)),
            *_incremental_rows(tmp, files, repeats),
            *_bulk_rows(tmp, rows, repeats),
            *_profile_rows(tmp, max(APPENDS, repeats), files),
        ]


if __name__ == "__main__":
    print(table(run(
        repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5,
        rows=int(sys.argv[2]) if len(sys.argv) > 2 else ROWS,
        files=int(sys.argv[3]) if len(sys.argv) > 3 else FILES,
    )))
