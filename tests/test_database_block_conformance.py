"""Prefect's ``DatabaseBlock`` contract as Prefect users already use it with prefect-sqlalchemy's
``SqlAlchemyConnector``: the recipes of its documentation, written here in our own words, run
sync and async (in Prefect flows and tasks) against ``DuckDBConnection`` on a real file and
``DuckLakeConnection`` on a PostgreSQL catalog.

The contract (prefect-sqlalchemy ``database.py``): a fetch called again with the same operation
and parameters continues the same result; an exhausted result returns ``[]`` (``None`` for
``fetch_one``) and keeps doing so until ``reset_connections()`` or ``close()``; ``__exit__``
closes. ``execute`` and ``execute_many`` always run and leave cached results alone. Ours differs
on purpose in one place, documented in docs/blocks/duckdb_connection.md: a ``fetch_all`` that
finds no cached result runs the query and caches nothing.

The DuckLake cases need DuckDB 1.5.5 and are marked ``ducklake`` (run by ci/ducklake-leg.sh).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect import flow, task

from prefect_etl_blocks import DuckDBConnection, DuckLakeConnection
from prefect_etl_blocks.errors import DuckDBLockTimeoutError, QueryError
from prefect_etl_blocks.tasks import load_report

KINDS = ["duckdb", pytest.param("ducklake", marks=[pytest.mark.ducklake, pytest.mark.timeout(300)])]
PLANETS = [("Mercury", 0), ("Venus", 0), ("Earth", 1), ("Mars", 2), ("Jupiter", 95)]
BY_NAME = "SELECT name FROM planets ORDER BY name"
#: A loop that never ends is the failure these tests exist to catch: stop it and fail instead.
MAX_CALLS = 20


@pytest.fixture(params=KINDS)
def block(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh database of each kind: a DuckDB file, or a lake on a PostgreSQL catalog."""
    if request.param == "duckdb":
        db: Any = DuckDBConnection(database=str(tmp_path / "warehouse.duckdb"), lock_timeout_seconds=10)
    else:
        pg_server = request.getfixturevalue("pg_server")
        catalog = f"postgres:{pg_server.dsn(pg_server.create_database())}"
        db = DuckLakeConnection(catalog=catalog, data_path=str(tmp_path / "data"), lock_timeout_seconds=60)
    yield db
    db.close()


@pytest.fixture
def planets(block: Any) -> Any:
    block.execute("CREATE TABLE planets (name VARCHAR, moons INTEGER)")
    block.execute_many("INSERT INTO planets VALUES (?, ?)", PLANETS)
    return block


def _pages(db: Any, operation: str, size: int, parameters: Any = None) -> list[list[tuple]]:
    """The documented loop: fetch_many until it returns no rows."""
    pages = []
    while True:
        rows = db.fetch_many(operation, parameters, size=size)
        if not rows:
            return pages
        pages.append(rows)
        assert len(pages) < MAX_CALLS, f"fetch_many never returned []: {pages[:4]} ..."


def _names(rows: list[tuple]) -> list[str]:
    return [row[0] for row in rows]


ALPHABETICAL = sorted(name for name, _ in PLANETS)


# ---------------------------------------------------------------------- the recipes, sync
@pytest.mark.parametrize("inside_with", [False, True], ids=["no-with", "with"])
def test_fetch_many_loop_ends_with_empty_and_stays_empty_until_reset(planets: Any, inside_with: bool) -> None:
    def body() -> None:
        pages = _pages(planets, BY_NAME, size=2)
        assert [_names(p) for p in pages] == [ALPHABETICAL[:2], ALPHABETICAL[2:4], ALPHABETICAL[4:]]
        assert planets.fetch_many(BY_NAME, size=2) == []  # and it keeps saying so
        assert planets.fetch_many(BY_NAME, size=2) == []
        assert planets.fetch_one(BY_NAME) is None
        planets.reset_connections()  # forget it: the next call runs the query anew
        assert _names(planets.fetch_many(BY_NAME, size=3)) == ALPHABETICAL[:3]

    if inside_with:
        with planets:
            body()
    else:
        body()


def test_the_fetch_methods_continue_one_result(planets: Any) -> None:
    """Any fetch method with the same operation and parameters continues the same result."""
    query, big = "SELECT name FROM planets WHERE moons >= ? ORDER BY name", [0]
    assert planets.fetch_one(query, big) == (ALPHABETICAL[0],)
    assert _names(planets.fetch_many(query, big, size=2)) == ALPHABETICAL[1:3]
    assert _names(planets.fetch_all(query, big)) == ALPHABETICAL[3:]  # the remaining rows
    assert planets.fetch_one(query, big) is None
    assert planets.fetch_many(query, big, size=2) == []
    assert planets.fetch_all(query, big) == []
    # Other parameters are another result.
    assert planets.fetch_many(query, [2], size=5) == [("Jupiter",), ("Mars",)]
    planets.reset_connections()
    assert _names(planets.fetch_all(query, big)) == ALPHABETICAL


def test_fetch_one_loop_reads_every_row_once(planets: Any) -> None:
    """prefect-sqlalchemy's recipe: ``results = True; while results: results = fetch_one(...)``."""
    seen = []
    result: Any = True
    while result:
        result = planets.fetch_one("SELECT name, moons FROM planets ORDER BY moons DESC, name")
        seen.append(result)
        assert len(seen) < MAX_CALLS, "fetch_one never returned None"
    assert seen[:-1] == sorted(PLANETS, key=lambda p: (-p[1], p[0])) and seen[-1] is None


def test_fetch_all_without_a_cached_result_runs_anew(planets: Any) -> None:
    """Our one deliberate difference: fetch_all caches nothing of its own, so it can read a
    table again after it changed (prefect-sqlalchemy returns [] the second time)."""
    count = "SELECT count(*) FROM planets"
    assert planets.fetch_all(count) == [(5,)]
    planets.execute("INSERT INTO planets VALUES ('Saturn', 146)")
    assert planets.fetch_all(count) == [(6,)]


def test_execute_and_execute_many_leave_cached_results_alone(planets: Any) -> None:
    assert _names(planets.fetch_many(BY_NAME, size=2)) == ALPHABETICAL[:2]
    planets.execute("INSERT INTO planets VALUES ($name, $moons)", {"name": "Saturn", "moons": 146})
    planets.execute_many("INSERT INTO planets VALUES (?, ?)", [("Uranus", 28), ("Neptune", 16)])
    # The result continues where it stopped (it was not restarted by the writes) ...
    assert _names(planets.fetch_many(BY_NAME, size=10)) == ALPHABETICAL[2:]
    assert planets.fetch_many(BY_NAME, size=10) == []
    planets.execute("DELETE FROM planets WHERE name = 'Uranus'")
    assert planets.fetch_many(BY_NAME, size=10) == []  # ... and an exhausted one stays so.
    # The writes happened, and every one of them was committed.
    assert planets.fetch_all("SELECT count(*) FROM planets") == [(7,)]


def test_a_fetch_one_result_survives_statements_between_rows(planets: Any) -> None:
    assert planets.fetch_one(BY_NAME) == (ALPHABETICAL[0],)
    planets.execute("INSERT INTO planets VALUES ('Saturn', 146)")
    assert planets.query("SELECT count(*) AS n FROM planets")["n"].to_list() == [6]
    # The result goes on with the rows of its own run: no restart, no Saturn.
    assert planets.fetch_one(BY_NAME) == (ALPHABETICAL[1],)
    assert _names(planets.fetch_many(BY_NAME, size=10)) == ALPHABETICAL[2:]
    assert planets.fetch_one(BY_NAME) is None


def test_the_documented_recipe_runs_as_a_prefect_flow_with_tasks(block: Any) -> None:
    """prefect-sqlalchemy's example flow: a task fills a table inside ``with``, another reads
    it in pages until ``fetch_many`` returns nothing."""

    @task
    def fill() -> None:
        with block as db:
            db.execute("CREATE TABLE IF NOT EXISTS planets (name VARCHAR, moons INTEGER)")
            db.execute("INSERT INTO planets VALUES ($name, $moons)", {"name": "Mercury", "moons": 0})
            db.execute_many("INSERT INTO planets VALUES (?, ?)", PLANETS[1:])

    @task
    def read() -> tuple[list[list[tuple]], list[tuple]]:
        with block as db:
            pages = _pages(db, "SELECT name FROM planets WHERE moons < $most ORDER BY name", 2, {"most": 90})
            few = db.fetch_all("SELECT name FROM planets WHERE moons = $n ORDER BY name", {"n": 0})
        return pages, few

    @flow
    def recipe() -> tuple[list[list[tuple]], list[tuple]]:
        fill()
        return read()

    pages, few = recipe()
    assert [_names(p) for p in pages] == [["Earth", "Mars"], ["Mercury", "Venus"]]
    assert _names(few) == ["Mercury", "Venus"]
    assert block._connection is None and block._cursors == {}  # `with` released everything


# ---------------------------------------------------------------------- the recipes, async
def test_an_async_flow_awaits_the_methods_inside_async_with(block: Any) -> None:
    @flow
    async def recipe() -> tuple:
        async with block as db:
            await db.execute("CREATE TABLE planets (name VARCHAR, moons INTEGER)")
            await db.execute_many("INSERT INTO planets VALUES (?, ?)", PLANETS)
            pages = []
            while rows := await db.fetch_many(BY_NAME, size=2):
                pages.append(rows)
                assert len(pages) < MAX_CALLS, "fetch_many never returned []"
            after = await db.fetch_many(BY_NAME, size=2)
            ones = []
            while row := await db.fetch_one("SELECT moons FROM planets WHERE moons > 0 ORDER BY moons"):
                ones.append(row)
                assert len(ones) < MAX_CALLS, "fetch_one never returned None"
            everything = await db.fetch_all("SELECT count(*) FROM planets WHERE moons = $n", {"n": 0})
            await db.reset_connections()
            again = await db.fetch_many(BY_NAME, size=1)
        return pages, after, ones, everything, again

    pages, after, ones, everything, again = asyncio.run(recipe())
    assert [_names(p) for p in pages] == [ALPHABETICAL[:2], ALPHABETICAL[2:4], ALPHABETICAL[4:]]
    assert after == [] and ones == [(1,), (2,), (95,)] and everything == [(2,)]
    assert _names(again) == ALPHABETICAL[:1]
    assert block._connection is None and block._cursors == {}  # `async with` released everything


def test_async_code_outside_a_flow_gets_the_same_contract(planets: Any) -> None:
    async def main() -> tuple:
        pages = []
        while rows := await planets.fetch_many(BY_NAME, size=3):
            pages.append(rows)
            assert len(pages) < MAX_CALLS, "fetch_many never returned []"
        return pages, await planets.fetch_many(BY_NAME, size=3), await planets.afetch_one(BY_NAME)

    pages, after, one = asyncio.run(main())
    assert [_names(p) for p in pages] == [ALPHABETICAL[:3], ALPHABETICAL[3:]]
    assert after == [] and one is None


def test_leaving_with_closes_what_was_left_unread(planets: Any) -> None:
    db = planets
    with db:
        assert _names(db.fetch_many(BY_NAME, size=2)) == ALPHABETICAL[:2]
        assert db.fetch_one("SELECT name FROM planets ORDER BY moons DESC") == ("Jupiter",)
    assert db._connection is None and db._cursors == {}
    # The next `with` starts the results again.
    with db:
        assert _names(db.fetch_many(BY_NAME, size=2)) == ALPHABETICAL[:2]


# ---------------------------------------------------------------------- the file is released
def _another_process_writes(path: str) -> None:
    code = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "con.execute(\"INSERT INTO planets VALUES ('Pluto', 5)\")\n"
        "con.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _another_block_writes(path: str) -> None:
    impatient = DuckDBConnection(database=path, lock_timeout_seconds=0.5)
    impatient.execute("INSERT INTO planets VALUES ('Ceres', 0)")


@pytest.fixture
def planets_file(tmp_path: Path) -> DuckDBConnection:
    db = DuckDBConnection(database=str(tmp_path / "planets.duckdb"), lock_timeout_seconds=10)
    db.execute("CREATE TABLE planets (name VARCHAR, moons INTEGER)")
    db.execute_many("INSERT INTO planets VALUES (?, ?)", PLANETS)
    return db


def test_a_fetch_cut_short_inside_with_releases_the_file_on_exit(planets_file: DuckDBConnection) -> None:
    with planets_file as db:
        assert _names(db.fetch_many(BY_NAME, size=2)) == ALPHABETICAL[:2]  # 3 rows left unread
        assert db.fetch_one("SELECT name FROM planets ORDER BY name DESC") == ("Venus",)
    _another_process_writes(planets_file.database)
    _another_block_writes(planets_file.database)
    assert planets_file.fetch_all("SELECT count(*) FROM planets") == [(7,)]


def test_a_fetch_cut_short_inside_async_with_releases_the_file_on_exit(planets_file: DuckDBConnection) -> None:
    async def cut_short() -> list[tuple]:
        async with planets_file as db:
            return await db.fetch_many(BY_NAME, size=2)

    assert _names(asyncio.run(cut_short())) == ALPHABETICAL[:2]
    _another_process_writes(planets_file.database)
    _another_block_writes(planets_file.database)


def test_the_last_page_releases_the_file_and_empty_holds_nothing(planets_file: DuckDBConnection) -> None:
    db = planets_file
    assert _names(db.fetch_many(BY_NAME, size=3)) == ALPHABETICAL[:3]
    # Mid-result the file is this block's, and the other block is told why.
    with pytest.raises(DuckDBLockTimeoutError, match=r"in use by another.*left unread.*reset_connections\(\)"):
        _another_block_writes(db.database)
    assert _names(db.fetch_many(BY_NAME, size=3)) == ALPHABETICAL[3:]  # the last page
    _another_process_writes(db.database)
    _another_block_writes(db.database)
    assert db.fetch_many(BY_NAME, size=3) == []  # remembered, without the file
    _another_process_writes(db.database)
    _another_block_writes(db.database)
    db.reset_connections()
    assert len(_pages(db, BY_NAME, size=3)) == 3  # 9 planets now
    _another_process_writes(db.database)


def test_reset_connections_releases_a_result_cut_short(planets_file: DuckDBConnection) -> None:
    assert planets_file.fetch_one(BY_NAME) == (ALPHABETICAL[0],)  # more rows left: file kept
    planets_file.reset_connections()
    _another_process_writes(planets_file.database)
    assert planets_file.fetch_one(BY_NAME) == (ALPHABETICAL[0],)  # runs anew
    planets_file.close()
    _another_block_writes(planets_file.database)


# ---------------------------------------------------------------------- what a result sees
def test_a_result_sees_the_blocks_session_and_survives_statements_between_pages(tmp_path: Path) -> None:
    """A result is read where the block's own statements would run: init_sql variables, temp
    tables and an open transaction are visible, and statements between two pages of it do not
    break it."""
    db = DuckDBConnection(database=str(tmp_path / "s.duckdb"), init_sql=["SET VARIABLE cutoff = 1"])
    db.execute("CREATE TABLE planets (name VARCHAR, moons INTEGER)")
    db.execute_many("INSERT INTO planets VALUES (?, ?)", PLANETS)
    query = "SELECT name FROM planets WHERE moons >= getvariable('cutoff') ORDER BY name"
    assert db.fetch_many(query, size=1) == [("Earth",)]
    assert db.fetch_many(query, size=5) == [("Jupiter",), ("Mars",)]
    with db:
        db.execute("CREATE TEMP TABLE moons AS SELECT * FROM planets WHERE moons > 0")
        assert db.fetch_many("SELECT name FROM moons ORDER BY name", size=1) == [("Earth",)]
        db.execute("INSERT INTO moons VALUES ('Saturn', 146)")  # between two pages
        assert db.fetch_many("SELECT name FROM moons ORDER BY name", size=5) == [("Jupiter",), ("Mars",)]
        db.execute("BEGIN TRANSACTION")
        db.execute("INSERT INTO planets VALUES ('Saturn', 146)")
        assert db.fetch_one("SELECT count(*) FROM planets") == (6,)  # the transaction's own write
        db.execute("ROLLBACK")
    assert db.fetch_all("SELECT count(*) FROM planets") == [(5,)]


def test_fetch_many_refuses_a_negative_size(planets: Any) -> None:
    with pytest.raises(QueryError, match="size=-1: pass a positive number of rows"):
        planets.fetch_many(BY_NAME, size=-1)


def test_a_second_load_report_through_one_block_counts_the_rows(tmp_path: Path) -> None:
    """The load task's artifact counts the table's rows; with fetch_one the second report of
    the same block would continue the first's exhausted result and count nothing."""
    db = DuckDBConnection(database=str(tmp_path / "r.duckdb"))
    db.execute("CREATE TABLE t AS SELECT range AS i FROM range(3)")
    assert "the table now has **3** rows" in load_report(db, "t", 3, "replace")
    db.execute("INSERT INTO t VALUES (3)")
    assert "the table now has **4** rows" in load_report(db, "t", 1, "append")


# ---------------------------------------------------------------------- any order of calls
CALLS = st.lists(
    st.one_of(
        st.just(("one",)), st.tuples(st.just("many"), st.integers(0, 6)), st.just(("all",)),
        st.just(("write",)), st.just(("reset",)), st.just(("with",)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=CALLS, rows=st.integers(0, 8))
def test_any_order_of_calls_reads_each_result_once_and_holds_the_file_only_while_unread(
    calls: list[tuple], rows: int
) -> None:
    """Against a model: one result is a snapshot of the table read front to back by fetch_one,
    fetch_many and fetch_all; writes between calls never restart or change it; the file is
    open exactly while a result has rows not yet read from it (outside ``with``). A result that
    fetch_one started runs on the block's connection, so a write reads its rest into memory."""
    with tempfile.TemporaryDirectory() as folder:
        db = DuckDBConnection(database=f"{folder}/p.duckdb", lock_timeout_seconds=5)
        db.execute("CREATE TABLE t AS SELECT range AS i FROM range(?)", [rows])
        query = "SELECT i FROM t ORDER BY i"
        table = list(range(rows))
        snapshot: list[int] | None = None  # the cached result's rows, None when none is cached
        position, in_memory, on_connection = 0, False, False
        for call in calls:
            if call[0] in ("one", "many") and snapshot is None:
                snapshot, position = list(table), 0
                in_memory, on_connection = False, call[0] == "one"
            if call[0] == "one":
                got = db.fetch_one(query)
                assert got == ((snapshot[position],) if position < len(snapshot) else None), call
                position = min(position + 1, len(snapshot))
            elif call[0] == "many":
                size = call[1] or 1
                assert db.fetch_many(query, size=call[1]) == [(i,) for i in snapshot[position:position + size]]
                position = min(position + size, len(snapshot))
            elif call[0] == "all":
                expected = table if snapshot is None else snapshot[position:]
                assert db.fetch_all(query) == [(i,) for i in expected]
                position = len(snapshot) if snapshot is not None else 0
            elif call[0] == "write":
                db.execute("INSERT INTO t VALUES (?)", [len(table)])
                in_memory = in_memory or on_connection
                table.append(len(table))
            elif call[0] == "reset":
                db.reset_connections()
                snapshot = None
            else:  # a `with` that runs nothing still ends every result
                with db:
                    pass
                snapshot = None
            unread = snapshot is not None and position < len(snapshot) and not in_memory
            assert (db._connection is not None) == unread, (call, db._cursors)
        db.close()
