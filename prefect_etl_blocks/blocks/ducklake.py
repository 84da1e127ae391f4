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
so a reader never sees half a load. All of that is the block's backend,
:class:`~prefect_etl_blocks.core.warehouse.lake.LakeBackend`; this module holds the fields and the
maintenance methods and tasks.

Secrets: the catalog's password is taken out of the connection string and handed to DuckDB as a
(temporary, in-memory) secret, so it is not part of the ``ATTACH`` text DuckDB echoes in its
errors; any message that still carries it is masked. ``repr``/``str`` mask it too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from prefect import task
from prefect.blocks.abstract import DatabaseBlock
from prefect_aws import AwsCredentials
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from prefect_etl_blocks.blocks.warehouse import WarehouseMethods, check_extension_names
from prefect_etl_blocks.core.engines import query_polars
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import split_table_name
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.warehouse.lake import LAKE, LakeBackend, as_instant, close_instances
from prefect_etl_blocks.core.warehouse.lake_catalog import MASK, CatalogSpec, LakeConfig, scrub
from prefect_etl_blocks.core.warehouse.lake_rollback import rollback_work
from prefect_etl_blocks.core.warehouse.session import Session
from prefect_etl_blocks.runtime import lineage
from prefect_etl_blocks.runtime.compat import async_dispatch
from prefect_etl_blocks.runtime.retries import retry_transient

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/ducklake_connection/"
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DuckLakeConnection(WarehouseMethods, DatabaseBlock):
    """A DuckLake: catalog in PostgreSQL (or SQLite, or a DuckDB file), data as Parquet in a
    folder or on S3, written by many processes and machines at once.

    The same API as :class:`~prefect_etl_blocks.DuckDBConnection`: the ``DatabaseBlock``
    methods, ``query``, ``load_frame`` and ``load_parquet`` with every mode, schema contract
    and check, through the same load engine. Plus maintenance: :meth:`compact`,
    :meth:`expire_snapshots`, :meth:`cleanup_old_files` and :meth:`snapshots`; and
    :meth:`rollback`, which puts a table back as it was just before one load.

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

    _session_obj: Session | None = PrivateAttr(default=None)

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

    def _lake_config(self) -> LakeConfig:
        """The fields as the Prefect-free backend takes them (read at every connection)."""
        s3: dict[str, Any] | None = None
        hidden: tuple[str | None, ...] = ()
        creds = self.aws_credentials
        if creds is not None:
            secret = creds.aws_secret_access_key.get_secret_value() if creds.aws_secret_access_key else None
            token = creds.aws_session_token if isinstance(creds.aws_session_token, str) else None
            hidden = (secret, token)
            if creds.aws_access_key_id:
                s3 = {"KEY_ID": creds.aws_access_key_id, "SECRET": secret or "", "REGION": creds.region_name or "us-east-1"}
                if creds.aws_session_token:
                    s3["SESSION_TOKEN"] = creds.aws_session_token
                endpoint = creds.aws_client_parameters.endpoint_url if creds.aws_client_parameters else None
                if endpoint:
                    parts = urlsplit(str(endpoint))
                    s3.update(ENDPOINT=parts.netloc or parts.path, URL_STYLE="path", USE_SSL=parts.scheme != "http")
        return LakeConfig(
            catalog=self.catalog.get_secret_value(),
            data_path=self.data_path,
            read_only=self.read_only,
            settings=dict(self.settings),
            extensions=list(self.extensions),
            init_sql=list(self.init_sql),
            lock_timeout_seconds=self.lock_timeout_seconds,
            commit_retries=self.commit_retries,
            s3=s3,
            hidden=hidden,
        )

    def _backend(self) -> LakeBackend:
        return LakeBackend(self._lake_config)

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
        return 0 if self._session_obj is None else self._session_obj.last_attempts

    # ------------------------------------------------------------------ DuckLake maintenance
    def snapshots(self) -> pl.DataFrame:
        """The lake's snapshots (id, time, schema version, changes), oldest first."""
        sql = f"SELECT * FROM ducklake_snapshots('{LAKE}') ORDER BY snapshot_id"
        return self._warehouse.using(lambda con: query_polars(con, sql))

    def current_snapshot(self) -> int:
        """The id of the newest committed snapshot."""
        sql = f"SELECT id FROM ducklake_current_snapshot('{LAKE}')"
        return self._warehouse.using(lambda con: con.execute(sql).fetchall()[0][0])

    async def arollback(self, table: str, load_id: str, *, force: bool = False) -> LoadResult:
        """Async twin of :meth:`rollback`."""
        return await self._in_thread(self.rollback, table, load_id, force=force)

    @async_dispatch(arollback)
    def rollback(self, table: str, load_id: str, *, force: bool = False) -> LoadResult:
        """Put ``table`` back as it was just before load ``load_id`` (a ``load_id`` of
        :meth:`load_history`), from the lake's snapshots, as a new commit with a ledger row of
        its own (strategy ``rollback``; roll that back to undo the rollback). Returns its
        ``LoadResult``: ``inserted`` rows put back, ``deleted`` rows taken out.

        Refused with ``LoadConfigError`` (nothing written) when the snapshot before the load
        was expired, and, unless ``force=True``, when a later commit changed the table (a
        later load, or any other write) or another load into it committed in the same
        snapshot; ``force=True`` discards those too. See
        :mod:`~prefect_etl_blocks.core.warehouse.lake_rollback`.
        """
        with self._warehouse.backend.masking():
            self._refuse_if_read_only(f"roll back {table!r}")
            result = self._warehouse.commit(rollback_work(table, load_id, force=force), table, True)
        if lineage.in_prefect_run():
            lineage.emit_load_succeeded(self.database_path, result)
        return result

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
        sql = f"SELECT * FROM ducklake_merge_adjacent_files({', '.join(args)})"
        return self._warehouse.using(lambda con: query_polars(con, sql, params))

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
            params.append(as_instant(older_than))
        if versions:
            args.append("versions => ?::UBIGINT[]")
            params.append([int(v) for v in versions])
        sql = f"SELECT * FROM ducklake_expire_snapshots({', '.join(args)})"
        return self._warehouse.using(lambda con: query_polars(con, sql, params))

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
            params.append(as_instant(older_than))
        sql = f"SELECT * FROM ducklake_cleanup_old_files({', '.join(args)})"
        return self._warehouse.using(lambda con: query_polars(con, sql, params))



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
    "LAKE",
    "MASK",
    "CatalogSpec",
    "DuckLakeConnection",
    "close_instances",
    "cleanup_ducklake_files",
    "compact_ducklake",
    "expire_ducklake_snapshots",
    "scrub",
]
