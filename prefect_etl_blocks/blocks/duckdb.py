"""``DuckDBConnection``: a DuckDB database as a Prefect ``DatabaseBlock``, with Polars-native loads.

The ``DatabaseBlock`` methods, ``query``, the loads, the ledger and the sync/async pattern are
shared with ``DuckLakeConnection`` and live in :mod:`prefect_etl_blocks.blocks.warehouse`; this module
holds the block's fields. Opening, extensions and the file lock are the block's backend,
:class:`~prefect_etl_blocks.core.warehouse.duckdb_file.FileBackend`.

Connections and locks: DuckDB lets one process write a database file at a time. Outside a
``with db:`` block every call opens the file, does its work and closes it again, so two flows in
separate processes take turns; a busy file is retried until ``lock_timeout_seconds``, then
:class:`~prefect_etl_blocks.core.errors.DuckDBLockTimeoutError` names the file and the holder.
Blocks of one process that open the same file share one in-process lock per resolved path
(:func:`prefect_etl_blocks.core.loading.file_lock`), so threads take turns too instead of failing
with transaction conflicts. Inside ``with db:`` (or :meth:`get_connection`) one connection is
kept open. ``":memory:"`` databases always keep their connection, since closing it would drop
the data.

Loads are a facade over :mod:`prefect_etl_blocks.core.loading`, which does them on a plain DuckDB
connection: the source is staged once inside one transaction, schema contracts refuse silent
conversions, the strategy runs, checks run before COMMIT. A failure at any point (bad file,
type error, failed check, an exception in a source batch) leaves the table exactly as it was.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.blocks.abstract import DatabaseBlock
from pydantic import Field, PrivateAttr, field_validator

from prefect_etl_blocks.blocks.warehouse import WarehouseMethods, check_extension_names
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import quote_identifier, quote_table, split_table_name
from prefect_etl_blocks.core.loading.contracts import OnSchemaChange
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.strategies import LoadMode
from prefect_etl_blocks.core.warehouse.duckdb_file import FileBackend
from prefect_etl_blocks.core.warehouse.session import Session
from prefect_etl_blocks.runtime.compat import async_dispatch

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/duckdb_connection/"

__all__ = [
    "DuckDBConnection",
    "LoadMode",
    "LoadResult",
    "OnSchemaChange",
    "quote_identifier",
    "quote_table",
    "split_table_name",
]


class DuckDBConnection(WarehouseMethods, DatabaseBlock):
    """A DuckDB database file (or in-memory database) with Polars-native queries and loads.

    Implements Prefect's ``DatabaseBlock`` (``fetch_one``, ``fetch_many``, ``fetch_all``,
    ``execute``, ``execute_many``) and adds ``query`` (to a ``pl.DataFrame``), ``load_frame``
    and ``load_parquet`` with the ``replace``, ``append``, ``upsert``, ``delete-insert``,
    ``insert-only``, ``scd2`` and ``fail`` strategies, schema contracts (``on_schema_change``)
    and write-audit-publish ``checks``. Identifiers are always quoted, loads are atomic and
    never convert values silently, and parameters are bound, never pasted into SQL.

    Example:
        Load a saved block:
        ```python
        from prefect_etl_blocks import DuckDBConnection

        db = DuckDBConnection.load("BLOCK_NAME")
        ```

        Use one in code:
        ```python
        import polars as pl
        from prefect_etl_blocks import DuckDBConnection

        db = DuckDBConnection(database=":memory:")
        frame = pl.DataFrame({"id": [1, 2], "value": [9.5, 3.0]})
        db.load_frame(frame, "analytics.scores", mode="replace")
        db.load_frame(pl.DataFrame({"id": [2], "value": [4.0]}), "analytics.scores",
                      mode="upsert", keys=["id"])
        print(db.query("SELECT * FROM analytics.scores WHERE value > ?", [1]))
        print(db.fetch_one("SELECT count(*) FROM analytics.scores"))
        ```
    """

    _block_type_name = "DuckDB Connection"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/duckdb-logo/duckdb.png"
    _documentation_url = DOCS_URL
    _description = (
        "A DuckDB database file with Polars-native queries and atomic loads "
        "(replace, append, upsert, delete-insert, insert-only, scd2) with schema contracts "
        "and checks, that wait for other writers instead of failing."
    )

    database: str = Field(
        default=":memory:",
        description=(
            "Path of the DuckDB database file (parent folders are created), or ':memory:' for an "
            "in-memory database."
        ),
    )
    read_only: bool = Field(
        default=False,
        description=(
            "Open the file read-only; several processes may read a file at once, but not while "
            "another process writes it."
        ),
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "DuckDB configuration applied when connecting, for example "
            "{'threads': 4, 'memory_limit': '2GB', 'temp_directory': '/tmp/duckdb'}."
        ),
    )
    extensions: list[str] = Field(
        default_factory=list,
        description=(
            "DuckDB extensions loaded at connect (installed first when missing); a clear error "
            "names any extension that cannot be loaded, for example when offline."
        ),
    )
    init_sql: list[str] = Field(
        default_factory=list,
        description="SQL statements run on every new connection, for example SET or ATTACH.",
    )
    lock_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "How long to wait for another process that holds the database file's lock before "
            "failing with an error that names the file and the holder."
        ),
    )

    _session_obj: Session | None = PrivateAttr(default=None)

    @field_validator("extensions")
    @classmethod
    def _extension_names(cls, value: list[str]) -> list[str]:
        return check_extension_names(value)

    # ------------------------------------------------------------------ connection handling
    @property
    def is_memory(self) -> bool:
        """True for an in-memory database."""
        return self.database in ("", ":memory:") or self.database.startswith(":memory:")

    @property
    def database_path(self) -> str:
        """The database file's absolute path (or ``:memory:``)."""
        return self.database if self.is_memory else os.path.abspath(os.path.expanduser(self.database))

    def _backend(self) -> FileBackend:
        return FileBackend(self)

    def __repr__(self) -> str:
        return f"DuckDBConnection(database={self.database!r}, read_only={self.read_only!r})"

    # ------------------------------------------------------------------ rollback
    async def arollback(self, table: str, load_id: str, *, force: bool = False) -> LoadResult:
        """Async twin of :meth:`rollback` (refused the same way)."""
        raise self._no_history(table, load_id)

    @async_dispatch(arollback)
    def rollback(self, table: str, load_id: str, *, force: bool = False) -> LoadResult:
        """Refused: a DuckDB file keeps no history to put ``table`` back from.

        ``DuckLakeConnection.rollback`` does this on a DuckLake, which keeps every snapshot.
        Raises ``LoadConfigError`` saying so and what to do instead; nothing is read or written.
        """
        raise self._no_history(table, load_id)

    def _no_history(self, table: str, load_id: str) -> LoadConfigError:
        return LoadConfigError(
            f"Cannot roll back {table!r} to before load {load_id}: a DuckDB database file "
            f"({self.database_path}) keeps no history of its tables, only their current rows "
            "(a committed load cannot be undone from the file alone). Instead: restore the file "
            f"from a backup taken before the load; or undo it by hand from load_history({table!r}) "
            "(its row says what the load inserted, updated and deleted); or load into a "
            "DuckLakeConnection, whose rollback() restores a table from its snapshots."
        )

