"""Timing helpers shared by the benchmark modules: medians in-process and in child processes
(for peak RSS, which only a fresh process measures honestly)."""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


_CHILD = """
import json, resource, sys, time
setup, body = sys.argv[1], sys.argv[2]
scope = {}
exec(setup, scope)
started = time.perf_counter()
exec(body, scope)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child_median(setup: str, body: str, repeats: int) -> tuple[float, float]:
    """Run ``body`` (after ``setup``) in ``repeats`` fresh processes: median seconds, max peak RSS MB."""
    results = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _CHILD, setup, body], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return statistics.median(r["seconds"] for r in results), max(r["peak_rss_mb"] for r in results)


def table(rows: list[dict]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row.get(k, ''):.3f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)
