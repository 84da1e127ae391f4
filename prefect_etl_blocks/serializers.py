"""``PolarsParquetSerializer``: Prefect result serializer type ``"polars-parquet"``.

Prefect's default ``pickle`` serializer stores a DataFrame as a base64 pickle inside JSON:
about 5x the bytes and 4x the time of Parquet for a typical frame. This serializer stores
Polars ``DataFrame``/``LazyFrame``, Arrow ``Table`` and pandas ``DataFrame`` results as Parquet
(zstd) and restores the same frame type on load; any other object is stored with cloudpickle,
like Prefect's ``pickle`` serializer, inside the same envelope.

Everything here is synchronous: Prefect calls ``dumps``/``loads`` from its own threads, and
Polars and Arrow parallelise the Parquet work themselves.

The stored bytes (the *envelope*) are one JSON header line and the base64 payload::

    {"petl":"polars-parquet","version":1,"kind":"polars.DataFrame","encoding":"parquet",
     "compression":"zstd","size":1234,"sha256":"…"}\\n<base64 of the Parquet bytes>

They must be ASCII: Prefect embeds them as a string in its JSON result record, and bytes that
are not valid UTF-8 make it log an error and store nothing while the task still shows
``Completed``. ``size`` and ``sha256`` describe the decoded payload, so a truncated or damaged
object is rejected with :class:`~prefect_etl_blocks.errors.CorruptResultError` instead of being
read as a valid result: Prefect's cache lookup treats that as a miss and recomputes, and a read
that got past the lookup (cache metadata kept apart with ``key_storage``) fails the task.

Importing this module registers the ``"polars-parquet"`` type with Prefect. A process that has
not registered it cannot decode such results, takes a cache miss and overwrites them, so
``import prefect_etl_blocks`` imports this module and the package's ``prefect.collections``
entry point makes Prefect import it whenever it loads a block class by slug.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import sys
from typing import Any, Literal

import cloudpickle
from prefect.serializers import Serializer
from pydantic import Field, model_validator

from prefect_etl_blocks.errors import CorruptResultError

SERIALIZER_TYPE = "polars-parquet"
ENVELOPE_VERSION = 1

_MAGIC = b'{"petl":"polars-parquet"'
_MAX_HEADER_BYTES = 4096
_ARROW_SCHEMA_KEY = b"petl:arrow_schema"

POLARS_DATAFRAME = "polars.DataFrame"
POLARS_LAZYFRAME = "polars.LazyFrame"
ARROW_TABLE = "pyarrow.Table"
PANDAS_DATAFRAME = "pandas.DataFrame"
PICKLED_OBJECT = "object"

Compression = Literal["zstd", "lz4", "snappy", "gzip", "brotli", "uncompressed"]
_CODECS_WITH_LEVELS = {"zstd", "gzip", "brotli"}

__all__ = ["PolarsParquetSerializer", "SERIALIZER_TYPE", "frame_kind"]


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


class PolarsParquetSerializer(Serializer):
    """Stores DataFrame results as Parquet (zstd) and restores the same frame type on load.

    Polars ``DataFrame`` and ``LazyFrame`` (collected when stored, lazy again when loaded),
    Arrow ``Table`` and pandas ``DataFrame`` are written as Parquet; every other object, and a
    frame Parquet cannot hold (for example a Polars ``Object`` column or a pandas frame with
    non-string column labels), is stored with cloudpickle in the same envelope.

    Example:
        Use it by its type name, or configure it:
        ```python
        import polars as pl
        from prefect import flow, task

        import prefect_etl_blocks  # registers "polars-parquet"
        from prefect_etl_blocks.serializers import PolarsParquetSerializer

        @task(result_serializer="polars-parquet", persist_result=True)
        def extract() -> pl.DataFrame:
            return pl.DataFrame({"a": [1, 2, 3]})

        serializer = PolarsParquetSerializer(compression="zstd", compression_level=9)
        blob = serializer.dumps(pl.DataFrame({"a": [1, 2, 3]}))
        assert serializer.loads(blob).equals(pl.DataFrame({"a": [1, 2, 3]}))
        ```
    """

    type: Literal["polars-parquet"] = Field(
        default="polars-parquet",
        frozen=True,
        description='The Prefect serializer type name, used as result_serializer="polars-parquet".',
    )
    compression: Compression = Field(
        default="zstd",
        description="The Parquet compression codec for frames.",
    )
    compression_level: int | None = Field(
        default=None,
        description="The codec's compression level; None uses the codec's default.",
    )

    @model_validator(mode="after")
    def _level_needs_a_codec_with_levels(self) -> PolarsParquetSerializer:
        if self.compression_level is not None and self.compression not in _CODECS_WITH_LEVELS:
            raise ValueError(
                f"compression_level={self.compression_level} does not apply to compression="
                f"{self.compression!r}; set compression to one of {sorted(_CODECS_WITH_LEVELS)} "
                "or leave compression_level unset."
            )
        return self

    # ------------------------------------------------------------------ dumps
    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` into an ASCII envelope: a JSON header line and base64 payload.

        Raises:
            TypeError: when the object is neither a frame Parquet can hold nor picklable.
        """
        kind = frame_kind(obj)
        payload: bytes | None = None
        if kind == POLARS_LAZYFRAME:
            obj = obj.collect()  # a query that fails has no result to store: let it raise
            payload = self._to_parquet(obj, POLARS_DATAFRAME)
            obj = obj.lazy()  # if pickled after all, still the collected data
        elif kind is not None:
            payload = self._to_parquet(obj, kind)
        if payload is None:
            kind = PICKLED_OBJECT
            try:
                payload = cloudpickle.dumps(obj)
            except Exception as exc:
                raise TypeError(
                    f"PolarsParquetSerializer cannot store a {type(obj).__qualname__}: Parquet "
                    f"cannot hold it and cloudpickle failed ({_first_line(exc)}). Return a "
                    "picklable value or a frame without Object columns (cast them to String "
                    "or Struct), or turn off persistence with persist_result=False."
                ) from exc
        header = {
            "petl": SERIALIZER_TYPE,
            "version": ENVELOPE_VERSION,
            "kind": kind,
            "encoding": "pickle" if kind == PICKLED_OBJECT else "parquet",
            "compression": None if kind == PICKLED_OBJECT else self.compression,
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        head = json.dumps(header, separators=(",", ":")).encode("ascii")
        return head + b"\n" + base64.b64encode(payload)

    def _to_parquet(self, obj: Any, kind: str) -> bytes | None:
        """Parquet bytes for a frame, or None when Parquet cannot hold it faithfully."""
        buffer = io.BytesIO()
        try:
            if kind == POLARS_DATAFRAME:
                import polars as pl

                if any(dtype == pl.Object for dtype in obj.schema.values()):
                    return None  # arbitrary Python objects: only a pickle keeps them
                obj.write_parquet(
                    buffer,
                    compression=self.compression,
                    compression_level=self.compression_level,
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
                    compression=self.compression if self.compression != "uncompressed" else None,
                    compression_level=self.compression_level,
                    write_statistics=False,
                )
                if kind == PANDAS_DATAFRAME and not _pandas_survives(buffer.getvalue(), obj):
                    return None
        except Exception:
            # Types Parquet cannot encode (some extension or nested types): keep them exact
            # with a pickle rather than fail the task.
            return None
        return buffer.getvalue()

    # ------------------------------------------------------------------ loads
    def loads(self, blob: bytes) -> Any:
        """Decode an envelope written by :meth:`dumps`, restoring the original frame type.

        Raises:
            CorruptResultError: when the envelope is truncated, damaged or not in this format.
        """
        if isinstance(blob, str):
            blob = blob.encode("ascii", errors="replace")
        header, payload = self._open_envelope(bytes(blob))
        kind = header["kind"]
        try:
            if header["encoding"] == "pickle":
                return cloudpickle.loads(payload)
            return _from_parquet(payload, kind)
        except CorruptResultError:
            raise
        except Exception as exc:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} passed its checksum but could not be "
                f"decoded ({_first_line(exc)}). It was probably written with library versions "
                "this process lacks: install the same polars/pyarrow/pandas versions as the "
                "writer, or re-run the task with refresh_cache=True to replace the result."
            ) from exc

    def _open_envelope(self, blob: bytes) -> tuple[dict[str, Any], bytes]:
        if not blob.startswith(_MAGIC):
            raise CorruptResultError(
                f"Stored result is not a polars-parquet envelope (it starts with {blob[:24]!r}). "
                "It was written by another serializer or damaged: read it with the serializer "
                "that wrote it, or re-run the task with refresh_cache=True to replace it."
            )
        end = blob.find(b"\n", 0, _MAX_HEADER_BYTES)
        if end < 0:
            raise CorruptResultError(
                f"polars-parquet result is truncated: its header has no end within the first "
                f"{_MAX_HEADER_BYTES} bytes ({len(blob)} bytes stored). " + _REPLACE_HINT
            )
        try:
            header = json.loads(blob[:end])
            version, kind, size, digest = (
                header["version"],
                header["kind"],
                header["size"],
                header["sha256"],
            )
            if header["encoding"] not in ("parquet", "pickle"):
                raise ValueError(f"unknown encoding {header['encoding']!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptResultError(
                f"polars-parquet result has an unreadable header ({_first_line(exc)}). "
                + _REPLACE_HINT
            ) from exc
        if version != ENVELOPE_VERSION:
            raise CorruptResultError(
                f"polars-parquet result has envelope version {version}, but this "
                f"prefect-etl-blocks reads version {ENVELOPE_VERSION}. Upgrade "
                "prefect-etl-blocks in this process to the version that wrote it."
            )
        try:
            payload = base64.b64decode(blob[end + 1 :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is truncated or damaged: its base64 "
                f"payload does not decode ({_first_line(exc)}). " + _REPLACE_HINT
            ) from exc
        if len(payload) != size:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is truncated: expected {size} payload "
                f"bytes, found {len(payload)}. " + _REPLACE_HINT
            )
        if hashlib.sha256(payload).hexdigest() != digest:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is corrupt: its {size} payload bytes "
                "do not match the stored SHA-256. " + _REPLACE_HINT
            )
        return header, payload


_REPLACE_HINT = (
    "The stored object cannot be used: re-run the task with refresh_cache=True, or delete "
    "the object, to replace it."
)


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
