"""The load engine against DuckDB's own SQL and against dlt's DuckDB destination.

At ``ROWS`` (5M) rows of ``make_frame`` data, medians over ``repeats``; the target table is
rebuilt before every timed run (outside the timing), so each run does the same work:

* ``load_frame`` replace vs ``CREATE OR REPLACE TABLE ... AS SELECT * FROM arrow`` (target 1.1);
* upsert of ``UPDATE_ROWS`` (500k: half existing keys with new values, half new keys) into 5M
  vs one native ``MERGE INTO`` from Arrow (target 1.1);
* ``delete-insert`` (keys = ``day``) and ``scd2`` (keys = ``order_id``) vs hand-written SQL in
  one transaction;
* the same four loads through dlt's DuckDB destination, reported as dlt-time / our-time
  (``ratio`` is still ours / baseline; ``dlt_over_ours`` has the dlt figure, target >= 2).

Ours runs on one held connection (``with db:``), like the native SQL on its connection, so both
time the load itself; a call outside ``with db:`` also opens the file and checkpoints it on
close. Run ``python -m benchmarks.bench_loading [repeats] [rows]``.
"""

from __future__ import annotations

import datetime as dt
import os
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
from benchmarks.bench_results import make_frame

ROWS = 5_000_000
UPDATE_ROWS = 500_000
TARGET = 1.1
DLT_TARGET = 2.0


def timed(setup: Callable[[], object], body: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``body()`` over ``repeats`` runs, each after an untimed ``setup()``."""
    times = []
    for _ in range(repeats):
        setup()
        started = time.perf_counter()
        body()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def updates(frame: pl.DataFrame, rows: int) -> pl.DataFrame:
    """``rows`` changes: half existing keys with new values, half brand-new keys."""
    half = rows // 2
    existing = frame.sample(half, seed=1).with_columns(pl.col("value") + 1.0)
    fresh = frame.head(rows - half).with_columns(pl.col("order_id") + frame.height)
    return pl.concat([existing, fresh])


def _scd2_sql(con: duckdb.DuckDBPyConnection, src: str, as_of: dt.datetime, columns: list[str]) -> None:
    changed = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in columns if c != "order_id")
    con.execute("BEGIN")
    con.execute(
        f"UPDATE t SET valid_to = ?, is_current = false FROM {src} AS s "
        f"WHERE t.is_current AND t.order_id = s.order_id AND ({changed})",
        [as_of],
    )
    con.execute(
        f"INSERT INTO t SELECT s.*, ?::TIMESTAMP, NULL, true FROM {src} AS s WHERE NOT EXISTS "
        "(SELECT 1 FROM t WHERE t.is_current AND t.order_id = s.order_id)",
        [as_of],
    )
    con.execute("COMMIT")


def run(repeats: int = 3, rows: int = ROWS) -> list[dict[str, Any]]:
    from prefect_etl_blocks import DuckDBConnection

    frame = make_frame(rows)
    change = updates(frame, min(UPDATE_ROWS, max(2, rows // 10)))
    base_arrow = frame.to_arrow()
    columns = frame.columns
    as_of = dt.datetime(2026, 6, 1)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="petl-bench-loading-") as tmp:
        db = DuckDBConnection(database=str(Path(tmp) / "ours.duckdb"))
        native = duckdb.connect(str(Path(tmp) / "native.duckdb"))
        native.register("base_arrow", base_arrow)

        def arrow(name: str, data: pl.DataFrame) -> None:
            # Timed with the native SQL: converting the frame to Arrow is part of either load.
            native.register(name, data.to_arrow())

        def ours_seed(scd2: bool = False) -> Callable[[], None]:
            def seed() -> None:
                with db.get_connection() as con:
                    extra = ", TIMESTAMP '2026-01-01' AS valid_from, NULL::TIMESTAMP AS valid_to, true AS is_current" if scd2 else ""
                    con.register("base_arrow", base_arrow)
                    con.execute(f"CREATE OR REPLACE TABLE t AS SELECT *{extra} FROM base_arrow")
                    con.unregister("base_arrow")
            return seed

        def native_seed(scd2: bool = False) -> Callable[[], None]:
            def seed() -> None:
                extra = ", TIMESTAMP '2026-01-01' AS valid_from, NULL::TIMESTAMP AS valid_to, true AS is_current" if scd2 else ""
                native.execute(f"CREATE OR REPLACE TABLE t AS SELECT *{extra} FROM base_arrow")
            return seed

        ours: dict[str, float] = {}
        base: dict[str, float] = {}
        # Ours runs on one held connection, as the native SQL does: both time the load itself,
        # without opening the file and checkpointing it on close around every call.
        db.__enter__()
        ours["replace"] = timed(lambda: None, lambda: db.load_frame(frame, "t"), repeats)
        base["replace"] = timed(
            lambda: None,
            lambda: (arrow("fresh_arrow", frame), native.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM fresh_arrow")),
            repeats,
        )
        ours["upsert"] = timed(ours_seed(), lambda: db.load_frame(change, "t", mode="upsert", keys="order_id"), repeats)
        sets = ", ".join(f"{c} = s.{c}" for c in columns if c != "order_id")
        base["upsert"] = timed(
            native_seed(),
            lambda: arrow("change_arrow", change) or native.execute(
                f"MERGE INTO t USING change_arrow AS s ON t.order_id = s.order_id "
                f"WHEN MATCHED THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT BY NAME"
            ),
            repeats,
        )
        ours["delete-insert"] = timed(
            ours_seed(), lambda: db.load_frame(change, "t", mode="delete-insert", keys="day"), repeats
        )

        def native_delete_insert() -> None:
            arrow("change_arrow", change)
            native.execute("BEGIN")
            native.execute("DELETE FROM t WHERE day IN (SELECT DISTINCT day FROM change_arrow)")
            native.execute("INSERT INTO t SELECT * FROM change_arrow")
            native.execute("COMMIT")

        base["delete-insert"] = timed(native_seed(), native_delete_insert, repeats)
        from prefect_etl_blocks.loading import load

        def ours_scd2() -> None:
            with db.get_connection() as con:
                load(con, change, "t", mode="scd2", keys="order_id", as_of=as_of)

        ours["scd2"] = timed(ours_seed(scd2=True), ours_scd2, repeats)

        def native_scd2() -> None:
            arrow("change_arrow", change)
            _scd2_sql(native, "change_arrow", as_of, columns)

        base["scd2"] = timed(native_seed(scd2=True), native_scd2, repeats)
        native.close()
        db.__exit__(None, None, None)
        db.close()
        dlt_times = _dlt(frame, change, Path(tmp), repeats)

    labels = {
        "replace": ("load_frame replace", "CTAS from Arrow", TARGET),
        "upsert": (f"upsert {change.height:,} into {rows:,}", "native MERGE INTO", TARGET),
        "delete-insert": (f"delete-insert {change.height:,} (keys=day) into {rows:,}", "hand-written DELETE + INSERT", None),
        "scd2": (f"scd2 {change.height:,} into {rows:,}", "hand-written UPDATE + INSERT", None),
    }
    for key, (name, baseline, target) in labels.items():
        row: dict[str, Any] = {
            "name": name, "baseline": baseline, "seconds": ours[key],
            "baseline_seconds": base[key], "ratio": ours[key] / base[key],
        }
        if target:
            row["target"] = target
        dlt_s = dlt_times.get(key)
        if isinstance(dlt_s, float):
            row["dlt_seconds"] = dlt_s
            row["dlt_over_ours"] = dlt_s / ours[key]
            row["dlt_target"] = DLT_TARGET
        elif dlt_s:
            row["dlt_seconds"] = dlt_s
        results.append(row)
    return results


def _dlt(frame: pl.DataFrame, change: pl.DataFrame, tmp: Path, repeats: int) -> dict[str, Any]:
    """The same loads through dlt's DuckDB destination (seconds, or why not)."""
    try:
        import logging

        import dlt

        logging.getLogger("dlt").setLevel(logging.ERROR)
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
        # dlt's scd2 needs a row hash; for Arrow input it adds one only when asked to.
        os.environ.setdefault("NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_ID", "true")
    except ImportError:  # pragma: no cover - dlt is in the bench extra
        return dict.fromkeys(("replace", "upsert", "delete-insert", "scd2"), "dlt not installed")
    out: dict[str, Any] = {}
    base_arrow, change_arrow = frame.to_arrow(), change.to_arrow()
    counter = iter(range(10_000))

    def pipeline() -> Any:
        n = next(counter)
        return dlt.pipeline(
            pipeline_name=f"bench_{n}",
            destination=dlt.destinations.duckdb(str(tmp / f"dlt_{n}.duckdb")),
            dataset_name="bench",
            pipelines_dir=str(tmp / "dlt_pipelines"),
            progress=None,
        )

    dispositions: dict[str, Any] = {
        "upsert": ({"disposition": "merge", "strategy": "upsert"}, {"primary_key": "order_id"}),
        "delete-insert": ({"disposition": "merge", "strategy": "delete-insert"}, {"merge_key": "day"}),
        "scd2": ({"disposition": "merge", "strategy": "scd2"}, {"merge_key": "order_id"}),
    }
    try:
        out["replace"] = timed(
            lambda: None, lambda: pipeline().run(base_arrow, table_name="t", write_disposition="replace"), repeats
        )
        holder: dict[str, Any] = {}
        for key, (disposition, hints) in dispositions.items():

            def seed(disposition: Any = disposition, hints: Any = hints) -> None:
                p = pipeline()
                p.run(dlt.resource(base_arrow, name="t", write_disposition=disposition, **hints))
                holder["p"] = p

            def body(disposition: Any = disposition, hints: Any = hints) -> None:
                holder["p"].run(dlt.resource(change_arrow, name="t", write_disposition=disposition, **hints))

            out[key] = timed(seed, body, repeats)
    except Exception as exc:  # noqa: BLE001 - reported in the table instead of aborting the run
        for key in ("replace", "upsert", "delete-insert", "scd2"):
            out.setdefault(key, f"dlt failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    return out


if __name__ == "__main__":
    print(table(run(
        repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 3,
        rows=int(sys.argv[2]) if len(sys.argv) > 2 else ROWS,
    )))
