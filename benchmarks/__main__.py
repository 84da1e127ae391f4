"""``make bench``: run every benchmark module and write ``benchmarks/RESULTS.md`` and a PNG chart.

Each ``benchmarks/bench_*.py`` exposes ``run(repeats=...) -> list[dict]``: one dict a
measurement, with at least ``name`` and ``ratio`` (ours divided by the baseline measured in the
same run; lower is better), and usually ``baseline``, ``seconds``, ``baseline_seconds``,
``target`` and free-form extras (bytes, peak RSS). A module may also set ``NOTES`` (Markdown,
shown after its table: what the figures mean, a profile). This file only gathers and renders them.

Usage: ``python -m benchmarks [--repeats N] [--only bench_duckdb,bench_parquet]``.

Each module's rows are also kept in ``benchmarks/results.json`` with the date and repeats of
the run that made them, so ``--only`` re-measures some modules and the report still shows the
others (each section says when it was measured). A module that returns no rows (for example
``bench_ducklake`` or ``bench_ducklake_fixed_cost`` outside their DuckDB 1.5.5 venv) keeps its
earlier rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
STORE = HERE / "results.json"
CHART = HERE / "results.png"
DOCS_PAGE = HERE.parent / "docs" / "benchmarks.md"
DOCS_CHART = HERE.parent / "docs" / "assets" / "benchmarks.png"


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def machine() -> list[str]:
    import duckdb
    import polars
    import prefect
    import pyarrow

    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:  # pragma: no cover
        memory = "unknown"
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {memory} RAM, {platform.platform()}",
        f"- Python {platform.python_version()}; prefect {prefect.__version__}, polars "
        f"{polars.__version__}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}",
    ]


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
    return lines


def chart(results: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios, targets = [], [], []
    for module, rows in results.items():
        for row in rows:
            if isinstance(row.get("ratio"), int | float):
                labels.append(f"{module.removeprefix('bench_')}: {row['name']}")
                ratios.append(float(row["ratio"]))
                targets.append(row.get("target"))
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5))
    ys = range(len(labels))
    colors = [
        "#2e7d32" if isinstance(t, int | float) and r <= t else ("#c62828" if isinstance(t, int | float) else "#546e7a")
        for r, t in zip(ratios, targets, strict=True)
    ]
    ax.barh(list(ys), ratios, color=colors)
    for y, t in zip(ys, targets, strict=True):
        if isinstance(t, int | float):
            ax.plot([t, t], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio to the same-run baseline (log scale; lower is better; black bar = target)")
    ax.set_title("prefect-etl-blocks benchmarks")
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated module names")
    args = parser.parse_args(argv)
    import json

    modules = [m for m in discover() if not args.only or m in args.only.split(",")]
    stored: dict[str, dict] = json.loads(STORE.read_text()) if STORE.exists() else {}
    started = time.perf_counter()
    for name in modules:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        rows = module.run(repeats=args.repeats)
        print("\n".join(table(rows)), flush=True)
        if not rows:
            print(f"{name}: no rows (see its docstring); keeping the earlier ones", flush=True)
            continue
        stored[name] = {
            "rows": rows,
            "measured": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "repeats": args.repeats,
        }
    STORE.write_text(json.dumps(stored, indent=1, default=str) + "\n")
    results = {name: stored[name]["rows"] for name in discover() if name in stored}
    lines = [
        "# Benchmark results",
        "",
        "Reproduce with `make bench` (runs `python -m benchmarks`). Every ratio divides our time "
        "(or bytes) by a baseline measured in the same run on the same machine; times are "
        f"medians over {args.repeats} repeats unless a row says otherwise. Lower is better.",
        "",
        *machine(),
        f"- Time of the last run ({', '.join(modules)}): {time.perf_counter() - started:.0f} s",
        "",
        "![ratios](results.png)",
        "",
    ]
    for name, rows in results.items():
        module = importlib.import_module(f"benchmarks.{name}")
        summary = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        when = stored[name]
        lines += [f"## {name}", "", summary, "", f"_Measured {when['measured']}, {when['repeats']} repeats._", "", *table(rows), ""]
        notes = getattr(module, "NOTES", "").strip()  # a module's own words after its table
        if notes:
            lines += [notes, ""]
    RESULTS.write_text("\n".join(lines))
    chart(results)
    # The docs carry the same report (generated; edit benchmarks/__main__.py, not the page).
    DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
    DOCS_CHART.write_bytes(CHART.read_bytes())
    page = "\n".join(lines).replace("# Benchmark results", "# Performance", 1)
    DOCS_PAGE.write_text(page.replace("](results.png)", "](assets/benchmarks.png)"))
    print(f"wrote {RESULTS.relative_to(HERE.parent)}, {CHART.relative_to(HERE.parent)} and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
