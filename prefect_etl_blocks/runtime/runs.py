"""What the running Prefect flow or task is, for the load ledger (which the Prefect-free core
receives as data, see :func:`prefect_etl_blocks.core.loading.ledger.run_ids`)."""

from __future__ import annotations

from prefect.runtime import flow_run, task_run

__all__ = ["prefect_run_ids"]


def prefect_run_ids() -> tuple[str | None, str | None]:
    """The current Prefect flow run and task run ids, or ``None`` outside Prefect."""
    try:
        flow_id, task_id = flow_run.get_id(), task_run.get_id()
    except Exception:  # noqa: BLE001 - the ledger must never fail a load over run metadata
        return None, None
    return (str(flow_id) if flow_id else None, str(task_id) if task_id else None)
