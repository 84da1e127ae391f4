"""The ``polars-parquet`` envelope (format in :mod:`prefect_etl_blocks.runtime.serializers`):
sealing a payload, opening one after its header passed an allow-list (and, with a key, its
signature was verified), and :func:`check_stored_record` for result storage. Nothing here
imports Prefect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

from prefect_etl_blocks.core.errors import CorruptResultError, first_line
from prefect_etl_blocks.core.result_frames import _COMPRESSIONS, _KINDS, PICKLED_OBJECT
from prefect_etl_blocks.core.result_signing import (
    SIGNATURE_ALGORITHM,
    SIGNING_KEY_ENV,
    _environment_key,
    _mac,
    _verify_signature,
    signing_key_id,
)

SERIALIZER_TYPE = "polars-parquet"
ENVELOPE_VERSION = 1

_MAGIC = b'{"petl":"polars-parquet"'
_MAX_HEADER_BYTES = 4096

_HEADER_KEYS = frozenset(
    {"petl", "version", "kind", "encoding", "compression", "size", "sha256", "alg", "kid", "hmac"}
)
_SIGNATURE_KEYS = frozenset({"alg", "kid", "hmac"})
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


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


def _seal_envelope(
    kind: str, compression: str | None, payload: bytes, signing: tuple[bytes, str] | None
) -> bytes:
    """The envelope of ``payload``: a JSON header line and the base64 payload, signed when
    ``signing`` (key, where it came from) is given."""
    header = {
        "petl": SERIALIZER_TYPE,
        "version": ENVELOPE_VERSION,
        "kind": kind,
        "encoding": "pickle" if kind == PICKLED_OBJECT else "parquet",
        "compression": None if kind == PICKLED_OBJECT else compression,
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


def _open_envelope(
    blob: bytes, signing_key: Callable[[], tuple[bytes, str] | None]
) -> tuple[dict[str, Any], bytes]:
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
    signing = signing_key()  # only now: what is no envelope is reported so, whatever the key
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


_REPLACE_HINT = (
    "The stored object cannot be used: re-run the task with refresh_cache=True, or delete "
    "the object, to replace it."
)
