"""File-incremental loads: only the Parquet files not yet loaded into the table are read, and
the manifest is written in the same transaction as their rows (see
:mod:`prefect_etl_blocks.core.loading.incremental` for the contract, and
:mod:`~prefect_etl_blocks.core.loading.file_manifest` for what identifies a file).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import polars as pl

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import quote_parts, split_table_name
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.catalog import Probe, probe
from prefect_etl_blocks.core.loading.connections import transaction
from prefect_etl_blocks.core.loading.contracts import (
    OnSchemaChange,
    check_column_names,
    relation_types,
)
from prefect_etl_blocks.core.loading.engine import LoadResult, load_with
from prefect_etl_blocks.core.loading.file_manifest import (
    ListingAhead,
    add_footers,
    current_identities,
    migrate_paths,
    read_manifest,
    unchanged,
)
from prefect_etl_blocks.core.loading.options import SIMPLE_NAME, CreateMode, LoadOptions
from prefect_etl_blocks.core.loading.sources import FileSource
from prefect_etl_blocks.core.loading.staging import Source, lazy_relation, polars_wire
from prefect_etl_blocks.core.loading.table_keys import resolve_with_txid

#: The opt-in column recording each row's file (``lineage_column=LINEAGE_COLUMN``).
LINEAGE_COLUMN = "_prefect_etl_file"


def _file_source(
    con: duckdb.DuckDBPyConnection,
    source: FileSource,
    paths: list[str],
    hive: bool,
    lineage: str | None,
    rescannable: bool = False,
) -> Source:
    """A :class:`Source` over ``paths`` of ``source`` (its columns and filter applied) with the
    lineage column last. Only the footers of ``paths`` are checked: against the source's
    ``expected_schema`` here; for readability by the scan itself, whose failure
    :func:`_name_the_corrupt_file` turns into an error naming the file."""
    if getattr(source, "expected_schema", None):
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
        sql += f", filename = '{lineage}'"  # an allow-listed simple name (see LoadOptions)
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
    if names != list(relation.columns):  # a projection is another relation to build and bind
        relation = relation.project(", ".join(q(c) for c in names))

    def register_local(c: duckdb.DuckDBPyConnection, name: str) -> None:
        c.register(name, relation)

    # Files on local disk can be scanned again at no cost, so without checks (which would
    # read the data a second time) the engine inserts straight from the scan, skipping the copy
    # into a temp table.
    return Source(names, f"ParquetSource {source.path!r}", register_local, in_memory=rescannable)


def _name_the_corrupt_file(source: Any, paths: list[str]) -> None:
    """After a failed read of ``paths``: raise the ``CorruptParquetError`` of the first one
    that is not a readable Parquet file (naming it and how to fix it), if any is; else return,
    and the caller raises the failure as it was. Run only when a load failed, so a load whose
    scan succeeded does not parse every new footer twice."""
    if source.is_remote:
        return  # a remote read failed: its error already says whether a retry can help
    for path in paths:
        source._file_schema(path)


def _table_lineage(
    con: duckdb.DuckDBPyConnection, target: str, table: str, lineage: str | None, has_rows: bool,
    found: Probe | None = None,
) -> str | None:
    """The lineage column to use for an existing table: the one asked for, or, when none was,
    :data:`LINEAGE_COLUMN` if the table was created with it. Asking for a column the table lacks
    while files are already loaded is refused: their rows could never be traced. ``found``: the
    load's probe, whose bind may already know the table's columns."""
    known = found.columns if found is not None else None
    columns = {c.casefold() for c, _ in (known if known is not None else relation_types(con, target))}
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


def load_new_files(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    *,
    mode: str = "append",
    keys: str | Sequence[str] | None = None,
    on_schema_change: OnSchemaChange = "fail",
    checks: Sequence[Any] | None = None,
    on_missing_file: str = "keep",
    lineage_column: str | None = None,
    content_check: bool | Literal["always"] = True,
    create: CreateMode = "if_missing",
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
        content_check: also compare local files' Parquet footer SHA-256 (``True``, default: a
            footer is read when the file's size, mtime or stat key changed, see
            :func:`~prefect_etl_blocks.core.files.stat_key`); ``"always"`` reads every footer
            on every run, for file systems that do not keep ctime (some FUSE mounts).
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
    options = LoadOptions(
        incremental=True, mode=mode, keys=keys, on_schema_change=on_schema_change, checks=checks,
        on_missing_file=on_missing_file, lineage_column=lineage_column, content_check=content_check,
        create=create,
    )
    return load_files_with(con, source, table, options)


@dataclass
class _Files:
    """One incremental file load in progress: its table, state and lineage column."""

    con: duckdb.DuckDBPyConnection
    table: str  # as the caller wrote it, for messages
    options: LoadOptions
    parts: list[str]  # catalog, schema, name as DuckDB binds them
    ref: ledger.TableRef  # the same, resolved once for the whole load
    entry: ledger.LedgerEntry
    lineage: str | None
    state: str = ""
    found: Probe | None = None  # the catalog's answer, asked once in the load's transaction

    @property
    def key(self) -> str:
        """The table's key in the state tables."""
        return self.ref.key

    @property
    def target(self) -> str:
        return quote_parts(self.parts)


def load_files_with(con: duckdb.DuckDBPyConnection, source: FileSource, table: str, options: LoadOptions) -> LoadResult:
    """:func:`load_new_files` with its options already built: list the files (outside the
    transaction), then in one transaction sort them out against the manifest, record the new
    ones and load them with the engine."""
    started = time.perf_counter()
    parts = split_table_name(table)
    ledger.check_user_table(parts, table)
    # The listing: a remote one before the transaction (I/O that may be slow or retried), a
    # local one on a thread beside the catalog and manifest reads. The footers of local files
    # are read inside the transaction, against the manifest: only those it cannot vouch for.
    ahead = ListingAhead(source, options.content_check)
    try:
        return _load_listed(con, source, table, parts, options, ahead, started)
    finally:
        ahead.wait()


def _load_listed(
    con: duckdb.DuckDBPyConnection, source: FileSource, table: str, parts: list[str],
    options: LoadOptions, ahead: ListingAhead, started: float,
) -> LoadResult:
    # The table as DuckDB resolves the name (``t``, ``main.t`` and ``w.main.t`` are one), spelled
    # in full from here on so that the engine cannot read a catalog as a schema.
    ref, txid = resolve_with_txid(con, parts)
    run = _Files(
        con, table, options, [ref.catalog, ref.schema, ref.name], ref,
        ledger.LedgerEntry(incremental="files"), options.lineage_column,
    )
    with transaction(con, txid_before=txid):  # the resolution's statement was the last one
        to_read = _sort_out(run, ahead)
        if to_read:
            hive = source.hive_partitioning
            if hive is None:
                hive = source._hive_default([f[0] for f in ahead.result()])
            _record_files(run, to_read)
            rescannable = options.strategy == "append" and not options.checks
            try:
                src = _file_source(con, source, run.entry.files, bool(hive), run.lineage, rescannable)
                spelled = ".".join(p if SIMPLE_NAME.fullmatch(p) else q(p) for p in run.parts)
                result = load_with(con, src, spelled, options, run.entry, ref=ref, found=run.found)
            except Exception:
                _name_the_corrupt_file(source, run.entry.files)
                raise
            return dataclasses.replace(result, table=table)
        ledger.record(
            con, run.parts, run.entry, strategy=options.strategy, inserted=0, updated=0,
            deleted=run.entry.extra_deleted, created=False, schema_changes=(), checks=(), ref=ref,
        )
    return LoadResult(
        table=table, mode=options.strategy, deleted=run.entry.extra_deleted,
        seconds=time.perf_counter() - started, on_schema_change=options.on_schema_change,
        keys=tuple(options.keys or ()), load_id=run.entry.load_id, files=(),
        files_deleted=tuple(run.entry.files_deleted),
    )


def _sort_out(run: _Files, ahead: ListingAhead) -> list[tuple]:
    """Hold the listed files against the manifest: refuse what cannot be loaded exactly once,
    forget changed and (with ``on_missing_file="delete"``) vanished files with their rows, and
    return the files to read. The listing is waited for once the manifest is read."""
    con, key, table = run.con, run.key, run.table
    found = run.found = probe(con, run.parts)  # the table and the state, in one catalog query
    exists = found.table_exists
    # State an earlier version recorded under another key is renamed to the table's key first
    # (ledger.migrate_keys). On the hot path (state current, table there) the manifest's own
    # scan asks whether it holds any; otherwise ensure_state or migrate_keys asks.
    hot = found.state_is_current and exists
    if found.state_is_current:
        state = run.ref.state
        if not exists:
            ledger.migrate_keys(con, run.ref)
    else:
        state = ledger.ensure_state(con, run.ref)
    run.state = run.entry.state = state
    if not exists:
        # The table was dropped (or never made): its old manifest no longer describes it.
        con.execute(f"DELETE FROM {state}.files WHERE table_name = ?", [key]).fetchall()
    known, old_keys = read_manifest(con, state, key, ledger.old_key_sql(run.ref) if hot else None)
    if old_keys:
        ledger.migrate_keys(con, run.ref)
        known = read_manifest(con, state, key)[0]
    if exists:
        run.lineage = _table_lineage(con, run.target, table, run.lineage, bool(known), found)
    listing = ahead.result()
    listed = {f[0] for f in listing}
    known = migrate_paths(con, state, key, known, listed, run.target if exists else None, run.lineage)
    # Files the manifest vouches for (same size, mtime and stat key) are unchanged and their
    # rows up to date: only the others are held against it.
    checked = current_identities(listing, known)[1]
    if run.lineage is None and run.options.on_missing_file == "delete":
        raise LoadConfigError(
            f"on_missing_file='delete' on {table!r} needs a lineage column to find the rows "
            f"of vanished files: create the table with lineage_column={LINEAGE_COLUMN!r}."
        )
    to_read = [f for f in checked if not unchanged(known.get(f[0]), f)]
    add_footers(con, state, key, known, checked)
    changed = [f[0] for f in to_read if f[0] in known]
    gone = sorted(p for p in known if p not in listed) if run.options.on_missing_file == "delete" else []
    if changed and run.lineage is None:
        raise LoadConfigError(
            f"{len(changed)} file(s) loaded into {table!r} earlier changed since (first: "
            f"{changed[0]!r}). The table has no lineage column, so their old rows cannot be "
            "found and loading them again would duplicate rows; nothing was written. Restore "
            "the file, or rebuild the table with lineage_column="
            f"{LINEAGE_COLUMN!r} (reset_incremental, then an incremental load into a new "
            "or emptied table) so that changed files replace their rows."
        )
    run.entry.files = [f[0] for f in to_read]
    run.entry.files_deleted = sorted([*changed, *gone])
    _forget(run, exists, [*changed, *gone])
    return to_read


def _forget(run: _Files, exists: bool, stale: list[str]) -> None:
    """Delete the rows of ``stale`` files (by the lineage column) and their manifest rows."""
    con = run.con
    if run.entry.files_deleted and exists and run.lineage:
        rows = con.execute(
            f"DELETE FROM {run.target} WHERE {q(run.lineage)} IN (SELECT unnest(?::VARCHAR[]))",
            [run.entry.files_deleted],
        ).fetchall()
        run.entry.extra_deleted = int(rows[0][0]) if rows else 0
    if stale:
        con.execute(
            f"DELETE FROM {run.state}.files WHERE table_name = ? AND path IN (SELECT unnest(?::VARCHAR[]))",
            [run.key, stale],
        ).fetchall()


def _record_files(run: _Files, to_read: list[tuple]) -> None:
    """Add the files about to be read to the manifest (in the load's transaction)."""
    run.con.execute(
        f"INSERT INTO {run.state}.files (table_name, path, size, version, footer_sha256, "
        "stat_key, load_id, loaded_at) SELECT ?, unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
        "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?, ?",
        [run.key, [f[0] for f in to_read], [f[1] for f in to_read], [f[2] for f in to_read],
         [f[3] for f in to_read], [f[4] for f in to_read], run.entry.load_id, ledger.utcnow()],
    ).fetchall()


__all__ = ["LINEAGE_COLUMN", "load_files_with", "load_new_files"]
