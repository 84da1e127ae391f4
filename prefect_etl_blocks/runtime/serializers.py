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

Importing this module registers the ``"polars-parquet"`` type with Prefect. A process that has
not registered it cannot decode such results, takes a cache miss and overwrites them, so
``import prefect_etl_blocks`` imports this module and the package's ``prefect.collections``
entry point makes Prefect import it whenever it loads a block class by slug.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import os
import re
import sys
from typing import Any, Literal, get_args

import cloudpickle
from prefect.serializers import Serializer
from pydantic import ConfigDict, Field, SecretBytes, SecretStr, field_validator, model_validator

from prefect_etl_blocks.core.errors import CorruptResultError, DataError, first_line

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

#: The environment variable a signing key is read from when the serializer has none of its own.
SIGNING_KEY_ENV = "PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY"
SIGNATURE_ALGORITHM = "hmac-sha256"
MIN_SIGNING_KEY_BYTES = 16

_KINDS = frozenset(
    {POLARS_DATAFRAME, POLARS_LAZYFRAME, ARROW_TABLE, PANDAS_DATAFRAME, PICKLED_OBJECT}
)
_COMPRESSIONS = frozenset(get_args(Compression))
_HEADER_KEYS = frozenset(
    {"petl", "version", "kind", "encoding", "compression", "size", "sha256", "alg", "kid", "hmac"}
)
_SIGNATURE_KEYS = frozenset({"alg", "kid", "hmac"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
# The signature is the header's last member, so the signed bytes are the stored header line
# with this suffix replaced by "}" (see _verify_signature).
_HMAC_MEMBER = re.compile(rb',"hmac":"([0-9a-f]{64})"\}\Z')

__all__ = [
    "PolarsParquetSerializer",
    "SERIALIZER_TYPE",
    "SIGNING_KEY_ENV",
    "SigningKeyError",
    "check_stored_record",
    "frame_kind",
    "signing_key_id",
]


def check_stored_record(content: bytes, location: str = "stored result") -> None:
    """With a signing key in the environment, refuse stored bytes no signature protects.

    Prefect decodes a stored result with the serializer that the stored record itself names,
    so whoever can write the result storage can bypass the signature by naming Prefect's
    ``pickle`` serializer (which unpickles whatever it is given) or by adding a key of their
    own to the serializer's settings. Result storage should call this on every object it reads,
    before Prefect parses it (``S3ResultStorage`` does, and ``dataframe_result_options`` wraps
    any other storage, and the cache policy's ``key_storage``, in a block that does): with
    ``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY`` set, only a
    polars-parquet envelope, or a result record or metadata naming ``"polars-parquet"``
    with no settings other than its compression, passes. Without the variable it does nothing.

    Raises:
        CorruptResultError: for anything else while the key is set.
        SigningKeyError: when the key from the environment is too short to be a secret.

    Example:
        ```python
        import os

        from prefect_etl_blocks.core.errors import CorruptResultError
        from prefect_etl_blocks.runtime.serializers import check_stored_record

        os.environ["PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY"] = "0123456789abcdef0123456789abcdef"
        record = b'{"metadata":{"serializer":{"type":"pickle"}},"result":"gAS..."}'
        try:
            check_stored_record(record, "s3://bucket/key")
        except CorruptResultError as exc:
            print(exc)
        del os.environ["PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY"]
        check_stored_record(record)  # no key: nothing is checked, as before
        ```
    """
    if _environment_key() is None or bytes(content).startswith(_MAGIC):
        return  # a bare envelope (cache metadata kept apart): loads checks its signature
    named: Any = None
    try:
        # Duplicate members refused: a parser that kept the other one must not see another
        # serializer than this check did.
        stored = json.loads(content, object_pairs_hook=_unique_members)
        if isinstance(stored, dict):
            metadata = stored.get("metadata", stored)
            named = metadata.get("serializer") if isinstance(metadata, dict) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    if (
        isinstance(named, dict)
        and named.get("type") == SERIALIZER_TYPE
        and set(named) <= {"type", "compression", "compression_level"}
    ):
        return
    if isinstance(named, dict) and named.get("type") == SERIALIZER_TYPE:
        what = f"a polars-parquet serializer with the settings {sorted(set(named))}"
    elif isinstance(named, dict) and isinstance(named.get("type"), str):
        what = f"the serializer {named['type'][:40]!r}"
    else:
        what = "no serializer this library can check"
    raise CorruptResultError(
        f"{location} names {what}, but a result signing key is set "
        f"({SIGNING_KEY_ENV}), and only signed polars-parquet results are read then: any "
        "other serializer would decode data nobody signed. Nothing in it was decoded. Persist "
        'every task and flow result in this storage with result_serializer="polars-parquet" '
        "(dataframe_result_options does), then re-run the task with refresh_cache=True, or "
        "delete the object, to replace it."
    )


class SigningKeyError(DataError, ValueError):
    """A result signing key that cannot be used (too short to be a secret)."""


def signing_key_id(key: bytes | str) -> str:
    """The public id of a signing key: the first 8 hex digits of its SHA-256.

    The id goes into each signed envelope so that a process holding another key says so
    instead of reporting a forgery; it does not reveal the key.

    Example:
        ```python
        from prefect_etl_blocks.runtime.serializers import signing_key_id

        assert signing_key_id("correct horse battery staple") == signing_key_id(
            b"correct horse battery staple"
        )
        assert len(signing_key_id(b"k" * 32)) == 8
        ```
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return hashlib.sha256(raw).hexdigest()[:8]


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
                    f"cannot hold it and cloudpickle failed ({first_line(exc)}). Return a "
                    "picklable value or a frame without Object columns (cast them to String "
                    "or Struct), or turn off persistence with persist_result=False."
                ) from exc
        signing = self._signing_key()
        header = {
            "petl": SERIALIZER_TYPE,
            "version": ENVELOPE_VERSION,
            "kind": kind,
            "encoding": "pickle" if kind == PICKLED_OBJECT else "parquet",
            "compression": None if kind == PICKLED_OBJECT else self.compression,
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        if signing is not None:
            header["alg"] = SIGNATURE_ALGORITHM
            header["kid"] = signing_key_id(signing[0])
        head = json.dumps(header, separators=(",", ":")).encode("ascii")
        body = base64.b64encode(payload)
        if signing is None:
            return head + b"\n" + body
        # Signed bytes: this unsigned envelope exactly; the MAC then joins the header as its
        # last member, where loads finds it without parsing anything else first.
        mac = _mac(signing[0], head, body)
        return head[:-1] + b',"hmac":"' + mac.encode("ascii") + b'"}\n' + body

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

        With a signing key in force (``signing_key`` or ``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY``)
        the signature is checked before anything in the payload is decoded or unpickled.

        Raises:
            CorruptResultError: when the envelope is truncated, damaged or not in this format,
                or, with a signing key, unsigned, signed with another key or forged.
            SigningKeyError: when the key from the environment is too short to be a secret.
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
                f"decoded ({first_line(exc)}). It was probably written with library versions "
                "this process lacks: install the same polars/pyarrow/pandas versions as the "
                "writer, or re-run the task with refresh_cache=True to replace the result."
            ) from exc

    def _open_envelope(self, blob: bytes) -> tuple[dict[str, Any], bytes]:
        """The checked header and decoded payload; nothing in the payload is decoded before
        the header passed its allow-list and, with a key, the signature verified."""
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
        header = _parse_header(blob[:end])
        kind, size = header["kind"], header["size"]
        signing = self._signing_key()
        if signing is not None:
            _verify_signature(blob, end, header, *signing)
        try:
            payload = base64.b64decode(blob[end + 1 :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is truncated or damaged: its base64 "
                f"payload does not decode ({first_line(exc)}). " + _REPLACE_HINT
            ) from exc
        if len(payload) != size:
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is truncated: expected {size} payload "
                f"bytes, found {len(payload)}. " + _REPLACE_HINT
            )
        if not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), header["sha256"]):
            raise CorruptResultError(
                f"polars-parquet result of kind {kind!r} is corrupt: its {size} payload bytes "
                "do not match the stored SHA-256. " + _REPLACE_HINT
            )
        return header, payload


def _environment_key() -> tuple[bytes, str] | None:
    raw = os.environ.get(SIGNING_KEY_ENV, "")
    if not raw:
        return None  # unset or set to nothing: unsigned, as before signing existed
    source = f"the environment variable {SIGNING_KEY_ENV}"
    key = raw.encode("utf-8", errors="surrogateescape")
    _check_key_length(key, source)
    return key, source


def _secret_bytes(secret: SecretStr | SecretBytes) -> bytes:
    value = secret.get_secret_value()
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _check_key_length(key: bytes, source: str) -> None:
    if len(key) < MIN_SIGNING_KEY_BYTES:
        # The length is safe to name; the key is not.
        raise SigningKeyError(
            f"The result signing key from {source} is {len(key)} bytes long; use a random key "
            f"of at least {MIN_SIGNING_KEY_BYTES} bytes (32 recommended), for example the "
            'output of `python -c "import secrets; print(secrets.token_hex(32))"`, and set '
            "the same key on every process that writes or reads results."
        )


def _mac(key: bytes, head: bytes, body: bytes) -> str:
    """HMAC-SHA256 of the signed bytes: header line (without ``hmac``), newline, base64 body."""
    mac = hmac.new(key, head, hashlib.sha256)
    mac.update(b"\n")
    mac.update(body)
    return mac.hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in the header")


def _refuse_float(text: str) -> Any:
    raise ValueError(f"the number {text} is not allowed in the header")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"member {name!r} appears twice")
        result[name] = value
    return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_header(line: bytes) -> dict[str, Any]:
    """The header as a dict, after an allow-list of members, types and values.

    Only a strict JSON object of at most ``_MAX_HEADER_BYTES`` ASCII bytes is read, without
    duplicate members or floats, so a crafted header can neither smuggle a second value past
    the signature nor make the payload be decoded in an unexpected way.
    """
    try:
        header = json.loads(
            line.decode("ascii"),
            object_pairs_hook=_unique_members,
            parse_constant=_refuse_constant,
            parse_float=_refuse_float,
        )
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        unknown = sorted(set(header) - _HEADER_KEYS)
        if unknown:
            raise ValueError(f"unknown header members {unknown}")
        version = header.get("version")
        if not _is_int(version):
            raise ValueError(f"version {version!r} is not an integer")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptResultError(
            f"polars-parquet result has an unreadable header ({first_line(exc)}). " + _REPLACE_HINT
        ) from exc
    if version != ENVELOPE_VERSION:
        raise CorruptResultError(
            f"polars-parquet result has envelope version {version}, but this "
            f"prefect-etl-blocks reads version {ENVELOPE_VERSION}. Upgrade "
            "prefect-etl-blocks in this process to the version that wrote it."
        )
    kind = header.get("kind")
    if isinstance(kind, str) and kind not in _KINDS:
        raise CorruptResultError(
            f"polars-parquet result has unknown kind {kind!r}. Upgrade prefect-etl-blocks in "
            "this process to the version that wrote it."
        )
    try:
        _check_header_values(header)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptResultError(
            f"polars-parquet result has an unreadable header ({first_line(exc)}). " + _REPLACE_HINT
        ) from exc
    return header


def _check_header_values(header: dict[str, Any]) -> None:
    if header["petl"] != SERIALIZER_TYPE:
        raise ValueError(f"petl is {header['petl']!r}")
    kind, encoding, compression = header["kind"], header["encoding"], header["compression"]
    if kind not in _KINDS:
        raise ValueError(f"kind {kind!r} is not a string")
    if encoding not in ("parquet", "pickle"):
        raise ValueError(f"unknown encoding {encoding!r}")
    if (encoding == "pickle") != (kind == PICKLED_OBJECT):
        raise ValueError(f"encoding {encoding!r} does not go with kind {kind!r}")
    if encoding == "pickle" and compression is not None:
        raise ValueError(f"compression {compression!r} on a pickle")
    if encoding == "parquet" and compression not in _COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    size, digest = header["size"], header["sha256"]
    if not _is_int(size) or size < 0:
        raise ValueError(f"size {size!r} is not a byte count")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise ValueError("sha256 is not 64 lowercase hex digits")
    present = _SIGNATURE_KEYS & set(header)
    if present and present != _SIGNATURE_KEYS:
        raise ValueError(
            f"signature members {sorted(present)} without {sorted(_SIGNATURE_KEYS - present)}"
        )
    if present:
        if header["alg"] != SIGNATURE_ALGORITHM:
            raise ValueError(f"unknown signature algorithm {header['alg']!r}")
        if not isinstance(header["kid"], str) or not _KEY_ID_HEX.fullmatch(header["kid"]):
            raise ValueError("kid is not 8 lowercase hex digits")
        if not isinstance(header["hmac"], str) or not _SHA256_HEX.fullmatch(header["hmac"]):
            raise ValueError("hmac is not 64 lowercase hex digits")


def _verify_signature(
    blob: bytes, end: int, header: dict[str, Any], key: bytes, source: str
) -> None:
    """Raise unless the envelope carries a valid HMAC under ``key``; decodes nothing."""
    kind, own_id = header["kind"], signing_key_id(key)
    fix = (
        "Nothing in it was decoded. Give every process that writes or reads these results the "
        f"same key ({SIGNING_KEY_ENV} or signing_key), then re-run the task with "
        "refresh_cache=True, or delete the object, to replace it."
    )
    if "hmac" not in header:
        raise CorruptResultError(
            f"polars-parquet result of kind {kind!r} is not signed, but this process has a "
            f"result signing key (key id {own_id}, from {source}). It was written before the key "
            "was set, by a process without the key, or by someone else who can write the "
            "result storage. Unsigned results from before the key was set must be re-computed. "
            + fix
        )
    if header["kid"] != own_id:
        raise CorruptResultError(
            f"polars-parquet result of kind {kind!r} is signed with key id {header['kid']}, but "
            f"this process's key (from {source}) has key id {own_id}. The writer used another "
            "key (keys differ between workers, or the key was rotated). " + fix
        )
    member = _HMAC_MEMBER.search(blob, 0, end)
    if member is None:
        raise CorruptResultError(
            f"polars-parquet result of kind {kind!r} has a signature that is not the last "
            "member of its header, so it cannot be checked. " + fix
        )
    mac = _mac(key, blob[: member.start()] + b"}", blob[end + 1 :])
    if not hmac.compare_digest(mac.encode("ascii"), member.group(1)):
        raise CorruptResultError(
            f"polars-parquet result of kind {kind!r} has a signature that does not match its "
            f"contents under this process's key (key id {own_id}, from {source}): it was "
            "changed after it was signed, or forged by someone who can write the result "
            "storage. " + fix
        )


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
