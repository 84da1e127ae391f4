"""The quarantine artifact: a load inside a Prefect run that quarantined rows
(``on_check_failure="quarantine"``) publishes a markdown artifact, key
``duckdb-quarantine-<table>``, with the rows per check and a sample of up to 10 of them.

The sample is data the load refused, so every value is rendered inert: markdown and HTML
characters are escaped, line breaks become spaces and a long value is cut to 80 characters.
Outside a run nothing is published, and an artifact that cannot be created never fails the
load (it has committed).

Example:
    ```python
    from prefect_etl_blocks.core.loading.quarantine import QuarantineReport
    from prefect_etl_blocks.runtime.quarantine_artifact import quarantine_markdown

    report = QuarantineReport("orders__quarantine", 1, (("qty >= 0", 1),),
                              ({"id": 7, "note": "<b>|x|</b>", "_check": "qty >= 0"},))
    text = quarantine_markdown(report, "a1b2")
    assert "| qty >= 0 | 1 |" in text and "&lt;b>\\\\|x\\\\|&lt;/b>" in text
    ```
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prefect_etl_blocks.core.loading.quarantine import QuarantineReport

#: Characters of a rendered cell at most (before escaping).
CELL_CHARS = 80
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_log = logging.getLogger(__name__)


def cell(value: Any) -> str:
    """``value`` as one inert markdown table cell."""
    text = "null" if value is None else str(value)
    text = "".join(" " if ch in "\r\n\t" else ch for ch in text if ch >= " " or ch in "\r\n\t")
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;")  # no HTML tag can open
    return _MARKDOWN.sub(r"\\\1", text)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def quarantine_markdown(report: QuarantineReport, load_id: str) -> str:
    """The artifact's markdown: the quarantine table, the rows per check and the sample."""
    columns = list(dict.fromkeys(k for row in report.sample for k in row))
    parts = [
        f"# Quarantined {report.rows:,} row(s) into {cell(report.table)}",
        f"Each row is counted under the first check it failed. Query them with "
        f"`_load_id = '{load_id}'`.",
        "## Rows per check",
        _table(["check", "rows"], [[name, f"{n:,}"] for name, n in report.by_check]),
        f"## Sample ({len(report.sample)} of {report.rows:,} rows)",
        _table(columns, [[row.get(c) for c in columns] for row in report.sample]) if columns else "_(none)_",
    ]
    return "\n\n".join(parts)


def artifact_slug(table: str) -> str:
    """``duckdb-quarantine-<table>`` (the load's table) in the characters Prefect allows in an
    artifact key."""
    slug = re.sub(r"[^a-z0-9]+", "-", table.lower()).strip("-") or "unnamed"
    return f"duckdb-quarantine-{slug}"[:100].rstrip("-")


def publish_quarantine(result: Any) -> Any:
    """Create the quarantine artifact of a committed load (in a Prefect run, when it
    quarantined rows); ``None`` otherwise."""
    report = getattr(result, "quarantine", None)
    if report is None or not report.rows:
        return None
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return None
        return create_markdown_artifact(
            markdown=quarantine_markdown(report, result.load_id),
            key=artifact_slug(result.table),
            description=f"{report.rows} row(s) of a load into {result.table} quarantined in {report.table}",
        )
    except Exception as exc:  # noqa: BLE001 - the load has committed; a lost artifact must not fail it
        _log.warning("Could not create the quarantine artifact for %s: %s", report.table, exc)
        return None


__all__ = ["CELL_CHARS", "artifact_slug", "cell", "publish_quarantine", "quarantine_markdown"]
