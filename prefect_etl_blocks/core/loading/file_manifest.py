"""The manifest of an incremental file load (``_prefect_etl.files``): what identifies a file
(path, size, version marker and, for local files, the SHA-256 of its Parquet footer), whether
a recorded file is unchanged, and the upkeep of recorded rows (footers added later, paths
recorded by earlier versions renamed to their identity).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import duckdb

from prefect_etl_blocks.core.errors import SourceNotFoundError
from prefect_etl_blocks.core.files import (
    local_footer_stats,
    local_identity,
    s3_identity,
    stat_key_of,
)
from prefect_etl_blocks.core.identifiers import quote_identifier as q

#: ``True``: compare local files' footers, reading those whose stat key moved; ``"always"``:
#: read every footer on every run; ``False``: size and mtime only.
ContentCheck = bool | Literal["always"]


def identities(source: Any, files: list[Any], content_check: ContentCheck) -> list[tuple]:
    """``(path, size, version, footer_sha256, stat_key)`` of every listed file, each footer read.

    With ``content_check`` on local files, size, version (mtime), footer and stat key are taken
    from one open descriptor per file (:func:`local_footer_stats`), so they always describe one
    version of the file, even one rewritten after it was listed."""
    if content_check and not source.is_remote:
        return _read([f.path for f in files])
    return [(f.path, int(f.size), str(f.version), None, None) for f in files]


def _read(paths: list[str]) -> list[tuple]:
    return [(p, *ident) for p, ident in zip(paths, local_footer_stats(paths), strict=True)]


def listed(source: Any, content_check: ContentCheck) -> list[tuple]:
    """List ``source`` (outside the load's transaction). Local files whose footer may be
    needed come back as ``(path, os.stat_result)``, for :func:`current_identities` to hold
    against the manifest; other files as finished identities (see :func:`identities`).

    A local source that can list its paths alone (``list_paths``, as ``ParquetSource`` does)
    is walked without the listing's own ``stat`` per file: one ``stat`` per path follows."""
    if not content_check or source.is_remote:
        return identities(source, source.list_files(), content_check)
    list_paths = getattr(source, "list_paths", None)
    paths = list_paths() if callable(list_paths) else [f.path for f in source.list_files()]
    if content_check == "always":
        return _read(paths)
    out = []
    for path in paths:
        try:
            out.append((path, os.stat(path)))
        except FileNotFoundError as exc:
            raise SourceNotFoundError(
                f"Parquet file {path!r} disappeared while the source was being listed. Run the "
                "load again once the files stopped changing."
            ) from exc
    return out


class ListingAhead:
    """:func:`listed` of a local source, taken on a thread while the load reads the catalog and
    the manifest: a folder walk and a ``stat`` per file are system calls, which release the GIL
    as DuckDB's queries do, so on a nothing-new run the two overlap instead of adding up. A
    remote source is listed at once, before the load's transaction, whose catalog and snapshot
    its network I/O (slow, retried) must not hold open.

    :meth:`result` waits for the listing and raises what it raised; :meth:`wait` waits without
    either (for a load that failed before it needed the listing).
    """

    def __init__(self, source: Any, content_check: ContentCheck) -> None:
        self._listing: list[tuple] | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if source.is_remote:
            self._listing = listed(source, content_check)
            return
        self._thread = threading.Thread(
            target=self._run, args=(source, content_check), name="prefect-etl-listing", daemon=True
        )
        self._thread.start()

    def _run(self, source: Any, content_check: ContentCheck) -> None:
        try:
            self._listing = listed(source, content_check)
        except BaseException as exc:  # re-raised by result(), in the load's thread
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self) -> list[tuple]:
        """The listing (see :func:`listed`)."""
        self.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        assert self._listing is not None
        return self._listing


def listed_identities(source: Any, content_check: ContentCheck) -> list[tuple]:
    """:func:`listed` with every footer read: :func:`identities` of all files of ``source``."""
    return current_identities(listed(source, content_check), {})[0]


def current_identities(listing: list[tuple], known: dict[str, tuple]) -> tuple[list[tuple], list[tuple]]:
    """``(path, size, version, footer_sha256, stat_key)`` of each file of ``listing`` (from
    :func:`listed`), against the manifest ``known`` (from :func:`read_manifest`), and the ones
    among them that were not vouched for (in listing order): only those can be new, changed,
    or need their manifest row brought up to date.

    A file whose size, mtime and :func:`~prefect_etl_blocks.core.files.stat_key` are the ones
    recorded with its footer still has that footer: it is not opened. Every other file (new,
    changed, recorded without a key, or changed too recently for a key) is opened and its footer
    read, as :func:`identities` does. Call it inside the load's transaction, so ``known`` is
    the manifest the load is checked against."""
    out: list[tuple | None] = []
    to_read: list[tuple[int, str]] = []
    for path, *rest in listing:
        if len(rest) != 1:  # a finished identity
            out.append((path, *rest))
            to_read.append((len(out) - 1, ""))
            continue
        info = rest[0]
        recorded = known.get(path)
        if (
            recorded is not None
            and recorded[3] is not None
            and recorded[2] is not None
            and recorded[0] == info.st_size
            and recorded[1] == str(info.st_mtime_ns)
            and recorded[3] == stat_key_of(info)
        ):
            out.append((path, *recorded))
        else:
            to_read.append((len(out), path))
            out.append(None)
    opened = _read([p for _, p in to_read if p])
    read = iter(opened)
    for at, path in to_read:
        if path:
            out[at] = next(read)
    return out, [out[at] for at, _ in to_read]  # type: ignore[misc]


def unchanged(recorded: tuple | None, now: tuple) -> bool:
    """Whether a file recorded as ``(size, version, footer, stat_key)`` is ``now`` (``path,
    size, version, footer, stat_key``) unchanged. A footer is compared only when both sides have
    one: loading with ``content_check`` on once and off once (or the reverse) never makes a file
    "changed". The stat key says when a footer must be read, never that a file changed."""
    if recorded is None:
        return False
    size, version, footer = recorded[:3]
    if (size, version) != (now[1], now[2]):
        return False
    return footer is None or now[3] is None or footer == now[3]


def add_footers(
    con: duckdb.DuckDBPyConnection, state: str, key: str, known: dict[str, tuple], current: list[tuple]
) -> None:
    """Record the footer of unchanged files recorded without one (loaded with
    ``content_check=False``), so that a later rewrite keeping size and mtime is caught, and the
    stat key of unchanged files whose key is missing or moved (a file changed too recently
    when it was read, a ``chmod``, a copy back in place), so the next run need not open them."""
    stale = [
        f for f in current
        if f[0] in known and unchanged(known[f[0]], f)
        and ((f[3] is not None and known[f[0]][2] is None) or (f[4] is not None and f[4] != known[f[0]][3]))
    ]
    if stale:
        con.execute(
            f"UPDATE {state}.files AS f SET footer_sha256 = coalesce(f.footer_sha256, m.footer), "
            "stat_key = coalesce(m.stat_key, f.stat_key) FROM (SELECT unnest(?::VARCHAR[]) AS path, "
            "unnest(?::VARCHAR[]) AS footer, unnest(?::VARCHAR[]) AS stat_key) AS m "
            "WHERE f.table_name = ? AND f.path = m.path",
            [[f[0] for f in stale], [f[3] for f in stale], [f[4] for f in stale], key],
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


def read_manifest(
    con: duckdb.DuckDBPyConnection, state: str, key: str, old: tuple[str, list[Any]] | None = None
) -> tuple[dict[str, tuple], bool]:
    """The recorded files of the table ``key``: ``{path: (size, version, footer_sha256,
    stat_key)}``, and whether the manifest also holds rows under an old key of the table.

    ``old``: the predicate (and its parameters) matching those old keys (from
    :func:`~prefect_etl_blocks.core.loading.ledger.old_key_sql`), asked in the same scan of the
    manifest, which on a DuckLake costs a round of catalog queries per table read. Without it
    the second answer is ``False``."""
    where, params = old if old is not None else ("false", [])
    rows = con.execute(
        f"SELECT path, size, version, footer_sha256, stat_key, table_name = ? FROM {state}.files "
        f"WHERE table_name = ? OR {where}",
        [key, key, *params],
    ).fetchall()
    return {row[0]: tuple(row[1:5]) for row in rows if row[5]}, any(not row[5] for row in rows)


__all__ = [
    "ContentCheck",
    "ListingAhead",
    "add_footers",
    "current_identities",
    "file_identity",
    "identities",
    "listed",
    "listed_identities",
    "migrate_paths",
    "read_manifest",
    "unchanged",
]
