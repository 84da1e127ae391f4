"""One entry for every kind of load: :func:`run_load` picks the engine's plain load, a cursor
load or a file-incremental load from its :class:`~prefect_etl_blocks.core.loading.options.LoadOptions`.

The blocks call it with one connection inside their own session handling (locks, DuckLake
commit retries); it is the only function below them that sees a whole load's options.

Example:
    ```python
    import duckdb
    import polars as pl
    from prefect_etl_blocks.core.loading.options import LoadOptions
    from prefect_etl_blocks.core.loading.run import run_load

    con = duckdb.connect()
    batch = pl.DataFrame({"id": [1, 2], "ts": [10, 20]})
    assert run_load(con, batch, "events", LoadOptions(cursor="ts", keys="id")).inserted == 2
    assert run_load(con, batch, "events", LoadOptions(cursor="ts", keys="id")).rows == 1  # the boundary row
    ```
"""

from __future__ import annotations

from typing import Any

import duckdb

from prefect_etl_blocks.core.errors import LoadConfigError
from prefect_etl_blocks.core.loading.engine import LoadResult, load_with
from prefect_etl_blocks.core.loading.incremental_cursor import load_cursor_with
from prefect_etl_blocks.core.loading.incremental_files import load_files_with
from prefect_etl_blocks.core.loading.options import LoadOptions
from prefect_etl_blocks.core.loading.sources import is_file_source
from prefect_etl_blocks.core.loading.staging import parquet_source


def run_load(con: duckdb.DuckDBPyConnection, source: Any, table: str, options: LoadOptions) -> LoadResult:
    """Load ``source`` (a frame, Arrow data, a prepared
    :class:`~prefect_etl_blocks.core.loading.staging.Source` or a
    :class:`~prefect_etl_blocks.core.loading.sources.FileSource`) into ``table`` on ``con`` as
    ``options`` say, in one transaction."""
    if options.kind == "cursor":
        return load_cursor_with(con, source, table, options)
    if options.kind == "files":
        if not is_file_source(source):
            raise LoadConfigError(
                f"incremental=True loads the new files of a ParquetSource; got a {type(source).__name__}. "
                "Pass the ParquetSource itself, or use cursor=... for frames."
            )
        return load_files_with(con, source, table, options)
    if is_file_source(source):
        source = parquet_source(source)
    return load_with(con, source, table, options)


__all__ = ["run_load"]
