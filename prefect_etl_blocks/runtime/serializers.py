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
object is rejected with :class:`~prefect_etl_blocks.core.errors.CorruptResultError` instead of being
read as a valid result: Prefect's cache lookup treats that as a miss and recomputes, and a read
that got past the lookup (cache metadata kept apart with ``key_storage``) fails the task.

With a signing key (the ``signing_key`` field, or the environment variable
``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY`` read at every ``dumps``/``loads``), the header also
carries ``"alg":"hmac-sha256"``, ``"kid"`` (the first 8 hex digits of SHA-256 of the key, never
the key) and, as its last member, ``"hmac"``: HMAC-SHA256 under the key of the *signed bytes*,
which are exactly the envelope as it would be stored without the ``,"hmac":"…"`` member::

    {"petl":…,"sha256":"…","alg":"hmac-sha256","kid":"0a1b2c3d"}\n<base64 of the payload>

``loads`` with a key configured checks the signature (``hmac.compare_digest``) before it
decodes anything, and refuses an unsigned or wrongly signed envelope with
:class:`~prefect_etl_blocks.core.errors.CorruptResultError`: without a key, whoever can write the
result storage can forge a result (the SHA-256 only detects accidents), and a forged
``"encoding":"pickle"`` envelope runs code when loaded.

This module is the Prefect side (the ``Serializer`` class and its settings). The parts that need
no Prefect live in the core: :mod:`~prefect_etl_blocks.core.result_frames` (frames as Parquet
bytes), :mod:`~prefect_etl_blocks.core.result_envelope` (the envelope, and
:func:`check_stored_record`) and :mod:`~prefect_etl_blocks.core.result_signing` (keys and
signatures); the names documented here are still imported from here.

Importing this module registers the ``"polars-parquet"`` type with Prefect. A process that has
not registered it cannot decode such results, takes a cache miss and overwrites them, so
``import prefect_etl_blocks`` imports this module and the package's ``prefect.collections``
entry point makes Prefect import it whenever it loads a block class by slug.
"""

from __future__ import annotations

from typing import Any, Literal

import cloudpickle
from prefect.serializers import Serializer
from pydantic import ConfigDict, Field, SecretBytes, SecretStr, field_validator, model_validator

from prefect_etl_blocks.core.errors import CorruptResultError, first_line
from prefect_etl_blocks.core.result_envelope import (
    ENVELOPE_VERSION,  # noqa: F401 - still importable from here
    SERIALIZER_TYPE,
    _open_envelope,
    _seal_envelope,
    check_stored_record,
)
from prefect_etl_blocks.core.result_frames import (
    _CODECS_WITH_LEVELS,
    ARROW_TABLE,  # noqa: F401 - still importable from here
    PANDAS_DATAFRAME,  # noqa: F401 - still importable from here
    PICKLED_OBJECT,
    POLARS_DATAFRAME,
    POLARS_LAZYFRAME,
    Compression,
    _from_parquet,
    _to_parquet,
    frame_kind,
)
from prefect_etl_blocks.core.result_signing import (
    MIN_SIGNING_KEY_BYTES,
    SIGNATURE_ALGORITHM,  # noqa: F401 - still importable from here
    SIGNING_KEY_ENV,
    SigningKeyError,
    _check_key_length,
    _environment_key,
    signing_key_id,
)

__all__ = [
    "PolarsParquetSerializer",
    "SERIALIZER_TYPE",
    "SIGNING_KEY_ENV",
    "SigningKeyError",
    "check_stored_record",
    "frame_kind",
    "signing_key_id",
]


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
        from prefect_etl_blocks.runtime.serializers import PolarsParquetSerializer

        @task(result_serializer="polars-parquet", persist_result=True)
        def extract() -> pl.DataFrame:
            return pl.DataFrame({"a": [1, 2, 3]})

        serializer = PolarsParquetSerializer(compression="zstd", compression_level=9)
        blob = serializer.dumps(pl.DataFrame({"a": [1, 2, 3]}))
        assert serializer.loads(blob).equals(pl.DataFrame({"a": [1, 2, 3]}))
        ```

        Signed results: set ``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY`` on every process that
        writes or reads results (Prefect rebuilds the serializer that reads a result from the
        stored record, which never holds the key), or give the key as a ``SecretStr``:
        ```python
        import secrets

        import polars as pl
        from pydantic import SecretStr

        from prefect_etl_blocks.core.errors import CorruptResultError
        from prefect_etl_blocks.runtime.serializers import PolarsParquetSerializer

        key = SecretStr(secrets.token_hex(32))
        signed = PolarsParquetSerializer(signing_key=key)
        blob = signed.dumps(pl.DataFrame({"a": [1, 2, 3]}))
        assert signed.loads(blob).equals(pl.DataFrame({"a": [1, 2, 3]}))

        unsigned = PolarsParquetSerializer().dumps(pl.DataFrame({"a": [1, 2, 3]}))
        try:
            signed.loads(unsigned)
        except CorruptResultError as exc:
            print(exc)  # ...is not signed, but this process has a result signing key...
        ```
    """

    # The key must never reach a ValidationError message either.
    model_config = ConfigDict(hide_input_in_errors=True)

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

    signing_key: SecretStr | SecretBytes | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description=(
            "HMAC-SHA256 key for signing results and refusing unsigned or forged ones (at least "
            f"{MIN_SIGNING_KEY_BYTES} bytes). Never stored or shown. Without it, the key comes "
            f"from the environment variable {SIGNING_KEY_ENV}, read at each dumps/loads; "
            "without either, results are not signed."
        ),
    )

    @field_validator("signing_key", mode="before")
    @classmethod
    def _key_only_as_a_secret_object(cls, value: Any) -> Any:
        # Prefect rebuilds this serializer from each stored result's metadata (plain JSON,
        # which whoever can write the bucket controls): a key given there as a string would
        # let a forger choose the key its forgery is checked with. Code can always wrap its
        # key in SecretStr; JSON never produces one.
        if value is None or isinstance(value, SecretStr | SecretBytes):
            return value
        raise ValueError(
            f"signing_key takes a pydantic SecretStr or SecretBytes, not a {type(value).__name__}: "
            "write signing_key=SecretStr(key), or set the environment variable "
            f"{SIGNING_KEY_ENV} instead. Plain values are refused because serializer settings "
            "are also read back from stored results, which must not choose their own key."
        )

    @model_validator(mode="after")
    def _level_needs_a_codec_with_levels(self) -> PolarsParquetSerializer:
        if self.compression_level is not None and self.compression not in _CODECS_WITH_LEVELS:
            raise ValueError(
                f"compression_level={self.compression_level} does not apply to compression="
                f"{self.compression!r}; set compression to one of {sorted(_CODECS_WITH_LEVELS)} "
                "or leave compression_level unset."
            )
        if self.signing_key is not None:
            _check_key_length(_secret_bytes(self.signing_key), "signing_key")
        return self

    def _signing_key(self) -> tuple[bytes, str] | None:
        """The key in force and where it came from: the field, else the environment."""
        if self.signing_key is not None:
            return _secret_bytes(self.signing_key), "the serializer's signing_key"
        return _environment_key()

    # ------------------------------------------------------------------ dumps
    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` into an ASCII envelope: a JSON header line and base64 payload.

        With a signing key in force the header also carries ``alg``, ``kid`` and ``hmac``.

        Raises:
            TypeError: when the object is neither a frame Parquet can hold nor picklable.
            SigningKeyError: when the key from the environment is too short to be a secret.
        """
        kind = frame_kind(obj)
        payload: bytes | None = None
        if kind == POLARS_LAZYFRAME:
            obj = obj.collect()  # a query that fails has no result to store: let it raise
            payload = _to_parquet(obj, POLARS_DATAFRAME, self.compression, self.compression_level)
            obj = obj.lazy()  # if pickled after all, still the collected data
        elif kind is not None:
            payload = _to_parquet(obj, kind, self.compression, self.compression_level)
        if payload is None:
            kind = PICKLED_OBJECT
            try:
                payload = cloudpickle.dumps(obj)
            except Exception as exc:
                raise TypeError(
                    f"PolarsParquetSerializer cannot store a {type(obj).__qualname__}: Parquet "
                    f"cannot hold it and cloudpickle failed ({first_line(exc)}). Return a "
                    "picklable value or a frame without Object columns (cast them to String "
                    "or Struct), or turn off persistence with persist_result=False."
                ) from exc
        return _seal_envelope(kind, self.compression, payload, self._signing_key())

    # ------------------------------------------------------------------ loads
    def loads(self, blob: bytes) -> Any:
        """Decode an envelope written by :meth:`dumps`, restoring the original frame type.

        With a signing key in force (``signing_key`` or ``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY``)
        the signature is checked before anything in the payload is decoded or unpickled.

        Raises:
            CorruptResultError: when the envelope is truncated, damaged or not in this format,
                or, with a signing key, unsigned, signed with another key or forged.
            SigningKeyError: when the key from the environment is too short to be a secret.
        """
        if isinstance(blob, str):
            blob = blob.encode("ascii", errors="replace")
        header, payload = _open_envelope(bytes(blob), self._signing_key)
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
                f"decoded ({first_line(exc)}). It was probably written with library versions "
                "this process lacks: install the same polars/pyarrow/pandas versions as the "
                "writer, or re-run the task with refresh_cache=True to replace the result."
            ) from exc


def _secret_bytes(secret: SecretStr | SecretBytes) -> bytes:
    value = secret.get_secret_value()
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
