"""The library's one retry condition for Prefect tasks: transient failures only, never bad data.

It needs nothing above :mod:`prefect_etl_blocks.core.errors`, so the blocks' own maintenance
tasks (``ducklake-compact`` and friends) and the tasks of :mod:`prefect_etl_blocks.integration.tasks`
share it without an import climbing the wings.
"""

from __future__ import annotations

from typing import Any

from prefect_etl_blocks.core.errors import is_transient

__all__ = ["RETRY_OPTIONS", "retry_transient"]


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect ``retry_condition_fn``: retry only when a retry can help.

    ``True`` for :class:`~prefect_etl_blocks.core.errors.TransientError` (lock timeout, transaction
    conflict, storage or network unreachable, SMTP 4xx) and unclassified network errors
    (``ConnectionError``, ``TimeoutError``, botocore/httpx connection errors);
    ``False`` for :class:`~prefect_etl_blocks.core.errors.DataError` and everything else (bad data,
    a typo'd table name, a failed check), which fails the same way every time.

    Example:
        ```python
        from prefect import task
        from prefect_etl_blocks.integration.tasks import RETRY_OPTIONS, retry_transient

        @task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
        def my_step() -> None: ...

        @task(**RETRY_OPTIONS)
        def my_other_step() -> None: ...
        ```
    """
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failed run's own exception, re-raised here
        return is_transient(exc)
    return False


#: Two retries with a growing delay, for transient failures only (see :func:`retry_transient`).
#: Spread it into ``@task(**RETRY_OPTIONS)``; override per call with ``.with_options(...)``.
RETRY_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": retry_transient,
}
