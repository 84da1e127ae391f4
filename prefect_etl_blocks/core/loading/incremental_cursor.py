"""Cursor loads: only the rows past the table's high-water mark load, and the mark moves in the
same transaction (see :mod:`prefect_etl_blocks.core.loading.incremental` for the contract).

The values themselves (cursor types, marks, ``lag``) are
:mod:`~prefect_etl_blocks.core.loading.cursor_values`' job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from prefect_etl_blocks.core.errors import LoadError, PrefectETLBlocksError
from prefect_etl_blocks.core.identifiers import quote_identifier as q
from prefect_etl_blocks.core.identifiers import split_table_name
from prefect_etl_blocks.core.loading import ledger
from prefect_etl_blocks.core.loading.boundary import classify_load_error
from prefect_etl_blocks.core.loading.connections import transaction
from prefect_etl_blocks.core.loading.contracts import OnSchemaChange
from prefect_etl_blocks.core.loading.cursor_values import (
    Bound,
    as_column_value,
    cursor_type,
    minus_lag,
    polars_prefilter,
    read_mark,
)
from prefect_etl_blocks.core.loading.engine import LoadResult, load_with, table_exists
from prefect_etl_blocks.core.loading.options import CreateMode, LoadOptions
from prefect_etl_blocks.core.loading.sources import FileSource, is_file_source
from prefect_etl_blocks.core.loading.staging import (
    Source,
    as_source,
    lazy_relation,
    parquet_relation,
    parquet_source,
    unregister,
)
from prefect_etl_blocks.core.loading.strategies import LoadMode


def load_cursor(
    con: duckdb.DuckDBPyConnection,
    source: Any,
    table: str,
    *,
    cursor: str,
    initial_value: Any = None,
    lag: Any = None,
    keys: str | Sequence[str] | None = None,
    mode: LoadMode | None = None,
    on_schema_change: OnSchemaChange = "fail",
    checks: Sequence[Any] | None = None,
    create: CreateMode = "if_missing",
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
    options = LoadOptions(
        cursor=cursor, initial_value=initial_value, lag=lag, keys=keys, mode=mode,
        on_schema_change=on_schema_change, checks=checks, create=create,
    )
    return load_cursor_with(con, source, table, options)


@dataclass
class _Cursor:
    """One cursor load in progress: where its state lives and what it has found so far."""

    con: duckdb.DuckDBPyConnection
    table: str
    options: LoadOptions
    entry: ledger.LedgerEntry
    key: str  # the table's key in the state tables
    state: str = ""  # the state schema, once ensured
    stage: str = ""  # the temp table holding the rows past the mark

    @property
    def cursor(self) -> str:
        return self.options.cursor or ""


def load_cursor_with(
    con: duckdb.DuckDBPyConnection, source: Any, table: str, options: LoadOptions
) -> LoadResult:
    """:func:`load_cursor` with its options already built (``options.cursor`` is set): stage
    the rows past the mark, move the mark, load the staged rows, all in one transaction."""
    started = time.perf_counter()
    mode = options.strategy
    parts = split_table_name(table)
    ledger.check_user_table(parts, table)
    key = ledger.table_key(con, parts)
    files = source if is_file_source(source) else None
    src = None if files is not None else as_source(source)
    run = _Cursor(con, table, options, ledger.LedgerEntry(incremental="cursor", cursor_column=options.cursor), key)
    run.stage = f"__petl_cursor_{run.entry.load_id.replace('-', '')}"
    try:
        with transaction(con):
            run.state = run.entry.state = ledger.ensure_state(con, parts)
            if not table_exists(con, parts):
                con.execute(f"DELETE FROM {run.state}.cursors WHERE table_name = ?", [run.key]).fetchall()
            try:
                mark, col = _stage_past_mark(run, files, src)
                if _advance(run, mark, col):
                    return _load_staged(run)
                ledger.record(
                    con, parts, run.entry, strategy=mode, inserted=0, updated=0, deleted=0,
                    created=False, schema_changes=(), checks=(),
                )
            finally:
                con.execute(f"DROP TABLE IF EXISTS temp.main.{q(run.stage)}").fetchall()
    except PrefectETLBlocksError:
        raise
    except Exception as exc:  # DuckDB's own errors while filtering and staging, classified
        raise classify_load_error(exc, table=table, mode=mode, remote=files is not None and files.is_remote) from exc
    return LoadResult(
        table=table, mode=mode, seconds=time.perf_counter() - started,
        on_schema_change=options.on_schema_change, keys=tuple(options.keys or ()), load_id=run.entry.load_id,
        cursor=(run.cursor, run.entry.cursor_from, run.entry.cursor_to),
    )


def _stage_past_mark(run: _Cursor, files: FileSource | None, src: Source | None) -> tuple[str | None, str]:
    """Copy the rows at or past the lower bound (``mark - lag``; all rows before the first load)
    into the temp table ``run.stage``, the latest row per key only. Returns the mark (text of
    the column's type, None before the first load) and the column's type."""
    con, cursor = run.con, run.cursor
    where = f"ParquetSource {files.path!r}" if files is not None else "the data"
    frame = None
    registered: list[str] = []
    if files is not None and files.is_remote:
        frame = files.scan()
        # The cursor's DuckDB type, from the schema alone (no data is read).
        relation = lazy_relation(con, pl.LazyFrame(schema=frame.collect_schema()), where)
    elif files is not None:
        relation = parquet_relation(con, files, parquet_source(files).names)
    else:
        assert src is not None
        registered.append(src.register(con))
        relation = con.sql(f"SELECT * FROM {q(registered[0])}")
    try:
        column = cursor_type(relation, cursor, run.table)
        mark = _mark(run, column)
        bound = None
        if mark is not None:
            lower, lower_type = minus_lag(con, mark, column, run.options.lag, cursor)
            if lower is not None:
                bound = Bound(lower, lower_type, inclusive=bool(run.options.keys))
        run.entry.cursor_from = mark
        if frame is not None:
            prefilter = None if bound is None else polars_prefilter(con, bound, column, cursor)
            relation = lazy_relation(con, frame if prefilter is None else frame.filter(prefilter), where)
        nulls = duckdb.ColumnExpression(cursor).isnull()  # kept, to be refused by name below
        if bound is not None:
            relation = relation.filter(bound.expression(con, cursor) | nulls)
        inner = f"{run.stage}_src"
        con.register(inner, relation)
        registered.append(inner)
        dedup = ""
        if run.options.keys:
            dedup = (
                f" QUALIFY row_number() OVER (PARTITION BY {', '.join(q(k) for k in run.options.keys)} "
                f"ORDER BY {q(cursor)} DESC) = 1 OR {q(cursor)} IS NULL"  # NULLs: refused below
            )
        con.execute(f"CREATE TEMP TABLE {q(run.stage)} AS SELECT * FROM {q(inner)}{dedup}").fetchall()
    finally:
        for name in registered:
            unregister(con, name)
    return mark, str(column)


def _mark(run: _Cursor, column: Any) -> str | None:
    """The mark to load past: the stored one, else ``initial_value``, each converted exactly to
    the cursor column's type; None before the first load without ``initial_value``."""
    con, cursor, col = run.con, run.cursor, str(column)
    mark_text, mark_type = read_mark(con, run.state, run.key, cursor)
    if mark_text is not None:
        return as_column_value(
            con, mark_text, mark_type, column, f"The {cursor!r} mark of {run.table!r}",
            f"The cursor column changed type since; cast it back to {mark_type} in the data, "
            "or reset_incremental (then empty the table) to start over",
        )
    if run.options.initial_value is not None:
        return as_column_value(
            con, run.options.initial_value, None, column, "initial_value",
            f"Pass a value of the column's type, or its text (for example the CAST of a {col} "
            "value to VARCHAR)",
        )
    return None


def _advance(run: _Cursor, mark: str | None, col: str) -> int:
    """Refuse staged rows without a cursor value, move the mark to the greatest staged value
    when it is past the old one, and return how many rows are staged."""
    con, qc, stage = run.con, q(run.cursor), q(run.stage)
    beyond = f"max({qc}) IS NOT NULL" if mark is None else f"max({qc}) > CAST($mark AS {col})"
    count, null_count, top_type, top_text, advance = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {qc} IS NULL), typeof(max({qc})), "
        f"CAST(max({qc}) AS VARCHAR), coalesce({beyond}, false) FROM temp.main.{stage}",
        {} if mark is None else {"mark": mark},
    ).fetchall()[0]
    if null_count:
        raise LoadError(
            f"{null_count} row(s) of the data loaded into {run.table!r} have no value (NULL) in the "
            f"cursor column {run.cursor!r}. A NULL cannot be compared with the mark, so such a row "
            "would be loaded again on every run, or never. Fill the column (for example "
            f"pl.col({run.cursor!r}).fill_null(...)) or filter those rows out; nothing was written."
        )
    run.entry.cursor_to = top_text if advance else run.entry.cursor_from
    if advance:
        con.execute(
            f"DELETE FROM {run.state}.cursors WHERE table_name = ? AND cursor_column = ?",
            [run.key, run.cursor.casefold()],
        ).fetchall()
        con.execute(
            f"INSERT INTO {run.state}.cursors VALUES (?, ?, ?, ?, ?, ?)",
            [run.key, run.cursor.casefold(), top_text, top_type, run.entry.load_id, ledger.utcnow()],
        ).fetchall()
    return int(count)


def _load_staged(run: _Cursor) -> LoadResult:
    """Load the staged rows with the engine, in the cursor load's transaction."""
    con, stage = run.con, q(run.stage)
    names = [d[0] for d in con.execute(f"SELECT * FROM temp.main.{stage} LIMIT 0").description]

    def register(c: duckdb.DuckDBPyConnection, name: str) -> None:
        c.register(name, c.sql(f"SELECT * FROM temp.main.{stage}"))

    staged = Source(names, f"rows past the {run.cursor!r} mark", register, in_memory=True)
    return load_with(con, staged, run.table, run.options, run.entry)


__all__ = ["load_cursor", "load_cursor_with"]
