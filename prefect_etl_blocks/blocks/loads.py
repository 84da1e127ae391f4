"""The loads both DuckDB-backed blocks share (:meth:`~LoadMethods.load_frame`,
:meth:`~LoadMethods.load_parquet`, the ledger and the incremental state), as thin delegations:
each public signature builds one :class:`~prefect_etl_blocks.core.loading.options.LoadOptions`,
and :meth:`~LoadMethods._load` hands it to the block's
:class:`~prefect_etl_blocks.core.warehouse.session.Session` (whose backend commits it: a DuckLake re-runs
a conflicting commit) and reports the load as lineage.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import pyarrow as pa

from prefect_etl_blocks.core.checks import Check
from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.loading.contracts import OnSchemaChange
from prefect_etl_blocks.core.loading.engine import LoadResult
from prefect_etl_blocks.core.loading.options import CreateMode, LoadOptions, OnCheckFailure
from prefect_etl_blocks.core.loading.run import run_load
from prefect_etl_blocks.core.loading.sources import is_file_source
from prefect_etl_blocks.core.loading.staging import as_source, parquet_source
from prefect_etl_blocks.core.loading.strategies import LoadMode
from prefect_etl_blocks.runtime import lineage, transactions
from prefect_etl_blocks.runtime.compat import async_dispatch
from prefect_etl_blocks.runtime.quarantine_artifact import publish_quarantine

if TYPE_CHECKING:
    from prefect_etl_blocks.blocks.parquet import ParquetSource
    from prefect_etl_blocks.core.warehouse.session import Session
    from prefect_etl_blocks.core.warehouse.units import Unit

__all__ = ["LoadMethods", "asset_keys"]


def asset_keys(upstream: Any) -> tuple[Any, ...]:
    """``upstream=`` as asset keys: a ``prefect.assets.Asset`` becomes its ``key``; a string is
    one key. Anything else is passed on for :class:`LoadOptions` to refuse."""
    if upstream is None:
        return ()
    items = [upstream] if isinstance(upstream, str) or hasattr(upstream, "key") else list(upstream)
    return lineage.check_asset_keys(getattr(item, "key", item) for item in items)


class LoadMethods:
    """The load methods of :class:`~prefect_etl_blocks.blocks.warehouse.WarehouseMethods`."""

    if TYPE_CHECKING:
        read_only: bool
        database_path: str
        _session_obj: Session | None

        @property
        def _warehouse(self) -> Session: ...

        async def _in_thread(self, method: Any, *args: Any, **kwargs: Any) -> Any: ...

    async def aload_frame(
        self,
        df: Any,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
        upstream: Sequence[Any] | str | None = None,
        on_check_failure: OnCheckFailure = "fail",
        dry_run: bool = False,
        transactional: bool | None = None,
    ) -> Any:
        """Async twin of :meth:`load_frame`."""
        return await self._in_thread(
            self.load_frame, df, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, cursor=cursor, initial_value=initial_value, lag=lag, create=create,
            upstream=upstream, on_check_failure=on_check_failure, dry_run=dry_run,
            transactional=transactional,
        )

    @async_dispatch(aload_frame)
    def load_frame(
        self,
        df: Any,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
        upstream: Sequence[Any] | str | None = None,
        on_check_failure: OnCheckFailure = "fail",
        dry_run: bool = False,
        transactional: bool | None = None,
    ) -> Any:
        """Write a Polars ``DataFrame``/``LazyFrame``, an Arrow table or reader, or a pandas frame
        into ``table``, in one transaction: the data is never changed on the way in, and
        whatever is raised, the table is exactly as it was before the load.

        On a DuckLake the load is one commit; a commit that conflicts with another writer's
        is run again from the start, with back-off, up to ``commit_retries`` times within
        ``lock_timeout_seconds``. A one-shot ``pa.RecordBatchReader`` cannot be read twice, so
        its conflict is raised at once as
        :class:`~prefect_etl_blocks.core.errors.TransactionConflictError` (a task retry re-runs it).

        Args:
            df: a ``pl.DataFrame``, ``pl.LazyFrame`` (streamed in batches), ``pa.Table``,
                ``pa.RecordBatchReader`` or pandas ``DataFrame``. It is read exactly once.
            table: target table, optionally schema-qualified (``analytics.daily``); the schema is
                created when missing. Names are quoted, never pasted into SQL.
            mode: ``replace`` (the default; atomic; a table with constraints or comments keeps them),
                ``append``, ``upsert`` (one ``MERGE INTO`` on ``keys``), ``delete-insert``
                (replace the rows whose ``keys`` occur in the data, e.g. whole days),
                ``insert-only`` (new keys only), ``scd2`` (history in validity columns) or
                ``fail`` (error if the table exists).
            keys: key column(s) for the keyed modes; a string is one column.
            on_schema_change: what new or missing columns do: ``fail`` (default, an error
                naming them), ``append_new_columns`` (add them; may widen a column's type),
                ``sync_all_columns`` (also drop the missing ones) or ``ignore`` (load only the
                table's columns). Values are never converted across kinds (40.7 never becomes
                41, "41" never becomes a number).
            checks: write-audit-publish checks run before COMMIT: SQL predicates such as
                ``"qty >= 0"`` and built-ins from :mod:`prefect_etl_blocks.core.checks`.
            scd2_columns: validity column names for ``scd2`` (default ``valid_from``,
                ``valid_to``, ``is_current``).
            return_result: return the :class:`~prefect_etl_blocks.core.loading.LoadResult` (rows
                inserted, updated and deleted, schema changes, checks) instead of the row count.
                The last result is also kept in :attr:`last_load`.
            cursor: load incrementally on this column: only rows past the table's
                high-water mark load, and the mark advances in the same transaction (see
                :func:`prefect_etl_blocks.core.loading.incremental.load_cursor`). The mode is then
                ``append`` without ``keys`` and ``upsert`` (or ``insert-only``) with them.
            initial_value: the cursor mark before the first load.
            lag: re-read this far below the mark for late rows (needs ``keys``); a number,
                or a ``timedelta`` for date/time cursors.
            create: ``if_missing`` (default) creates a missing table (and its schema); the
                result's ``created_note`` (``created analytics.orders``) and the
                ``load_to_duckdb`` log line and artifact say so. ``never`` refuses a missing
                table with a ``LoadConfigError`` naming the existing tables nearest in name;
                nothing is written, not even a schema.
            upstream: asset keys (strings or ``prefect.assets.Asset`` objects) of what the
                data came from; in a Prefect run the load's materialization event names them
                as its upstream assets, as ``@materialize(asset_deps=...)`` does.
            on_check_failure: ``fail`` (default: a failing check fails the load) or
                ``quarantine``: rows failing a row-level check go to
                ``<schema>.<table>__quarantine`` in the same transaction and the rest load.
            dry_run: run the whole load (contracts, strategy, checks) and return what it would
                do, then keep nothing: no table, column, ledger row or incremental state.
            transactional: ``None`` (default) joins an active Prefect transaction, so the load
                commits or rolls back with it; ``False`` commits on its own; ``True`` requires
                a transaction.

        Returns:
            The number of rows written (for ``upsert``: updated plus inserted), or the
            ``LoadResult`` with ``return_result=True``.

        Raises:
            SchemaMismatchError: columns or types the table cannot take as they are.
            InvalidIdentifierError: a table or column name DuckDB would change or cannot use.
            DataCheckError: a check failed.
            LoadConfigError: an unknown mode, missing keys, ``fail`` on an existing table, a
                missing table with ``create="never"``.
            LoadError: any other failure of the data (constraints, duplicate keys).
            TransactionConflictError: (DuckLake) another writer kept conflicting.

        Example:
            ```python
            import polars as pl
            from prefect_etl_blocks import DuckDBConnection

            db = DuckDBConnection()
            db.load_frame(pl.DataFrame({"id": [1, 2], "qty": [5, 7]}), "stock")
            result = db.load_frame(pl.DataFrame({"id": [2, 3], "qty": [8, 1]}), "stock",
                                   mode="upsert", keys="id", checks=["qty >= 0"],
                                   return_result=True)
            assert (result.inserted, result.updated) == (1, 1)
            ```
        """
        options = LoadOptions(
            mode=mode, keys=keys, on_schema_change=on_schema_change, checks=checks,
            scd2_columns=scd2_columns, return_result=return_result, cursor=cursor,
            initial_value=initial_value, lag=lag, create=create, upstream=asset_keys(upstream),
            on_check_failure=on_check_failure, dry_run=dry_run, transactional=transactional,
        )
        return self._load(df, table, options)

    async def aload_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        incremental: bool = False,
        on_missing_file: Literal["keep", "delete"] = "keep",
        lineage_column: str | None = None,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
        upstream: Sequence[Any] | str | None = None,
        on_check_failure: OnCheckFailure = "fail",
        dry_run: bool = False,
        transactional: bool | None = None,
    ) -> Any:
        """Async twin of :meth:`load_parquet`."""
        return await self._in_thread(
            self.load_parquet, source, table, mode, keys, on_schema_change, checks, scd2_columns,
            return_result, incremental=incremental, on_missing_file=on_missing_file,
            lineage_column=lineage_column, cursor=cursor, initial_value=initial_value, lag=lag,
            create=create, upstream=upstream, on_check_failure=on_check_failure, dry_run=dry_run,
            transactional=transactional,
        )

    @async_dispatch(aload_parquet)
    def load_parquet(
        self,
        source: ParquetSource | str,
        table: str,
        mode: LoadMode | None = None,
        keys: str | Sequence[str] | None = None,
        on_schema_change: OnSchemaChange = "fail",
        checks: Sequence[Check | str] | None = None,
        scd2_columns: Sequence[str] | dict[str, str] | None = None,
        return_result: bool = False,
        *,
        incremental: bool = False,
        on_missing_file: Literal["keep", "delete"] = "keep",
        lineage_column: str | None = None,
        cursor: str | None = None,
        initial_value: Any = None,
        lag: Any = None,
        create: CreateMode = "if_missing",
        upstream: Sequence[Any] | str | None = None,
        on_check_failure: OnCheckFailure = "fail",
        dry_run: bool = False,
        transactional: bool | None = None,
    ) -> Any:
        """Stream a Parquet dataset into ``table`` without materialising it in memory.

        Local files are read by DuckDB's own Parquet reader (columns and ``filter`` applied in
        the scan); ``s3://`` sources are streamed batch by batch from Polars' object-store
        reader. Either is read exactly once, inside the load's transaction, so a crash leaves
        nothing behind. The source's ``expected_schema`` is checked before the table is touched.
        A Parquet source can be read again, so on a DuckLake a commit conflict re-runs the load.

        Args:
            source: a :class:`~prefect_etl_blocks.ParquetSource` or a path / glob / ``s3://`` URI.
            table: the target table, as for :meth:`load_frame`.
            mode: as for :meth:`load_frame`; defaults to ``replace``, or ``append`` with
                ``incremental=True``.
            keys: as for :meth:`load_frame`.
            on_schema_change: as for :meth:`load_frame`.
            checks: as for :meth:`load_frame`.
            scd2_columns: as for :meth:`load_frame`.
            return_result: as for :meth:`load_frame`.
            incremental: read only the files not yet loaded into ``table`` (see
                :func:`prefect_etl_blocks.core.loading.incremental.load_new_files`). The file
                manifest is written in the same transaction as the rows, so a crash or a retry
                never loads a file twice. A file whose content changed after it was loaded
                fails the load, unless the table has a lineage column: then its earlier rows
                are replaced.
            on_missing_file: with ``incremental``: ``keep`` (default) the rows of a file that
                disappeared, or ``delete`` them (needs the lineage column).
            lineage_column: with ``incremental``, opt-in: a column recording each row's file,
                usually ``"_prefect_etl_file"``, chosen when the table is created (a table that
                has ``_prefect_etl_file`` keeps using it). Default: the source's columns only.
            cursor: a cursor load as for :meth:`load_frame`; the predicate ``cursor > mark`` is
                pushed into the Parquet scan, so old row groups are skipped.
            initial_value: as for :meth:`load_frame`.
            lag: as for :meth:`load_frame`.
            create: as for :meth:`load_frame` (``never`` refuses a missing table).
            upstream: as for :meth:`load_frame`; the source's own asset is added.
            on_check_failure: as for :meth:`load_frame`.
            dry_run: as for :meth:`load_frame`.
            transactional: as for :meth:`load_frame`.

        Returns:
            The number of rows written, or the ``LoadResult`` with ``return_result=True``.

        Example:
            ```python
            import tempfile
            from pathlib import Path

            import polars as pl
            from prefect_etl_blocks import DuckDBConnection, ParquetSource

            folder = Path(tempfile.mkdtemp())
            pl.DataFrame({"id": [1, 2]}).write_parquet(folder / "day1.parquet")
            db = DuckDBConnection()
            source = ParquetSource(path=str(folder))
            assert db.load_parquet(source, "raw", incremental=True) == 2
            assert db.load_parquet(source, "raw", incremental=True) == 0  # nothing new
            pl.DataFrame({"id": [3]}).write_parquet(folder / "day2.parquet")
            assert db.load_parquet(source, "raw", incremental=True) == 1
            print(db.load_history("raw"))
            ```
        """
        from prefect_etl_blocks.blocks.parquet import ParquetSource

        if isinstance(source, str | os.PathLike):
            source = ParquetSource(path=os.fspath(source))
        options = LoadOptions(
            mode=mode, keys=keys, on_schema_change=on_schema_change, checks=checks,
            scd2_columns=scd2_columns, return_result=return_result, incremental=incremental,
            on_missing_file=on_missing_file, lineage_column=lineage_column, cursor=cursor,
            initial_value=initial_value, lag=lag, create=create, upstream=asset_keys(upstream),
            on_check_failure=on_check_failure, dry_run=dry_run, transactional=transactional,
        )
        return self._load(source, table, options)

    @property
    def last_load(self) -> LoadResult | None:
        """What the last load through this block did (rows inserted, updated, deleted, schema
        changes, checks), or ``None`` before the first load."""
        return None if self._session_obj is None else self._session_obj.last_load

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise LoadConfigError(f"Cannot {what}: {self!r} is read_only. Use a block with read_only=False.")

    def _load(self, source: Any, table: str, options: LoadOptions) -> Any:
        """The one load path of :meth:`load_frame`, :meth:`load_parquet` and the
        ``load_to_duckdb`` task: run one load of ``source`` (a frame, Arrow data, or a
        ``ParquetSource``, whose files are streamed) as ``options`` say, and report it as
        lineage. Returns the ``LoadResult`` with ``options.return_result``, else the rows."""
        origin = source
        if options.kind == "plain":  # described before any connection is taken
            source = parquet_source(source) if is_file_source(source) else as_source(source)
        replayable = not isinstance(origin, pa.RecordBatchReader)  # a stream cannot be read twice
        observed = lineage.in_prefect_run() and not options.dry_run  # a dry run materializes nothing
        shape: dict[str, Any] | None = {} if observed else None
        with self._warehouse.backend.masking():
            self._refuse_if_read_only(f"load into {table!r}")
            try:
                result, unit = self._commit_load(source, table, options, replayable, shape)
            except Exception as exc:
                if observed:
                    lineage.emit_load_failed(
                        self.database_path, table, options.mode or options.strategy, exc,
                        lineage.source_fingerprint(origin),
                        upstream=lineage.upstream_keys(origin, options.upstream),
                    )
                raise
        if observed:
            upstream = lineage.upstream_keys(origin, options.upstream)
            fingerprint = None if result.files else lineage.source_fingerprint(origin)

            def report(committed: bool = True) -> None:
                if committed:
                    lineage.emit_load_succeeded(
                        self.database_path, result, fingerprint, upstream=upstream, shape=shape
                    )
                    publish_quarantine(result)  # rows per check and a sample, when it quarantined any
                else:
                    lineage.emit_load_failed(
                        self.database_path, table, result.mode,
                        transactions.TransactionRolledBack(
                            f"load {result.load_id} was rolled back with its Prefect transaction"
                        ),
                        fingerprint, upstream=upstream,
                    )

            if unit is None:
                report()
            else:  # reported when the Prefect transaction ends, from this load's context
                context = contextvars.copy_context()
                unit.after_end.append(lambda committed: context.run(report, committed))
        return result if options.return_result else result.rows

    def _commit_load(
        self, source: Any, table: str, options: LoadOptions, replayable: bool,
        shape: dict[str, Any] | None = None,
    ) -> tuple[LoadResult, Unit | None]:
        """Commit one load: on its own, inside the active Prefect transaction's unit (see
        :mod:`prefect_etl_blocks.runtime.transactions`), or as a dry run that keeps nothing."""
        session = self._warehouse

        def work(con: Any, target: str) -> LoadResult:
            result = run_load(con, source, target, options)
            if shape is not None:  # for lineage: the table as this transaction leaves it
                shape.update(lineage.table_shape(con, target))
            return result

        return transactions.commit(session, work, table, replayable, options)

    # ------------------------------------------------------------------ ledger and state
    async def aload_history(self, table: str | None = None) -> pl.DataFrame:
        """Async twin of :meth:`load_history`."""
        return await self._in_thread(self.load_history, table)

    @async_dispatch(aload_history)
    def load_history(self, table: str | None = None) -> pl.DataFrame:
        """The load ledger: one row per committed load, oldest first, of ``table`` or of all.

        Columns: ``load_id``, ``table_name`` (``schema.table``, lower case), ``strategy``,
        ``incremental`` (``files``, ``cursor`` or null), ``inserted``, ``updated``,
        ``deleted``, ``created``, ``files`` (read), ``files_deleted`` (whose rows were
        deleted), ``cursor_column``, ``cursor_from``, ``cursor_to``, ``schema_changes``,
        ``checks``, ``flow_run_id``, ``task_run_id`` (null outside Prefect), ``started_at``,
        ``finished_at`` (UTC), ``quarantined`` (rows sent to ``<table>__quarantine``),
        ``read_snapshot_id`` (DuckLake: the snapshot the load read, the table just before it),
        ``rollback_of`` (a DuckLake rollback: the load id it undid). Every load writes its row in the same transaction as its data,
        so the ledger lists exactly the loads that committed. Empty before the first load.
        A DuckLake keeps it in the lake's ``_prefect_etl`` schema.

        Example:
            ```python
            import polars as pl
            from prefect_etl_blocks import DuckDBConnection

            db = DuckDBConnection()
            db.load_frame(pl.DataFrame({"id": [1]}), "items")
            history = db.load_history("items")
            assert history["inserted"].to_list() == [1]
            ```
        """
        return self._warehouse.history(table)

    async def areset_incremental(self, table: str) -> int:
        """Async twin of :meth:`reset_incremental`."""
        return await self._in_thread(self.reset_incremental, table)

    @async_dispatch(areset_incremental)
    def reset_incremental(self, table: str) -> int:
        """Forget ``table``'s incremental state (its file manifest and cursor marks).

        Warning:
            After a reset the next incremental load reads **every** file again (or every row
            past ``initial_value``): with ``append`` the rows already in the table are loaded a
            second time. Empty or replace the table first unless that is what you want. The
            table's rows and the load history are not touched.

        Returns:
            The number of state rows removed.
        """
        self._refuse_if_read_only(f"reset {table!r}")
        return self._warehouse.reset_incremental(table)
