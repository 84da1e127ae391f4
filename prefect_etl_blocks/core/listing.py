"""Which Parquet files a path names: a local file, folder or glob, or an ``s3://`` object,
prefix or glob, each with its canonical identity, size and version marker.

Prefect-free: :class:`~prefect_etl_blocks.blocks.parquet.ParquetSource` (the block) lists its
files through here, handing in a boto3 S3 client for ``s3://`` paths
(:mod:`prefect_etl_blocks.blocks.object_store` makes one from prefect-aws credentials).

Example:
    ```python
    import polars as pl
    from prefect_etl_blocks.core.listing import list_local

    pl.DataFrame({"id": [1]}).write_parquet("one.parquet")
    [found] = list_local("one.parquet")
    assert found.path.endswith("/one.parquet") and found.size > 0
    ```
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prefect_etl_blocks.core.files import _split_s3, local_identity, s3_identity

#: The characters that make a path a glob.
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ParquetFile:
    """One matched file: its path, size and version marker.

    The path is the file's one canonical identity, whatever spelling of the source matched it:
    a resolved absolute local path (``~``, ``..`` and symlinks resolved, so the working
    directory does not change it), or ``s3://bucket/key`` (scheme lower case, no credentials,
    no query string). Incremental loads record files under it.
    """

    path: str
    size: int
    version: str  # local: mtime in ns; S3: the object's ETag


def is_remote(path: str) -> bool:
    """True for ``s3://`` and ``s3a://`` paths."""
    return path.startswith(("s3://", "s3a://"))


def unique_sorted(found: Iterable[ParquetFile]) -> list[ParquetFile]:
    """One entry per identity (two symlinks to one file, overlapping glob matches), by path."""
    return sorted({f.path: f for f in found}.values(), key=lambda f: f.path)


def list_local(path: str) -> list[ParquetFile]:
    """The regular files a local file, folder (``*.parquet`` below it) or glob names; names
    starting with ``.`` or ``_`` are skipped. Empty when nothing is there."""
    path = os.path.expanduser(path)
    if GLOB_CHARS.search(path):
        candidates = globlib.glob(path, recursive=True)
    elif os.path.isdir(path):
        candidates = globlib.glob(os.path.join(path, "**", "*.parquet"), recursive=True)
    elif os.path.exists(path):
        candidates = [path]
    else:
        return []
    files = []
    folders: dict[str, str] = {}  # each folder resolved once, not each of its files
    for candidate in candidates:
        folder, name = os.path.split(candidate)
        if name.startswith((".", "_")):
            continue
        info = os.lstat(candidate)
        if stat.S_ISLNK(info.st_mode):
            identity = local_identity(candidate)
            info = os.stat(identity) if os.path.exists(identity) else info
        else:
            if folder not in folders:
                folders[folder] = local_identity(folder or ".")
            identity = os.path.join(folders[folder], name)
        if stat.S_ISREG(info.st_mode):
            files.append(ParquetFile(identity, info.st_size, str(info.st_mtime_ns)))
    return files


def local_paths(path: str) -> list[str]:
    """The identities of the files :func:`list_local` names, sorted, one each, without their
    size and mtime: a folder is walked with ``os.scandir``, whose entries know their type, so
    no file is stat-ed (a symlink is, to resolve it). For callers that read each file anyway
    and take size and mtime from the open file (the incremental loads' footer check)."""
    expanded = os.path.expanduser(path)
    if GLOB_CHARS.search(expanded) or not os.path.isdir(expanded):
        return [f.path for f in unique_sorted(list_local(path))]
    found: set[str] = set()
    _walk(expanded, found)
    return sorted(found)


def _walk(folder: str, found: set[str]) -> None:
    """Add the ``*.parquet`` regular files below ``folder`` to ``found``, as
    ``glob(folder/**/*.parquet, recursive=True)`` matches them and :func:`list_local` keeps
    them: hidden (``.``) folders and files are not matched, ``_`` files are skipped, folder
    symlinks are followed, file symlinks resolved, unreadable folders left out."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return
    prefix = None  # the folder resolved, once for all its files
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            _walk(entry.path, found)
        if not name.endswith(".parquet") or name.startswith("_"):
            continue
        if entry.is_symlink():
            identity = local_identity(entry.path)
            if os.path.isfile(identity):
                found.add(identity)
        elif entry.is_file(follow_symlinks=False):
            if prefix is None:
                prefix = os.path.join(local_identity(folder), "")
            found.add(prefix + name)


def list_s3(client: Any, path: str) -> list[ParquetFile]:
    """The objects an ``s3://`` path names, listed with a boto3 S3 ``client``: the object
    itself, the ``*.parquet`` objects below a prefix, or the keys a glob matches."""
    scheme, bucket, key = _split_s3(path)
    glob_at = GLOB_CHARS.search(key)
    prefix = key[: glob_at.start()] if glob_at else key
    if not glob_at and key and not key.endswith("/"):
        # An exact object, or a "folder" prefix when no such object exists.
        listing = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=2)
        exact = [o for o in listing.get("Contents", []) if o["Key"] == key]
        if exact:
            obj = exact[0]
            return [ParquetFile(f"{scheme}://{bucket}/{key}", obj["Size"], obj["ETag"])]
        prefix = key + "/"
    files = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"]
            if glob_at:
                if not fnmatch.fnmatchcase(name, key):
                    continue
            elif not name.endswith(".parquet"):
                continue
            files.append(ParquetFile(f"{scheme}://{bucket}/{name}", obj["Size"], obj["ETag"]))
    return files


def names_one_file(path: str, files: list[str]) -> bool:
    """True when ``path`` is the one file of ``files`` (Polars then reads no hive partitions
    unless told to)."""
    if len(files) != 1:
        return False
    identity = s3_identity(path.rstrip("/")) if is_remote(path) else local_identity(path)
    return identity == files[0]
