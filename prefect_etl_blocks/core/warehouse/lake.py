"""The :class:`~prefect_etl_blocks.core.warehouse.session.Backend` of a DuckLake: one shared DuckDB
instance per configuration and process with the lake attached, commits re-run on conflict,
and every error masked of the catalog's secrets. Prefect-free.

Loading the extensions costs 0.2-0.5 s per DuckDB instance (DuckDB checks each binary's
signature), ten times a small load. So with a PostgreSQL or SQLite catalog one instance per
process is kept (:data:`_INSTANCES`) and every operation gets a cursor of it (its own
connection and transactions, the same attached lake). A DuckDB metadata file allows one
process at a time, so for it every operation opens, and closes, its own instance.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import duckdb

from prefect_etl_blocks.core.errors import (
    LOCK_CONFLICT,
    TransactionConflictError,
    first_line,
)
from prefect_etl_blocks.core.extensions import load_extension
from prefect_etl_blocks.core.identifiers import quote_parts, split_table_name
from prefect_etl_blocks.core.loading.boundary import commit_conflict
from prefect_etl_blocks.core.loading.connections import in_transaction
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.ledger import snapshot_reader
from prefect_etl_blocks.core.loading.table_keys import TableRef, fold, resolve
from prefect_etl_blocks.core.warehouse.lake_catalog import (
    CatalogSpec,
    LakeConfig,
    attach_error,
    clean_exception,
    split_settings,
    sql_literal,
)
from prefect_etl_blocks.core.warehouse.lake_snapshots import (
    commit_snapshot,
    current_snapshot,
    read_snapshot,
)
from prefect_etl_blocks.core.warehouse.session import Backend, Work

if TYPE_CHECKING:
    from prefect_etl_blocks.core.warehouse.session import Session

#: The name the lake is attached under (and made the default with ``USE``).
LAKE = "lake"
#: A first ATTACH creates the catalog's tables. When several processes attach a new catalog at
#: once, all but one fail on the tables the winner just committed; attaching again then finds a
#: complete catalog (PostgreSQL makes the losers wait for the winner's commit).
_INIT_RACE = re.compile(
    r"Failed to initialize DuckLake.*(duplicate key value|already exists|database is locked)", re.S
)
#: One DuckDB instance per configuration and process (see the module docstring).
_INSTANCES: dict[str, duckdb.DuckDBPyConnection] = {}
_INSTANCES_GUARD = threading.Lock()
__all__ = ["LAKE", "LakeBackend", "close_instances"]


def close_instances() -> int:
    """Close this process's shared DuckLake instances and their catalog connections (they
    are also closed at exit); returns how many were closed. Open connections stop working."""
    with _INSTANCES_GUARD:
        instances = list(_INSTANCES.values())
        _INSTANCES.clear()
    for con in instances:
        try:
            con.close()
        except duckdb.Error:
            pass
    return len(instances)


atexit.register(close_instances)


class LakeBackend(Backend):
    """A DuckLake, configured by ``config()`` (read at every open, so a block's fields can
    change between calls)."""

    def __init__(self, config: Callable[[], LakeConfig]) -> None:
        self.config = config

    # ------------------------------------------------------------------ connections
    def open(self) -> duckdb.DuckDBPyConnection:
        """A new connection with the lake attached and in use."""
        con, on_memory = self.open_for_load()
        if not on_memory:
            return con
        try:
            con.execute(f"USE {LAKE}").fetchall()
        except BaseException:
            con.close()
            raise
        return con

    def open_for_load(self) -> tuple[duckdb.DuckDBPyConnection, bool]:
        """A connection for one load that stays on DuckDB's in-memory catalog, where the load
        works anyway (every name it writes is qualified): it skips ``USE lake`` when opened and
        after the load. Each ``USE`` or statement while the lake is the default starts a DuckLake
        transaction, which asks the catalog database for the newest snapshot (about 1.3 ms with
        PostgreSQL on loopback). That is a new cursor of this configuration's shared instance
        (``True``); a lake whose catalog is a DuckDB file has one connection, the process's
        instance itself, already on the lake (``False``)."""
        config = self.config()
        if config.spec.kind == "duckdb":
            return _instance(config), False
        key = config.key()
        with _INSTANCES_GUARD:
            base = _INSTANCES.get(key)
            if base is None:
                base = _INSTANCES[key] = _instance(config)
            return base.cursor(), True

    def broken(self) -> None:
        """Forget this configuration's shared instance (the catalog connection may be gone: a
        server restarted): the next operation attaches again. Connections handed out keep
        working."""
        config = self.config()
        if config.spec.kind == "duckdb":
            return
        with _INSTANCES_GUARD:
            _INSTANCES.pop(config.key(), None)

    @contextmanager
    def masking(self) -> Iterator[None]:
        """Re-raise whatever escapes with the catalog's secrets masked in its text."""
        try:
            yield
        except Exception as exc:
            clean = clean_exception(exc, self.config().secrets())
            if clean is exc:
                raise
            raise clean from None

    def in_transaction(self, con: duckdb.DuckDBPyConnection) -> bool:
        # Asked of DuckDB's own in-memory catalog (txid_current() fails when the default
        # catalog is a DuckLake): the same transaction id twice means an open transaction.
        # A timestamp comparison is not used: two quick autocommit statements can share one.
        with memory_default(con):
            return in_transaction(con)

    def qualify(self, con: duckdb.DuckDBPyConnection, table: str) -> str:
        return qualified(con, table)

    def state_scope(self, con: duckdb.DuckDBPyConnection) -> contextlib.AbstractContextManager[None]:
        return memory_default(con)

    # ------------------------------------------------------------------ loads
    def commit(
        self, session: Session, work: Work, table: str, replayable: bool, *, rolls_back: bool = False
    ) -> tuple[LoadResult, int]:
        """One load as one commit, run again from the start on a retryable conflict."""
        config = self.config()
        deadline = time.monotonic() + config.lock_timeout_seconds
        delay, attempt = 0.1, 0
        while True:
            attempt += 1
            try:
                try:
                    with session.connect_for_load() as (con, fresh):
                        # A dry run's work rolls back (Session.commit wraps it): it commits no
                        # snapshot, which commit_snapshot must then not assume.
                        return _load_into_lake(con, table, work, fresh=fresh, commits=not rolls_back), attempt
                except duckdb.TransactionException as exc:
                    # A COMMIT outside the engine (incremental loads) that lost the race to
                    # create the table, a schema or the state tables: a conflict like any other.
                    conflict = commit_conflict(exc, table=table)
                    if conflict is None:
                        raise
                    raise conflict from exc
            except TransactionConflictError as exc:
                wait = delay * (0.5 + random.random())
                joined = session.connection is not None and self.in_transaction(session.connection)
                if (
                    not replayable
                    or joined
                    or attempt > config.commit_retries
                    or time.monotonic() + wait > deadline
                ):
                    why = (
                        "the source is a one-shot stream that cannot be read again"
                        if not replayable
                        else "it is part of an outer transaction" if joined
                        else f"it conflicted {attempt} time(s) within {config.lock_timeout_seconds:g} s"
                    )
                    raise TransactionConflictError(
                        f"{first_line(exc)} Not retried here because {why}. Another writer kept "
                        "changing the same rows; running the load again (a task retry) can "
                        "succeed, or raise commit_retries / lock_timeout_seconds."
                    ) from exc
                time.sleep(wait)
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ units of work
    def identity(self) -> str | None:
        """Blocks with the same configuration share a unit's connection (and its commit)."""
        return "ducklake:" + self.config().key()

    def joined(self, con: duckdb.DuckDBPyConnection, work: Work, table: str) -> LoadResult:
        return _load_into_lake(con, table, work)

    def begin(self, con: duckdb.DuckDBPyConnection) -> None:
        with memory_default(con):
            con.execute("BEGIN TRANSACTION").fetchall()

    def end(self, con: duckdb.DuckDBPyConnection, commit: bool) -> None:
        """COMMIT (one snapshot for every load of the unit) or ROLLBACK. A conflict at COMMIT is
        not retried (the loads before it cannot be run again): it is a TransactionConflictError."""
        try:
            with memory_default(con):
                con.execute("COMMIT" if commit else "ROLLBACK").fetchall()
        except duckdb.TransactionException as exc:
            if commit_conflict(exc, table="") is None:
                raise
            raise TransactionConflictError(
                "The COMMIT of a transaction's loads into the DuckLake conflicted with another "
                f"writer's commit: {first_line(exc)}. Not retried (the loads before it cannot be "
                "run again at COMMIT): the whole transaction was rolled back, every table is as "
                "it was before it. Running the flow again can succeed."
            ) from exc


def _instance(config: LakeConfig) -> duckdb.DuckDBPyConnection:
    """A new DuckDB instance with the extensions loaded, the secrets set and the lake attached
    (``init_sql`` runs here, once per instance)."""
    spec = config.spec
    core, extra = split_settings(config.settings)
    con = duckdb.connect(":memory:", config=core)
    try:
        for name in ["ducklake", *spec.extensions, *config.data_extensions(), *config.extensions]:
            load_extension(con, name)
        for name, value in extra.items():
            con.execute(f"SET GLOBAL {name} = {sql_literal(value)}").fetchall()
        if spec.password is not None:
            # The postgres extension fills in missing connection options from the secret
            # with its default name (a named secret is only used when ATTACH names it).
            con.execute(
                "CREATE OR REPLACE TEMPORARY SECRET __default_postgres (TYPE postgres, PASSWORD ?)",
                [spec.password],
            ).fetchall()
        if config.s3:
            names = ", ".join(f"{key} ?" for key in config.s3)
            # Values are bound, never pasted; the secret lives in this connection's memory only.
            con.execute(
                f"CREATE OR REPLACE TEMPORARY SECRET __petl_lake_s3 (TYPE s3, {names})", list(config.s3.values())
            ).fetchall()
        _attach(con, spec, config)
        con.execute(f"USE {LAKE}").fetchall()
        for statement in config.init_sql:
            con.execute(statement).fetchall()
    except BaseException:
        con.close()
        raise
    return con


def _attach(con: duckdb.DuckDBPyConnection, spec: CatalogSpec, config: LakeConfig) -> None:
    # ATTACH takes its path as a literal, not a bound parameter; quotes are doubled.
    options = []
    if config.data_path:
        options.append("DATA_PATH " + sql_literal(config.data_path))
    if config.read_only:
        options.append("READ_ONLY")
    statement = f"ATTACH {sql_literal('ducklake:' + spec.target)} AS {LAKE}"
    if options:
        statement += f" ({', '.join(options)})"
    deadline = time.monotonic() + config.lock_timeout_seconds
    delay = 0.05
    while True:
        try:
            con.execute(statement).fetchall()
            return
        except duckdb.Error as exc:
            locked, racing = LOCK_CONFLICT in str(exc), bool(_INIT_RACE.search(str(exc)))
            if (locked or racing) and time.monotonic() < deadline:
                # Another process holds the metadata file, or is creating the catalog.
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.6, 1.0)
                continue
            raise attach_error(exc, spec, config, locked=locked, racing=racing) from None


def _load_into_lake(
    con: duckdb.DuckDBPyConnection, table: str, work: Work, *, fresh: bool = False, commits: bool = False
) -> LoadResult:
    """Run one load's ``work`` into the lake with DuckDB's own in-memory catalog as the default
    and the target spelled ``lake.schema.table``.

    Why: the engine asks ``txid_current()`` whether the connection is in a transaction, and
    DuckDB raises ``INTERNAL Error: DuckTransaction::Get called on non-DuckDB transaction``
    when the default catalog is a DuckLake. With ``memory`` as the default for the length of
    the load the question is answered by DuckDB's catalog; every name the engine writes is
    qualified, so the data still goes to the lake. The result reports the name the caller gave.

    ``fresh``: ``con`` was opened for this load by :meth:`LakeBackend.open_for_load` and is closed after
    it, so it is still on ``memory`` (no ``USE`` either way) and a name is resolved as ``USE lake``
    would have it (schema ``main``). ``commits``: ``work`` commits its own transaction when it
    is not joining one (not a dry run's rehearsal).

    Snapshots: the ledger row records the snapshot the load's transaction read, and a load
    that committed here reports the snapshot it committed as ``snapshot_id`` (``None`` while
    an outer transaction holds it open); see :mod:`~prefect_etl_blocks.core.warehouse.lake_snapshots`.
    """
    parts = split_table_name(table)
    databases = {
        fold(name): (name, kind)
        for name, kind in con.execute("SELECT database_name, type FROM duckdb_databases()").fetchall()
    }
    if fresh and (len(parts) == 1 or (len(parts) == 2 and fold(parts[0]) not in databases)):
        ref = TableRef(LAKE, "main" if len(parts) == 1 else parts[0], parts[-1])
    else:
        ref = resolve(con, parts)
    target = quote_parts((ref.catalog, ref.schema, ref.name))
    in_lake = databases.get(fold(ref.catalog), ("", ""))[1] == "ducklake"
    read: list[int | None] = [None]

    def reader(con: duckdb.DuckDBPyConnection, parts: Sequence[str]) -> int | None:
        if in_lake and parts and fold(parts[0]) == fold(ref.catalog):  # the target's own lake
            read[0] = current_snapshot(con, ref.catalog)
        else:
            read[0] = read_snapshot(con, parts)
        return read[0]

    with contextlib.nullcontext() if fresh else memory_default(con), snapshot_reader(reader):
        result = work(con, target)
        committed = None
        # A connection opened for this load has no outer transaction, so the work ended its own.
        if result.load_id and in_lake and (fresh or not in_transaction(con)):
            committed = commit_snapshot(con, ref.catalog, result.load_id, read[0], committed=commits)
    return dataclasses.replace(result, table=table, snapshot_id=committed)


def qualified(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``table`` spelled ``lake.schema.table`` (names quoted) as DuckDB resolves it: ``raw``,
    ``main.raw`` and ``lake.raw`` (the lake's catalog, schema ``main``) are one table."""
    ref = resolve(con, split_table_name(table))
    return quote_parts((ref.catalog, ref.schema, ref.name))


@contextmanager
def memory_default(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's in-memory catalog as the default while the engine works on qualified names (see
    :func:`_load_into_lake` for why)."""
    con.execute("USE memory").fetchall()
    try:
        yield
    finally:
        con.execute(f"USE {LAKE}").fetchall()


def as_instant(value: dt.datetime | dt.timedelta) -> dt.datetime:
    """A ``timedelta`` as the instant that long ago (UTC); a naive ``datetime`` as UTC."""
    if isinstance(value, dt.timedelta):
        return dt.datetime.now(dt.timezone.utc) - value
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
