"""``prefect-etl history``: the load ledger of a DuckDB file, as a table that fits the terminal
(:func:`history_lines`), with every column (``--wide``) or as JSON (``--json``).

:mod:`prefect_etl_blocks.tools.cli` reads the arguments; Polars and the DuckDB block are
imported only when the history is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from prefect_etl_blocks.tools.cli_errors import PROG, UsageError


def print_history(
    database: str, table: str | None = None, *, as_json: bool = False, wide: bool = False
) -> int:
    """Print the loads recorded in ``database`` (only those into ``table`` when given)."""
    path = os.path.abspath(os.path.expanduser(database))
    if not os.path.isfile(path):
        raise UsageError(
            f"DuckDB file {path} does not exist; pass the database file your flows load into."
        )
    import polars as pl

    from prefect_etl_blocks.blocks.duckdb import DuckDBConnection

    db = DuckDBConnection(database=path, read_only=True)
    history = db.load_history(table) if table else db.load_history()
    if history.is_empty():
        where = f" of table {table!r}" if table else ""
        print(f"{PROG} history: no loads{where} recorded in {path} yet.", file=sys.stderr)
    if as_json:
        print(json.dumps(history.to_dicts(), indent=2, default=_json_value))
    elif wide:
        # Every column, and load ids in full: the ledger is read to find one load.
        with pl.Config(tbl_cols=-1, tbl_rows=-1, fmt_str_lengths=48, tbl_width_chars=65_000):
            print(history)
    else:
        width = shutil.get_terminal_size((HISTORY_WIDTH, 24)).columns
        for line in history_lines(history, width):
            print(line)
    return 0


#: Columns of a terminal that ``history`` fits when it cannot ask the terminal.
HISTORY_WIDTH = 100


def _json_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def history_lines(history: Any, width: int = HISTORY_WIDTH) -> list[str]:
    """The load ledger as a table that fits ``width`` columns: finish time (UTC, to the
    minute), the first 8 characters of the load id, table, strategy, rows inserted, updated and
    deleted, and whether the load created the table (``new``), then, when any load quarantined
    rows (``on_check_failure="quarantine"``), how many (``quarantined``). A long table name is
    shortened in the middle first, then the columns that matter least are left out (load id,
    deleted, updated, new, time, quarantined); no line is wider than ``width``. ``history
    --wide`` and ``--json`` show every column in full.

    Example:
        ```python
        import polars as pl
        from prefect_etl_blocks import DuckDBConnection
        from prefect_etl_blocks.tools.cli import history_lines

        db = DuckDBConnection()
        db.load_frame(pl.DataFrame({"id": [1, 2]}), "analytics.orders")
        lines = history_lines(db.load_history(), width=60)
        assert max(len(line) for line in lines) <= 60
        assert "analytics.orders" in lines[1] and lines[1].rstrip().endswith("yes")
        ```
    """
    headers = ["finished (UTC)", "load", "table", "strategy", "inserted", "updated", "deleted", "new"]
    quarantined = "quarantined" in history.columns and bool((history["quarantined"].fill_null(0) > 0).any())
    if quarantined:
        headers.append("quarantined")
    rows = []
    for r in history.iter_rows(named=True):
        finished = r.get("finished_at") or r.get("started_at")
        strategy = str(r["strategy"]) + (f" ({r['incremental']})" if r.get("incremental") else "")
        rows.append([
            finished.strftime("%Y-%m-%d %H:%M") if finished is not None else "",
            str(r["load_id"])[:8], str(r["table_name"]), strategy,
            f"{r['inserted'] or 0:,}", f"{r['updated'] or 0:,}", f"{r['deleted'] or 0:,}",
            "yes" if r.get("created") else "no",
            *([f"{r['quarantined'] or 0:,}"] if quarantined else []),
        ])
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    keep = list(range(len(headers)))
    for drop in (None, 1, 6, 5, 7, 0, 8)[: len(headers) - 2]:  # left out, in turn, while the table name gets < 12
        if drop is not None:
            keep.remove(drop)
        room = width - sum(widths[i] + 2 for i in keep if i != 2)
        if room >= min(12, widths[2]):
            break
    widths[2] = max(min(widths[2], room), min(12, widths[2]))
    headers = [headers[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    widths = [widths[i] for i in keep]
    right = {n for n, i in enumerate(keep) if i in (4, 5, 6, 8)}

    def fit(text: str) -> str:
        return text if len(text) <= width else text[: max(width - 1, 0)] + "…"

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:  # keep both ends of a name: analytics.dai…_summary
                head = (widths[i] - 1) // 2
                cell = cell[:head] + "…" + cell[len(cell) - (widths[i] - 1 - head):]
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return fit("  ".join(out).rstrip())

    lines = [line(headers), *(line(row) for row in rows)]
    if rows:
        lines.append(fit(f"{len(rows)} load(s), oldest first; --wide or --json: every column in full"))
    return lines
