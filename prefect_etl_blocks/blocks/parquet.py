"""``ParquetSource``: a Polars-native Parquet dataset block (local file, folder, glob, hive, ``s3://``).

All methods are synchronous: scanning is lazy and cheap, and reading is CPU-bound work that
Polars parallelises itself. Call them from async code with ``anyio.to_thread.run_sync`` (the
tasks in :mod:`prefect_etl_blocks.integration.tasks` do this for you).

S3 is read by Polars' own object-store reader (DuckDB 2.0 cannot load ``httpfs`` offline), with
credentials taken from a prefect-aws ``AwsCredentials`` block, including
``aws_client_parameters.endpoint_url`` for S3-compatible stores such as MinIO.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import polars as pl
from prefect.blocks.core import Block
from prefect.types import SecretDict
from prefect_aws import AwsCredentials
from pydantic import Field, ValidationError, field_validator

from prefect_etl_blocks.blocks.object_store import polars_storage_options, s3_client
from prefect_etl_blocks.core import listing
from prefect_etl_blocks.core.dtypes import check_dtype_names, check_expected
from prefect_etl_blocks.core.engines import collect_batches
from prefect_etl_blocks.core.errors import (
    NETWORK,
    CorruptParquetError,
    InvalidFilterError,
    SchemaMismatchError,
    SourceNotFoundError,
    SourceUnavailableError,
    first_line,
    is_transient,
)
from prefect_etl_blocks.core.files import local_identity as local_identity
from prefect_etl_blocks.core.files import s3_identity as s3_identity
from prefect_etl_blocks.core.filters import Filter, parse_filter
from prefect_etl_blocks.core.listing import ParquetFile

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/parquet_source/"


class ParquetSource(Block):
    """A Parquet dataset read lazily with Polars: one file, a folder, a glob, a hive-partitioned
    folder or an ``s3://`` URI, with column selection, a pushed-down filter and schema checks.

    Example:
        Load a saved source and read it:
        ```python
        from prefect_etl_blocks import ParquetSource

        source = ParquetSource.load("BLOCK_NAME")
        frame = source.read()
        ```

        Define one in code (runs as is on a local folder of Parquet files):
        ```python
        from prefect_etl_blocks import ParquetSource

        sales = ParquetSource(
            path="data/sales/*.parquet",
            columns=["category", "value"],
            filter="value > 0",
            expected_schema={"category": "String", "value": "Float64"},
        )
        lazy = sales.scan()          # pl.LazyFrame, filter pushed down to the scan
        print(sales.fingerprint())   # changes when any matched file changes
        ```

    The ``filter`` is untrusted text (often a deployment parameter), so it is parsed by
    :mod:`prefect_etl_blocks.core.filters` into a small allow-listed predicate language and never
    reaches Polars or DuckDB as written: subqueries, table functions, statements, comments and
    casts are refused at construction with :class:`~prefect_etl_blocks.core.errors.InvalidFilterError`.
    """

    _block_type_name = "Parquet Source"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/2gFVJzA0d7vbcxrBJ0ngJa/polars-logo.png"
    _documentation_url = DOCS_URL
    _description = (
        "A Parquet dataset (file, folder, glob, hive partitions or s3:// URI) read lazily "
        "with Polars, with column selection, a pushed-down filter and schema checks."
    )

    path: str = Field(
        default=...,
        description=(
            "Where the data is: a file, a folder (all *.parquet below it), a glob such as "
            "'data/*.parquet' or 'data/**/*.parquet', or an s3:// URI to an object, prefix or glob."
        ),
    )
    columns: list[str] | None = Field(
        default=None,
        description="Columns to read, in this order; all columns when empty.",
    )
    filter: str | None = Field(
        default=None,
        description=(
            "A row predicate pushed down to the scan, for example \"value > 0 AND region = 'EU'\"; "
            "it may use columns that are not selected. Comparisons, AND/OR/NOT, IS NULL, IN, "
            "BETWEEN, LIKE, arithmetic and a few functions (lower, upper, length, abs, round, "
            "coalesce, year, month, day); subqueries, other functions and statements are refused."
        ),
    )
    hive_partitioning: bool | None = Field(
        default=None,
        description=(
            "Read key=value folder names as columns; None lets Polars decide "
            "(on for folders, off for single files)."
        ),
    )
    aws_credentials: AwsCredentials | None = Field(
        default=None,
        description=(
            "prefect-aws credentials for s3:// paths; set aws_client_parameters.endpoint_url "
            "for S3-compatible stores such as MinIO."
        ),
    )
    storage_options: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description=(
            "Extra Polars object-store options (for example aws_region or aws_allow_http); "
            "values are kept secret and override those derived from aws_credentials."
        ),
    )
    expected_schema: dict[str, str] | None = Field(
        default=None,
        description=(
            "Column name to Polars dtype name (for example {'value': 'Float64', 'day': 'Date'}); "
            "a missing column or another dtype is an error naming the file."
        ),
    )

    @field_validator("expected_schema")
    @classmethod
    def _known_dtype_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        check_dtype_names(value or {})
        return value

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ValidationError as exc:
            _raise_filter_error(exc)
            raise

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> ParquetSource:  # type: ignore[override]
        """Validate data (for example a saved block document) into a ``ParquetSource``.

        A bad ``filter`` raises :class:`~prefect_etl_blocks.core.errors.InvalidFilterError` itself,
        not pydantic's wrapper, as construction does.
        """
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            _raise_filter_error(exc)
            raise

    @field_validator("filter")
    @classmethod
    def _parsable_filter(cls, value: str | None) -> str | None:
        if value is not None:
            parse_filter(value)  # refuses empty, hostile and malformed filters
        return value

    # ------------------------------------------------------------------ filter
    def parsed_filter(self) -> Filter | None:
        """The ``filter`` parsed and allow-list checked (None without a filter).

        Parsed again on every call, so a filter assigned after construction is checked too.

        Raises:
            InvalidFilterError: naming the offending part of the filter.
        """
        return None if self.filter is None else parse_filter(self.filter)

    def filter_sql(self) -> str | None:
        """The ``filter`` as canonical DuckDB SQL rendered from the parsed filter (None without one).

        Identifiers are quoted and literals re-rendered from their values, so the text the user
        wrote never reaches DuckDB; use it as ``relation.filter(source.filter_sql())``.

        Example:
            ```python
            from prefect_etl_blocks import ParquetSource

            source = ParquetSource(path="data.parquet", filter="region = 'EU' AND value >= 10")
            print(source.filter_sql())
            # (("region" = 'EU') AND ("value" >= CAST(10 AS BIGINT)))
            ```
        """
        parsed = self.parsed_filter()
        return None if parsed is None else parsed.to_sql()

    # ------------------------------------------------------------------ paths and files
    @property
    def is_remote(self) -> bool:
        """True for ``s3://`` paths."""
        return listing.is_remote(self.path)

    def polars_storage_options(self) -> dict[str, str] | None:
        """The ``storage_options`` Polars needs for this path (None for local paths).

        Built from ``aws_credentials`` (keys, region, endpoint URL; ``aws_allow_http`` as the
        string ``"true"`` for an ``http://`` endpoint), then overridden by ``storage_options``.
        """
        if not self.is_remote:
            return None
        return polars_storage_options(self.aws_credentials, self.storage_options.get_secret_value())

    def list_files(self) -> list[ParquetFile]:
        """Every file the path matches, sorted by path, with size and version marker.

        Raises:
            SourceNotFoundError: when nothing matches (missing file, empty folder or glob).
        """
        if self.is_remote:
            try:
                found = listing.list_s3(self._s3_client(), self.path)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                problem = exc  # raised below, outside this block, with exc as its cause
            else:
                problem = None
            if problem is not None:
                raise SourceUnavailableError(
                    f"ParquetSource {self.path!r}: the object store did not answer while listing "
                    f"files ({first_line(problem)}). Check the endpoint and network; a retry may "
                    "succeed."
                ) from problem
        else:
            found = listing.list_local(self.path)
        if not found:
            kind = "glob" if listing.GLOB_CHARS.search(self.path) else "path"
            raise SourceNotFoundError(
                f"ParquetSource {kind} {self.path!r} matched no Parquet files. Check that the "
                "path exists and is spelled right; folders are searched for *.parquet files."
            )
        return listing.unique_sorted(found)

    def list_paths(self) -> list[str]:
        """The paths :meth:`list_files` returns, without their sizes and versions: a local
        folder is listed without a ``stat`` per file (incremental loads take size and mtime
        from the file they open for its footer).

        Raises:
            SourceNotFoundError: when nothing matches, as :meth:`list_files`.
        """
        if self.is_remote:
            return self.files()
        return listing.local_paths(self.path) or self.files()  # files() raises the error

    def files(self) -> list[str]:
        """The matched file paths (local paths or ``s3://`` URIs), sorted."""
        return [f.path for f in self.list_files()]

    def fingerprint(self) -> str:
        """A stable SHA-256 of the matched files' paths, sizes and modification times / ETags.

        It is the same for the same data and changes when any file is added, removed or
        rewritten, which is what :class:`prefect_etl_blocks.integration.cache_policies.SourceFingerprint`
        keys caches on.
        """
        payload = json.dumps([[f.path, f.size, f.version] for f in self.list_files()])
        return hashlib.sha256(payload.encode()).hexdigest()

    def _hive_default(self, files: list[str]) -> bool:
        """Polars' default for ``hive_partitioning``: on unless the path names one file."""
        return not listing.names_one_file(self.path, files)

    def _s3_client(self) -> Any:
        return s3_client(self.aws_credentials, self.polars_storage_options() or {})

    # ------------------------------------------------------------------ schema and scans
    def _file_schema(self, path: str) -> pl.Schema:
        try:
            return pl.scan_parquet(path, storage_options=self.polars_storage_options()).collect_schema()
        except (pl.exceptions.ComputeError, OSError) as exc:
            if self.is_remote and (is_transient(exc) or NETWORK.search(str(exc))):
                # A network blip is not a corrupt file: say so, and let retries happen.
                raise SourceUnavailableError(
                    f"{path} could not be read: the object store did not answer "
                    f"({first_line(exc)}). Check the endpoint and network; a retry may succeed."
                ) from exc
            raise CorruptParquetError(
                f"{path} is not a readable Parquet file ({first_line(exc)}). Replace or remove "
                f"the file, or narrow ParquetSource.path ({self.path!r}) so it does not match it."
            ) from exc

    def validate_data(self) -> pl.Schema:
        """Check every matched file and return the schema the scan will produce.

        Reads only Parquet footers. Raises :class:`SourceNotFoundError`,
        :class:`CorruptParquetError` or :class:`SchemaMismatchError` naming the file at fault.
        """
        files = self.files()
        for path in files:
            schema = self._file_schema(path)
            self._check_expected(schema, path, partial=True)
        combined = self._base_scan(files).collect_schema()
        self._check_expected(combined, self.path, partial=False)
        if self.columns:
            missing = [c for c in self.columns if c not in combined]
            if missing:
                raise SchemaMismatchError(
                    f"ParquetSource {self.path!r} has no column(s) {missing} listed in `columns`; "
                    f"available columns: {list(combined)}."
                )
        parsed = self.parsed_filter()
        if parsed is not None:
            parsed.check_schema(combined, where=f" of ParquetSource {self.path!r}")
        if self.columns:
            return pl.Schema({c: combined[c] for c in self.columns})
        return combined

    def _check_expected(self, schema: pl.Schema, where: str, *, partial: bool) -> None:
        check_expected(schema, self.expected_schema or {}, where, partial=partial)

    def _base_scan(self, files: list[str]) -> pl.LazyFrame:
        hive = self.hive_partitioning
        if hive is None:
            hive = self._hive_default(files)
        source: str | list[str] = files
        if hive:
            # Polars derives partition columns from paths relative to the dataset root.
            source = self.path if not self.is_remote else files
        return pl.scan_parquet(
            source,
            hive_partitioning=hive,
            storage_options=self.polars_storage_options(),
        )

    def scan(self, validate: bool = True) -> pl.LazyFrame:
        """A lazy scan with the filter pushed down and the selected columns.

        Args:
            validate: check files and schema first (footers only); turn off only when the
                files were validated moments ago.
        """
        files = self.files()
        if validate:
            self.validate_data()
        frame = self._base_scan(files)
        parsed = self.parsed_filter()
        if parsed is not None:
            frame = frame.filter(parsed.to_polars())
        if self.columns:
            frame = frame.select(self.columns)
        return frame

    def read(self) -> pl.DataFrame:
        """Read everything the scan selects into one ``pl.DataFrame``."""
        return self.scan().collect()

    def iter_batches(self, rows: int = 100_000) -> Iterator[pl.DataFrame]:
        """Stream the data as DataFrames of at most ``rows`` rows, never materialising it all.

        Args:
            rows: the largest number of rows in one batch.
        """
        if rows < 1:
            raise ValueError(f"iter_batches(rows={rows}): rows must be a positive integer.")
        yield from collect_batches(self.scan(), rows)

    def __repr__(self) -> str:
        return f"ParquetSource(path={self.path!r}, columns={self.columns!r}, filter={self.filter!r})"


def _raise_filter_error(exc: ValidationError) -> None:
    """Re-raise the InvalidFilterError pydantic wrapped (it wraps every ValueError)."""
    for error in exc.errors():
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, InvalidFilterError):
            raise original from None
