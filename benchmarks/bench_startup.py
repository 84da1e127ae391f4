"""Start-up: ``import prefect_etl_blocks``, ``prefect-etl --help`` and ``prefect-etl version``
against ``import prefect`` and ``prefect --help``, each a fresh process.

Every figure is the wall time of a new interpreter running the command to its exit (Python's own
start included), the median over ``repeats`` rounds; each round runs every command once, in
turn, so a busy machine slows all of them alike. The package loads names on first use and the
CLI imports Prefect only inside the commands that need it (docs/architecture.md), so these
cost a fraction of Prefect's own. ``prefect-etl`` runs as its console script does (``main()``
of ``prefect_etl_blocks.cli``), ``prefect --help`` as Prefect's (``prefect.cli.app``).

Run ``python -m benchmarks.bench_startup [repeats] [SOURCE]``: with ``SOURCE``, another
checkout of the package (for example a clone at an older commit) is measured instead of the
installed one.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import table

CLI = "import sys; from prefect_etl_blocks.cli import main; sys.exit(main())"
PREFECT_CLI = "import sys; from prefect.cli import app; sys.exit(app())"

#: name -> (command after ``python``, its baseline's name, target ratio or None).
COMMANDS: dict[str, tuple[list[str], str | None, float | None]] = {
    "import prefect": (["-c", "import prefect"], None, None),
    "prefect --help": (["-c", PREFECT_CLI, "--help"], None, None),
    "import prefect_etl_blocks": (["-c", "import prefect_etl_blocks"], "import prefect", 0.5),
    "prefect-etl --help": (["-c", CLI, "--help"], "prefect --help", 0.5),
    "prefect-etl version": (["-c", CLI, "version"], "prefect --help", 0.5),
}


def _environment(home: str, source: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    if source:
        env["PYTHONPATH"] = source
    return env


def measure(repeats: int = 5, source: str | None = None) -> dict[str, float]:
    """Median seconds of each command in :data:`COMMANDS`, after one warm-up round (disk cache)."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="petl-bench-startup-") as home:
        env = _environment(home, source)
        for round_ in range(repeats + 1):
            for name, (args, _, _) in COMMANDS.items():
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, *args], env=env, cwd=home, check=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                if round_:  # round 0 warms the page cache and Python's bytecode cache
                    times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def run(repeats: int = 5, source: str | None = None) -> list[dict[str, Any]]:
    seconds = measure(repeats, source)
    rows = []
    for name, (_, baseline, target) in COMMANDS.items():
        if baseline is None:
            continue
        rows.append({
            "name": name,
            "baseline": baseline,
            "seconds": seconds[name],
            "baseline_seconds": seconds[baseline],
            "ratio": seconds[name] / seconds[baseline],
            "target": target,
        })
    return rows


if __name__ == "__main__":
    print(table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5, sys.argv[2] if len(sys.argv) > 2 else None)))
