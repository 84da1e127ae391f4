"""A unit of work held open across loads: one database's share of an outer transaction (a
Prefect transaction, see :mod:`prefect_etl_blocks.runtime.transactions`). Prefect-free."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import duckdb

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.loading.engine import LoadResult

#: One load's work on a connection, given the target (as :data:`session.Work`).
Work = Callable[[duckdb.DuckDBPyConnection, str], LoadResult]


class Owner(Protocol):
    """What a unit needs of the :class:`~prefect_etl_blocks.core.warehouse.session.Session`
    that opens it (seen through this protocol, so the two modules do not import each other)."""

    backend: Any
    lock: Any
    connection: duckdb.DuckDBPyConnection | None

__all__ = ["Unit"]

_log = logging.getLogger(__name__)


class Unit:
    """One database's share of an outer unit of work: a connection inside one open DuckDB
    transaction that every load (and read) of that database joins until :meth:`end`.

    Loads run one at a time on it (:attr:`lock`: tasks in threads take turns). A load that
    fails inside it *spoils* it: DuckDB has no savepoints, so its partial writes cannot be
    undone alone, and the unit can then only roll back.
    """

    def __init__(self, session: Owner, label: str) -> None:
        self.backend = session.backend
        self.label = label
        self.lock = threading.RLock()
        self.loads: list[LoadResult] = []
        self.spoiled: str | None = None
        self.ended = False
        #: Called with ``True`` after the unit committed, ``False`` after it rolled back (what
        #: must wait for the outcome, such as a load's lineage event). A failing one is logged.
        self.after_end: list[Callable[[bool], None]] = []
        #: The session whose kept connection this is (an in-memory database), else None.
        self._keeper = session if session.backend.keeps_connection else None
        if self._keeper is not None:
            with session.lock:
                if session.connection is None:
                    session.connection = session.backend.open()
                self.con = session.connection
        else:
            self.con = self.backend.open()
        try:
            self.backend.begin(self.con)
        except BaseException:
            self._close()
            raise

    def run(self, work: Work, table: str) -> LoadResult:
        """One load inside the unit; a failure spoils it (see the class docstring)."""
        with self.lock:
            if self.ended:
                raise LoadConfigError(
                    f"Cannot load into {table!r}: the transaction it would join ({self.label}) "
                    "has already ended. Load inside the `with transaction():` block, or pass "
                    "transactional=False to commit on its own."
                )
            if self.spoiled is not None:
                raise LoadConfigError(
                    f"Cannot load into {table!r}: an earlier load in the same transaction "
                    f"({self.label}) failed ({self.spoiled}), so the transaction can only roll "
                    "back. Let the failure end the transaction, or load with "
                    "transactional=False outside it."
                )
            try:
                result = self.backend.joined(self.con, work, table)
            except BaseException as exc:
                self.spoiled = f"{type(exc).__name__} loading {table!r}"
                raise
            self.loads.append(result)
            return result

    def end(self, commit: bool) -> list[LoadResult]:
        """COMMIT (``commit=True``, unless spoiled: then ROLLBACK and raise) or ROLLBACK, then
        close the connection. Returns the loads the unit held. Safe to repeat."""
        with self.lock:
            if self.ended:
                return []
            self.ended = True
            loads, self.loads = self.loads, []
            committed = False
            try:
                if commit and self.spoiled is None:
                    self.backend.end(self.con, True)
                    committed = True
                    return loads
                with contextlib.suppress(duckdb.Error):  # DuckDB may have rolled back itself
                    self.backend.end(self.con, False)
                if commit:
                    raise LoadConfigError(
                        f"The transaction ({self.label}) was rolled back instead of committed: "
                        f"a load in it failed ({self.spoiled}). Nothing of it was kept."
                    )
                return loads
            finally:
                self._close()
                self._settle(committed)

    def _settle(self, committed: bool) -> None:
        callbacks, self.after_end = self.after_end, []
        for callback in callbacks:
            try:
                callback(committed)
            except Exception:  # noqa: BLE001 - a report must never change the outcome
                _log.warning("A callback after %s failed", self.label, exc_info=True)

    def _close(self) -> None:
        if self._keeper is None:
            self.backend.close(self.con)
