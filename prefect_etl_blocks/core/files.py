"""Files as the loads and the cache see them, without Prefect: a file's canonical identity
(:func:`local_identity`, :func:`s3_identity`) and the SHA-256 of a Parquet file's footer
(:func:`parquet_footer_sha256`), which catches a rewrite that kept size and mtime.

:mod:`prefect_etl_blocks.blocks.parquet`, :mod:`prefect_etl_blocks.integration.cache_policies`
and the incremental loads of :mod:`prefect_etl_blocks.core.loading` share them.

Example:
    ```python
    import os
    from prefect_etl_blocks.core.files import local_identity, s3_identity

    assert s3_identity("S3://key:secret@Bucket/raw/a.parquet?versionId=3") == "s3://bucket/raw/a.parquet"
    assert local_identity("./data//a.parquet") == os.path.join(os.getcwd(), "data", "a.parquet")
    ```
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

from prefect_etl_blocks.core.errors import CorruptParquetError, SourceNotFoundError

# A Parquet file ends with its footer (Thrift FileMetaData), the footer's length as a 4-byte
# little-endian integer, and the magic "PAR1" ("PARE" when the footer is encrypted).
_PARQUET_TAIL = 8
_PARQUET_MAGICS = (b"PAR1", b"PARE")
# Footers of typical files are a few KiB; a larger one takes a second read.
_FOOTER_READ_BYTES = 16 * 1024
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_HAS_PREAD = hasattr(os, "pread")


def local_identity(path: str) -> str:
    """The canonical identity of a local file: absolute, with ``~``, ``..`` and symlinks
    resolved (``"data/a.parquet"``, ``"./data//a.parquet"`` and a symlink to it are one file,
    whatever the working directory)."""
    return os.path.realpath(os.path.expanduser(path))


def _split_s3(path: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of an ``s3://`` / ``s3a://`` path: scheme and bucket in lower
    case (bucket names are), any ``user:secret@`` before the bucket dropped."""
    scheme, _, rest = path.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme.lower(), bucket.rpartition("@")[2].lower(), key


def s3_identity(path: str) -> str:
    """The canonical identity of an object: ``scheme://bucket/key`` without credentials or a
    query string (an S3 key is matched as listed, so ``?`` in it is part of the key only when
    the listing says so)."""
    scheme, bucket, key = _split_s3(path)
    return f"{scheme}://{bucket}/{key.partition('?')[0]}"


def parquet_footer_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a local Parquet file's footer: its schema, row groups and statistics.

    Reads only the end of the file: one read of up to 16 KiB holds the last 8 bytes (footer
    length and magic) and, for all but very wide files, the whole footer.

    Raises:
        CorruptParquetError: when the file does not end like a Parquet file.
        SourceNotFoundError: when the file no longer exists.

    Example:
        ```python
        import polars as pl

        from prefect_etl_blocks.core.files import parquet_footer_sha256

        pl.DataFrame({"a": [1, 2, 3]}).write_parquet("a.parquet")
        pl.DataFrame({"a": [7, 8, 9]}).write_parquet("b.parquet")
        assert parquet_footer_sha256("a.parquet") != parquet_footer_sha256("b.parquet")
        ```
    """
    name = os.fspath(path)
    fd = _open(name)
    try:
        return _footer_sha256(fd, name, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def local_footer_identities(paths: Sequence[str]) -> list[tuple[int, str, str]]:
    """``(size, mtime in ns as text, footer SHA-256)`` of each local Parquet file in ``paths``.

    Size, mtime and footer come from one open file (``fstat`` of the descriptor the footer is
    read from), so they describe the same version of the file even when it is rewritten
    meanwhile: a later rewrite changes size or mtime, and the next run sees it. Same errors
    as :func:`parquet_footer_sha256`.
    """
    return [ident[:3] for ident in local_footer_stats(paths)]


def local_footer_stats(paths: Sequence[str]) -> list[tuple[int, str, str, str | None]]:
    """:func:`local_footer_identities` plus each file's :func:`stat_key` (``None`` for a file
    changed too recently for its key to be trusted), all from one open descriptor per file."""
    out = []
    for name in paths:
        fd = _open(name)
        try:
            info = os.fstat(fd)
            footer = _footer_sha256(fd, name, info.st_size)
            out.append((info.st_size, str(info.st_mtime_ns), footer, stat_key(info, time.time_ns())))
        finally:
            os.close(fd)
    return out


#: How long ago a file must have last changed (its ctime) for :func:`stat_key` to vouch for it:
#: more than the file system's timestamp granularity (a kernel tick; FAT's 2 s) and the clock
#: skew between an NFS client and its server. A file changed more recently may change again
#: within the same timestamp, so its footer is read again on the next run (git's "racily
#: clean" entries are handled the same way).
RACY_NS = 3_000_000_000
#: Windows' ``st_ctime`` is the creation time, which a rewrite in place does not change.
_CTIME_IS_CHANGE_TIME = os.name != "nt"


def stat_key(info: os.stat_result, now_ns: int) -> str | None:
    """A key that changes whenever the file's content may have: device, inode and ctime.

    On POSIX file systems every write, truncation or rename onto the path sets the file's
    ctime to the current time, and no call sets it back (``os.utime`` sets mtime, and itself
    updates ctime). So a file whose key, size and mtime are those recorded with its footer
    still has that footer, and need not be read again: that is how an incremental run with
    nothing new avoids opening every file. ``None`` (read the footer) when the file changed
    less than :data:`RACY_NS` before ``now_ns`` (as a same-tick rewrite would keep its
    ctime), and on Windows.

    Example:
        ```python
        import os
        import time

        import polars as pl

        from prefect_etl_blocks.core.files import RACY_NS, stat_key

        pl.DataFrame({"a": [1]}).write_parquet("k.parquet")
        info = os.stat("k.parquet")
        assert stat_key(info, time.time_ns()) is None  # just written: not vouched for yet
        later = info.st_ctime_ns + RACY_NS + 1
        assert stat_key(info, later) == stat_key(os.stat("k.parquet"), later)
        ```
    """
    if not _CTIME_IS_CHANGE_TIME or info.st_ctime_ns > now_ns - RACY_NS:
        return None
    return stat_key_of(info)


def stat_key_of(info: os.stat_result) -> str:
    """The key :func:`stat_key` records for ``info``, without its age check: what a recorded
    key is compared with."""
    return f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}"


def _open(name: str) -> int:
    try:
        return os.open(name, _READ_FLAGS)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(
            f"Parquet file {name!r} disappeared while its footer was being read for the cache "
            "key. Run the task again once the files stopped changing."
        ) from exc


def _footer_sha256(fd: int, name: str, size: int) -> str:
    """The footer's SHA-256 of the open Parquet file ``fd`` of ``size`` bytes."""
    if size < len(b"PAR1") + _PARQUET_TAIL:
        raise CorruptParquetError(
            f"{name!r} is {size} bytes long, too short to be a Parquet file. Replace it "
            "with a valid Parquet file or remove it from the source's path."
        )
    # One read of the file's end usually holds the whole footer: open, fstat, one pread and
    # close are the only system calls for a typical file.
    first = min(size, _FOOTER_READ_BYTES)
    chunk = os.pread(fd, first, size - first) if _HAS_PREAD else b""
    if len(chunk) != first:
        chunk = _pread(fd, first, size)
    tail = chunk[-_PARQUET_TAIL:]
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] not in _PARQUET_MAGICS or length > size - len(b"PAR1") - _PARQUET_TAIL:
        raise CorruptParquetError(
            f"{name!r} does not end like a Parquet file (its last 8 bytes are {tail!r}): "
            "it is truncated, still being written, or not Parquet. Replace it with a "
            "complete Parquet file or remove it from the source's path."
        )
    if length + _PARQUET_TAIL <= len(chunk):
        footer = chunk[len(chunk) - _PARQUET_TAIL - length : -_PARQUET_TAIL]
    else:  # a footer larger than the first read (very wide or many row groups)
        footer = _pread(fd, length, size - _PARQUET_TAIL)
    return hashlib.sha256(footer).hexdigest()


def _pread(fd: int, count: int, end: int) -> bytes:
    """The ``count`` bytes of ``fd`` that end at offset ``end``, read until complete."""
    parts, offset = [], end - count
    while count:
        part = (
            os.pread(fd, count, offset) if hasattr(os, "pread") else _seek_read(fd, count, offset)
        )
        if not part:
            raise CorruptParquetError(
                "A Parquet file got shorter while its footer was being read for the cache key. "
                "Run the task again once the files stopped changing."
            )
        parts.append(part)
        count, offset = count - len(part), offset + len(part)
    return b"".join(parts)


def _seek_read(fd: int, count: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # Windows has no os.pread
    return os.read(fd, count)


__all__ = [
    "RACY_NS",
    "local_footer_identities",
    "local_footer_stats",
    "local_identity",
    "parquet_footer_sha256",
    "s3_identity",
    "stat_key",
    "stat_key_of",
]
