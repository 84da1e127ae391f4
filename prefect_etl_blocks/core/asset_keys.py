"""Asset keys for lineage, without Prefect: a table's key as prefect-dbt spells it, and a Parquet
dataset's key from any spelling of its path.

Prefect asset keys are URIs of at most 512 characters without whitespace or
``#?&%"'<>[]{}|\\^`` and backticks (:data:`RESTRICTED_CHARACTERS`);
:mod:`prefect_etl_blocks.runtime.lineage` checks every key with Prefect's own validator.

* A table: ``duckdb://<catalog>/<schema>/<table>`` (:func:`table_key`), the key
  ``prefect_dbt.utilities.format_resource_id("duckdb", relation_name)`` gives the same table
  when a dbt-duckdb model reads it: the relation name ``"shop"."main"."orders"`` without its
  quotes, dots turned into slashes, refused characters dropped, cut at 512 characters. The
  catalog of a DuckDB file is the name DuckDB gives it (:func:`duckdb_catalog_name`).
* A dataset: ``file:///<absolute path>`` or ``s3://<bucket>/<prefix>`` of its root
  (:func:`source_key`): a glob is keyed by the folder above its first wildcard, a hive partition
  folder (``year=2024``) by the dataset above it, so every spelling of one dataset has one key.
  A character Prefect refuses cannot be percent-encoded (``%`` is refused too), so it is written
  ``~`` plus two hex digits per UTF-8 byte, and ``~`` itself as ``~7E``: ``/data/my files`` is
  ``file:///data/my~20files``. A key longer than 512 characters keeps its first 494 and ends in
  ``~~`` plus 16 hex digits of the SHA-256 of the whole key.

Example:
    ```python
    from prefect_etl_blocks.core.asset_keys import duckdb_catalog_name, source_key, table_key

    assert duckdb_catalog_name("/data/shop.v2.duckdb") == "shop"
    assert table_key("shop", "orders") == "duckdb://shop/main/orders"
    assert source_key("s3://Raw-Bucket/orders/year=*/*.parquet") == "s3://raw-bucket/orders"
    assert source_key("/data/my files/*.parquet") == "file:///data/my~20files"
    ```
"""

from __future__ import annotations

import hashlib
import os
import re

from prefect_etl_blocks.core.identifiers import split_table_name

#: The characters Prefect refuses in an asset key (``prefect.types.names``; a test keeps this a
#: superset of Prefect's list).
RESTRICTED_CHARACTERS = frozenset("\n\r\t\0 #?&%\"'<>[]{}|\\^`")
#: The longest asset key Prefect accepts.
MAX_KEY_LENGTH = 512
#: The catalog name a DuckLake block attaches its lake under (``ATTACH ... AS lake``).
LAKE_CATALOG = "lake"

_ESCAPE = "~"
_DIGEST = 16
_GLOB = re.compile(r"[*?\[]")
# DuckDB renames a catalog that would clash with a built-in one (``main.db`` -> ``main_db``).
_RESERVED_CATALOGS = frozenset({"main", "system", "temp"})

__all__ = [
    "LAKE_CATALOG",
    "MAX_KEY_LENGTH",
    "RESTRICTED_CHARACTERS",
    "catalog_of",
    "dataset_root",
    "duckdb_catalog_name",
    "source_key",
    "table_key",
]


def duckdb_catalog_name(database_path: str) -> str:
    """The catalog name DuckDB gives the database at ``database_path`` when it opens it:
    ``memory`` in memory, else the file name's first non-empty dot-separated part
    (``/data/shop.v2.duckdb`` -> ``shop``), cut at a ``?``, with ``_db`` added to ``main``,
    ``system`` and ``temp`` (any case). dbt-duckdb names a ``path``'s database the same way
    (a test compares this with DuckDB for generated file names)."""
    if database_path in ("", ":memory:") or database_path.startswith(":memory:"):
        return "memory"
    # DuckDB takes "\\" for a path separator too, on every platform.
    name = next((part for part in reversed(re.split(r"[/\\]", database_path)) if part), database_path)
    stem = next((part for part in name.split(".") if part), name)
    # DuckDB also cuts the name at a "?" (as before a query string): "a?b.db" is "a".
    stem = next((part for part in stem.split("?") if part), stem)
    return f"{stem}_db" if stem.lower() in _RESERVED_CATALOGS else stem


def catalog_of(database_path: str) -> str:
    """The catalog a block's tables are in, from its ``database_path``: the lake's alias
    (``lake``) for a DuckLake (``ducklake:...``), else :func:`duckdb_catalog_name`."""
    if database_path.startswith("ducklake:"):
        return LAKE_CATALOG
    return duckdb_catalog_name(database_path)


def table_key(catalog: str, table: str) -> str:
    """The asset key of ``table`` (``orders``, ``sales.orders`` or ``cat.sales.orders``; the
    schema defaults to ``main``) in ``catalog``: what prefect-dbt emits for the relation
    ``"<catalog>"."<schema>"."<table>"`` of dbt-duckdb.

    Raises:
        InvalidIdentifierError: a table name that cannot be split into its parts.
    """
    parts = split_table_name(table)
    if len(parts) == 1:
        parts = ["main", *parts]
    if len(parts) == 2:
        parts = [catalog, *parts]
    # prefect-dbt strips the quotes of the rendered relation name, turns every dot (also one
    # inside a quoted name) into a slash, drops the refused characters and cuts at 512.
    relation = "/".join(part.replace('"', "").replace(".", "/") for part in parts)
    relation = "".join(ch for ch in relation if ch not in RESTRICTED_CHARACTERS)
    return f"duckdb://{relation}"[:MAX_KEY_LENGTH]


def dataset_root(path: str) -> str:
    """The root of the dataset ``path`` names, canonical: ``s3://bucket/prefix`` (scheme
    ``s3``, bucket in lower case, no credentials or query) or an absolute local path with
    ``~``, ``..`` and symlinks resolved. A glob is cut at the folder above its first wildcard,
    and trailing hive partition folders (``year=2024``) are dropped; a file is its own root."""
    if path.lower().startswith(("s3://", "s3a://")):
        bucket, _, key = path.partition("://")[2].partition("/")
        bucket = bucket.rpartition("@")[2].lower()  # a bucket name is lower case
        # As the listing does, "?" is a wildcard, so a query string is cut with the glob.
        segments = _drop_partitions([s for s in _before_glob(key) if s])
        return "/".join([f"s3://{bucket}", *segments])
    expanded = os.path.expanduser(path)
    base = "/".join(_before_glob(expanded)) or ("/" if expanded.startswith("/") else ".")
    try:
        resolved = os.path.realpath(base)
    except ValueError:  # a NUL character: no such file, so nothing to resolve
        resolved = os.path.normpath(os.path.abspath(base))
    segments = _drop_partitions([s for s in resolved.split("/") if s])
    return "/" + "/".join(segments)


def source_key(path: str) -> str:
    """The asset key of the dataset ``path`` names (see :func:`dataset_root`): the same for
    every spelling of one dataset, and always a valid Prefect asset key."""
    root = dataset_root(path)
    if root.startswith("s3://"):
        key = "s3://" + _escape(root[len("s3://"):])
    else:
        key = "file://" + _escape(root)
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
        key = f"{key[: MAX_KEY_LENGTH - _DIGEST - 2]}{_ESCAPE * 2}{digest}"
    return key


def _before_glob(path: str) -> list[str]:
    """The ``/``-separated segments of ``path`` before the first one holding a wildcard."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if _GLOB.search(segment):
            return segments[:i]
    return segments


def _drop_partitions(segments: list[str]) -> list[str]:
    """``segments`` without trailing hive partition folders (``key=value``, not a file)."""
    while segments and _is_partition(segments[-1]):
        segments = segments[:-1]
    return segments


def _is_partition(segment: str) -> bool:
    name, eq, _value = segment.partition("=")
    return bool(eq and name) and not segment.lower().endswith(".parquet")


def _escape(text: str) -> str:
    """``text`` with every character Prefect refuses (plus control characters, ``~`` and lone
    surrogates) written as ``~XX`` per UTF-8 byte: reversible, and free of ``%``."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in RESTRICTED_CHARACTERS or ch == _ESCAPE or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            data = ch.encode("utf-8", "surrogateescape" if 0xDC80 <= code <= 0xDCFF else "surrogatepass")
            out.append("".join(f"{_ESCAPE}{byte:02X}" for byte in data))
        else:
            out.append(ch)
    return "".join(out)
