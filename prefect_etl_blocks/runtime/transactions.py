"""Loads that join Prefect transactions (``prefect.transactions.transaction()``).

Mechanism: the first load into a database inside a Prefect transaction opens a
:class:`~prefect_etl_blocks.core.warehouse.units.Unit` for it (one connection, one open DuckDB
transaction), kept in a process-wide registry under (the Prefect transaction, the database).
Every later load of that transaction into that database, from any block and any thread, joins
the same DuckDB transaction; so do the ledger rows and incremental state, which the engine
writes in the load's transaction. Hooks on the Prefect transaction COMMIT when it commits and
ROLLBACK when it rolls back, then close the connection.

Which Prefect transaction: the task engine opens one for every task run (for its result
record); those alone do not count, or every load in a task would commit only after Prefect
had already marked the task Completed. They are told apart by their logger: the task engine
passes the task run's logger (``prefect/task_engine.py``, ``transaction_context``), so the
outermost transaction of the chain that carries a task run id is that run's own. Among the
others, a load joins the nearest one with ``commit_mode=EAGER`` (it commits at its own exit),
else the outermost, whose commit is the one that counts. Every transaction in between gets a
hook too: when one of them rolls back, the unit is spoiled and can only roll back (DuckDB has
no savepoints to undo part of a transaction).

See ``docs/transactions.md`` for what it costs and what it cannot do.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prefect.transactions import BaseTransaction, CommitMode, TransactionState, get_transaction

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.options import LoadOptions
from prefect_etl_blocks.core.warehouse.session import Session, Work
from prefect_etl_blocks.core.warehouse.units import Unit

__all__ = ["alone", "ambient", "check_dry_run", "commit", "open_units", "unit_for"]

#: Set while a load commits on its own (``transactional=False``, a dry run): the session then
#: does not route its connection into a unit.
_ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar("petl_alone", default=False)
_ENDED = (TransactionState.COMMITTED, TransactionState.ROLLED_BACK)


class _Held:
    """What one Prefect transaction holds: a unit per database, in the order they opened."""

    def __init__(self, txn: BaseTransaction) -> None:
        self.txn = txn
        self.pid = os.getpid()
        self.units: dict[str, Unit] = {}
        self.hooked: set[int] = set()


_HELD: dict[int, _Held] = {}
_GUARD = threading.Lock()
#: In a process forked inside transactions: those transactions (copies that never commit here).
_FORKED_FROM: set[int] = set()


def _after_fork_in_child() -> None:
    txn = get_transaction()
    while txn is not None:
        _FORKED_FROM.add(id(txn))
        txn = txn.get_parent()
    _FORKED_FROM.update(_HELD)


os.register_at_fork(after_in_child=_after_fork_in_child)


def open_units() -> int:
    """How many databases are held by Prefect transactions of this process right now."""
    with _GUARD:
        return sum(len(held.units) for held in _HELD.values())


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Around a load that commits on its own: the session does not join a unit."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def _task_run_id(txn: BaseTransaction) -> Any:
    extra = getattr(txn.logger, "extra", None)
    return extra.get("task_run_id") if isinstance(extra, Mapping) else None


def _chain() -> tuple[BaseTransaction | None, list[BaseTransaction]]:
    """The Prefect transaction a load joins (see the module docstring) and the flow author's
    transactions from the innermost up to it; ``(None, [])`` when there is none."""
    txn = get_transaction()
    chain: list[BaseTransaction] = []
    while txn is not None:
        chain.append(txn)
        txn = txn.get_parent()
    runs: set[Any] = set()
    own: set[int] = set()
    for t in reversed(chain):  # outermost first: a task run's own transaction comes first
        run = _task_run_id(t)
        if run is not None and run not in runs:
            runs.add(run)
            own.add(id(t))
    mine = [t for t in chain if id(t) not in own]
    if not mine:
        return None, []
    for i, t in enumerate(mine):
        if t.commit_mode == CommitMode.EAGER:
            return t, mine[: i + 1]
    return mine[-1], mine


def _key(session: Session) -> str:
    return session.backend.identity() or f"session:{id(session)}"


def ambient(session: Session) -> Unit | None:
    """The unit a session's call should use: the one its database has in the current Prefect
    transaction, if a load opened one. Costs a dict lookup when no transaction holds any."""
    if not _HELD or _ALONE.get():
        return None
    owner, _ = _chain()
    if owner is None:
        return None
    held = _HELD.get(id(owner))
    if held is None or held.txn is not owner:
        return None
    unit = held.units.get(_key(session))
    return None if unit is None or unit.ended else unit


def check_dry_run(session: Session, table: str) -> None:
    """Refuse a dry run of a database that the current transaction already loaded into."""
    if ambient(session) is not None:
        raise LoadConfigError(
            f"dry_run=True into {table!r}: this Prefect transaction already loaded into the "
            "same database, and its loads are not committed yet. A dry run cannot be undone "
            "alone inside that transaction (DuckDB has no savepoints). Run the dry run before "
            "the transaction's first load into it, or outside the transaction."
        )


def commit(
    session: Session, work: Work, table: str, replayable: bool, options: LoadOptions
) -> tuple[LoadResult, Unit | None]:
    """Commit one load as ``options`` say: inside the active transaction's unit, on its own
    (``transactional=False``, or no transaction), or as a dry run that keeps nothing. Returns
    the result and the unit it joined (``None``: it is already committed, or was a dry run)."""
    if options.dry_run:
        check_dry_run(session, table)
        with alone():
            return session.commit(work, table, replayable, dry_run=True), None
    unit = unit_for(session, table, options.transactional)
    if unit is None:
        if options.transactional is None:
            _warn_if_detached(table)
        with alone():
            return session.commit(work, table, replayable), None
    return session.commit(work, table, replayable, unit=unit), unit


class TransactionRolledBack(Exception):
    """What a load's ``materialization.failed`` event names when the Prefect transaction it
    joined rolled back after the load itself had succeeded (never raised)."""


def _warn_if_detached(table: str) -> None:
    """A task run in a process-pool or Dask worker runs in a *detached* flow run context, and
    Prefect does not send the flow's transaction there (``prefect.context.serialize_context``):
    whether the flow is inside one cannot be known, so say that the load commits on its own."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and getattr(context, "detached", False):
        from prefect.logging import get_run_logger

        get_run_logger().warning(
            f"The load into {table!r} commits on its own: it runs in a worker process, which "
            "cannot join a Prefect transaction of the flow (Prefect does not send it to "
            "workers). Pass transactional=True to refuse instead, or transactional=False to "
            "say that committing on its own is intended."
        )


def unit_for(session: Session, table: str, transactional: bool | None) -> Unit | None:
    """The unit a load of ``table`` joins, opened on first use; ``None`` when the load commits
    on its own (``transactional=False``, or ``None`` outside any flow author's transaction).

    Raises:
        LoadConfigError: ``transactional=True`` outside a transaction; the transaction has
            already ended; it was opened in another process (the block was sent to a worker).
    """
    if transactional is False:
        return None
    if get_transaction() is None:
        owner, chain = None, []
    else:
        owner, chain = _chain()
    if owner is None:
        if transactional:
            raise LoadConfigError(
                f"transactional=True into {table!r}, but no Prefect transaction is active here. "
                "Load inside `with prefect.transactions.transaction():` (a task run's own "
                "transaction does not count; Prefect does not send a flow's transaction to "
                "process-pool or Dask workers), or leave transactional unset."
            )
        return None
    if owner.state in _ENDED or any(t.state == TransactionState.ROLLED_BACK for t in chain):
        raise LoadConfigError(
            f"Cannot load into {table!r}: the Prefect transaction it would join has already "
            f"{'committed' if owner.state == TransactionState.COMMITTED else 'rolled back'} "
            "(a failed task rolls back its enclosing transaction at once, even before a "
            "retry). Load in a new `with transaction():`, or pass transactional=False to "
            "commit on its own."
        )
    key = _key(session)
    with _GUARD:
        held = _HELD.get(id(owner))
        if held is None or held.txn is not owner:
            held = _HELD[id(owner)] = _Held(owner)
        if held.pid != os.getpid() or id(owner) in _FORKED_FROM:  # a copy in a forked worker
            raise LoadConfigError(
                f"Cannot load into {table!r} inside a Prefect transaction opened in another "
                f"process (pid {os.getppid()}): its commit happens there. Pass "
                "transactional=False to let this load commit on its own."
            )
        unit = held.units.get(key)
        if unit is None or unit.ended:
            label = f"Prefect transaction {owner.key or hex(id(owner))}"
            unit = held.units[key] = Unit(session, label)
        _hook(held, owner, chain)
    return unit


def _hook(held: _Held, owner: BaseTransaction, chain: list[BaseTransaction]) -> None:
    """Hooks on ``owner`` (commit, rollback) and on the transactions inside it (a rollback
    spoils the units), each added once."""
    if id(owner) not in held.hooked:
        held.hooked.add(id(owner))
        commit, rollback = _on_commit(held), _on_rollback(held)
        owner.on_commit_hooks.append(commit)
        owner.on_rollback_hooks.append(rollback)
    for txn in chain:
        if txn is owner or id(txn) in held.hooked:
            continue
        held.hooked.add(id(txn))
        txn.on_rollback_hooks.append(_on_inner_rollback(held))


def _forget(held: _Held) -> None:
    with _GUARD:
        if _HELD.get(id(held.txn)) is held:
            del _HELD[id(held.txn)]


def _describe(loads: list[LoadResult]) -> str:
    return "; ".join(f"{r.table} (load_id {r.load_id}, {r.rows} rows)" for r in loads) or "none"


def _on_commit(held: _Held) -> Any:
    def commit_loads(txn: BaseTransaction) -> None:
        """COMMIT every database the transaction loaded into, one after the other."""
        try:
            done: list[str] = []
            for key, unit in list(held.units.items()):
                loads = unit.end(True)
                done.append(key)
                if loads:
                    txn.logger.info(f"Committed loads: {_describe(loads)}")
        except BaseException as exc:
            if done:
                txn.logger.error(
                    f"The transaction's COMMIT failed ({exc}) after {len(done)} database(s) had "
                    "committed: those loads stay (no two-phase commit across databases)."
                )
            raise  # Prefect logs it and rolls the transaction back (our rollback hook below)
        finally:
            if all(unit.ended for unit in held.units.values()):
                _forget(held)

    commit_loads.log_on_run = False  # type: ignore[attr-defined]
    return commit_loads


def _on_rollback(held: _Held) -> Any:
    def roll_back_loads(txn: BaseTransaction) -> None:
        """ROLLBACK every database the transaction loaded into; log what was undone."""
        try:
            for unit in list(held.units.values()):
                loads = unit.end(False)
                if loads:
                    txn.logger.warning(
                        f"Rolled back loads (the Prefect transaction rolled back): {_describe(loads)}"
                    )
        finally:
            _forget(held)

    roll_back_loads.log_on_run = False  # type: ignore[attr-defined]
    return roll_back_loads


def _on_inner_rollback(held: _Held) -> Any:
    def spoil_loads(txn: BaseTransaction) -> None:
        """A transaction inside the one that commits rolled back: its loads cannot be undone
        alone, so every unit can now only roll back."""
        for unit in held.units.values():
            if unit.spoiled is None:
                unit.spoiled = "a transaction inside it rolled back"

    spoil_loads.log_on_run = False  # type: ignore[attr-defined]
    return spoil_loads
