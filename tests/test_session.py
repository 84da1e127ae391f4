"""The Prefect-free session the DuckDB blocks delegate to: any backend that opens a DuckDB
connection gets the connection handling and the DatabaseBlock fetch contract."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

from prefect_etl_blocks.core.warehouse.session import Backend, Session
from prefect_etl_blocks.errors import QueryError


class CountingFile(Backend):
    """A DuckDB file opened and closed on demand, counting both."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.opened = self.closed = 0

    def open(self) -> duckdb.DuckDBPyConnection:
        self.opened += 1
        return duckdb.connect(self.path)

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        self.closed += 1
        con.close()


def test_a_session_opens_per_call_and_keeps_one_connection_while_held(tmp_path: Path) -> None:
    backend = CountingFile(tmp_path / "s.duckdb")
    session = Session(backend)
    session.execute("CREATE TABLE n AS SELECT range AS i FROM range(3)", None)
    assert session.fetch_all("SELECT count(*) FROM n", None) == [(3,)]
    assert (backend.opened, backend.closed, session.connection) == (2, 2, None)

    session.hold()
    assert session.fetch("SELECT i FROM n ORDER BY i", None, 2, streamed=True) == [(0,), (1,)]
    assert session.fetch("SELECT i FROM n ORDER BY i", None, 2, streamed=True) == [(2,)]
    assert session.fetch("SELECT i FROM n ORDER BY i", None, 2, streamed=True) == []  # stays exhausted
    assert session.query("SELECT max(i) AS m FROM n", None)["m"].to_list() == [2]
    assert backend.opened == 3 and session.connection is not None
    session.leave()
    assert (backend.closed, session.connection, session.results.cursors) == (3, None, {})


def test_a_failed_statement_leaves_nothing_open(tmp_path: Path) -> None:
    backend = CountingFile(tmp_path / "s.duckdb")
    session = Session(backend)
    with pytest.raises(QueryError):
        session.fetch("SELECT * FROM absent", None, 1, streamed=True)
    assert backend.opened == backend.closed == 1 and session.connection is None


def test_the_core_session_does_not_import_prefect() -> None:
    import subprocess

    code = "import sys, prefect_etl_blocks.core.warehouse.session, prefect_etl_blocks.core.warehouse.lake; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
