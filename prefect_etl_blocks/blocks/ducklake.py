"""``DuckLakeConnection``: a DuckLake (catalog in PostgreSQL, data as Parquet on S3 or a folder)
as a Prefect ``DatabaseBlock``, with the same API and load engine as ``DuckDBConnection``.

Why DuckLake: a DuckDB file has one writing process at a time, so writers on many machines can
only take turns. In a DuckLake the catalog lives in a database built for concurrent writers
(PostgreSQL) and each commit adds Parquet files plus one catalog transaction, so many processes
on many machines load at once. Appends that touch different files never conflict (DuckLake
retries those commits itself); a commit that did conflict logically (two writers deleting from
one table) is re-run here from the start, with back-off, up to ``commit_retries`` times within
``lock_timeout_seconds``.

Connections: the block keeps one in-memory DuckDB per configuration and process, with the
extensions loaded (from pip wheels when offline, see :mod:`prefect_etl_blocks.core.extensions`), the
secrets created and the lake ``ATTACH``ed as ``lake``; every call takes a fresh connection
(cursor) on it, ``USE``s the lake and closes it afterwards; inside ``with lake:`` one connection
is kept. A DuckDB metadata file as catalog allows one process at a time, so there every call
opens and closes its own DuckDB. Each connection reads one committed snapshot per transaction,
so a reader never sees half a load.

Secrets: the catalog's password is taken out of the connection string and handed to DuckDB as a
(temporary, in-memory) secret, so it is not part of the ``ATTACH`` text DuckDB echoes in its
errors; any message that still carries it is masked. ``repr``/``str`` mask it too.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import duckdb
import polars as pl
from prefect import task
from prefect.blocks.abstract import DatabaseBlock
from prefect_aws import AwsCredentials
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from prefect_etl_blocks.blocks.warehouse import WarehouseMethods, check_extension_names
from prefect_etl_blocks.core.engines import query_polars
from prefect_etl_blocks.core.errors import (
    LOCK_CONFLICT,
    DuckDBLockTimeoutError,
    LoadConfigError,
    SourceUnavailableError,
    TransactionConflictError,
    first_line,
)
from prefect_etl_blocks.core.extensions import load_extension
from prefect_etl_blocks.core.identifiers import quote_identifier, split_table_name
from prefect_etl_blocks.core.loading.boundary import commit_conflict
from prefect_etl_blocks.core.loading.connections import in_transaction
from prefect_etl_blocks.core.loading.engine import LoadResult, load
from prefect_etl_blocks.core.loading.ledger import resolve
from prefect_etl_blocks.integration.tasks import retry_transient

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/ducklake_connection/"
#: The name the lake is attached under (and made the default with ``USE``).
LAKE = "lake"
MASK = "********"
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PASSWORD_KV = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)")
#: A first ATTACH creates the catalog's tables. When several processes attach a new catalog at
#: once, all but one fail on the tables the winner just committed; attaching again then finds a
#: complete catalog (PostgreSQL makes the losers wait for the winner's commit).
_INIT_RACE = re.compile(
    r"Failed to initialize DuckLake.*(duplicate key value|already exists|database is locked)", re.S
)
_core_settings: frozenset[str] | None = None
#: One DuckDB instance per block configuration and process (see ``DuckLakeConnection._open``).
_INSTANCES: dict[str, duckdb.DuckDBPyConnection] = {}
_INSTANCES_GUARD = threading.Lock()


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


class CatalogSpec:
    """A parsed ``catalog``: its kind, the connection text without password, and the password."""

    def __init__(self, raw: str) -> None:
        text = raw.strip()
        if text.startswith("ducklake:"):
            text = text[len("ducklake:"):]
        self.password: str | None = None
        kind, _, rest = text.partition(":")
        if kind in ("postgres", "postgresql") and rest:
            self.kind = "postgres"
            self.target = "postgres:" + self._take_password(rest)
        elif kind == "sqlite" and rest:
            self.kind, self.target = "sqlite", text
        else:
            self.kind = "duckdb"
            self.target = text[len("duckdb:"):] if text.startswith("duckdb:") else text
        if not self.target or self.target in ("postgres:", "sqlite:"):
            raise LoadConfigError(
                f"catalog {self.masked()!r} is empty: use 'postgres:dbname=... host=...', "
                "'sqlite:/path/catalog.sqlite' or a DuckDB metadata file such as "
                "'/data/lake/catalog.ducklake'."
            )

    def _take_password(self, conninfo: str) -> str:
        if conninfo.startswith(("postgresql://", "postgres://")):
            # DuckLake passes the text on as a key/value string, so a URI is rewritten into one.
            parts = urlsplit(conninfo)
            pairs: list[tuple[str, str]] = []
            for key, value in (("dbname", parts.path.lstrip("/")), ("host", parts.hostname),
                               ("port", parts.port), ("user", parts.username)):
                if value:
                    pairs.append((key, unquote(str(value))))
            pairs.extend(parse_qsl(parts.query))
            if parts.password is not None:
                self.password = unquote(parts.password)
            return " ".join(f"{key}={_conninfo_value(value)}" for key, value in pairs)
        match = _PASSWORD_KV.search(conninfo)
        if match:
            value = match.group(2)
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            self.password = value
            conninfo = (conninfo[: match.start()] + conninfo[match.end():]).strip()
            conninfo = re.sub(r"\s{2,}", " ", conninfo)
        return conninfo

    @property
    def extensions(self) -> list[str]:
        return {"postgres": ["postgres"], "sqlite": ["sqlite"]}.get(self.kind, [])

    def masked(self) -> str:
        """The catalog as it may be shown: any password replaced by ``********``."""
        return self.target if self.password is None else f"{self.target} password={MASK}"


def _conninfo_value(value: str) -> str:
    """A libpq key/value string value, quoted when it holds spaces or quotes."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every secret value and any ``password=...`` pair masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _PASSWORD_KV.sub(lambda m: m.group(1) + MASK, text)


def _sql_literal(value: Any) -> str:
    """A SQL literal for a ``SET`` value (booleans, numbers, or a quoted string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _masked_errors(method: Any) -> Any:
    """Re-raise any exception of ``method`` with the catalog's secrets masked in its text."""

    @wraps(method)
    def wrapper(self: DuckLakeConnection, *args: Any, **kwargs: Any) -> Any:
        with self._masking():
            return method(self, *args, **kwargs)

    return wrapper


class DuckLakeConnection(WarehouseMethods, DatabaseBlock):
    """A DuckLake: catalog in PostgreSQL (or SQLite, or a DuckDB file), data as Parquet in a
    folder or on S3, written by many processes and machines at once.

    The same API as :class:`~prefect_etl_blocks.DuckDBConnection`: the ``DatabaseBlock``
    methods, ``query``, ``load_frame`` and ``load_parquet`` with every mode, schema contract
    and check, through the same load engine. Plus maintenance: :meth:`compact`,
    :meth:`expire_snapshots`, :meth:`cleanup_old_files` and :meth:`snapshots`.

    Example:
        Load a saved block:
        ```python
        from prefect_etl_blocks import DuckLakeConnection

        lake = DuckLakeConnection.load("BLOCK_NAME")
        ```

        Use one in code (here with a local catalog file; in production the catalog is
        ``postgres:dbname=lake host=db.internal user=etl password=...`` and the data path
        ``s3://bucket/lake/`` with ``aws_credentials``):
        ```python
        import tempfile
        import polars as pl
        from prefect_etl_blocks import DuckLakeConnection

        root = tempfile.mkdtemp()
        lake = DuckLakeConnection(catalog=f"{root}/catalog.ducklake", data_path=f"{root}/data")
        lake.load_frame(pl.DataFrame({"id": [1, 2], "qty": [5, 7]}), "sales.stock")
        lake.load_frame(pl.DataFrame({"id": [2], "qty": [8]}), "sales.stock",
                        mode="upsert", keys="id")
        print(lake.query("SELECT * FROM sales.stock ORDER BY id"))
        lake.compact()
        ```

        Replace whole days, then keep one connection (the lake attached and in use) for
        several statements:
        ```python
        import tempfile
        import polars as pl
        from prefect_etl_blocks import DuckLakeConnection

        root = tempfile.mkdtemp()
        lake = DuckLakeConnection(catalog=f"{root}/c.ducklake", data_path=f"{root}/data")
        lake.load_frame(pl.DataFrame({"day": ["d1", "d1"], "qty": [1, 2]}), "sales")
        result = lake.load_frame(pl.DataFrame({"day": ["d1"], "qty": [9]}), "sales",
                                 mode="delete-insert", keys="day", return_result=True)
        assert (result.deleted, result.inserted) == (2, 1)
        with lake.get_connection() as con:
            con.execute("CREATE TABLE t AS SELECT 42 AS answer")
            print(con.sql("SELECT * FROM t").fetchall())
        ```

    ``close()`` closes what the block holds; the process keeps one DuckDB instance per
    configuration (with the catalog connection) for the next call, and
    :func:`close_instances` closes those.
    """

    # A validation error must not echo the catalog text it refused (it may hold a password).
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "DuckLake Connection"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/duckdb-logo/duckdb.png"
    _documentation_url = DOCS_URL
    _description = (
        "A DuckLake (catalog in PostgreSQL, data as Parquet on S3 or a folder) that many "
        "processes and machines load at once, with the same atomic loads as a DuckDB file."
    )

    catalog: SecretStr = Field(
        default=...,
        description=(
            "Where the lake's catalog lives: 'postgres:dbname=lake host=db user=etl password=...' "
            "(a libpq connection string or URI), 'sqlite:/path/catalog.sqlite', or a DuckDB "
            "metadata file such as '/data/lake/catalog.ducklake' (one process at a time). Kept "
            "secret since it may hold a password."
        ),
    )
    data_path: str | None = Field(
        default=None,
        description=(
            "Folder or 's3://bucket/prefix/' where the lake's Parquet files are written; "
            "required when the catalog is created, and must match the catalog's afterwards "
            "(leave empty to use the catalog's)."
        ),
    )
    aws_credentials: AwsCredentials | None = Field(
        default=None,
        description=(
            "Credentials for an 's3://' data path, with aws_client_parameters.endpoint_url for "
            "an S3-compatible store (MinIO, Ceph); handed to DuckDB as a temporary secret."
        ),
    )
    read_only: bool = Field(
        default=False,
        description="Attach the lake read-only (readers, dashboards); loads are refused.",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "DuckDB and DuckLake settings applied on every connection, for example "
            "{'threads': 4, 'memory_limit': '2GB', 'ducklake_max_retry_count': 20}."
        ),
    )
    extensions: list[str] = Field(
        default_factory=list,
        description=(
            "Extra DuckDB extensions loaded on every connection (ducklake, postgres and httpfs "
            "are loaded as needed), from pip wheels when offline."
        ),
    )
    init_sql: list[str] = Field(
        default_factory=list,
        description=(
            "SQL statements run once on each new DuckDB instance, after the lake is attached "
            "(for example SET GLOBAL or CREATE SECRET)."
        ),
    )
    lock_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "How long a load keeps retrying after a commit conflict with another writer (and "
            "how long to wait for a DuckDB metadata file locked by another process, or for "
            "another process creating a new catalog's tables) before "
            "failing with an error that says so."
        ),
    )
    commit_retries: int = Field(
        default=8,
        ge=0,
        description=(
            "How many times a load that conflicted with another writer's commit is run again "
            "from the start (with exponential back-off) before the conflict is raised."
        ),
    )

    _connection: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _guard: threading.RLock | None = PrivateAttr(default=None)
    _cursors: dict[Any, tuple[duckdb.DuckDBPyConnection | None, list[tuple]]] = PrivateAttr(default_factory=dict)
    _held: int = PrivateAttr(default=0)
    _last_load: LoadResult | None = PrivateAttr(default=None)
    _last_attempts: int = PrivateAttr(default=0)

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, value: list[str]) -> list[str]:
        return check_extension_names(value)

    @field_validator("catalog")
    @classmethod
    def _catalog_form(cls, value: SecretStr) -> SecretStr:
        CatalogSpec(value.get_secret_value())  # refuses an empty one, naming the accepted forms
        return value

    @field_validator("settings")
    @classmethod
    def _setting_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _SETTING_NAME.fullmatch(name):
                raise ValueError(f"setting name {name!r} is not valid: use a DuckDB setting name such as 'threads'.")
        return value

    # ------------------------------------------------------------------ catalog and secrets
    @property
    def catalog_spec(self) -> CatalogSpec:
        """The parsed catalog (kind, connection text without password)."""
        return CatalogSpec(self.catalog.get_secret_value())

    @property
    def database_path(self) -> str:
        """What this block points at, safe to show: the masked catalog and the data path."""
        where = f" (data {self.data_path})" if self.data_path else ""
        return f"ducklake:{self.catalog_spec.masked()}{where}"

    def _secrets(self) -> list[str | None]:
        values: list[str | None] = []
        try:
            values.append(self.catalog_spec.password)
        except Exception:  # an unparseable catalog: mask the whole text instead
            values.append(self.catalog.get_secret_value())
        if self.aws_credentials is not None:
            secret = self.aws_credentials.aws_secret_access_key
            values.append(secret.get_secret_value() if secret else None)
            token = self.aws_credentials.aws_session_token
            values.append(token if isinstance(token, str) else None)
        return [v for v in values if v and len(v) >= 3]

    def _clean_exception(self, exc: BaseException) -> BaseException:
        """``exc`` when no secret shows in it (or its causes), else a masked copy."""
        secrets = self._secrets()
        chain, current = [], exc
        while current is not None and len(chain) < 10:
            chain.append(current)
            current = current.__cause__ or current.__context__
        texts = [str(e) for e in chain]
        if not any(scrub(t, secrets) != t for t in texts):
            return exc
        message = scrub(str(exc), secrets)
        try:
            clean = type(exc)(message)
        except Exception:
            clean = RuntimeError(message)
        return clean

    def _s3_secret(self, con: duckdb.DuckDBPyConnection) -> None:
        creds = self.aws_credentials
        if creds is None or not creds.aws_access_key_id:
            return
        options: dict[str, Any] = {
            "KEY_ID": creds.aws_access_key_id,
            "SECRET": creds.aws_secret_access_key.get_secret_value() if creds.aws_secret_access_key else "",
            "REGION": creds.region_name or "us-east-1",
        }
        if creds.aws_session_token:
            options["SESSION_TOKEN"] = creds.aws_session_token
        endpoint = creds.aws_client_parameters.endpoint_url if creds.aws_client_parameters else None
        if endpoint:
            parts = urlsplit(str(endpoint))
            options["ENDPOINT"] = parts.netloc or parts.path
            options["URL_STYLE"] = "path"
            options["USE_SSL"] = parts.scheme != "http"
        names = ", ".join(f"{key} ?" for key in options)
        # Values are bound, never pasted; the secret lives in this connection's memory only.
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET __petl_lake_s3 (TYPE s3, {names})", list(options.values())).fetchall()

    # ------------------------------------------------------------------ connection handling
    def _instance(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB instance with the extensions loaded, the secrets set and the lake
        attached (``init_sql`` runs here, once per instance)."""
        spec = self.catalog_spec
        core, extra = _split_settings(self.settings)
        con = duckdb.connect(":memory:", config=core)
        try:
            for name in ["ducklake", *spec.extensions, *self._data_extensions(), *self.extensions]:
                load_extension(con, name)
            for name, value in extra.items():
                con.execute(f"SET GLOBAL {name} = {_sql_literal(value)}").fetchall()
            if spec.password is not None:
                # The postgres extension fills in missing connection options from the secret
                # with its default name (a named secret is only used when ATTACH names it).
                con.execute(
                    "CREATE OR REPLACE TEMPORARY SECRET __default_postgres (TYPE postgres, PASSWORD ?)",
                    [spec.password],
                ).fetchall()
            self._s3_secret(con)
            self._attach(con, spec)
            con.execute(f"USE {LAKE}").fetchall()
            for statement in self.init_sql:
                con.execute(statement).fetchall()
        except BaseException:
            con.close()
            raise
        return con

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A new connection with the lake attached and in use.

        Loading the extensions costs 0.2-0.5 s per DuckDB instance (DuckDB checks each
        binary's signature), ten times a small load. So with a PostgreSQL or SQLite catalog the
        block keeps one instance per process and hands out a cursor (its own connection and
        transactions, the same attached lake) per operation. A DuckDB metadata file allows one
        process at a time, so for it every operation opens, and closes, its own instance.
        """
        if self.catalog_spec.kind == "duckdb":
            return self._instance()
        key = self._instance_key()
        with _INSTANCES_GUARD:
            base = _INSTANCES.get(key)
            if base is None:
                base = _INSTANCES[key] = self._instance()
            cursor = base.cursor()
        try:
            cursor.execute(f"USE {LAKE}").fetchall()
        except BaseException:
            cursor.close()
            raise
        return cursor

    def _instance_key(self) -> str:
        """Blocks with the same configuration share one instance per process (a Dask worker
        unpickles a fresh block for every task; the instance outlives them)."""
        fields = self.model_dump(mode="json", exclude={"aws_credentials"})
        fields["catalog"] = self.catalog.get_secret_value()
        if self.aws_credentials is not None:
            creds = self.aws_credentials
            fields["aws"] = [
                creds.aws_access_key_id,
                creds.aws_secret_access_key.get_secret_value() if creds.aws_secret_access_key else None,
                creds.aws_session_token, creds.region_name,
                str(creds.aws_client_parameters.endpoint_url) if creds.aws_client_parameters else None,
            ]
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()

    def _drop_instance(self) -> None:
        """Forget this configuration's shared instance (after the catalog connection failed):
        the next operation attaches again. Connections already handed out keep working."""
        if self.catalog_spec.kind == "duckdb":
            return
        with _INSTANCES_GUARD:
            _INSTANCES.pop(self._instance_key(), None)

    def _data_extensions(self) -> list[str]:
        path = (self.data_path or "").lower()
        return ["httpfs"] if path.startswith(("s3://", "s3a://", "gs://", "gcs://", "r2://", "http")) else []

    def _attach(self, con: duckdb.DuckDBPyConnection, spec: CatalogSpec) -> None:
        # ATTACH takes its path as a literal, not a bound parameter; quotes are doubled.
        options = []
        if self.data_path:
            options.append("DATA_PATH " + _sql_literal(self.data_path))
        if self.read_only:
            options.append("READ_ONLY")
        statement = f"ATTACH {_sql_literal('ducklake:' + spec.target)} AS {LAKE}"
        if options:
            statement += f" ({', '.join(options)})"
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con.execute(statement).fetchall()
                return
            except duckdb.Error as exc:
                text = scrub(first_line(exc), self._secrets())
                locked, racing = LOCK_CONFLICT in str(exc), bool(_INIT_RACE.search(str(exc)))
                if (locked or racing) and time.monotonic() < deadline:
                    # Another process holds the metadata file, or is creating the catalog.
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 1.6, 1.0)
                    continue
                if locked:
                    raise DuckDBLockTimeoutError(
                        f"The DuckLake catalog file {spec.masked()!r} is locked by another process; "
                        f"waited {self.lock_timeout_seconds:g} s. A DuckDB metadata file allows one "
                        "process at a time: use a PostgreSQL catalog for concurrent writers, or "
                        "raise lock_timeout_seconds."
                    ) from None
                if racing:
                    raise TransactionConflictError(
                        f"The DuckLake catalog {spec.masked()!r} was still being created by another "
                        f"process after {self.lock_timeout_seconds:g} s ({text}). Retrying can help; "
                        "to avoid the wait, attach the catalog once before starting parallel workers."
                    ) from None
                if "does not match existing data path" in str(exc):
                    raise LoadConfigError(
                        f"data_path {self.data_path!r} differs from the data path stored in the "
                        f"DuckLake catalog {spec.masked()!r} ({text}). Use the catalog's data path, "
                        "or leave data_path empty."
                    ) from None
                if isinstance(exc, duckdb.IOException | duckdb.ConnectionException) or "connect" in str(exc).lower():
                    raise SourceUnavailableError(
                        f"Could not attach the DuckLake catalog {spec.masked()!r}: {text}. Check that "
                        "the catalog database is running and reachable, and its name, user and "
                        "password."
                    ) from None
                raise LoadConfigError(
                    f"Could not attach the DuckLake catalog {spec.masked()!r}: {text}."
                ) from None

    # ------------------------------------------------------------------ hooks of WarehouseMethods
    def _fresh_private(self) -> dict[str, Any]:
        return {**super()._fresh_private(), "_last_attempts": 0}

    @contextmanager
    def _masking(self) -> Iterator[None]:
        """Re-raise whatever escapes with the catalog's secrets masked in its text."""
        try:
            yield
        except Exception as exc:
            clean = self._clean_exception(exc)
            if clean is exc:
                raise
            raise clean from None

    def _session_broken(self) -> None:
        # The catalog connection may be gone (server restarted): reconnect next time.
        self._drop_instance()

    def _qualify(self, con: duckdb.DuckDBPyConnection, table: str) -> str:
        return _qualified(con, table)

    def _state_scope(self, con: duckdb.DuckDBPyConnection) -> contextlib.AbstractContextManager[None]:
        return _memory_default(con)

    def _commit(
        self, runner: Any, source: Any, table: str, replayable: bool, options: dict[str, Any]
    ) -> LoadResult:
        result, self._last_attempts = self._commit_with_retries(source, replayable, table, runner, options)
        return result

    def __repr__(self) -> str:
        try:
            shown = self.catalog_spec.masked()
        except Exception:
            shown = MASK
        return f"DuckLakeConnection(catalog={shown!r}, data_path={self.data_path!r}, read_only={self.read_only!r})"

    __str__ = __repr__

    @property
    def last_load_attempts(self) -> int:
        """How many times the last load ran (1 unless a commit conflict made it run again)."""
        return self._last_attempts

    def _commit_with_retries(
        self, source: Any, replayable: bool, table: str, runner: Any, options: dict[str, Any]
    ) -> tuple[LoadResult, int]:
        """One load as one commit, run again from the start on a retryable conflict."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay, attempt = 0.1, 0
        while True:
            attempt += 1
            try:
                try:
                    with self._session() as con:
                        result = _load_into_lake(con, source, table, runner, **options)
                except duckdb.TransactionException as exc:
                    # A COMMIT outside the engine (incremental loads) that lost the race to
                    # create the table, a schema or the state tables: a conflict like any other.
                    conflict = commit_conflict(exc, table=table)
                    if conflict is None:
                        raise
                    raise conflict from exc
                break
            except TransactionConflictError as exc:
                wait = delay * (0.5 + random.random())
                joined = self._connection is not None and self._in_transaction(self._connection)
                if (
                    not replayable
                    or joined
                    or attempt > self.commit_retries
                    or time.monotonic() + wait > deadline
                ):
                    why = (
                        "the source is a one-shot stream that cannot be read again"
                        if not replayable
                        else "it is part of an outer transaction" if joined
                        else f"it conflicted {attempt} time(s) within {self.lock_timeout_seconds:g} s"
                    )
                    raise TransactionConflictError(
                        f"{first_line(exc)} Not retried here because {why}. Another writer kept "
                        "changing the same rows; running the load again (a task retry) can "
                        "succeed, or raise commit_retries / lock_timeout_seconds."
                    ) from exc
                time.sleep(wait)
                delay = min(delay * 2, 5.0)
        return result, attempt

    def _in_transaction(self, con: duckdb.DuckDBPyConnection) -> bool:
        # Asked of DuckDB's own in-memory catalog (txid_current() fails when the default
        # catalog is a DuckLake): the same transaction id twice means an open transaction.
        # A timestamp comparison is not used: two quick autocommit statements can share one.
        with _memory_default(con):
            return in_transaction(con)

    # ------------------------------------------------------------------ DuckLake maintenance
    @_masked_errors
    def snapshots(self) -> pl.DataFrame:
        """The lake's snapshots (id, time, schema version, changes), oldest first."""
        with self._session() as con:
            return query_polars(con, f"SELECT * FROM ducklake_snapshots('{LAKE}') ORDER BY snapshot_id")

    @_masked_errors
    def current_snapshot(self) -> int:
        """The id of the newest committed snapshot."""
        with self._session() as con:
            return con.execute(f"SELECT id FROM ducklake_current_snapshot('{LAKE}')").fetchall()[0][0]

    @_masked_errors
    def compact(
        self,
        table: str | None = None,
        *,
        max_compacted_files: int | None = None,
        max_file_size: int | None = None,
        min_file_size: int | None = None,
    ) -> pl.DataFrame:
        """Merge small adjacent Parquet files (``ducklake_merge_adjacent_files``) of ``table``
        (``schema.table``) or of every table; returns what was merged per table. Frequent small
        appends (one per partition, per run) leave many small files that slow every read."""
        args, params = [f"'{LAKE}'"], []
        if table is not None:
            parts = split_table_name(table)
            args.append("?")
            params.append(parts[-1])
            if len(parts) >= 2:
                args.append("schema => ?")
                params.append(parts[-2])
        for name, value in (("max_compacted_files", max_compacted_files), ("max_file_size", max_file_size),
                            ("min_file_size", min_file_size)):
            if value is not None:
                args.append(f"{name} => ?")
                params.append(int(value))
        with self._session() as con:
            return query_polars(con, f"SELECT * FROM ducklake_merge_adjacent_files({', '.join(args)})", params)

    @_masked_errors
    def expire_snapshots(
        self,
        older_than: dt.datetime | dt.timedelta | None = None,
        *,
        versions: Sequence[int] | None = None,
        dry_run: bool = False,
    ) -> pl.DataFrame:
        """Expire snapshots older than ``older_than`` (a time, or an age such as
        ``timedelta(days=7)``) or the listed ``versions`` (``ducklake_expire_snapshots``); their
        files become removable by :meth:`cleanup_old_files`. Returns the expired snapshots.
        Time travel to an expired snapshot is no longer possible."""
        if older_than is None and not versions:
            raise LoadConfigError("expire_snapshots() needs older_than=... or versions=[...].")
        args, params = [f"'{LAKE}'", "dry_run => ?"], [bool(dry_run)]
        if older_than is not None:
            args.append("older_than => ?::TIMESTAMPTZ")
            params.append(_as_instant(older_than))
        if versions:
            args.append("versions => ?::UBIGINT[]")
            params.append([int(v) for v in versions])
        with self._session() as con:
            return query_polars(con, f"SELECT * FROM ducklake_expire_snapshots({', '.join(args)})", params)

    @_masked_errors
    def cleanup_old_files(
        self,
        older_than: dt.datetime | dt.timedelta | None = None,
        *,
        cleanup_all: bool = False,
        dry_run: bool = False,
    ) -> pl.DataFrame:
        """Delete the data files of expired snapshots scheduled for deletion before
        ``older_than`` (or all of them with ``cleanup_all=True``) with
        ``ducklake_cleanup_old_files``; returns the paths deleted (or that would be)."""
        if older_than is None and not cleanup_all:
            raise LoadConfigError("cleanup_old_files() needs older_than=... or cleanup_all=True.")
        args, params = [f"'{LAKE}'", "dry_run => ?"], [bool(dry_run)]
        if cleanup_all:
            args.append("cleanup_all => true")
        if older_than is not None:
            args.append("older_than => ?::TIMESTAMPTZ")
            params.append(_as_instant(older_than))
        with self._session() as con:
            return query_polars(con, f"SELECT * FROM ducklake_cleanup_old_files({', '.join(args)})", params)


def _load_into_lake(
    con: duckdb.DuckDBPyConnection, source: Any, table: str, runner: Any = load, **options: Any
) -> LoadResult:
    """Run the engine's :func:`load` (or ``runner``: an incremental or cursor load, which take
    the same ``con, source, table``) into the lake with DuckDB's own in-memory catalog as the
    default and the target spelled ``lake.schema.table``.

    Why: the engine asks ``txid_current()`` whether the connection is in a transaction, and
    DuckDB raises ``INTERNAL Error: DuckTransaction::Get called on non-DuckDB transaction``
    when the default catalog is a DuckLake. With ``memory`` as the default for the length of
    the load the question is answered by DuckDB's catalog; every name the engine writes is
    qualified, so the data still goes to the lake. The result reports the name the caller gave.
    """
    qualified = _qualified(con, table)
    with _memory_default(con):
        result = runner(con, source, qualified, **options)
    return dataclasses.replace(result, table=table)


def _qualified(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``table`` spelled ``lake.schema.table`` (names quoted) as DuckDB resolves it: ``raw``,
    ``main.raw`` and ``lake.raw`` (the lake's catalog, schema ``main``) are one table."""
    ref = resolve(con, split_table_name(table))
    return ".".join(quote_identifier(p) for p in (ref.catalog, ref.schema, ref.name))


@contextmanager
def _memory_default(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's in-memory catalog as the default while the engine works on qualified names (see
    :func:`_load_into_lake` for why)."""
    con.execute("USE memory").fetchall()
    try:
        yield
    finally:
        con.execute(f"USE {LAKE}").fetchall()


def _as_instant(value: dt.datetime | dt.timedelta) -> dt.datetime:
    if isinstance(value, dt.timedelta):
        return dt.datetime.now(dt.timezone.utc) - value
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings DuckDB knows at connect time, and the rest (extension settings, set later)."""
    global _core_settings
    if _core_settings is None:
        with duckdb.connect() as probe:
            _core_settings = frozenset(r[0] for r in probe.execute("SELECT name FROM duckdb_settings()").fetchall())
    core = {k: v for k, v in settings.items() if k in _core_settings}
    return core, {k: v for k, v in settings.items() if k not in core}


# ---------------------------------------------------------------------- Prefect tasks
_TASK_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [5, 30],
    # The library's one retry condition: transient errors and network failures, never bad data.
    "retry_condition_fn": retry_transient,
}


@task(name="ducklake-compact", **_TASK_OPTIONS)
def compact_ducklake(lake: DuckLakeConnection, table: str | None = None) -> int:
    """Merge small files of ``table`` (or every table); returns the number of files merged.

    Example:
        ```python
        from prefect import flow
        from prefect_etl_blocks.blocks.ducklake import (
            DuckLakeConnection, cleanup_ducklake_files, compact_ducklake, expire_ducklake_snapshots)

        @flow
        def nightly_maintenance(block: str = "BLOCK_NAME", keep_days: int = 7) -> None:
            lake = DuckLakeConnection.load(block)
            compact_ducklake(lake)
            expire_ducklake_snapshots(lake, keep_days=keep_days)
            cleanup_ducklake_files(lake, keep_days=1)
        ```
    """
    merged = lake.compact(table)
    return int(merged["files_processed"].sum()) if merged.height else 0


@task(name="ducklake-expire-snapshots", **_TASK_OPTIONS)
def expire_ducklake_snapshots(lake: DuckLakeConnection, keep_days: float = 7) -> int:
    """Expire snapshots older than ``keep_days``; returns how many were expired."""
    return lake.expire_snapshots(dt.timedelta(days=keep_days)).height


@task(name="ducklake-cleanup-files", **_TASK_OPTIONS)
def cleanup_ducklake_files(lake: DuckLakeConnection, keep_days: float = 1) -> int:
    """Delete files of expired snapshots scheduled for deletion over ``keep_days`` ago."""
    return lake.cleanup_old_files(dt.timedelta(days=keep_days)).height


__all__ = [
    "DuckLakeConnection",
    "close_instances",
    "cleanup_ducklake_files",
    "compact_ducklake",
    "expire_ducklake_snapshots",
    "scrub",
]
