"""Load DuckDB extensions offline from pip-installed wheels before trying the network.

DuckDB downloads an extension from ``extensions.duckdb.org`` on ``INSTALL``. Machines without
that network (CI sandboxes, locked-down workers) can instead ``pip install`` the extension as a
wheel: ``duckdb-extension-<name>`` ships the binary as
``duckdb_extension_<name>/extensions/v<duckdb version>/<name>.duckdb_extension``. The wheels
exist per DuckDB release (for example 1.5.5, which is why ``pip install
'prefect-etl-blocks[ducklake]'`` pins DuckDB 1.5.5); a wheel built for another version is never
used, since DuckDB refuses binaries built for a different release.

:func:`load_extension` tries, in order:

1. ``LOAD name``, when DuckDB reports the extension built in or already installed in its
   extension directory (a plain ``LOAD`` of a missing extension would auto-install it from the
   network, which is why the state is checked first);
2. ``INSTALL '<file inside the matching wheel>'`` then ``LOAD``;
3. ``INSTALL name`` from the network, then ``LOAD`` (unless ``allow_network=False``);

and raises :class:`~prefect_etl_blocks.core.errors.ExtensionLoadError` naming the extension, the
running DuckDB version and the pip package that would provide it.

Example:
    ```python
    import duckdb
    from prefect_etl_blocks.core.extensions import load_extension

    con = duckdb.connect()
    print(load_extension(con, "json", allow_network=False))  # "loaded": built into DuckDB
    ```
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from prefect_etl_blocks.core.engines import duckdb_version_tag
from prefect_etl_blocks.core.errors import ExtensionLoadError, first_line

_NAME = re.compile(r"[A-Za-z0-9_]+")

#: Alias -> the extension's canonical name (its file and wheel are named after the latter).
#: DuckDB also reports aliases in ``duckdb_extensions()``; this table covers builds that do not.
ALIASES: dict[str, str] = {
    "postgres": "postgres_scanner",
    "mysql": "mysql_scanner",
    "sqlite": "sqlite_scanner",
    "sqlite3": "sqlite_scanner",
    "http": "httpfs",
    "https": "httpfs",
    "s3": "httpfs",
    "md": "motherduck",
}

How = Literal["loaded", "wheel", "network"]


@dataclass(frozen=True)
class WheelExtension:
    """An extension binary found inside a pip-installed package."""

    name: str
    package: str
    path: Path


def canonical_name(name: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """The canonical name of extension ``name`` (``postgres`` -> ``postgres_scanner``)."""
    _check_name(name)
    lowered = name.lower()
    row = None if con is None else _extension_row(con, lowered, "extension_name")
    return row[0] if row else ALIASES.get(lowered, lowered)


def pip_package(name: str, version: str | None = None) -> str:
    """The pip requirement that ships extension ``name``: ``duckdb-extension-postgres-scanner==1.5.5``."""
    canonical = ALIASES.get(name.lower(), name.lower())
    requirement = "duckdb-extension-" + canonical.replace("_", "-")
    return f"{requirement}=={version.lstrip('v')}" if version else requirement


def find_wheel_extension(name: str, version_tag: str) -> WheelExtension | None:
    """The ``.duckdb_extension`` file for ``name`` and DuckDB ``version_tag`` (``v1.5.5``) in a
    pip-installed ``duckdb_extension_<name>`` package, or in ``duckdb_extensions`` (a bundle
    with the same layout); ``None`` when no installed package has it for this version."""
    canonical = ALIASES.get(name.lower(), name.lower())
    _check_name(canonical)
    for package in (f"duckdb_extension_{canonical}", "duckdb_extensions"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        roots = list(spec.submodule_search_locations or [])
        if not roots and spec.origin:
            roots = [str(Path(spec.origin).parent)]
        for root in roots:
            candidate = Path(root) / "extensions" / version_tag / f"{canonical}.duckdb_extension"
            if candidate.is_file():
                return WheelExtension(canonical, package, candidate)
    return None


def load_extension(
    con: duckdb.DuckDBPyConnection, name: str, *, allow_network: bool = True
) -> How:
    """Make extension ``name`` usable on ``con``; return how: ``"loaded"`` (built in or already
    installed), ``"wheel"`` (installed from a pip package) or ``"network"``.

    Raises:
        ExtensionLoadError: no step worked; the message names the extension, the DuckDB version
            and the pip package to install.
    """
    _check_name(name)
    state = _state(con, name)
    if state == "loaded":
        return "loaded"
    if state == "installed":
        # LOAD of an extension that is not installed would auto-install it from the network,
        # so it is only tried here, once DuckDB says the extension is on disk.
        try:
            con.load_extension(name)
            return "loaded"
        except duckdb.Error:
            pass
    tag = duckdb_version_tag(con)
    wheel = find_wheel_extension(canonical_name(name, con), tag)
    wheel_error: str | None = None
    if wheel is not None:
        try:
            # INSTALL takes a string literal, not a bound parameter; the path comes from an
            # installed package's location, and quotes are doubled all the same.
            literal = str(wheel.path).replace("'", "''")
            con.execute(f"INSTALL '{literal}'").fetchall()
            con.load_extension(name)
            return "wheel"
        except duckdb.Error as exc:
            wheel_error = first_line(exc)
    network_error: str | None = None
    if allow_network:
        try:
            con.install_extension(name)
            con.load_extension(name)
            return "network"
        except duckdb.Error as exc:
            network_error = first_line(exc)
    raise ExtensionLoadError(_explain(name, tag, wheel, wheel_error, network_error, allow_network))


def _explain(
    name: str,
    tag: str,
    wheel: WheelExtension | None,
    wheel_error: str | None,
    network_error: str | None,
    allow_network: bool,
) -> str:
    version = tag.lstrip("v")
    requirement = pip_package(name, version)
    parts = [f"DuckDB extension {name!r} could not be loaded on DuckDB {version}."]
    if wheel is not None:
        parts.append(f"The file {str(wheel.path)!r} from pip package {wheel.package!r} did not load ({wheel_error}).")
    else:
        parts.append(f"It is not built in, not installed, and no pip package provides it for {tag}.")
    if allow_network:
        parts.append(f"Installing it from the network failed ({network_error}).")
    else:
        parts.append("The network was not tried.")
    parts.append(
        f"Fix: `pip install '{requirement}'` (the wheels exist for some DuckDB releases only; "
        "`pip install 'prefect-etl-blocks[ducklake]'` installs a DuckDB that has them), run "
        f"`INSTALL {name}` once on a machine with network access, or remove it from `extensions`."
    )
    return " ".join(parts)


def _state(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """``"loaded"``, ``"installed"`` or ``None`` (unknown to this DuckDB, or not on disk)."""
    row = _extension_row(con, name.lower(), "loaded, installed")
    if row is None:
        return None
    loaded, installed = row
    return "loaded" if loaded else "installed" if installed else None


def _extension_row(con: duckdb.DuckDBPyConnection, name: str, columns: str) -> tuple | None:
    """``columns`` (a constant list) of the ``duckdb_extensions()`` row of ``name`` or of the
    extension it is an alias of; None when this DuckDB does not know it or cannot say."""
    try:
        rows = con.execute(
            f"SELECT {columns} FROM duckdb_extensions() "
            "WHERE extension_name = ? OR list_contains(aliases, ?)",
            [name, name],
        ).fetchall()
    except duckdb.Error:
        return None
    return rows[0] if rows else None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ExtensionLoadError(
            f"extension name {name!r} is not valid: use a plain name such as 'json' or "
            "'ducklake' (letters, digits, underscore)."
        )


__all__ = [
    "ALIASES",
    "WheelExtension",
    "canonical_name",
    "find_wheel_extension",
    "load_extension",
    "pip_package",
]
