"""Frames as Parquet bytes, for the ``polars-parquet`` result serializer: which objects count
as frames (:func:`frame_kind`), and Parquet that gives back the same frame type, dtypes,
Arrow schema and pandas index (or None, so the serializer pickles the frame instead).

Nothing here imports Prefect; polars, pyarrow and pandas are imported only when a frame of
theirs is at hand. The envelope around the bytes is in
:mod:`prefect_etl_blocks.core.result_envelope`.
"""

from __future__ import annotations

import io
import sys
from typing import Any, Literal, get_args

from prefect_etl_blocks.core.errors import CorruptResultError

_ARROW_SCHEMA_KEY = b"petl:arrow_schema"

POLARS_DATAFRAME = "polars.DataFrame"
POLARS_LAZYFRAME = "polars.LazyFrame"
ARROW_TABLE = "pyarrow.Table"
PANDAS_DATAFRAME = "pandas.DataFrame"
PICKLED_OBJECT = "object"

Compression = Literal["zstd", "lz4", "snappy", "gzip", "brotli", "uncompressed"]
_CODECS_WITH_LEVELS = {"zstd", "gzip", "brotli"}

_KINDS = frozenset(
    {POLARS_DATAFRAME, POLARS_LAZYFRAME, ARROW_TABLE, PANDAS_DATAFRAME, PICKLED_OBJECT}
)
_COMPRESSIONS = frozenset(get_args(Compression))


def frame_kind(obj: Any) -> str | None:
    """The frame kind this serializer stores as Parquet, or None for any other object.

    Only exact types count: a subclass of a frame type is pickled, so it comes back as
    itself rather than as its base class. pandas is optional and never imported here: an
    object cannot be a pandas frame unless pandas was already imported.
    """
    cls = type(obj)
    module = cls.__module__.partition(".")[0]
    if module == "polars":
        import polars as pl

        if cls is pl.DataFrame:
            return POLARS_DATAFRAME
        if cls is pl.LazyFrame:
            return POLARS_LAZYFRAME
    elif module == "pyarrow":
        import pyarrow as pa

        if cls is pa.Table:
            return ARROW_TABLE
    elif module == "pandas":
        pd = sys.modules.get("pandas")
        if pd is not None and cls is pd.DataFrame:
            return PANDAS_DATAFRAME
    return None


def _to_parquet(
    obj: Any, kind: str, compression: Compression, compression_level: int | None
) -> bytes | None:
    """Parquet bytes for a frame, or None when Parquet cannot hold it faithfully."""
    buffer = io.BytesIO()
    try:
        if kind == POLARS_DATAFRAME:
            import polars as pl

            if any(dtype == pl.Object for dtype in obj.schema.values()):
                return None  # arbitrary Python objects: only a pickle keeps them
            obj.write_parquet(
                buffer,
                compression=compression,
                compression_level=compression_level,
                statistics=False,
            )
        else:
            import pyarrow.parquet as pq

            if kind == PANDAS_DATAFRAME:
                table = _pandas_to_arrow(obj)
                if table is None:
                    return None
            else:
                table = _with_schema_copy(obj)
            pq.write_table(
                table,
                buffer,
                compression=compression if compression != "uncompressed" else None,
                compression_level=compression_level,
                write_statistics=False,
            )
            if kind == PANDAS_DATAFRAME and not _pandas_survives(buffer.getvalue(), obj):
                return None
    except Exception:
        # Types Parquet cannot encode (some extension or nested types): keep them exact
        # with a pickle rather than fail the task.
        return None
    return buffer.getvalue()


# Object columns whose values Parquet gives back as the same Python types.
_SAFE_OBJECT_VALUES = {"string", "bytes", "date", "decimal", "empty"}


def _pandas_to_arrow(frame: Any) -> Any:
    """An Arrow table for ``frame``, or None when Parquet could not give it back as it is."""
    import pandas as pd
    import pyarrow as pa

    columns = frame.columns
    if (
        frame.attrs
        or getattr(columns, "nlevels", 1) != 1
        or not all(isinstance(c, str) for c in columns)
        or not columns.is_unique
    ):
        return None  # labels or attrs that Parquet's pandas metadata would not restore
    for _, column in frame.items():
        if column.dtype == object:
            # Lists would come back as numpy arrays, tuples as lists, and so on.
            if pd.api.types.infer_dtype(column, skipna=True) not in _SAFE_OBJECT_VALUES:
                return None
    try:
        return pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return None  # mixed-type object columns and the like


def _pandas_survives(payload: bytes, frame: Any) -> bool:
    """Whether the Parquet bytes read back with ``frame``'s dtypes, columns and index.

    pandas dtypes do not all map one to one to Parquet (seconds become milliseconds, object
    columns of strings come back as ``str``, integer categories as integers), so pandas
    frames are read back once when stored and pickled when anything differs.
    """
    import pyarrow.parquet as pq

    loaded = pq.read_table(io.BytesIO(payload)).to_pandas()
    index, original = loaded.index, frame.index
    return (
        list(loaded.dtypes) == list(frame.dtypes)
        and list(loaded.columns) == list(frame.columns)
        and loaded.columns.dtype == frame.columns.dtype
        and list(loaded.columns.names) == list(frame.columns.names)
        and type(index) is type(original)
        and list(index.names) == list(original.names)
        and _index_dtypes(index) == _index_dtypes(original)
        and getattr(index, "freq", None) == getattr(original, "freq", None)
        and index.equals(original)
    )


def _index_dtypes(index: Any) -> list[Any]:
    levels = getattr(index, "levels", None)
    if levels is not None:
        return [level.dtype for level in levels]
    return [index.dtype]


def _with_schema_copy(table: Any) -> Any:
    """``table`` with its exact Arrow schema serialized into the schema metadata.

    Parquet's own Arrow schema copy does not restore everything (dictionary columns come
    back with ``string`` instead of ``large_string`` values), so loads casts back to this one.
    """
    metadata = dict(table.schema.metadata or {})
    metadata[_ARROW_SCHEMA_KEY] = table.schema.serialize().to_pybytes()
    return table.replace_schema_metadata(metadata)


def _restore_schema(table: Any) -> Any:
    import pyarrow as pa

    metadata = dict(table.schema.metadata or {})
    stored = metadata.pop(_ARROW_SCHEMA_KEY, None)
    if stored is None:
        return table
    schema = pa.ipc.read_schema(pa.py_buffer(stored))
    table = table.replace_schema_metadata(metadata or None)
    if table.schema.equals(schema, check_metadata=True):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return table  # same values; only the physical type differs from the original


def _from_parquet(payload: bytes, kind: str) -> Any:
    buffer = io.BytesIO(payload)
    if kind in (POLARS_DATAFRAME, POLARS_LAZYFRAME):
        import polars as pl

        frame = pl.read_parquet(buffer)
        return frame.lazy() if kind == POLARS_LAZYFRAME else frame
    import pyarrow.parquet as pq

    table = pq.read_table(buffer)
    if kind == ARROW_TABLE:
        return _restore_schema(table)
    if kind == PANDAS_DATAFRAME:
        return table.to_pandas()
    raise CorruptResultError(
        f"polars-parquet result has unknown kind {kind!r}. Upgrade prefect-etl-blocks in this "
        "process to the version that wrote it."
    )
