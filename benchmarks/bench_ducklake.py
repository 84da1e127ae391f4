"""Scale-out: 20 Parquet partitions of 1M rows loaded into a DuckLake (PostgreSQL catalog, local
data folder) by 1, 2 and 4 Dask worker processes, each worker appending its partitions directly,
against one DuckDB file fed by one writer (the funnel the partitioned template used to have).

Needs the DuckLake venv (``make bench-ducklake``: DuckDB 1.5.5 with the extension wheels) and
Debian's ``postgresql``; in the main venv it reports why it cannot run and returns no rows. On a
2-core machine expect little speed-up from more workers: the curve is reported as measured.
Dask cluster start-up is not timed; one repeat per configuration unless ``repeats`` says more.
Run ``python -m benchmarks.bench_ducklake [repeats] [rows_per_partition]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTITIONS = 20
ROWS = 1_000_000
WORKERS = (1, 2, 4)


def _write_partitions(folder: Path, rows: int) -> list[str]:
    import polars as pl

    paths = []
    for p in range(PARTITIONS):
        frame = pl.DataFrame({"i": pl.int_range(0, rows, eager=True)}).select(
            (pl.col("i") + p * rows).alias("id"),
            pl.lit(p, dtype=pl.Int32).alias("partition"),
            ((pl.col("i") % 997).cast(pl.Float64) * 0.25).alias("amount"),
            pl.format("c{}", pl.col("i") % 13).alias("category"),
        )
        path = folder / f"part-{p:02d}.parquet"
        frame.write_parquet(path)
        paths.append(str(path))
    return paths


def _load_partition(lake: Any, path: str) -> int:
    return lake.load_parquet(path, "events", mode="append")


def _warm(lake: Any) -> None:
    """Load the extensions and attach the lake in this worker before the clock starts."""
    lake.fetch_one("SELECT 1", _sync=True)  # client.run calls it on the event loop


def _tiny_commits(lake: Any, worker: int, commits: int) -> int:
    import polars as pl

    for i in range(commits):
        lake.load_frame(pl.DataFrame({"worker": [worker], "i": [i]}), "commits", mode="append")
    return commits


def _ducklake_available() -> str | None:
    import duckdb

    from prefect_etl_blocks.compat import duckdb_version_tag
    from prefect_etl_blocks.extensions import find_wheel_extension

    tag = duckdb_version_tag(duckdb.connect())
    missing = [n for n in ("ducklake", "postgres") if find_wheel_extension(n, tag) is None]
    if missing:
        return (
            f"bench_ducklake needs the DuckLake venv (no extension wheels for {', '.join(missing)} on "
            f"DuckDB {tag}): run `make bench-ducklake`."
        )
    return None


#: DuckLake's commit retry defaults wait 100 ms, growing 1.5x; the tuned rows wait 5 ms.
TUNED = {"ducklake_retry_wait_ms": 5, "ducklake_retry_backoff": 1.5, "ducklake_max_retry_count": 100}


def run(repeats: int = 1, rows: int = ROWS) -> list[dict[str, Any]]:
    reason = _ducklake_available()
    if reason:
        print(reason, file=sys.stderr)
        return []
    from dask.distributed import Client, LocalCluster

    from prefect_etl_blocks import DuckDBConnection
    from prefect_etl_blocks.ducklake import DuckLakeConnection
    from tests.fixtures.postgres import start_postgres, stop_postgres

    total = PARTITIONS * rows
    server = start_postgres()
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="petl-bench-ducklake-") as tmp:
            root = Path(tmp)
            (root / "parts").mkdir()
            paths = _write_partitions(root / "parts", rows)

            def single_writer() -> float:
                db = DuckDBConnection(database=str(root / f"one-{time.monotonic_ns()}.duckdb"))
                started = time.perf_counter()
                for path in paths:
                    db.load_parquet(path, "events", mode="append")
                seconds = time.perf_counter() - started
                assert db.fetch_one("SELECT count(*) FROM events") == (total,)
                return seconds

            base = statistics.median(single_writer() for _ in range(repeats))
            results.append({"name": f"DuckDB file, 1 writer ({PARTITIONS}x{rows:,} rows)", "baseline": "itself",
                            "seconds": base, "baseline_seconds": base, "ratio": 1.0,
                            "rows_per_s": total / base})
            for workers, settings in [(w, {}) for w in WORKERS] + [(w, TUNED) for w in WORKERS[1:]]:
                times = []
                for _ in range(repeats):
                    database = server.create_database()
                    lake = DuckLakeConnection(catalog=f"postgres:{server.dsn(database)}", settings=settings,
                                              data_path=str(root / f"lake-{database}"))
                    lake.execute("CREATE TABLE events (id BIGINT, partition INTEGER, amount DOUBLE, category VARCHAR)")
                    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
                        client.wait_for_workers(workers)
                        client.run(_warm, lake)
                        started = time.perf_counter()
                        futures = client.map(_load_partition, [lake] * len(paths), paths, pure=False)
                        written = sum(client.gather(futures))
                        times.append(time.perf_counter() - started)
                    assert written == total
                    assert lake.fetch_all("SELECT count(*), count(DISTINCT id) FROM events") == [(total, total)]
                seconds = statistics.median(times)
                tuned = ", retry wait 5 ms" if settings else ""
                results.append({"name": f"DuckLake, {workers} Dask worker process(es){tuned}", "baseline": "DuckDB file, 1 writer",
                                "seconds": seconds, "baseline_seconds": base, "ratio": seconds / base,
                                "rows_per_s": total / seconds})
            results += _commit_rate(server, root, repeats)
    finally:
        stop_postgres(server)
    return results


def _commit_rate(server: Any, root: Path, repeats: int, commits: int = 200) -> list[dict[str, Any]]:
    """How many one-row commits per second the catalog takes from 1 and 4 worker processes:
    the shared step that bounds a lake's write rate when partitions are tiny."""
    from dask.distributed import Client, LocalCluster

    from prefect_etl_blocks.ducklake import DuckLakeConnection

    rows, base = [], None
    for workers, settings in ((1, {}), (4, {}), (4, TUNED)):
        times = []
        for _ in range(repeats):
            database = server.create_database()
            lake = DuckLakeConnection(catalog=f"postgres:{server.dsn(database)}", data_path=str(root / f"c-{database}"),
                                      settings=settings)
            lake.execute("CREATE TABLE commits (worker INTEGER, i INTEGER)")
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
                client.wait_for_workers(workers)
                client.run(_warm, lake)
                started = time.perf_counter()
                futures = client.map(_tiny_commits, [lake] * workers, range(workers), [commits // workers] * workers,
                                     pure=False)
                done = sum(client.gather(futures))
                times.append(time.perf_counter() - started)
            assert done == commits and lake.fetch_all("SELECT count(*) FROM commits") == [(commits,)]
        seconds = statistics.median(times)
        base = base or seconds
        tuned = ", retry wait 5 ms" if settings else ""
        rows.append({"name": f"catalog: {commits} one-row commits from {workers} worker(s){tuned}", "baseline": "1 worker",
                     "seconds": seconds, "baseline_seconds": base, "ratio": seconds / base,
                     "commits_per_s": commits / seconds})
    return rows


if __name__ == "__main__":
    from benchmarks._common import table

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else ROWS
    print(table(run(repeats=repeats, rows=rows)))
