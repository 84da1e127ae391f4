"""The manifest of an incremental file load (``_prefect_etl.files``): what identifies a file
(path, size, version marker and, for local files, the SHA-256 of its Parquet footer), whether
a recorded file is unchanged, and the upkeep of recorded rows (footers added later, paths
recorded by earlier versions renamed to their identity).
"""

from __future__ import annotations

from typing import Any

import duckdb

from prefect_etl_blocks.core.files import local_footer_identities, local_identity, s3_identity
from prefect_etl_blocks.core.identifiers import quote_identifier as q


def identities(source: Any, files: list[Any], content_check: bool) -> list[tuple]:
    """``(path, size, version, footer_sha256)`` of every listed file.

    With ``content_check`` on local files, size, version (mtime) and footer are taken from
    one open descriptor per file (:func:`local_footer_identities`), so the three always describe
    one version of the file, even one rewritten after it was listed."""
    if content_check and not source.is_remote:
        paths = [f.path for f in files]
        return [(p, *ident) for p, ident in zip(paths, local_footer_identities(paths), strict=True)]
    return [(f.path, int(f.size), str(f.version), None) for f in files]


def listed_identities(source: Any, content_check: bool) -> list[tuple]:
    """List ``source`` and return :func:`identities` of its files. A local source that can
    list its paths alone (``list_paths``, as ``ParquetSource`` does) is listed without a
    ``stat`` per file when the footers are read anyway: size and mtime then come from the
    descriptor each footer is read from."""
    list_paths = getattr(source, "list_paths", None)
    if content_check and not source.is_remote and callable(list_paths):
        paths = list_paths()
        return [(p, *ident) for p, ident in zip(paths, local_footer_identities(paths), strict=True)]
    return identities(source, source.list_files(), content_check)


def unchanged(recorded: tuple | None, now: tuple) -> bool:
    """Whether a file recorded as ``(size, version, footer)`` is ``now`` (``path, size,
    version, footer``) unchanged. A footer is compared only when both sides have one: loading
    with ``content_check`` on once and off once (or the reverse) never makes a file "changed"."""
    if recorded is None:
        return False
    size, version, footer = recorded
    if (size, version) != (now[1], now[2]):
        return False
    return footer is None or now[3] is None or footer == now[3]


def add_footers(
    con: duckdb.DuckDBPyConnection, state: str, key: str, known: dict[str, tuple], current: list[tuple]
) -> None:
    """Record the footer of unchanged files recorded without one (loaded with
    ``content_check=False``), so that a later rewrite keeping size and mtime is caught."""
    missing = [f for f in current if f[3] is not None and f[0] in known and known[f[0]][2] is None
               and unchanged(known[f[0]], f)]
    if missing:
        con.execute(
            f"UPDATE {state}.files AS f SET footer_sha256 = m.footer FROM (SELECT unnest(?::VARCHAR[]) "
            "AS path, unnest(?::VARCHAR[]) AS footer) AS m WHERE f.table_name = ? AND f.path = m.path",
            [[f[0] for f in missing], [f[3] for f in missing], key],
        ).fetchall()


def file_identity(path: str) -> str:
    """The canonical identity of a file path: a normalised ``s3://bucket/key`` URL, or a
    resolved absolute local path (a relative path is resolved against the working directory)."""
    if path.lower().startswith(("s3://", "s3a://")):
        return s3_identity(path)
    return local_identity(path)


def migrate_paths(
    con: duckdb.DuckDBPyConnection,
    state: str,
    key: str,
    known: dict[str, tuple],
    listed: set[str],
    target: str | None,
    lineage: str | None,
) -> dict[str, tuple]:
    """Rename manifest paths recorded as typed (by earlier versions: relative to the working
    directory of the time, ``./``, ``..``, symlinks) to their identity, in the load's
    transaction, and the lineage column's values with them; return the manifest by identity.

    A relative path can only be resolved against today's working directory. Where several
    spellings name one file (an earlier version loaded it under each), one row is kept. A path
    this run listed is an identity already: only the others are resolved (no file system calls
    for a manifest that is up to date).
    """
    renamed = {path: path if path in listed else file_identity(path) for path in known}
    stale = {old: new for old, new in renamed.items() if old != new}
    if not stale:
        return known
    keep: dict[str, str] = {}
    for old in sorted(known, key=lambda p: (renamed[p] != p, p)):  # canonical rows first
        keep.setdefault(renamed[old], old)
    dropped = [old for old in stale if keep[renamed[old]] != old]
    if dropped:
        con.execute(
            f"DELETE FROM {state}.files WHERE table_name = ? AND path IN (SELECT unnest(?::VARCHAR[]))",
            [key, dropped],
        ).fetchall()
    moved = [old for old in stale if keep[renamed[old]] == old]
    mapping = "(SELECT unnest(?::VARCHAR[]) AS old, unnest(?::VARCHAR[]) AS new) AS m"
    if moved:
        con.execute(
            f"UPDATE {state}.files AS f SET path = m.new FROM {mapping} WHERE f.table_name = ? AND f.path = m.old",
            [moved, [stale[p] for p in moved], key],
        ).fetchall()
    if target is not None and lineage is not None:
        con.execute(
            f"UPDATE {target} AS t SET {q(lineage)} = m.new FROM {mapping} WHERE t.{q(lineage)} = m.old",
            [list(stale), list(stale.values())],
        ).fetchall()
    return {new: known[old] for new, old in keep.items()}


def read_manifest(con: duckdb.DuckDBPyConnection, state: str, key: str) -> dict[str, tuple]:
    """The recorded files of the table ``key``: ``{path: (size, version, footer_sha256)}``."""
    return {
        row[0]: tuple(row[1:])
        for row in con.execute(
            f"SELECT path, size, version, footer_sha256 FROM {state}.files WHERE table_name = ?",
            [key],
        ).fetchall()
    }


__all__ = [
    "add_footers",
    "file_identity",
    "identities",
    "listed_identities",
    "migrate_paths",
    "read_manifest",
    "unchanged",
]
