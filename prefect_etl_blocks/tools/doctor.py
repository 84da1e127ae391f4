"""``prefect-etl doctor``: check a setup in one screen and say how to fix each failure.

Each check is a small function returning a :class:`CheckResult` (``ok``, ``FAIL`` or ``skip``,
a detail and a fix), so they can be run and tested one by one. :func:`run_doctor` runs them in
order, prints one line per check and returns the exit code: 0 when nothing failed, else 1.

Every network call has a bounded timeout and never retries: a doctor that hangs on the very
server it is diagnosing is no help. Nothing is written: the DuckDB file is opened and closed
(not created), the bucket is listed (one key at most) and the SMTP session ends with ``QUIT``
before any ``MAIL FROM``.

Example:
    ```python
    from prefect_etl_blocks.tools.doctor import check_serializer

    result = check_serializer()
    assert result.status == "ok", result.line()
    ```
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from prefect_etl_blocks.core.versions import newer_than_tested
from prefect_etl_blocks.tools.doctor_checks import (
    DEFAULT_TIMEOUT_SECONDS,
    LIMIT_SUFFIX,
    CheckResult,
    ProjectHints,
    Status,
    check_api,
    check_block_types,
    check_concurrency_limits,
    check_serializer,
    check_versions,
    discover_project,
)
from prefect_etl_blocks.tools.doctor_resources import (
    check_database,
    check_notifier,
    check_result_storage,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "LIMIT_SUFFIX",
    "CheckResult",
    "ProjectHints",
    "Status",
    "check_api",
    "check_block_types",
    "check_concurrency_limits",
    "check_database",
    "check_notifier",
    "check_result_storage",
    "check_serializer",
    "check_versions",
    "discover_project",
    "run_doctor",
]


# ----------------------------------------------------------------------------- all checks


def run_doctor(
    *,
    api_url: str | None = None,
    limits: Sequence[str] = (),
    database: str | None = None,
    result_storage: str | None = None,
    notifier: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    folder: str | os.PathLike[str] = ".",
    out: TextIO | None = None,
) -> int:
    """Run every check, print one line each and a summary; return 0 when none failed, else 1.

    ``api_url`` defaults to ``PREFECT_API_URL``. Without ``limits`` or ``database`` the
    generated project in ``folder`` (if any) says which to check.
    """
    from prefect.settings import PREFECT_API_URL

    out = out or sys.stdout
    url = api_url if api_url is not None else PREFECT_API_URL.value()
    hints = discover_project(folder)
    limit_names = list(limits) or list(hints.limits)
    hints_for_limits = ProjectHints() if limits else hints
    results: list[CheckResult] = []

    def report(result: CheckResult) -> None:
        results.append(result)
        print(result.line(), file=out, flush=True)

    versions = check_versions()
    if versions.failed:  # listed only when wrong: it explains the failures that follow
        report(versions)
    api = check_api(url, timeout_seconds)
    report(api)
    needs_api = "not checked: needs the Prefect API (see the first line)"
    if api.failed:
        report(CheckResult("block types", "skip", needs_api))
    else:
        report(check_block_types(url, timeout_seconds))
    report(check_serializer())
    if api.failed and limit_names:
        report(CheckResult("concurrency limits", "skip", needs_api))
    else:
        report(check_concurrency_limits(limit_names, url, timeout_seconds, hints_for_limits))
    report(check_database(database or hints.database))
    for label, option, check in (
        ("result storage", result_storage, check_result_storage),
        ("notifier", notifier, check_notifier),
    ):
        if api.failed and option:
            report(CheckResult(label, "skip", needs_api))
        else:
            report(check(option, url, timeout_seconds))
    for note in [*hints.notes, *newer_than_tested()]:
        print(f"note  {note}", file=out)
    failed = sum(r.failed for r in results)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "FAIL", "skip")}
    verdict = "healthy" if not failed else f"{failed} check(s) failed"
    print(
        f"{verdict}: {counts['ok']} ok, {counts['FAIL']} FAIL, {counts['skip']} skip",
        file=out,
    )
    return 1 if failed else 0
