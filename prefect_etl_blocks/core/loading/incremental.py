"""Incremental loads, exactly once: file manifests and cursors kept with the data.

Two kinds, both built on :func:`prefect_etl_blocks.core.loading.load`, and both writing their state
(``_prefect_etl.files`` or ``_prefect_etl.cursors``, see :mod:`~prefect_etl_blocks.core.loading.ledger`)
in the *same transaction* as the rows, so a crash or a retry at any point leaves data and state
agreeing: every row is loaded exactly once.

**File-incremental** (:func:`load_new_files`): only the Parquet files of a
``ParquetSource`` not yet loaded into the table are read. A file is identified by its path,
size, version marker (mtime in ns locally, the ETag on ``s3://``) and, for local files, the
SHA-256 of its Parquet footer (one small read at the file's end, which catches a rewrite that
kept size and mtime, as ``cp -p`` does). A file that disappeared is kept
(``on_missing_file="keep"``) or its rows are deleted (``"delete"``).

Lineage is opt-in and visible. By default the table holds only the source's columns; a file
that changes after it was loaded then **fails the load** (its old rows cannot be told apart, so
loading it again would duplicate them) and nothing is written. With
``lineage_column="_prefect_etl_file"`` (:data:`LINEAGE_COLUMN`) every row also records its file
in that column, and a changed file has its earlier rows deleted by it and is read again, in the
same transaction. DuckDB has no hidden columns and its row ids are not stable enough to key
lineage on, hence a real column. The choice is made when the table is created: a table that has
the column keeps it on later loads without being asked again, and asking for it on a table that
already holds rows without it is refused. A run that finds nothing new reads no Parquet data: it
lists the files, reads the footers' last bytes (local), compares with the manifest and records
a ledger row with 0 rows.

**Cursor loads** (:func:`load_cursor`): only rows whose ``cursor`` column is past the table's
high-water mark load. Without ``keys`` the filter is ``cursor > mark`` and rows append. With
``keys`` it is ``cursor >= mark - lag`` and rows are upserted, so rows at the boundary (equal
cursor) and late rows within ``lag`` that were already loaded update in place rather than
duplicate; within one batch the row with the greatest cursor per key wins. The mark never
moves back. It is stored as DuckDB's text of a value of the cursor column's own type and
compared in SQL (``cursor > CAST(mark AS TIMESTAMP_NS)``), so nanoseconds, 128-bit integers and
decimals are never rounded through Python values. A ``ParquetSource`` gets the predicate pushed into its scan (DuckDB's reader for
local files, Polars' for ``s3://``), so row groups whose statistics are all below the mark are
skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.core.errors import (
    LoadConfigError,
    LoadError,
    PrefectETLBlocksError,
    first_line,
)
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import split_table_name
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.boundary import classify_load_error
from prefect_etl_blocks.core.loading.connections import transaction
from prefect_etl_blocks.core.loading.contracts import check_column_names, key_list, relation_types
from prefect_etl_blocks.core.loading.engine import LoadResult, load, table_exists
from prefect_etl_blocks.core.loading.staging import (
    Source,
    as_source,
    lazy_relation,
    parquet_relation,
    polars_wire,
    unregister,
)

LINEAGE_COLUMN = "_prefect_etl_file"
ON_MISSING_FILE = ("keep", "delete")
FILE_MODES = ("append", "upsert", "delete-insert", "insert-only")
_SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Type names DuckDB's typeof() gives a cursor column (stored with the mark, cast back on read).
_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?( WITH TIME ZONE)?")


# ----------------------------------------------------------------------------- files
def _file_identity(source: Any, files: list[Any], content_check: bool) -> list[tuple]:
    """``(path, size, version, footer_sha256)`` of every listed file."""
    from prefect_etl_blocks.integration.cache_policies import parquet_footer_sha256

    out = []
    for f in files:
        footer = parquet_footer_sha256(f.path) if content_check and not source.is_remote else None
        out.append((f.path, int(f.size), str(f.version), footer))
    return out


def _unchanged(recorded: tuple | None, now: tuple) -> bool:
    """Whether a file recorded as ``(size, version, footer)`` is ``now`` (``path, size,
    version, footer``) unchanged. A footer is compared only when both sides have one: loading
    with ``content_check`` on once and off once (or the reverse) never makes a file "changed"."""
    if recorded is None:
        return False
    size, version, footer = recorded
    if (size, version) != (now[1], now[2]):
        return False
    return footer is None or now[3] is None or footer == now[3]


def _add_footers(
    con: duckdb.DuckDBPyConnection, state: str, key: str, known: dict[str, tuple], current: list[tuple]
) -> None:
    """Record the footer of unchanged files recorded without one (loaded with
    ``content_check=False``), so that a later rewrite keeping size and mtime is caught."""
    missing = [f for f in current if f[3] is not None and f[0] in known and known[f[0]][2] is None
               and _unchanged(known[f[0]], f)]
    if missing:
        con.execute(
            f"UPDATE {state}.files AS f SET footer_sha256 = m.footer FROM (SELECT unnest(?::VARCHAR[]) "
            "AS path, unnest(?::VARCHAR[]) AS footer) AS m WHERE f.table_name = ? AND f.path = m.path",
            [[f[0] for f in missing], [f[3] for f in missing], key],
        ).fetchall()


def file_identity(path: str) -> str:
    """The canonical identity of a file path: a normalised ``s3://bucket/key`` URL, or a
    resolved absolute local path (a relative path is resolved against the working directory)."""
    from prefect_etl_blocks.blocks.parquet import local_identity, s3_identity

    if path.lower().startswith(("s3://", "s3a://")):
        return s3_identity(path)
    return local_identity(path)


def _migrate_paths(
    con: duckdb.DuckDBPyConnection,
    state: str,
    key: str,
    known: dict[str, tuple],
    listed: set[str],
    target: str | None,
    lineage: str | None,
) -> dict[str, tuple]:
    """Rename manifest paths recorded as typed (by earlier versions: relative to the working
    directory of the time, ``./``, ``..``, symlinks) to their identity, in the load's
    transaction, and the lineage column's values with them; return the manifest by identity.

    A relative path can only be resolved against today's working directory. Where several
    spellings name one file (an earlier version loaded it under each), one row is kept. A path
    this run listed is an identity already: only the others are resolved (no file system calls
    for a manifest that is up to date).
    """
    renamed = {path: path if path in listed else file_identity(path) for path in known}
    stale = {old: new for old, new in renamed.items() if old != new}
    if not stale:
        return known
    keep: dict[str, str] = {}
    for old in sorted(known, key=lambda p: (renamed[p] != p, p)):  # canonical rows first
        keep.setdefault(renamed[old], old)
    dropped = [old for old in stale if keep[renamed[old]] != old]
    if dropped:
        con.execute(
            f"DELETE FROM {state}.files WHERE table_name = ? AND path IN (SELECT unnest(?::VARCHAR[]))",
            [key, dropped],
        ).fetchall()
    moved = [old for old in stale if keep[renamed[old]] == old]
    mapping = "(SELECT unnest(?::VARCHAR[]) AS old, unnest(?::VARCHAR[]) AS new) AS m"
    if moved:
        con.execute(
            f"UPDATE {state}.files AS f SET path = m.new FROM {mapping} WHERE f.table_name = ? AND f.path = m.old",
            [moved, [stale[p] for p in moved], key],
        ).fetchall()
    if target is not None and lineage is not None:
        con.execute(
            f"UPDATE {target} AS t SET {q(lineage)} = m.new FROM {mapping} WHERE t.{q(lineage)} = m.old",
            [list(stale), list(stale.values())],
        ).fetchall()
    return {new: known[old] for new, old in keep.items()}


def _file_source(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    paths: list[str],
    hive: bool,
    lineage: str | None,
    rescannable: bool = False,
) -> Source:
    """A :class:`Source` over ``paths`` of ``source`` (its columns and filter applied) with the
    lineage column last. Only the footers of ``paths`` are checked."""
    for path in paths:
        source._check_expected(source._file_schema(path), path, partial=True)
    parsed = source.parsed_filter()
    if source.is_remote:
        frame = pl.scan_parquet(
            paths,
            hive_partitioning=hive,
            storage_options=source.polars_storage_options(),
            include_file_paths=lineage,
        )
        if parsed is not None:
            frame = frame.filter(parsed.to_polars())
        if source.columns:
            frame = frame.select([*source.columns, *([lineage] if lineage else [])])
        schema = frame.collect_schema()
        where = f"ParquetSource {source.path!r}"
        names = check_column_names(list(schema.names()), where)
        polars_wire(pl.LazyFrame(schema=schema), where)  # refuses a dtype before any read

        def register_remote(c: duckdb.DuckDBPyConnection, name: str) -> None:
            c.register(name, lazy_relation(c, frame, where))

        return Source(names, f"ParquetSource {source.path!r}", register_remote, remote=True)

    sql = "SELECT * FROM read_parquet($files, hive_partitioning = $hive"
    if lineage:
        sql += f", filename = '{lineage}'"  # an allow-listed simple name (see _lineage_name)
    relation = con.sql(sql + ")", params={"files": paths, "hive": hive})
    predicate = source.filter_sql()
    if predicate:
        relation = relation.filter(predicate)
    data_columns = list(source.columns or [c for c in relation.columns if c != lineage])
    if lineage and lineage in data_columns:
        raise LoadConfigError(
            f"ParquetSource {source.path!r} has a column named {lineage!r}, the lineage column of "
            "incremental loads; pass lineage_column='another_name'."
        )
    names = check_column_names([*data_columns, *([lineage] if lineage else [])], f"ParquetSource {source.path!r}")
    relation = relation.project(", ".join(q(c) for c in names))

    def register_local(c: duckdb.DuckDBPyConnection, name: str) -> None:
        c.register(name, relation)

    # Files on local disk can be scanned again at no cost, so without checks (which would
    # read the data a second time) the engine inserts straight from the scan, skipping the copy
    # into a temp table.
    return Source(names, f"ParquetSource {source.path!r}", register_local, in_memory=rescannable)


def _table_lineage(
    con: duckdb.DuckDBPyConnection, target: str, table: str, lineage: str | None, has_rows: bool
) -> str | None:
    """The lineage column to use for an existing table: the one asked for, or, when none was,
    :data:`LINEAGE_COLUMN` if the table was created with it. Asking for a column the table lacks
    while files are already loaded is refused: their rows could never be traced."""
    columns = {c.casefold() for c, _ in relation_types(con, target)}
    if lineage is None:
        return LINEAGE_COLUMN if LINEAGE_COLUMN in columns else None
    if has_rows and lineage.casefold() not in columns:
        raise LoadConfigError(
            f"lineage_column={lineage!r}, but {table!r} already holds files loaded without that "
            "column: their rows could not be traced to files. Keep loading it without "
            f"lineage_column, or rebuild it with lineage_column={lineage!r} (reset_incremental, "
            "then an incremental load into a new or emptied table)."
        )
    return lineage


def _lineage_name(lineage_column: str | None) -> str | None:
    if lineage_column is not None and not _SIMPLE_NAME.fullmatch(lineage_column):
        raise LoadConfigError(
            f"lineage_column={lineage_column!r} must be a simple column name (letters, digits, "
            "underscore, not starting with a digit)."
        )
    return lineage_column


def load_new_files(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    *,
    mode: str = "append",
    keys: str | Sequence[str] | None = None,
    on_schema_change: str = "fail",
    checks: Sequence[Any] | None = None,
    on_missing_file: str = "keep",
    lineage_column: str | None = None,
    content_check: bool = True,
    create: str = "if_missing",
) -> LoadResult:
    """Load the files of ``source`` (a ``ParquetSource``) not yet loaded into ``table``.

    Args:
        con: an open DuckDB connection (the caller owns it and any locking).
        source: the ``ParquetSource`` (local file, folder, glob, hive folder or ``s3://``).
        table: the target table.
        mode: ``append`` (default), ``upsert``, ``delete-insert`` or ``insert-only``.
        keys: as for :func:`~prefect_etl_blocks.core.loading.load`.
        on_schema_change: as for :func:`~prefect_etl_blocks.core.loading.load`.
        checks: as for :func:`~prefect_etl_blocks.core.loading.load`.
        on_missing_file: ``keep`` (default) leaves the rows of a file that disappeared;
            ``delete`` deletes them (needs the lineage column).
        lineage_column: a column recording each row's file (opt-in; :data:`LINEAGE_COLUMN` is
            ``_prefect_etl_file``), so that changed files replace their rows and
            ``on_missing_file="delete"`` works. ``None`` (default): none for a new table (a
            changed file then fails the load), and the table's own choice for an existing one.
        content_check: also compare local files' Parquet footer SHA-256.
        create: as for :func:`~prefect_etl_blocks.core.loading.load` (passed through).

    Returns:
        The :class:`LoadResult`; ``files`` lists the files read, ``files_deleted`` the files
        whose earlier rows were deleted.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        import duckdb
        import polars as pl
        from prefect_etl_blocks import ParquetSource
        from prefect_etl_blocks.core.loading.incremental import load_new_files

        folder = Path(tempfile.mkdtemp())
        pl.DataFrame({"id": [1, 2]}).write_parquet(folder / "a.parquet")
        con = duckdb.connect()
        source = ParquetSource(path=str(folder))
        assert load_new_files(con, source, "raw").inserted == 2
        assert load_new_files(con, source, "raw").inserted == 0  # nothing new: no data read
        pl.DataFrame({"id": [3]}).write_parquet(folder / "b.parquet")
        assert load_new_files(con, source, "raw").inserted == 1
        ```
    """
    started = time.perf_counter()
    if mode not in FILE_MODES:
        raise LoadConfigError(
            f"incremental file loads take mode in {FILE_MODES}, not {mode!r}: a replace would "
            "drop the rows of files loaded earlier."
        )
    if on_missing_file not in ON_MISSING_FILE:
        raise LoadConfigError(f"on_missing_file={on_missing_file!r}: use 'keep' or 'delete'.")
    lineage = _lineage_name(lineage_column)
    parts = split_table_name(table)
    ledger.check_user_table(parts, table)
    # The table as DuckDB resolves the name (``t``, ``main.t`` and ``w.main.t`` are one), spelled
    # in full from here on so that the engine cannot read a catalog as a schema.
    ref = ledger.resolve(con, parts)
    parts = [ref.catalog, ref.schema, ref.name]
    target = ".".join(q(p) for p in parts)
    listing = source.list_files()  # outside the transaction: I/O that may be slow or retried
    hive = source.hive_partitioning
    if hive is None:
        hive = source._hive_default([f.path for f in listing])
    current = _file_identity(source, listing, content_check)
    entry = ledger.LedgerEntry(incremental="files")
    key = ref.key
    with transaction(con):
        state = entry.state = ledger.ensure_state(con, parts)
        exists = table_exists(con, parts)
        if not exists:
            # The table was dropped (or never made): its old manifest no longer describes it.
            con.execute(f"DELETE FROM {state}.files WHERE table_name = ?", [key]).fetchall()
        known = {
            row[0]: tuple(row[1:])
            for row in con.execute(
                f"SELECT path, size, version, footer_sha256 FROM {state}.files WHERE table_name = ?",
                [key],
            ).fetchall()
        }
        if exists:
            lineage = _table_lineage(con, target, table, lineage, bool(known))
        listed = {f[0] for f in current}
        known = _migrate_paths(con, state, key, known, listed, target if exists else None, lineage)
        if lineage is None and on_missing_file == "delete":
            raise LoadConfigError(
                f"on_missing_file='delete' on {table!r} needs a lineage column to find the rows "
                f"of vanished files: create the table with lineage_column={LINEAGE_COLUMN!r}."
            )
        to_read = [f for f in current if not _unchanged(known.get(f[0]), f)]
        _add_footers(con, state, key, known, current)
        changed = [f[0] for f in to_read if f[0] in known]
        missing = sorted(p for p in known if p not in listed)
        gone = missing if on_missing_file == "delete" else []
        if changed and lineage is None:
            raise LoadConfigError(
                f"{len(changed)} file(s) loaded into {table!r} earlier changed since (first: "
                f"{changed[0]!r}). The table has no lineage column, so their old rows cannot be "
                "found and loading them again would duplicate rows; nothing was written. Restore "
                "the file, or rebuild the table with lineage_column="
                f"{LINEAGE_COLUMN!r} (reset_incremental, then an incremental load into a new "
                "or emptied table) so that changed files replace their rows."
            )
        entry.files = [f[0] for f in to_read]
        entry.files_deleted = sorted([*changed, *gone])
        if entry.files_deleted and exists and lineage:
            rows = con.execute(
                f"DELETE FROM {target} WHERE {q(lineage)} IN (SELECT unnest(?::VARCHAR[]))",
                [entry.files_deleted],
            ).fetchall()
            entry.extra_deleted = int(rows[0][0]) if rows else 0
        stale = [*changed, *gone]
        if stale:
            con.execute(
                f"DELETE FROM {state}.files WHERE table_name = ? AND path IN (SELECT unnest(?::VARCHAR[]))",
                [key, stale],
            ).fetchall()
        if to_read:
            con.execute(
                f"INSERT INTO {state}.files SELECT ?, unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?, ?",
                [key, [f[0] for f in to_read], [f[1] for f in to_read], [f[2] for f in to_read],
                 [f[3] for f in to_read], entry.load_id, ledger.utcnow()],
            ).fetchall()
            src = _file_source(
                con, source, entry.files, bool(hive), lineage, rescannable=mode == "append" and not checks
            )
            spelled = ".".join(p if _SIMPLE_NAME.fullmatch(p) else q(p) for p in parts)
            result = load(
                con, src, spelled, mode=mode, keys=keys, on_schema_change=on_schema_change,
                checks=checks, ledger_entry=entry, create=create,
            )
            return dataclasses.replace(result, table=table)
        ledger.record(
            con, parts, entry, strategy=mode, inserted=0, updated=0, deleted=entry.extra_deleted,
            created=False, schema_changes=(), checks=(),
        )
    return LoadResult(
        table=table, mode=mode, deleted=entry.extra_deleted, seconds=time.perf_counter() - started,
        on_schema_change=on_schema_change, keys=tuple(key_list(keys)), load_id=entry.load_id,
        files=(), files_deleted=tuple(entry.files_deleted),
    )


# ----------------------------------------------------------------------------- cursors
# What a cursor may be, by DuckDB type id, and its family: marks convert only within a family
# (numbers among themselves), and the family says what ``lag`` means.
_CURSOR_FAMILY = {
    **dict.fromkeys(
        ("tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
         "ubigint", "uhugeint"),
        "integer",
    ),
    "decimal": "decimal", "float": "float", "double": "float",
    **dict.fromkeys(("date", "timestamp_s", "timestamp_ms", "timestamp", "timestamp_ns"), "datetime"),
    "timestamp with time zone": "instant", "timestamptz_ns": "instant",
    "time": "time", "time_ns": "time",  # not TIME WITH TIME ZONE: DuckDB 1.5's max() and < disagree on it
    "varchar": "string", "uuid": "uuid",
}
_NUMBERS = ("integer", "decimal", "float")
_TEMPORAL = ("datetime", "instant", "time")
_MAX_LAG_US = 2**63 - 1


@dataclass(frozen=True)
class _Bound:
    """A cursor filter ``column > text`` (or ``>=``), the text being a value of ``sql_type``."""

    text: str
    sql_type: str
    inclusive: bool

    def expression(self, con: duckdb.DuckDBPyConnection, cursor: str) -> Any:
        column = duckdb.ColumnExpression(cursor)
        value = duckdb.ConstantExpression(self.text).cast(con.type(self.sql_type))
        return (column >= value) if self.inclusive else (column > value)


def _cursor_type(relation: duckdb.DuckDBPyRelation, cursor: str, table: str) -> Any:
    """The DuckDB type of the cursor column, refused when it cannot be a cursor."""
    if cursor not in relation.columns:
        raise LoadConfigError(
            f"cursor column {cursor!r} is not a column of the data loaded into {table!r}; its "
            f"columns are {relation.columns}."
        )
    ctype = dict(zip(relation.columns, relation.types, strict=True))[cursor]
    if ctype.id not in _CURSOR_FAMILY:
        raise LoadConfigError(
            f"cursor column {cursor!r} of the data loaded into {table!r} is {ctype}, which cannot "
            "be a cursor: a cursor needs values in an order that only grows (a number, date, "
            "time, timestamp, string or UUID). Use another column as cursor, or cast this one in "
            f"the data (for example pl.col({cursor!r}).cast(pl.Int64)). Nothing was written."
        )
    return ctype


def _read_mark(
    con: duckdb.DuckDBPyConnection, state: str, key: str, cursor: str
) -> tuple[str | None, str | None]:
    """The stored mark as ``(text, DuckDB type name)``; never turned into a Python value."""
    row = con.execute(
        f"SELECT mark, mark_type FROM {state}.cursors WHERE table_name = ? AND cursor_column = ?",
        [key, cursor.casefold()],
    ).fetchall()
    if not row or row[0][0] is None:
        return None, None
    mark, mark_type = row[0]
    if not _TYPE_NAME.fullmatch(mark_type or ""):
        raise LoadConfigError(
            f"The cursor state of {key!r} has an unexpected type {mark_type!r}; run "
            "reset_incremental on the table to start over."
        )
    return mark, mark_type


def _as_column_value(
    con: duckdb.DuckDBPyConnection, value: Any, value_type: str | None, column: Any, what: str, fix: str
) -> str:
    """``value`` as the exact text of a value of the cursor's type ``column``: the text of a
    ``value_type`` value (a stored mark), or a Python value bound as a parameter (``value_type``
    None). Only exact conversions within one family pass (TIMESTAMP to TIMESTAMP_NS, INTEGER to
    BIGINT, 5.0 to 5); text is parsed as a value of the column's type."""
    col = str(column)
    try:
        if value_type is None:
            value_type = con.execute("SELECT typeof(?)", [value]).fetchall()[0][0]
            expr = "?"
        else:
            expr = f"CAST(? AS {value_type})"
        source_family = _CURSOR_FAMILY.get(con.type(value_type).id)
    except duckdb.Error as exc:
        raise LoadConfigError(f"{what} {value!r} cannot be a {col} cursor value: {first_line(exc)}. {fix}.") from exc
    family = _CURSOR_FAMILY[column.id]
    parse = source_family == "string" and family != "string"
    if not parse and source_family != family and not (source_family in _NUMBERS and family in _NUMBERS):
        raise LoadConfigError(
            f"{what} {value!r} is a {value_type} value, but the cursor is {col}: they do not "
            f"compare exactly. {fix}."
        )
    text, exact = con.execute(
        f"SELECT CAST(TRY_CAST(v AS {col}) AS VARCHAR), CAST(TRY_CAST(v AS {col}) AS {value_type}) = v "
        f"FROM (SELECT {expr} AS v)",
        [value],
    ).fetchall()[0]
    if text is None or not (parse or exact):
        nearest = "" if text is None else f" (the nearest is {text})"
        raise LoadConfigError(f"{what} {value!r} has no exact {col} value{nearest}. {fix}.")
    return text


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


def _ceil_decimal(value: decimal.Decimal, scale: int) -> decimal.Decimal:
    with decimal.localcontext() as ctx:
        ctx.prec = 200
        return value.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_CEILING)


def _minus_lag(
    con: duckdb.DuckDBPyConnection, mark: str, column: Any, lag: Any, cursor: str
) -> tuple[str | None, str]:
    """The lower bound ``mark - lag`` as ``(text, type)``, exact: text None when it lies below
    the type's range (every row is within ``lag``).

    Numbers are subtracted exactly in Python (integers and decimals are exact there, and a
    double's text round-trips) and, for integers and decimals, rounded up to the column's
    precision, which selects the same rows. Dates and times are subtracted in SQL, in the
    column's own type: a ``timedelta`` is a whole number of microseconds, taken as a fixed
    length (never a calendar day), and nanoseconds are kept.
    """
    col = str(column)
    family = _CURSOR_FAMILY[column.id]
    if lag is None:
        return mark, col
    if family not in (*_NUMBERS, *_TEMPORAL):
        raise LoadConfigError(
            f"lag={lag!r} has no meaning on the {col} cursor {cursor!r}: there is no distance "
            "between its values. Drop lag (with keys, rows at the mark are still upserted), or "
            "use a numeric or date/time cursor."
        )
    temporal = family in _TEMPORAL
    if temporal and not isinstance(lag, dt.timedelta):
        raise LoadConfigError(
            f"lag={lag!r} on a date/time cursor must be a datetime.timedelta, e.g. timedelta(hours=1)."
        )
    if not temporal and isinstance(lag, dt.timedelta):
        raise LoadConfigError(f"lag={lag!r} on the {col} cursor {cursor!r} must be a number, not a timedelta.")
    if family == "float":
        # The FLOAT mark "0.1" is not the double 0.1: take its exact double first.
        exact = con.execute(f"SELECT CAST(CAST(CAST(? AS {col}) AS DOUBLE) AS VARCHAR)", [mark]).fetchall()[0][0]
        return repr(float(exact) - float(lag)), "DOUBLE"
    if family in ("integer", "decimal"):
        scale = dict(column.children)["scale"] if family == "decimal" else 0
        with decimal.localcontext() as ctx:
            ctx.prec = 200
            exact = decimal.Decimal(mark) - decimal.Decimal(str(lag) if isinstance(lag, float) else lag)
        text = str(_ceil_decimal(exact, scale))
        fits = con.execute(f"SELECT TRY_CAST(? AS {col}) IS NOT NULL", [text]).fetchall()[0][0]
        return (text if fits else None), col
    lag_us = (lag.days * 86_400 + lag.seconds) * 1_000_000 + lag.microseconds
    if lag_us > _MAX_LAG_US:
        return None, col
    if family == "time":
        ns = "epoch_ns(CAST($mark AS TIME_NS))" if column.id == "time_ns" else "epoch_us(CAST($mark AS TIME)) * 1000"
        sql = (
            "SELECT CASE WHEN n >= 0 THEN printf('%02d:%02d:%02d.%09d', n // 3600000000000, "
            "n // 60000000000 % 60, n // 1000000000 % 60, n % 1000000000) END "
            f"FROM (SELECT CAST({ns} AS HUGEINT) - CAST($lag AS HUGEINT) * 1000 AS n)"
        )
        return con.execute(sql, {"mark": mark, "lag": lag_us}).fetchall()[0][0], col
    if column.id == "date":
        # A date d is at or past mark - lag exactly when d >= mark - floor(lag / 1 day); staying in
        # DATE also covers dates beyond TIMESTAMP's range.
        lag_us //= 86_400_000_000
        expr = "CAST($mark AS DATE) - CAST($lag AS INTEGER)"
    elif column.id == "timestamp_ns":
        expr = "make_timestamp_ns(CAST(epoch_ns(CAST($mark AS TIMESTAMP_NS)) - CAST($lag AS HUGEINT) * 1000 AS BIGINT))"
    else:  # TIMESTAMP_S/_MS, TIMESTAMP, TIMESTAMPTZ and (DuckDB 2) TIMESTAMPTZ_NS keep their precision
        expr = f"CAST($mark AS {col}) - to_microseconds(CAST($lag AS BIGINT))"
    text, sql_type = con.execute(
        f"SELECT CAST(b AS VARCHAR), typeof(b) FROM (SELECT TRY({expr}) AS b)", {"mark": mark, "lag": lag_us}
    ).fetchall()[0]
    return text, (sql_type if text is not None else col)


def _polars_prefilter(con: duckdb.DuckDBPyConnection, bound: _Bound, column: Any, cursor: str) -> Any:
    """A Polars predicate selecting a superset of the rows past ``bound`` (so that the scan of an
    ``s3://`` source skips row groups below it), or None; the exact filter is DuckDB's."""
    family = _CURSOR_FAMILY[column.id]
    if family in ("integer", "float", "string"):
        sql = f"SELECT CAST(? AS {bound.sql_type})"
    elif family == "datetime" and column.id == "date":
        sql = f"SELECT CAST(TRY(CAST(? AS {bound.sql_type}) - INTERVAL 1 DAY) AS DATE)"
    elif family == "datetime":  # a second below: unit casts in Polars may truncate the literal
        sql = f"SELECT TRY(CAST(CAST(? AS {bound.sql_type}) AS TIMESTAMP) - INTERVAL 1 SECOND)"
    else:
        return None
    value = con.execute(sql, [bound.text]).fetchall()[0][0]
    return None if value is None else pl.col(cursor) >= value


def load_cursor(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    *,
    cursor: str,
    initial_value: Any = None,
    lag: Any = None,
    keys: str | Sequence[str] | None = None,
    mode: str | None = None,
    on_schema_change: str = "fail",
    checks: Sequence[Any] | None = None,
    create: str = "if_missing",
) -> LoadResult:
    """Load the rows of ``source`` whose ``cursor`` is past ``table``'s high-water mark.

    Args:
        con: an open DuckDB connection.
        source: anything :func:`~prefect_etl_blocks.core.loading.load` takes, or a ``ParquetSource``
            (the cursor predicate is pushed into its scan).
        table: the target table.
        cursor: the column whose values only grow: a number (up to HUGEINT / UHUGEINT,
            DECIMAL, FLOAT, DOUBLE), date, time, timestamp (any precision, with or without time
            zone), string or UUID. The mark is kept and compared in this column's DuckDB type,
            never through a Python value. Other types, and NULL values, are refused.
        initial_value: the mark before the first load (rows at or below it never load): a
            value cast exactly to the column's type in SQL, or its text.
        lag: re-read this far below the mark (a number, or a ``timedelta`` for date/time
            cursors, taken as a fixed length) to catch late rows; needs ``keys``.
        keys: key columns: rows at the boundary and within ``lag`` are upserted, not duplicated.
        mode: ``append`` without keys (default), ``upsert`` (default with keys) or
            ``insert-only``.
        on_schema_change: as for :func:`~prefect_etl_blocks.core.loading.load`.
        checks: as for :func:`~prefect_etl_blocks.core.loading.load`.
        create: as for :func:`~prefect_etl_blocks.core.loading.load` (passed through).

    Example:
        ```python
        import duckdb
        import polars as pl
        from prefect_etl_blocks.core.loading.incremental import load_cursor

        con = duckdb.connect()
        batch = pl.DataFrame({"id": [1, 2], "ts": [10, 20]})
        assert load_cursor(con, batch, "events", cursor="ts", keys="id").inserted == 2
        batch = pl.DataFrame({"id": [2, 3], "ts": [20, 30]})  # id 2 is at the boundary
        result = load_cursor(con, batch, "events", cursor="ts", keys="id")
        assert (result.inserted, result.updated) == (1, 1)
        ```
    """
    started = time.perf_counter()
    q(cursor)
    key_cols = key_list(keys)
    mode = mode or ("upsert" if key_cols else "append")
    if key_cols and mode not in ("upsert", "insert-only"):
        raise LoadConfigError(
            f"cursor load with keys takes mode 'upsert' or 'insert-only', not {mode!r}: rows at "
            "the boundary are loaded again and must not be duplicated."
        )
    if not key_cols and mode != "append":
        raise LoadConfigError(f"cursor load without keys appends; mode={mode!r} needs keys=[...].")
    _check_lag(lag)
    if lag is not None and not key_cols:
        raise LoadConfigError(
            "lag re-reads rows below the mark, which would duplicate them without keys: pass "
            "keys=[...] (the rows are then upserted)."
        )
    parts = split_table_name(table)
    ledger.check_user_table(parts, table)
    key = ledger.table_key(con, parts)
    from prefect_etl_blocks.blocks.parquet import ParquetSource

    is_parquet = isinstance(source, ParquetSource)
    src = None if is_parquet else as_source(source)
    entry = ledger.LedgerEntry(incremental="cursor", cursor_column=cursor)
    try:
        with transaction(con):
            state = entry.state = ledger.ensure_state(con, parts)
            if not table_exists(con, parts):
                con.execute(f"DELETE FROM {state}.cursors WHERE table_name = ?", [key]).fetchall()
            view = None
            where = f"ParquetSource {source.path!r}" if is_parquet else "the data"
            if is_parquet and source.is_remote:
                frame = source.scan()
                # The cursor's DuckDB type, from the schema alone (no data is read).
                relation = lazy_relation(con, pl.LazyFrame(schema=frame.collect_schema()), where)
            elif is_parquet:
                from prefect_etl_blocks.core.loading.staging import parquet_source

                relation = parquet_relation(con, source, parquet_source(source).names)
            else:
                assert src is not None
                view = src.register(con)
                relation = con.sql(f"SELECT * FROM {q(view)}")
            registered = [] if view is None else [view]
            try:
                column = _cursor_type(relation, cursor, table)
                col = str(column)
                mark_text, mark_type = _read_mark(con, state, key, cursor)
                if mark_text is not None:
                    mark = _as_column_value(
                        con, mark_text, mark_type, column, f"The {cursor!r} mark of {table!r}",
                        f"The cursor column changed type since; cast it back to {mark_type} in the data, "
                        "or reset_incremental (then empty the table) to start over",
                    )
                elif initial_value is not None:
                    mark = _as_column_value(
                        con, initial_value, None, column, "initial_value",
                        f"Pass a value of the column's type, or its text (for example the CAST of a {col} "
                        "value to VARCHAR)",
                    )
                else:
                    mark = None
                bound = None
                if mark is not None:
                    lower, lower_type = _minus_lag(con, mark, column, lag, cursor)
                    if lower is not None:
                        bound = _Bound(lower, lower_type, inclusive=bool(key_cols))
                entry.cursor_from = mark
                if is_parquet and source.is_remote:
                    prefilter = None if bound is None else _polars_prefilter(con, bound, column, cursor)
                    relation = lazy_relation(con, frame if prefilter is None else frame.filter(prefilter), where)
                nulls = duckdb.ColumnExpression(cursor).isnull()  # kept, to be refused by name below
                if bound is not None:
                    relation = relation.filter(bound.expression(con, cursor) | nulls)
                stage = f"__petl_cursor_{entry.load_id.replace('-', '')}"
                inner = f"{stage}_src"
                con.register(inner, relation)
                registered.append(inner)
                dedup = ""
                if key_cols:
                    dedup = (
                        f" QUALIFY row_number() OVER (PARTITION BY {', '.join(q(k) for k in key_cols)} "
                        f"ORDER BY {q(cursor)} DESC) = 1 OR {q(cursor)} IS NULL"  # NULLs: refused below
                    )
                con.execute(f"CREATE TEMP TABLE {q(stage)} AS SELECT * FROM {q(inner)}{dedup}").fetchall()
            finally:
                for name in registered:
                    unregister(con, name)
            qc = q(cursor)
            beyond = f"max({qc}) IS NOT NULL" if mark is None else f"max({qc}) > CAST($mark AS {col})"
            count, null_count, top_type, top_text, advance = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {qc} IS NULL), typeof(max({qc})), "
                f"CAST(max({qc}) AS VARCHAR), coalesce({beyond}, false) FROM temp.main.{q(stage)}",
                {} if mark is None else {"mark": mark},
            ).fetchall()[0]
            if null_count:
                con.execute(f"DROP TABLE IF EXISTS temp.main.{q(stage)}").fetchall()
                raise LoadError(
                    f"{null_count} row(s) of the data loaded into {table!r} have no value (NULL) in the "
                    f"cursor column {cursor!r}. A NULL cannot be compared with the mark, so such a row "
                    "would be loaded again on every run, or never. Fill the column (for example "
                    f"pl.col({cursor!r}).fill_null(...)) or filter those rows out; nothing was written."
                )
            entry.cursor_to = top_text if advance else entry.cursor_from
            if advance:
                con.execute(
                    f"DELETE FROM {state}.cursors WHERE table_name = ? AND cursor_column = ?",
                    [key, cursor.casefold()],
                ).fetchall()
                con.execute(
                    f"INSERT INTO {state}.cursors VALUES (?, ?, ?, ?, ?, ?)",
                    [key, cursor.casefold(), top_text, top_type, entry.load_id, ledger.utcnow()],
                ).fetchall()
            try:
                if count:
                    staged_names = [d[0] for d in con.execute(f"SELECT * FROM temp.main.{q(stage)} LIMIT 0").description]

                    def register(c: duckdb.DuckDBPyConnection, name: str) -> None:
                        c.register(name, c.sql(f"SELECT * FROM temp.main.{q(stage)}"))

                    staged = Source(staged_names, f"rows past the {cursor!r} mark", register, in_memory=True)
                    return load(
                        con, staged, table, mode=mode, keys=key_cols or None,
                        on_schema_change=on_schema_change, checks=checks, ledger_entry=entry,
                        create=create,
                    )
                ledger.record(
                    con, parts, entry, strategy=mode, inserted=0, updated=0, deleted=0,
                    created=False, schema_changes=(), checks=(),
                )
            finally:
                con.execute(f"DROP TABLE IF EXISTS temp.main.{q(stage)}").fetchall()
    except PrefectETLBlocksError:
        raise
    except Exception as exc:  # DuckDB's own errors while filtering and staging, classified
        raise classify_load_error(exc, table=table, mode=mode, remote=is_parquet and source.is_remote) from exc
    return LoadResult(
        table=table, mode=mode, seconds=time.perf_counter() - started,
        on_schema_change=on_schema_change, keys=tuple(key_cols), load_id=entry.load_id,
        cursor=(cursor, entry.cursor_from, entry.cursor_to),
    )


def reset_incremental(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Forget ``table``'s incremental state: its file manifest and cursor marks.

    Warning:
        The next incremental load reads **every** file again (or every row past
        ``initial_value``) and, with ``append``, loads rows that are already in the table a
        second time. Empty or replace the table first unless that is what you want. The rows
        and the ledger are left as they are.

    Returns:
        The number of state rows removed.
    """
    return ledger.reset(con, table)


__all__ = ["LINEAGE_COLUMN", "load_cursor", "load_new_files", "reset_incremental"]


def no_cursor_options(initial_value: Any, lag: Any) -> None:
    """Refuse ``initial_value`` / ``lag`` without ``cursor=`` (they would be silently ignored)."""
    if initial_value is not None or lag is not None:
        raise LoadConfigError("initial_value and lag apply to cursor loads: pass cursor='column' too.")
