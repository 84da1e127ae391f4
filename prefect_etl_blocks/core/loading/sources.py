"""What the load engine needs from a set of Parquet files, as a Protocol: the core takes any
object of this shape and never imports the block that provides it.

:class:`~prefect_etl_blocks.ParquetSource` satisfies it structurally (nothing registers it):
``isinstance(source, FileSource)`` is how the engine tells files from frames.

Example:
    ```python
    import polars as pl
    from prefect_etl_blocks import ParquetSource
    from prefect_etl_blocks.core.loading.sources import FileSource

    assert isinstance(ParquetSource(path="data/*.parquet"), FileSource)
    assert not isinstance(pl.DataFrame({"id": [1]}), FileSource)
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import polars as pl


@runtime_checkable
class ListedFile(Protocol):
    """One file of a listing: its canonical identity, size and version marker (mtime in ns
    locally, the ETag on ``s3://``)."""

    path: str
    size: int
    version: str


@runtime_checkable
class FileSource(Protocol):
    """A Parquet dataset (local file, folder, glob, hive folder or ``s3://``) with its column
    selection, filter and expected schema."""

    path: str
    columns: list[str] | None
    filter: str | None
    hive_partitioning: bool | None

    @property
    def is_remote(self) -> bool:
        """True for ``s3://`` paths (read through Polars' object-store reader)."""
        ...

    def list_files(self) -> Sequence[ListedFile]:
        """Every file the path matches, by identity, sorted; raises when none does."""
        ...

    def files(self) -> list[str]:
        """The matched files' identities, sorted."""
        ...

    def validate_data(self) -> pl.Schema:
        """Check every file's footer; the schema the scan produces."""
        ...

    def scan(self, validate: bool = True) -> pl.LazyFrame:
        """A lazy scan with columns and filter applied."""
        ...

    def parsed_filter(self) -> Any:
        """The parsed ``filter`` (with ``to_polars()``), or None."""
        ...

    def filter_sql(self) -> str | None:
        """The ``filter`` as a DuckDB expression, or None."""
        ...

    def polars_storage_options(self) -> dict[str, str] | None:
        """Polars' ``storage_options`` for a remote path (None for local paths)."""
        ...

    def _hive_default(self, files: list[str]) -> bool:
        """Whether hive partitioning is on when ``hive_partitioning`` is None."""
        ...

    def _file_schema(self, path: str) -> pl.Schema:
        """One file's schema, from its footer."""
        ...

    def _check_expected(self, schema: pl.Schema, where: str, *, partial: bool) -> None:
        """Refuse a schema that does not match the expected one."""
        ...


def is_file_source(source: Any) -> bool:
    """``isinstance(source, FileSource)``, answered without touching a frame: a runtime
    protocol check reads every protocol attribute with ``hasattr``, and ``LazyFrame.columns``
    resolves the frame's whole schema (a Parquet scan reads its footers for it)."""
    if isinstance(source, pl.DataFrame | pl.LazyFrame):
        return False
    return isinstance(source, FileSource)


__all__ = ["FileSource", "ListedFile", "is_file_source"]
