"""The :class:`~prefect_etl_blocks.core.warehouse.session.Backend` of a DuckDB database file (or an
in-memory database): opening with the file lock, extensions and ``init_sql``."""

from __future__ import annotations

import os
from typing import Any, Protocol

import duckdb

from prefect_etl_blocks.core.engines import finish_result
from prefect_etl_blocks.core.errors import ExtensionLoadError, first_line
from prefect_etl_blocks.core.loading.connections import (
    close_connection,
    connect_waiting,
    lock_wait_seconds,
)
from prefect_etl_blocks.core.warehouse.session import Backend

__all__ = ["FileBackend", "FileSettings"]


class FileSettings(Protocol):
    """What :class:`FileBackend` reads, at every open, from its owner (the block's fields)."""

    @property
    def is_memory(self) -> bool: ...
    @property
    def database_path(self) -> str: ...

    read_only: bool
    settings: dict[str, Any]
    extensions: list[str]
    init_sql: list[str]
    lock_timeout_seconds: float


class FileBackend(Backend):
    """A DuckDB file: every operation opens and closes it (waiting for another process's lock
    up to ``lock_timeout_seconds``); an in-memory database keeps its one connection."""

    def __init__(self, settings: FileSettings) -> None:
        self.settings = settings

    @property
    def keeps_connection(self) -> bool:  # type: ignore[override]
        # Closing an in-memory database would drop its data.
        return self.settings.is_memory

    def open(self) -> duckdb.DuckDBPyConnection:
        """Open a new connection, waiting for another process's lock up to the timeout."""
        block = self.settings
        path = block.database_path
        if not block.is_memory and not block.read_only:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if block.read_only and not block.is_memory and not os.path.exists(path):
            raise FileNotFoundError(
                f'DuckDB file "{path}" does not exist, and read_only=True cannot create it. '
                "Check the path, or write to it once with read_only=False."
            )
        config = dict(block.settings)
        if block.is_memory:
            con = duckdb.connect(path, config=config)
        else:
            con = connect_waiting(
                path,
                read_only=block.read_only,
                config=config,
                timeout=lock_wait_seconds(block.lock_timeout_seconds),
                owner=self,
            )
        try:
            if "enable_progress_bar" not in block.settings:
                # A library must not draw DuckDB's progress bar on the caller's stdout.
                con.execute("SET enable_progress_bar = false")
            for name in block.extensions:
                load_or_install(con, name)
            for statement in block.init_sql:
                con.execute(statement)
                finish_result(con)
        except BaseException:
            self.close(con)
            raise
        return con

    def identity(self) -> str | None:
        """The resolved file path (an in-memory database is this block's alone)."""
        return None if self.settings.is_memory else os.path.realpath(os.path.expanduser(self.settings.database_path))

    def close(self, con: duckdb.DuckDBPyConnection) -> None:
        """Close one connection and give back this backend's in-process lock on the file."""
        close_connection(con, None if self.settings.is_memory else self.settings.database_path, self)


def load_or_install(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load the DuckDB extension ``name``, installing it first when it is missing."""
    try:
        con.load_extension(name)
        return
    except duckdb.Error:
        pass
    try:
        con.install_extension(name)
        con.load_extension(name)
    except duckdb.Error as exc:
        raise ExtensionLoadError(
            f"DuckDB extension {name!r} could not be loaded ({first_line(exc)}). It is not "
            "bundled with this DuckDB build and could not be installed (no network?). "
            f"Install it ahead of time (INSTALL {name}) into the extension directory, or "
            "remove it from `extensions`."
        ) from exc
