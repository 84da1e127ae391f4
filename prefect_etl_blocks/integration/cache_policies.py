"""Data-aware Prefect cache policies: ``SourceFingerprint`` and ``FrameInputs``.

Prefect's ``INPUTS`` policy hashes task arguments as they are: a ``ParquetSource`` hashes as
its path string, so a cached extract keeps serving stale data after the files change, and a
Polars frame hashes through cloudpickle, whose bytes depend on the frame's memory layout
(chunks, string buffers), so two equal frames usually give two different keys.

* :class:`SourceFingerprint` keys on the files behind every ``ParquetSource`` among the
  inputs: paths, sizes and modification times / ETags, and by default (``mode="content"``) a
  SHA-256 of each local file's Parquet footer, so a rewrite that keeps size and mtime
  (``cp -p``, ``rsync -a``) still changes the key.
* :class:`FrameInputs` is ``INPUTS`` with frames hashed by content: equal frames give equal
  keys in any process, a changed value a different key.

Both are ordinary ``CachePolicy`` objects and combine with Prefect's:
``INPUTS + SourceFingerprint()``, ``FrameInputs() + TASK_SOURCE``. Everything here is
synchronous: Prefect computes cache keys synchronously before a task runs.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.exceptions import HashError
from prefect.utilities.hashing import hash_objects

from prefect_etl_blocks.blocks.parquet import ParquetSource
from prefect_etl_blocks.core.files import parquet_footer_sha256

__all__ = ["FrameInputs", "SourceFingerprint", "frame_fingerprint", "parquet_footer_sha256"]

# The ParquetSource settings that change what a read returns; credentials are left out.
_SOURCE_SETTINGS = ("path", "columns", "filter", "hive_partitioning", "expected_schema")
_MODES = ("stat", "content")


@dataclass
class SourceFingerprint(CachePolicy):
    """A cache key from the data behind every ``ParquetSource`` among the task inputs.

    The key covers, for each source (found in arguments and in lists, tuples and dicts
    inside them): the argument it came from, its read settings (path, columns, filter, hive
    partitioning, expected schema) and its :meth:`~ParquetSource.fingerprint`. Rewriting,
    adding or removing a matched file changes the key; re-running on the same files keeps it.
    Other arguments are not part of the key: add ``INPUTS`` (or :class:`FrameInputs`) for them.
    A task without any ``ParquetSource`` input gets no key from this policy.

    ``mode`` says what stands for a file's data:

    * ``"content"`` (default): path, size, modification time and the SHA-256 of the file's
      Parquet footer (the bytes the last 8 bytes point to: schema, row groups with their
      offsets, sizes and column statistics). A file rewritten with other data but the same
      size and mtime, as ``cp -p`` or ``rsync -a`` leave it, changes the key whenever the new
      data changes any statistic or any column chunk's size. Costs one small read at the end
      of each local file.
    * ``"stat"``: path, size and modification time only (:meth:`ParquetSource.fingerprint`).

    ``s3://`` objects key on their ETag in both modes: S3 gives every rewrite a new one.

    Listing the files happens before the task runs; when that fails (for example a path that
    matches nothing) Prefect logs the error and runs the task without caching, which then
    raises the same error.

    Attributes:
        mode: ``"content"`` (default) or ``"stat"``.

    Example:
        ```python
        import polars as pl
        from prefect import task
        from prefect.cache_policies import INPUTS, TASK_SOURCE

        from prefect_etl_blocks import ParquetSource
        from prefect_etl_blocks.integration.cache_policies import SourceFingerprint

        @task(cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint())
        def extract(source: ParquetSource) -> pl.DataFrame:
            return source.read()

        # Follow only size and mtime, as before content mode existed:
        stat_only = SourceFingerprint(mode="stat")
        ```
    """

    mode: Literal["stat", "content"] = "content"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(
                f"SourceFingerprint mode={self.mode!r} is not one of {list(_MODES)}: use "
                '"content" (size, mtime and Parquet footer; the default) or "stat" (size and '
                "mtime only)."
            )

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The hash of every ``ParquetSource`` input's settings and file fingerprint, or None."""
        found = [
            [
                where,
                {name: getattr(source, name, None) for name in _SOURCE_SETTINGS},
                self._files_fingerprint(source),
            ]
            for where, source in _find_sources(inputs or {})
        ]
        if not found:
            return None
        if self.mode == "stat":  # the key this policy gave before it had modes
            return hash_objects("SourceFingerprint", found, raise_on_failure=True)
        return hash_objects("SourceFingerprint", self.mode, found, raise_on_failure=True)

    def _files_fingerprint(self, source: ParquetSource) -> Any:
        if self.mode == "stat" or source.is_remote:
            return source.fingerprint()
        return [
            [f.path, f.size, f.version, parquet_footer_sha256(f.path)] for f in source.list_files()
        ]


@dataclass
class FrameInputs(CachePolicy):
    """Prefect's ``INPUTS`` policy with DataFrames hashed by content, not by pickle bytes.

    Polars ``DataFrame``/``Series``, Arrow ``Table`` and pandas ``DataFrame`` arguments (also
    inside lists, tuples and dicts) are replaced by :func:`frame_fingerprint` before hashing,
    so equal frames give the same key in every process however they were built, and any
    changed value, column name or dtype gives a new key. Other arguments hash as with
    ``INPUTS``. Use it instead of ``INPUTS``, not next to it: ``INPUTS`` would hash the frames
    again the unstable way (Prefect's ``DEFAULT`` policy contains ``INPUTS``).

    Attributes:
        exclude: argument names left out of the key (``FrameInputs() - "name"`` adds one).

    Example:
        ```python
        import polars as pl
        from prefect import task
        from prefect.cache_policies import TASK_SOURCE

        from prefect_etl_blocks.integration.cache_policies import FrameInputs

        @task(cache_policy=FrameInputs(exclude=["verbose"]) + TASK_SOURCE)
        def summarise(frame: pl.DataFrame, verbose: bool = False) -> pl.DataFrame:
            return frame.group_by("category").agg(pl.col("value").sum())
        ```
    """

    exclude: list[str] = field(default_factory=list)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The hash of the inputs not in ``exclude``, frames replaced by content hashes."""
        if not inputs:
            return None
        hashed = {
            name: _stable_value(value) for name, value in inputs.items() if name not in self.exclude
        }
        try:
            return hash_objects("FrameInputs", hashed, raise_on_failure=True)
        except HashError as exc:
            raise ValueError(
                f"{exc}\n\nFrameInputs could not hash the task inputs {sorted(hashed)}. Leave "
                "the argument that holds a lock, connection or file handle out of the key with "
                "FrameInputs(exclude=[...]), or pass cache_policy=NO_CACHE."
            ) from exc

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):  # mirrors prefect.cache_policies.Inputs
            raise TypeError("Can only subtract strings from key policies.")
        return replace(self, exclude=[*self.exclude, other])


def frame_fingerprint(frame: Any) -> str | None:
    """A SHA-256 of a frame's schema and values, or None for objects it cannot hash by content.

    Handles Polars ``DataFrame`` and ``Series`` (row hashes from ``hash_rows``, which Polars
    keeps stable within one Polars version, so the version is part of the hash), Arrow
    ``Table`` (through Polars) and pandas ``DataFrame`` (``pandas.util.hash_pandas_object``,
    index included). Chunking and memory layout do not matter; column order, names, dtypes
    and values do. Polars ``Object`` columns and other values without a content hash give None.
    """
    module = type(frame).__module__.partition(".")[0]
    if module == "polars":
        return _polars_fingerprint(frame)
    if module == "pyarrow":
        return _arrow_fingerprint(frame)
    if module == "pandas":
        return _pandas_fingerprint(frame)
    return None


def _polars_fingerprint(frame: Any) -> str | None:
    import polars as pl

    if isinstance(frame, pl.Series):
        frame = frame.to_frame()
    elif not isinstance(frame, pl.DataFrame):
        return None  # LazyFrames hash by their query plan, the Prefect default
    if any(dtype == pl.Object for dtype in frame.schema.values()):
        return None  # row hashes of Python objects are their ids: not stable
    digest = hashlib.sha256(f"polars {pl.__version__} {frame.schema!r} {frame.height}".encode())
    if frame.width:
        try:
            rows = frame.hash_rows(seed=0)
        except pl.exceptions.PolarsError:  # a dtype without a row hash
            return None
        digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


def _arrow_fingerprint(table: Any) -> str | None:
    import polars as pl
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        return None
    try:
        frame = pl.from_arrow(table, rechunk=False)
    except (pa.ArrowException, pl.exceptions.PolarsError, TypeError, ValueError):
        return None  # an Arrow type Polars cannot read
    inner = _polars_fingerprint(frame)
    if inner is None:
        return None
    schema = table.schema.serialize().to_pybytes()
    return hashlib.sha256(b"arrow " + schema + inner.encode()).hexdigest()


def _pandas_fingerprint(frame: Any) -> str | None:
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(frame, pd.DataFrame):
        return None
    header = repr(
        (
            pd.__version__,
            [repr(c) for c in frame.columns],
            [str(d) for d in frame.dtypes],
            type(frame.index).__name__,
            frame.index.names,
            frame.shape,
        )
    )
    try:
        rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    except TypeError:  # unhashable cells such as lists
        return None
    return hashlib.sha256(b"pandas " + header.encode() + rows.tobytes()).hexdigest()


def _stable_value(value: Any) -> Any:
    """``value`` with frames (also nested in lists, tuples and dicts) replaced by content hashes."""
    if isinstance(value, dict):
        return {key: _stable_value(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_stable_value(item) for item in value)
    fingerprint = frame_fingerprint(value)
    if fingerprint is not None:
        return {"__frame__": type(value).__qualname__, "sha256": fingerprint}
    return value


def _find_sources(value: Any, where: str = "") -> Iterator[tuple[str, ParquetSource]]:
    """Every ``ParquetSource`` in the inputs, with where it was found (``arg``, ``arg[0]``)."""
    if isinstance(value, ParquetSource):
        yield where, value
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        for key, item in items:
            yield from _find_sources(item, f"{where}[{key!r}]" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _find_sources(item, f"{where}[{index}]")
