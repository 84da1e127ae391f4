"""Signing keys and HMAC-SHA256 signatures of ``polars-parquet`` envelopes (the format is
described in :mod:`prefect_etl_blocks.runtime.serializers`). Nothing here imports Prefect."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from prefect_etl_blocks.core.errors import CorruptResultError, DataError

#: The environment variable a signing key is read from when the serializer has none of its own.
SIGNING_KEY_ENV = "PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY"
SIGNATURE_ALGORITHM = "hmac-sha256"
MIN_SIGNING_KEY_BYTES = 16
# The signature is the header's last member, so the signed bytes are the stored header line
# with this suffix replaced by "}" (see _verify_signature).
_HMAC_MEMBER = re.compile(rb',"hmac":"([0-9a-f]{64})"\}\Z')


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


def _environment_key() -> tuple[bytes, str] | None:
    raw = os.environ.get(SIGNING_KEY_ENV, "")
    if not raw:
        return None  # unset or set to nothing: unsigned, as before signing existed
    source = f"the environment variable {SIGNING_KEY_ENV}"
    key = raw.encode("utf-8", errors="surrogateescape")
    _check_key_length(key, source)
    return key, source


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
