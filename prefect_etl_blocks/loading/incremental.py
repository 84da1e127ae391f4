"""Incremental loads, exactly once: file manifests and cursors kept with the data.

Two kinds, both built on :func:`prefect_etl_blocks.loading.load`, and both writing their state
(``_prefect_etl.files`` or ``_prefect_etl.cursors``, see :mod:`~prefect_etl_blocks.loading.ledger`)
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
moves back. A ``ParquetSource`` gets the predicate pushed into its scan (DuckDB's reader for
local files, Polars' for ``s3://``), so row groups whose statistics are all below the mark are
skipped.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.errors import LoadConfigError
from prefect_etl_blocks.identifiers import quote_identifier as q
from prefect_etl_blocks.identifiers import split_table_name
from prefect_etl_blocks.loading import ledger
from prefect_etl_blocks.loading.connections import transaction
from prefect_etl_blocks.loading.contracts import check_column_names, key_list, relation_types
from prefect_etl_blocks.loading.engine import LoadResult, load, table_exists
from prefect_etl_blocks.loading.staging import (
    Source,
    as_source,
    parquet_relation,
    stream_lazy,
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
    from prefect_etl_blocks.cache_policies import parquet_footer_sha256

    out = []
    for f in files:
        footer = parquet_footer_sha256(f.path) if content_check and not source.is_remote else None
        out.append((f.path, int(f.size), str(f.version), footer))
    return out


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
        names = check_column_names(list(schema.names()), f"ParquetSource {source.path!r}")

        def register_remote(c: duckdb.DuckDBPyConnection, name: str) -> None:
            c.register(name, stream_lazy(frame, schema))

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
) -> LoadResult:
    """Load the files of ``source`` (a ``ParquetSource``) not yet loaded into ``table``.

    Args:
        con: an open DuckDB connection (the caller owns it and any locking).
        source: the ``ParquetSource`` (local file, folder, glob, hive folder or ``s3://``).
        table: the target table.
        mode: ``append`` (default), ``upsert``, ``delete-insert`` or ``insert-only``.
        keys: as for :func:`~prefect_etl_blocks.loading.load`.
        on_schema_change: as for :func:`~prefect_etl_blocks.loading.load`.
        checks: as for :func:`~prefect_etl_blocks.loading.load`.
        on_missing_file: ``keep`` (default) leaves the rows of a file that disappeared;
            ``delete`` deletes them (needs the lineage column).
        lineage_column: a column recording each row's file (opt-in; :data:`LINEAGE_COLUMN` is
            ``_prefect_etl_file``), so that changed files replace their rows and
            ``on_missing_file="delete"`` works. ``None`` (default): none for a new table (a
            changed file then fails the load), and the table's own choice for an existing one.
        content_check: also compare local files' Parquet footer SHA-256.

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
        from prefect_etl_blocks.loading.incremental import load_new_files

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
    target = ".".join(q(p) for p in parts)
    listing = source.list_files()  # outside the transaction: I/O that may be slow or retried
    hive = source.hive_partitioning
    if hive is None:
        hive = len(listing) > 1 or source.path.rstrip("/") != listing[0].path
    current = _file_identity(source, listing, content_check)
    entry = ledger.LedgerEntry(incremental="files")
    key = ledger.table_key(parts)
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
        if lineage is None and on_missing_file == "delete":
            raise LoadConfigError(
                f"on_missing_file='delete' on {table!r} needs a lineage column to find the rows "
                f"of vanished files: create the table with lineage_column={LINEAGE_COLUMN!r}."
            )
        listed = {f[0] for f in current}
        to_read = [f for f in current if known.get(f[0]) != tuple(f[1:])]
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
            result = load(
                con, src, table, mode=mode, keys=keys, on_schema_change=on_schema_change,
                checks=checks, ledger_entry=entry,
            )
            return result
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
def _read_mark(
    con: duckdb.DuckDBPyConnection, state: str, key: str, cursor: str
) -> tuple[Any, str | None]:
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
    return con.execute(f"SELECT CAST(? AS {mark_type})", [mark]).fetchall()[0][0], mark_type


def _minus_lag(mark: Any, lag: Any) -> Any:
    if mark is None or lag is None:
        return mark
    if isinstance(lag, int | float) and isinstance(mark, dt.date):
        raise LoadConfigError(
            f"lag={lag!r} on a date/time cursor must be a datetime.timedelta, e.g. timedelta(hours=1)."
        )
    return mark - lag


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
) -> LoadResult:
    """Load the rows of ``source`` whose ``cursor`` is past ``table``'s high-water mark.

    Args:
        con: an open DuckDB connection.
        source: anything :func:`~prefect_etl_blocks.loading.load` takes, or a ``ParquetSource``
            (the cursor predicate is pushed into its scan).
        table: the target table.
        cursor: the column whose values only grow (a timestamp, date or number).
        initial_value: the mark before the first load (rows at or below it never load).
        lag: re-read this far below the mark (a number, or a ``timedelta`` for date/time
            cursors) to catch late rows; needs ``keys``.
        keys: key columns: rows at the boundary and within ``lag`` are upserted, not duplicated.
        mode: ``append`` without keys (default), ``upsert`` (default with keys) or
            ``insert-only``.
        on_schema_change: as for :func:`~prefect_etl_blocks.loading.load`.
        checks: as for :func:`~prefect_etl_blocks.loading.load`.

    Example:
        ```python
        import duckdb
        import polars as pl
        from prefect_etl_blocks.loading.incremental import load_cursor

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
    if lag is not None and not key_cols:
        raise LoadConfigError(
            "lag re-reads rows below the mark, which would duplicate them without keys: pass "
            "keys=[...] (the rows are then upserted)."
        )
    parts = split_table_name(table)
    ledger.check_user_table(parts, table)
    key = ledger.table_key(parts)
    from prefect_etl_blocks.parquet import ParquetSource

    is_parquet = isinstance(source, ParquetSource)
    src = None if is_parquet else as_source(source)
    entry = ledger.LedgerEntry(incremental="cursor", cursor_column=cursor)
    with transaction(con):
        state = entry.state = ledger.ensure_state(con, parts)
        if not table_exists(con, parts):
            con.execute(f"DELETE FROM {state}.cursors WHERE table_name = ?", [key]).fetchall()
        mark, _ = _read_mark(con, state, key, cursor)
        if mark is None:
            mark = initial_value
        lower = _minus_lag(mark, lag)
        inclusive = bool(key_cols)
        entry.cursor_from = None if mark is None else str(mark)
        view = None
        if is_parquet and source.is_remote:
            frame = source.scan()
            if lower is not None:
                col = pl.col(cursor)
                frame = frame.filter(col >= lower if inclusive else col > lower)
            schema = frame.collect_schema()
            relation = con.from_arrow(stream_lazy(frame, schema))
        else:
            if is_parquet:
                from prefect_etl_blocks.loading.staging import parquet_source

                names = parquet_source(source).names
                relation = parquet_relation(con, source, names)
            else:
                assert src is not None
                view = src.register(con)
                relation = con.sql(f"SELECT * FROM {q(view)}")
            if lower is not None:
                column, value = duckdb.ColumnExpression(cursor), duckdb.ConstantExpression(lower)
                relation = relation.filter(column >= value if inclusive else column > value)
        if cursor not in relation.columns:
            raise LoadConfigError(
                f"cursor column {cursor!r} is not a column of the data loaded into {table!r}; its "
                f"columns are {relation.columns}."
            )
        stage = f"__petl_cursor_{entry.load_id.replace('-', '')}"
        inner = f"{stage}_src"
        con.register(inner, relation)
        dedup = ""
        if key_cols:
            dedup = (
                f" QUALIFY row_number() OVER (PARTITION BY {', '.join(q(k) for k in key_cols)} "
                f"ORDER BY {q(cursor)} DESC) = 1"
            )
        try:
            con.execute(f"CREATE TEMP TABLE {q(stage)} AS SELECT * FROM {q(inner)}{dedup}").fetchall()
        finally:
            unregister(con, inner)
            if view is not None:
                unregister(con, view)
        count, top, top_type, top_text = con.execute(
            f"SELECT count(*), max({q(cursor)}), typeof(max({q(cursor)})), CAST(max({q(cursor)}) AS VARCHAR) "
            f"FROM temp.main.{q(stage)}"
        ).fetchall()[0]
        advance = top is not None and (mark is None or top > mark)
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
                )
            ledger.record(
                con, parts, entry, strategy=mode, inserted=0, updated=0, deleted=0,
                created=False, schema_changes=(), checks=(),
            )
        finally:
            con.execute(f"DROP TABLE IF EXISTS temp.main.{q(stage)}").fetchall()
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
