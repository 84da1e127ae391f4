"""The one vocabulary of a load: :class:`LoadOptions`, every option of one load, checked once.

The public signatures (``DuckDBConnection.load_frame`` / ``load_parquet``, the
``load_to_duckdb`` task, and the engine's :func:`~prefect_etl_blocks.core.loading.load`,
:func:`~prefect_etl_blocks.core.loading.load_cursor` and
:func:`~prefect_etl_blocks.core.loading.load_new_files`) each build one ``LoadOptions`` and
hand it down; nothing below them repeats the parameters. Everything that can be refused without
a connection or the data is refused here, at construction, with the errors the loads raise.

Example:
    ```python
    import pytest
    from prefect_etl_blocks.core.errors import LoadConfigError
    from prefect_etl_blocks.core.loading.options import LoadOptions

    assert LoadOptions().strategy == "replace"
    assert LoadOptions(cursor="ts", keys="id").strategy == "upsert"
    assert LoadOptions(incremental=True).keys == ()
    with pytest.raises(LoadConfigError, match="needs keys"):
        LoadOptions(cursor="ts", mode="upsert")
    ```
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect_etl_blocks.core.checks import Check
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import quote_identifier
from prefect_etl_blocks.core.loading.contracts import ON_SCHEMA_CHANGE, OnSchemaChange, key_list
from prefect_etl_blocks.core.loading.strategies import MODES, LoadMode, SCD2Columns

#: What a load may create: ``if_missing`` (default) creates a missing table (and its schema);
#: ``never`` refuses a missing table, naming the existing tables nearest in name.
CreateMode = Literal["if_missing", "never"]
CREATE_MODES: tuple[str, ...] = ("if_missing", "never")
#: What an incremental file load does with the rows of a file that disappeared.
ON_MISSING_FILE = ("keep", "delete")
#: The modes an incremental file load takes (a ``replace`` would drop earlier files' rows).
FILE_MODES = ("append", "upsert", "delete-insert", "insert-only")
#: A name that needs no quoting; the lineage column must be one (it is spliced into a scan).
SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The three kinds of load: a whole source, the rows past a cursor, the files not loaded yet.
LoadKind = Literal["plain", "cursor", "files"]

#: What a failing row-level check does: ``fail`` the load (default), or ``quarantine`` the
#: failing rows into ``<table>__quarantine`` and publish the rest.
OnCheckFailure = Literal["fail", "quarantine"]
ON_CHECK_FAILURE: tuple[str, ...] = ("fail", "quarantine")


@dataclass(frozen=True)
class LoadOptions:
    """Every option of one load, validated at construction (see the module docstring).

    ``mode`` is kept as given (``None`` = the kind's default); :attr:`strategy` is the mode the
    load runs with. ``keys`` becomes a tuple of names, ``checks`` a tuple, ``scd2_columns`` an
    :class:`~prefect_etl_blocks.core.loading.strategies.SCD2Columns`.
    """

    mode: LoadMode | None = None
    keys: str | Sequence[str] | None = None
    on_schema_change: OnSchemaChange = "fail"
    checks: Sequence[Check | str] | None = None
    scd2_columns: SCD2Columns | Sequence[str] | dict[str, str] | None = None
    return_result: bool = False
    cursor: str | None = None
    initial_value: Any = None
    lag: Any = None
    incremental: bool = False
    on_missing_file: Literal["keep", "delete"] = "keep"
    lineage_column: str | None = None
    #: ``True`` (default): compare local files' Parquet footer, reading it only for files whose
    #: size, mtime or stat key (device, inode, ctime) moved; ``"always"``: read every footer on
    #: every run (file systems whose ctime cannot be trusted); ``False``: size and mtime only.
    content_check: bool | Literal["always"] = True
    as_of: dt.datetime | None = None
    create: CreateMode = "if_missing"
    #: ``fail`` (default) or ``quarantine`` (see :data:`ON_CHECK_FAILURE`).
    on_check_failure: OnCheckFailure = "fail"
    #: Asset keys of what the data came from (lineage); a source's own key is added by the load.
    upstream: Sequence[str] = ()
    #: Run the whole load, return its result, keep nothing.
    dry_run: bool = False
    #: ``None``: join an active Prefect transaction when there is one; ``False``: commit on its
    #: own; ``True``: require one.
    transactional: bool | None = None

    def __post_init__(self) -> None:
        if self.content_check not in (True, False, "always") or isinstance(self.content_check, int) and not isinstance(self.content_check, bool):
            raise LoadConfigError(
                f"content_check={self.content_check!r}: pass True (compare footers, reading those "
                "whose stat changed), 'always' (read every footer) or False (size and mtime only)."
            )
        # In the order the loads have always checked them, so each error is the one it was.
        if self.incremental and self.cursor is not None:
            raise LoadConfigError(
                "load_parquet takes incremental=True (new files) or cursor=... (new rows), not "
                "both."
            )
        if self.cursor is None:
            no_cursor_options(self.initial_value, self.lag)
        check_create(self.create)
        keys = tuple(key_list(self.keys))
        if self.kind == "cursor":
            _check_cursor(self.cursor or "", keys, self.strategy, self.lag)
        elif self.kind == "files":
            _check_files(self.strategy, self.on_missing_file, self.lineage_column)
        _check_mode(self.strategy, self.on_schema_change)
        _check_flags(self.on_check_failure, self.dry_run, self.transactional)
        upstream = (self.upstream,) if isinstance(self.upstream, str) else tuple(self.upstream or ())
        if not all(isinstance(u, str) for u in upstream):
            raise LoadConfigError(
                f"upstream={self.upstream!r}: give asset keys as strings (or prefect.assets.Asset "
                "objects to the blocks and tasks)."
            )
        object.__setattr__(self, "upstream", upstream)
        scd2 = scd2_columns(self.scd2_columns) if self.kind == "plain" else SCD2Columns()
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "checks", tuple(self.checks or ()))
        object.__setattr__(self, "scd2_columns", scd2)

    @property
    def kind(self) -> LoadKind:
        """``cursor`` (with ``cursor=``), ``files`` (``incremental=True``) or ``plain``."""
        if self.cursor is not None:
            return "cursor"
        return "files" if self.incremental else "plain"

    @property
    def strategy(self) -> str:
        """The mode the load runs with: ``mode``, or the kind's default (``replace``; for
        files ``append``; for a cursor ``append``, or ``upsert`` with keys)."""
        if self.mode is not None:
            return self.mode
        if self.kind == "cursor":
            return "upsert" if key_list(self.keys) else "append"
        return "append" if self.kind == "files" else "replace"


def check_create(create: str) -> None:
    """Refuse a ``create=`` value that is not one of :data:`CREATE_MODES`."""
    if create not in CREATE_MODES:
        raise LoadConfigError(
            f"create={create!r} is not valid; use 'if_missing' (create a missing table) or "
            "'never' (refuse a missing table)."
        )


def no_cursor_options(initial_value: Any, lag: Any) -> None:
    """Refuse ``initial_value`` / ``lag`` without ``cursor=`` (they would be silently ignored)."""
    if initial_value is not None or lag is not None:
        raise LoadConfigError("initial_value and lag apply to cursor loads: pass cursor='column' too.")


def scd2_columns(value: Any) -> SCD2Columns:
    """``scd2_columns=`` as :class:`SCD2Columns`: three different, usable names."""
    if value is None:
        return SCD2Columns()
    if isinstance(value, SCD2Columns):
        cols = value
    elif isinstance(value, dict):
        cols = SCD2Columns(**value)
    else:
        cols = SCD2Columns(*value)
    for name in cols.names():
        quote_identifier(name)
    if len({n.casefold() for n in cols.names()}) != 3:
        raise LoadConfigError(f"scd2_columns {cols.names()} must be three different names.")
    return cols


def _check_mode(mode: str, on_schema_change: str) -> None:
    if mode not in MODES:
        raise LoadConfigError(
            f"mode={mode!r} is not a load mode; use one of {', '.join(repr(m) for m in MODES)}."
        )
    if on_schema_change not in ON_SCHEMA_CHANGE:
        raise LoadConfigError(
            f"on_schema_change={on_schema_change!r} is not valid; use one of "
            f"{', '.join(repr(m) for m in ON_SCHEMA_CHANGE)}."
        )


def _check_flags(on_check_failure: str, dry_run: Any, transactional: Any) -> None:
    if on_check_failure not in ON_CHECK_FAILURE:
        raise LoadConfigError(
            f"on_check_failure={on_check_failure!r} is not valid; use 'fail' (a failing check "
            "fails the load) or 'quarantine' (failing rows go to <table>__quarantine)."
        )
    if not isinstance(dry_run, bool):
        raise LoadConfigError(f"dry_run={dry_run!r} must be True or False.")
    if transactional is not None and not isinstance(transactional, bool):
        raise LoadConfigError(f"transactional={transactional!r} must be None, True or False.")


def _check_files(mode: str, on_missing_file: str, lineage_column: str | None) -> None:
    if mode not in FILE_MODES:
        raise LoadConfigError(
            f"incremental file loads take mode in {FILE_MODES}, not {mode!r}: a replace would "
            "drop the rows of files loaded earlier."
        )
    if on_missing_file not in ON_MISSING_FILE:
        raise LoadConfigError(f"on_missing_file={on_missing_file!r}: use 'keep' or 'delete'.")
    if lineage_column is not None and not SIMPLE_NAME.fullmatch(lineage_column):
        raise LoadConfigError(
            f"lineage_column={lineage_column!r} must be a simple column name (letters, digits, "
            "underscore, not starting with a digit)."
        )


def _check_cursor(cursor: str, keys: tuple[str, ...], mode: str, lag: Any) -> None:
    quote_identifier(cursor)
    if keys and mode not in ("upsert", "insert-only"):
        raise LoadConfigError(
            f"cursor load with keys takes mode 'upsert' or 'insert-only', not {mode!r}: rows at "
            "the boundary are loaded again and must not be duplicated."
        )
    if not keys and mode != "append":
        raise LoadConfigError(f"cursor load without keys appends; mode={mode!r} needs keys=[...].")
    _check_lag(lag)
    if lag is not None and not keys:
        raise LoadConfigError(
            "lag re-reads rows below the mark, which would duplicate them without keys: pass "
            "keys=[...] (the rows are then upserted)."
        )


def _check_lag(lag: Any) -> None:
    """Refuse a ``lag`` that is not a non-negative number or timedelta (before any work)."""
    if lag is None:
        return
    if isinstance(lag, bool) or not isinstance(lag, int | float | decimal.Decimal | dt.timedelta):
        raise LoadConfigError(
            f"lag={lag!r} must be a number (for a numeric cursor) or a datetime.timedelta (for a "
            "date, time or timestamp cursor)."
        )
    if isinstance(lag, float | decimal.Decimal) and not math.isfinite(lag):
        raise LoadConfigError(f"lag={lag!r} must be a finite number.")
    if lag < (dt.timedelta(0) if isinstance(lag, dt.timedelta) else 0):
        raise LoadConfigError(
            f"lag={lag!r} is negative: lag re-reads rows below the mark, so it must be zero or more."
        )


__all__ = [
    "CREATE_MODES",
    "FILE_MODES",
    "ON_CHECK_FAILURE",
    "ON_MISSING_FILE",
    "CreateMode",
    "LoadKind",
    "LoadOptions",
    "OnCheckFailure",
    "check_create",
    "no_cursor_options",
    "scd2_columns",
]
