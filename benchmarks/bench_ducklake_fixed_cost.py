"""A DuckLake load's fixed cost (issue 22), both ways a load runs: a fresh
``DuckLakeConnection(...)`` per load (as a Prefect task makes one) and one held connection
(``with lake:``), each against native DuckLake doing the same SQL the same way. The catalog is a
real PostgreSQL (Debian's, started here and stopped by PID), the data a local folder; ours and
native each get their own catalog database and data folder.

* Native, fresh: ``duckdb.connect()`` + ``LOAD ducklake`` + ``LOAD postgres`` + ``ATTACH
  'ducklake:postgres:...'`` + the SQL + ``close()``. Native, held: the SQL on an open attached
  connection. A fresh block reuses the process's DuckDB instance with the lake attached (as every
  task after the first in a worker process does), so the ``native_cursor`` columns add a second
  native baseline that pays the same: a cursor of an attached instance + ``USE lake`` + the SQL.
* ``replace`` of ``ROWS`` (1M) rows vs ``CREATE OR REPLACE TABLE t AS SELECT * FROM arrow``;
  ``upsert`` of 100k rows (half new keys) into 1M vs one ``MERGE INTO`` (what our upsert runs on
  DuckLake 1.5.5 too); the table is rebuilt before every timed upsert, outside the timing.
* ``1-row append``: ``over_native_ms`` is ours minus native (``INSERT``), medians of ``APPENDS``.
  Both catalogs keep DuckLake's default data inlining (the row lands in PostgreSQL, no Parquet file).
* ``incremental``: ``load_parquet(..., incremental=True)`` after 10 new files arrived beside
  ``FILES`` (200) loaded ones (10,000 rows each), and again with nothing new, as a share of a full
  reload (``mode="replace"``) in the same mode; the native floor is ``BEGIN; INSERT ...
  read_parquet([new files]); COMMIT`` knowing which files are new.
* ``profile:`` rows: where a fresh-block 1-row append and a fresh-block incremental run with
  nothing new spend their milliseconds (inclusive spans).

Needs the DuckLake venv (``make bench-ducklake``) and Debian's ``postgresql``; elsewhere it
reports why it cannot run and returns no rows. Sizes are chosen so the module runs in about
3-5 minutes on a 2-core machine. Every ours/native set runs interleaved (order rotating),
medians over ``repeats``. Run ``python -m benchmarks.bench_ducklake_fixed_cost [repeats] [rows] [files]``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

#: Shown after the table in RESULTS.md and docs/benchmarks.md (``benchmarks/__main__.py``); kept
#: in a Markdown file beside this module.
NOTES = (Path(__file__).parent / "bench_ducklake_fixed_cost.md").read_text()  # before/after, profile

ROWS = 1_000_000
FILES = 200
NEW = 10
APPENDS = 30


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                 setup: Callable[[], object] = lambda: None) -> dict[str, float]:
    """Median seconds of each of ``fns``, run in a rotating order, each after an untimed ``setup()``."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            setup()
            started = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - started)
    return {n: statistics.median(t) for n, t in times.items()}


class _Lakes:
    """The two catalogs (ours, native) on one PostgreSQL server, and native connections to them."""

    def __init__(self, server: Any, root: Path) -> None:
        self.server, self.root = server, root
        self.dbs: dict[str, str] = {}

    def make(self, name: str) -> str:
        self.dbs[name] = self.server.create_database()
        return name

    def ours(self, name: str) -> Any:
        from prefect_etl_blocks.ducklake import DuckLakeConnection

        return DuckLakeConnection(catalog=f"postgres:{self.server.dsn(self.dbs[name])}",
                                  data_path=str(self.root / f"data-{name}"))

    def native(self, name: str) -> Any:
        """``duckdb.connect()`` + LOAD + ATTACH + USE: what native DuckLake pays per fresh connection."""
        import duckdb

        con = duckdb.connect()
        con.execute("LOAD ducklake")
        con.execute("LOAD postgres")
        target = f"ducklake:postgres:{self.server.dsn(self.dbs[name])}"
        con.execute(f"ATTACH '{target}' AS lake (DATA_PATH '{self.root / f'data-{name}'}')")
        con.execute("USE lake")
        return con


def _native_cursor(base: Any) -> Any:
    cur = base.cursor()
    cur.execute("USE lake")
    return cur


def _row(name: str, mode: str, baseline: str, t: dict[str, float], **extra: Any) -> dict[str, Any]:
    label = "fresh block per load" if mode == "fresh" else "held connection"
    row: dict[str, Any] = {
        "name": f"{name}, {label}",
        "baseline": f"native {baseline} ({'connect + LOAD + ATTACH + SQL + close' if mode == 'fresh' else 'held'})",
        "seconds": t["ours"], "baseline_seconds": t["native"], "ratio": t["ours"] / t["native"],
    }
    if "cursor" in t:
        row["native_cursor_seconds"] = t["cursor"]
        row["ratio_vs_native_cursor"] = t["ours"] / t["cursor"]
    row.update(extra)
    return row


def _bulk_rows(lakes: _Lakes, rows: int, repeats: int) -> list[dict[str, Any]]:
    from benchmarks.bench_fixed_cost import _frames

    frame, change = _frames(rows)  # the change: a tenth of the rows (100k of 1M), half new keys
    sets = ", ".join(f"{c} = s.{c}" for c in frame.columns if c != "order_id")
    merge = (f"MERGE INTO t USING change_arrow AS s ON t.order_id = s.order_id "
             f"WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT BY NAME")
    ctas = "CREATE OR REPLACE TABLE t AS SELECT * FROM fresh_arrow"
    ours_name, native_name = lakes.make("bulk_ours"), lakes.make("bulk_native")
    arrow, change_arrow = frame.to_arrow(), change.to_arrow()
    seeders = {n: lakes.native(n) for n in (ours_name, native_name)}

    def seed() -> None:
        for con in seeders.values():
            con.register("seed_arrow", arrow)
            con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM seed_arrow")

    seed()
    ours_block = lakes.ours(ours_name)
    ours_block.load_frame(frame, "t")  # the ledger exists before timing, as on any later run
    base = lakes.native(native_name)

    def on(con_factory: Callable[[], Any], sql: str, name: str, data: Any, close: bool) -> Callable[[], None]:
        def body() -> None:
            con = con_factory()
            con.register(name, data)
            con.execute(sql)
            if close:
                con.close()
        return body

    out: list[dict[str, Any]] = []
    fresh_native = functools.partial(lakes.native, native_name)
    cursor_native = functools.partial(_native_cursor, base)
    t = _interleaved({
        "ours": lambda: lakes.ours(ours_name).load_frame(frame, "t"),
        "native": on(fresh_native, ctas, "fresh_arrow", arrow, True),
        "cursor": on(cursor_native, ctas, "fresh_arrow", arrow, True),
    }, repeats)
    out.append(_row(f"replace {rows:,} rows", "fresh", "CTAS from Arrow", t))
    t = _interleaved({
        "ours": lambda: lakes.ours(ours_name).load_frame(change, "t", mode="upsert", keys="order_id"),
        "native": on(fresh_native, merge, "change_arrow", change_arrow, True),
        "cursor": on(cursor_native, merge, "change_arrow", change_arrow, True),
    }, repeats, seed)
    out.append(_row(f"upsert {change.height:,} into {rows:,}", "fresh", "MERGE INTO", t))
    held = lakes.native(native_name)
    with ours_block:
        t = _interleaved({
            "ours": lambda: ours_block.load_frame(frame, "t"),
            "native": on(lambda: held, ctas, "fresh_arrow", arrow, False),
        }, repeats)
        out.append(_row(f"replace {rows:,} rows", "held", "CTAS from Arrow", t))
        t = _interleaved({
            "ours": lambda: ours_block.load_frame(change, "t", mode="upsert", keys="order_id"),
            "native": on(lambda: held, merge, "change_arrow", change_arrow, False),
        }, repeats, seed)
        out.append(_row(f"upsert {change.height:,} into {rows:,}", "held", "MERGE INTO", t))
    for con in (held, base, *seeders.values()):
        con.close()
    return out


def _append_rows(lakes: _Lakes, loads: int) -> list[dict[str, Any]]:
    import polars as pl

    row = pl.DataFrame({"id": [1], "v": [0.5]})
    src = row.to_arrow()
    ours_name, native_name = lakes.make("one_ours"), lakes.make("one_native")
    lakes.ours(ours_name).load_frame(row, "t")
    setup = lakes.native(native_name)
    setup.execute("CREATE TABLE t (id BIGINT, v DOUBLE)")
    inlining = setup.execute("SELECT value FROM lake.options() WHERE option_name = 'data_inlining_row_limit'").fetchall()
    setup.close()
    base = lakes.native(native_name)

    def native(con_factory: Callable[[], Any], close: bool) -> Callable[[], None]:
        def body() -> None:
            con = con_factory()
            con.register("src", src)
            con.execute("INSERT INTO t SELECT * FROM src")
            if close:
                con.close()
        return body

    fresh = _interleaved({
        "ours": lambda: lakes.ours(ours_name).load_frame(row, "t", mode="append"),
        "native": native(functools.partial(lakes.native, native_name), True),
        "cursor": native(functools.partial(_native_cursor, base), True),
    }, loads)
    block = lakes.ours(ours_name)
    with block:
        held = _interleaved({"ours": lambda: block.load_frame(row, "t", mode="append"),
                             "native": native(lambda: base, False)}, loads)
    base.close()
    limit = inlining[0][0] if inlining else "default"
    out = []
    for mode, t in (("fresh", fresh), ("held", held)):
        extra = {"over_native_ms": (t["ours"] - t["native"]) * 1e3}
        if "cursor" in t:
            extra["over_native_cursor_ms"] = (t["ours"] - t["cursor"]) * 1e3
        out.append(_row(f"1-row append (data_inlining_row_limit {limit})", mode, "INSERT", t, **extra))
    return out


def _incremental_rows(lakes: _Lakes, files: int, repeats: int) -> list[dict[str, Any]]:
    from benchmarks.bench_fixed_cost import incremental_rows_in

    return incremental_rows_in(
        lakes.root / "files", files,
        lambda source, mode, start: _incremental_mode(lakes, source, mode, files, start, repeats),
    )


def _incremental_mode(
    lakes: _Lakes, source: Any, mode: str, files: int, next_index: int, repeats: int
) -> tuple[list[dict[str, Any]], int]:
    """One mode of the incremental rows (bench_fixed_cost.incremental_repeats), on lakes."""
    from benchmarks.bench_fixed_cost import incremental_repeats, incremental_result_rows

    inc_name, full_name, native_name = (lakes.make(f"{mode}_{n}") for n in ("inc", "full", "native"))
    lakes.ours(inc_name).load_parquet(source, "inc", incremental=True)
    lakes.ours(full_name).load_parquet(source, "full", mode="replace")
    con = lakes.native(native_name)
    con.execute("CREATE TABLE native AS SELECT * FROM read_parquet($g)", {"g": str(Path(source.path) / "*.parquet")})
    con.close()
    inc_block, full_block = lakes.ours(inc_name), lakes.ours(full_name)

    def block(which: Any, name: str) -> Any:
        return lakes.ours(name) if mode == "fresh" else which

    held_native = lakes.native(native_name) if mode == "held" else None
    with contextlib.ExitStack() as stack:
        if mode == "held":
            stack.enter_context(inc_block)
            stack.enter_context(full_block)
        times, next_index = incremental_repeats(
            Path(source.path), next_index, repeats,
            full_load=lambda: block(full_block, full_name).load_parquet(source, "full", mode="replace"),
            ours_load=lambda: block(inc_block, inc_name).load_parquet(source, "inc", incremental=True),
            native_con=lambda: (held_native or lakes.native(native_name), held_native is None),
            native_open=None if held_native else lambda: lakes.native(native_name).close(),
        )
    if held_native is not None:
        held_native.close()
    label = "fresh block per load" if mode == "fresh" else "held connection"
    return incremental_result_rows(times, files, label, "connect + LOAD + ATTACH + close"), next_index


# ----------------------------------------------------------------------------- profile
_LAKE = "prefect_etl_blocks.core.warehouse.lake"
_SNAP = "prefect_etl_blocks.core.warehouse.lake_snapshots"
#: (label, module, attribute): inclusive spans, as ``bench_fixed_cost.SPANS``. A label may name
#: several functions (one name imported into several modules, older and newer code paths).
SPANS = (
    ("opening: cursor of the shared instance + USE lake", f"{_LAKE}.LakeBackend", "open"),
    ("opening: cursor of the shared instance + USE lake", f"{_LAKE}.LakeBackend", "open_for_load"),
    ("opening: new instance (connect, LOAD, ATTACH), first load of a process", _LAKE, "_instance"),
    ("lake: whole load on the connection (_load_into_lake)", _LAKE, "_load_into_lake"),
    ("name resolution (resolve)", "prefect_etl_blocks.core.loading.ledger", "resolve"),
    ("name resolution (resolve)", _LAKE, "resolve"),
    ("name resolution (resolve)", _SNAP, "resolve"),
    ("name resolution (resolve)", _LAKE, "qualified"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.engine", "probe"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.incremental_files", "probe"),
    ("catalog: schema, table, ledger present", "prefect_etl_blocks.core.loading.ledger", "ensure_state"),
    ("transaction: in_transaction", "prefect_etl_blocks.core.loading.connections", "in_transaction"),
    ("transaction: in_transaction", _LAKE, "in_transaction"),
    ("transaction: in_transaction", f"{_LAKE}.LakeBackend", "in_transaction"),
    ("write: strategy (staging, contracts, SQL)", "prefect_etl_blocks.core.loading.engine", "_apply"),
    ("write: ledger row (with the snapshot read)", "prefect_etl_blocks.core.loading.ledger", "record"),
    ("snapshot: read (ducklake_current_snapshot)", _LAKE, "read_snapshot"),
    ("snapshot: read (ducklake_current_snapshot)", _LAKE, "current_snapshot"),
    ("snapshot: committed (commit_snapshot)", _LAKE, "commit_snapshot"),
    ("incremental: listing (with size and mtime)", "prefect_etl_blocks.core.loading.file_manifest", "listed"),
    ("incremental: listing (with size and mtime)", "prefect_etl_blocks.core.loading.incremental_files", "listed"),
    ("incremental: footers (SHA-256)", "prefect_etl_blocks.core.loading.file_manifest", "add_footers"),
    ("incremental: footers (SHA-256)", "prefect_etl_blocks.core.loading.file_manifest", "identities"),
    ("incremental: footers (SHA-256)", "prefect_etl_blocks.core.loading.incremental_files", "add_footers"),
    ("incremental: manifest (in the transaction)", "prefect_etl_blocks.core.loading.file_manifest", "read_manifest"),
    ("incremental: manifest (in the transaction)", "prefect_etl_blocks.core.loading.incremental_files", "read_manifest"),
    ("incremental: manifest (in the transaction)", "prefect_etl_blocks.core.loading.ledger", "migrate_keys"),
    ("close the cursor", "prefect_etl_blocks.core.warehouse.session.Backend", "close"),
)
#: Context managers timed on entry and exit (``exit``: only the exit, where COMMIT runs).
CM_SPANS = (
    ("commit: COMMIT of the load's transaction (DuckLake's own)", "prefect_etl_blocks.core.loading.engine", "transaction", "exit"),
    ("commit: COMMIT of the load's transaction (DuckLake's own)", "prefect_etl_blocks.core.loading.incremental_files", "transaction", "exit"),
    ("USE memory / USE lake around the load", _LAKE, "memory_default", "both"),
)


@contextlib.contextmanager
def _cm_spans(spent: dict[str, float]) -> Iterator[None]:
    from benchmarks.bench_fixed_cost import _resolve

    patches = []
    for label, where, attr, part in CM_SPANS:
        owner = _resolve(where)
        original = getattr(owner, attr, None)
        if original is None:
            continue

        @contextlib.contextmanager
        def timed(*args: Any, _f: Any = original, _label: str = label, _part: str = part, **kwargs: Any) -> Iterator[Any]:
            cm = _f(*args, **kwargs)
            started = time.perf_counter()
            value = cm.__enter__()
            if _part == "both":
                spent[_label] += time.perf_counter() - started
            try:
                yield value
            except BaseException:
                if not cm.__exit__(*sys.exc_info()):
                    raise
            else:
                started = time.perf_counter()
                cm.__exit__(None, None, None)
                spent[_label] += time.perf_counter() - started

        patches.append(mock.patch.object(owner, attr, timed))
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def _profiled(body: Callable[[], object], loads: int) -> dict[str, float]:
    """Milliseconds per load in each span of :data:`SPANS` and :data:`CM_SPANS`."""
    import benchmarks.bench_fixed_cost as fixed

    spent: dict[str, float] = collections.defaultdict(float)

    calls = [0]

    def counted() -> None:
        calls[0] += 1
        if calls[0] == 2:  # fixed._profiled's first call is a warm-up: forget its spans too
            spent.clear()
        body()

    with mock.patch.object(fixed, "SPANS", SPANS), _cm_spans(spent):
        timings = fixed._profiled(counted, loads)
    return {**timings, **{k: v / loads * 1e3 for k, v in spent.items()}}


def _profile_rows(lakes: _Lakes, loads: int, files: int) -> list[dict[str, Any]]:
    import polars as pl

    from benchmarks.bench_fixed_cost import _age_past_the_racy_margin
    from benchmarks.bench_incremental import _write
    from prefect_etl_blocks import ParquetSource

    row = pl.DataFrame({"id": [1], "v": [0.5]})
    name = lakes.make("profile")
    lakes.ours(name).load_frame(row, "t")
    append = _profiled(lambda: lakes.ours(name).load_frame(row, "t", mode="append"), loads)
    folder = lakes.root / "profile_files"
    folder.mkdir()
    for i in range(files):
        _write(folder, i)
    _age_past_the_racy_margin()
    source = ParquetSource(path=str(folder))
    lakes.ours(name).load_parquet(source, "inc", incremental=True)
    noop = _profiled(lambda: lakes.ours(name).load_parquet(source, "inc", incremental=True), max(5, loads // 2))
    labels = ["total", *dict.fromkeys(label for label, *_ in (*SPANS, *CM_SPANS))]
    return [
        {"name": f"profile: {label}", "baseline": "ms per fresh-block load",
         "append_1_row_ms": append.get(label, 0.0), "incremental_nothing_new_ms": noop.get(label, 0.0)}
        for label in labels
    ]


def _available() -> str | None:
    from benchmarks.bench_ducklake import _ducklake_available

    reason = _ducklake_available()
    return reason and reason.replace("bench_ducklake", "bench_ducklake_fixed_cost")


def run(repeats: int = 5, rows: int = ROWS, files: int = FILES, only: str = "") -> list[dict[str, Any]]:
    reason = _available()
    if reason:
        print(reason, file=sys.stderr)
        return []
    from tests.fixtures.postgres import start_postgres, stop_postgres

    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="petl-bench-lake-fixed-") as name:
            lakes = _Lakes(server, Path(name))
            parts = {
                "append": lambda: _append_rows(lakes, max(APPENDS, repeats)),
                "incremental": lambda: _incremental_rows(lakes, files, repeats),
                "bulk": lambda: _bulk_rows(lakes, rows, repeats),
                "profile": lambda: _profile_rows(lakes, max(APPENDS, repeats), files),
            }
            out: list[dict[str, Any]] = []
            for key, part in parts.items():
                if not only or key in only.split(","):
                    out += part()
            return out
    finally:
        stop_postgres(server)


if __name__ == "__main__":
    from benchmarks._common import table

    print(table(run(
        repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 5,
        rows=int(sys.argv[2]) if len(sys.argv) > 2 else ROWS,
        files=int(sys.argv[3]) if len(sys.argv) > 3 else FILES,
        only=sys.argv[4] if len(sys.argv) > 4 else "",
    )))
