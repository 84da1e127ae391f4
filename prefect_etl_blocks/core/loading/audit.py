"""Running write-audit-publish checks inside a load's transaction, before COMMIT.

Row checks read the staged data; table checks read the target as it will be after the load
(visible only inside the transaction). All checks run, then one
:class:`~prefect_etl_blocks.core.errors.DataCheckError` names every failure, and the caller's
transaction rolls back, so the table is exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from prefect_etl_blocks.core.checks import Check, CheckResult
from prefect_etl_blocks.core.errors import DataCheckError, first_line


def run_checks(
    con: duckdb.DuckDBPyConnection, checks: Sequence[Check], *, data: str, table: str, name: str
) -> list[CheckResult]:
    """Evaluate ``checks``; raise :class:`DataCheckError` when any fails."""
    results: list[CheckResult] = []
    for check in checks:
        relation = data if check.scope == "data" else table
        try:
            results.append(check.evaluate(con, relation))
        except DataCheckError:
            raise
        except duckdb.Error as exc:
            raise DataCheckError(
                f'Check {check.name!r} on table "{name}" could not run: {first_line(exc)}. '
                "Fix the check (column names, types). The table was left exactly as it was."
            ) from exc
    failed = [r for r in results if not r.passed]
    if failed:
        lines = []
        for r in failed:
            what = r.detail or "failing rows"
            sample = "; ".join(str(row) for row in r.sample)
            lines.append(f"- {r.name}: {r.failing} {what if r.detail else 'failing row(s)'}; sample: {sample}")
        raise DataCheckError(
            f'{len(failed)} check(s) failed loading into table "{name}"; the table was left '
            "exactly as it was.\n" + "\n".join(lines)
        )
    return results
