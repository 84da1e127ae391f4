"""The versions prefect-etl-blocks is tested with, and a check of the installed ones.

Two CI legs run the test suite: *newest* (the newest release of every dependency) and *lowest*
(every dependency at its declared lower bound, pinned by ``ci/constraints-lowest.txt``; run by
``ci/lowest-leg.sh``). :data:`TESTED` records both ends for each package, and why a bound is
where it is; docs/versions.md shows the same table, and tests/test_versions.py keeps
``pyproject.toml``, the constraints file, this table and that page in agreement.

This module imports only the standard library, so ``import prefect_etl_blocks`` can check the
installed versions (:func:`require_supported_versions`) before anything imports pyarrow or
NumPy: a pyarrow built for NumPy 1.x fails at import under NumPy 2 with a traceback from deep
inside NumPy, which names neither the package to change nor the version to install.

Example:
    ```python
    from prefect_etl_blocks.core.versions import TESTED, version_problems

    assert {"prefect", "polars", "duckdb", "pyarrow", "numpy"} <= {r.package for r in TESTED}
    assert [p for p in version_problems() if p.fatal] == []  # this environment imports fine
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

from prefect_etl_blocks.core.errors import DataError

__all__ = [
    "KNOWN_BAD",
    "TESTED",
    "KnownBadCombination",
    "TestedRange",
    "UnsupportedVersionsError",
    "VersionProblem",
    "installed_version",
    "newer_than_tested",
    "require_supported_versions",
    "version_problems",
]


@dataclass(frozen=True)
class TestedRange:
    """One package's tested range: ``lowest`` is the declared lower bound (the lowest leg runs
    it), ``newest`` the newest release the newest leg ran; ``below`` an upper bound declared
    for a known break; ``extra`` names the optional extra when the package is not required."""

    package: str
    lowest: str
    newest: str
    why: str = ""
    below: str | None = None
    extra: str | None = None


@dataclass(frozen=True)
class KnownBadCombination:
    """Two packages that install together but fail together: ``package`` older than
    ``package_below`` with ``other`` at ``other_from`` or newer."""

    package: str
    package_below: str
    other: str
    other_from: str
    what: str
    fix: str
    fatal: bool


#: Both ends of the tested range, per package (pyproject.toml declares ``>=lowest``).
TESTED: tuple[TestedRange, ...] = (
    TestedRange("prefect", "3.8.0", "3.9.1", "the oldest Prefect 3 release the suite is run on"),
    TestedRange(
        "prefect-aws", "0.5.3", "0.5.16",
        "0.5.3 adds S3Bucket.aread_path/awrite_path, the async API S3ResultStorage inherits",
    ),
    TestedRange(
        "polars", "1.34.0", "2.1.0",
        "1.34 adds LazyFrame.collect_batches (LazyFrame loads in bounded memory); older "
        "releases fail the suite: 1.0 to 1.2 hold the GIL while reading s3:// Parquet "
        "metadata, 1.3 panics on Object columns, empty frames and S3 prefixes, 1.20 fails "
        "the Parquet round-trip property test",
    ),
    TestedRange("duckdb", "1.5.0", "2.0.1", "the oldest DuckDB the suite is run on"),
    TestedRange(
        "pyarrow", "16.0.0", "26.0.1",
        "16 is the first pyarrow built for NumPy 2; older ones fail at import under numpy>=2",
    ),
    TestedRange("numpy", "1.24.0", "2.4.6", "the oldest NumPy the suite is run on"),
    TestedRange("cookiecutter", "2.5.0", "2.7.1"),
    TestedRange("cronsim", "2.6", "2.9", "prefect 3.8 requires cronsim>=2.6"),
    TestedRange("rich", "13.9.4", "15.0.0", "prefect 3.8 requires rich>=13.9.4"),
    TestedRange("jinja2", "3.1.6", "3.1.6", "prefect 3.8 requires jinja2>=3.1.6"),
    TestedRange("pyyaml", "6.0", "6.0.4"),
    TestedRange("aiosmtplib", "5.1.2", "5.1.3", "5.1.2 fixes a STARTTLS response-injection advisory"),
    TestedRange("pandas", "2.0.0", "3.1.1", "loads of pandas frames", extra="pandas"),
)

#: Combinations that pip installs but that do not work.
KNOWN_BAD: tuple[KnownBadCombination, ...] = (
    KnownBadCombination(
        "pyarrow", "16", "numpy", "2",
        "pyarrow older than 16 was built for NumPy 1.x and fails at import under NumPy 2",
        "pip install 'pyarrow>=16'",
        fatal=True,
    ),
    KnownBadCombination(
        "prefect", "3.9", "fastapi", "0.151",
        "Prefect 3.8 cannot start its server with FastAPI 0.151 or newer "
        "(Body() got an unexpected keyword argument 'min_items')",
        "pip install 'fastapi<0.151'",
        fatal=False,
    ),
)


@dataclass(frozen=True)
class VersionProblem:
    """An installed version outside the tested range: which package, which version (``None``
    when missing), what is wrong and what to install. ``fatal`` problems stop the import."""

    package: str
    installed: str | None
    detail: str
    fix: str
    fatal: bool

    def line(self) -> str:
        return f"{self.detail} -- fix: {self.fix}"


class UnsupportedVersionsError(DataError, ImportError):
    """Raised by ``import prefect_etl_blocks`` when an installed dependency is outside the
    declared range or in a known-bad combination. The message names each package, its
    installed version and what to install. Installing the same versions again gives the same
    error, so it is a :class:`~prefect_etl_blocks.core.errors.DataError`."""


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` (a distribution name), or ``None`` when missing.
    Reads package metadata only: nothing is imported."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _release(text: str) -> tuple[int, ...]:
    """The release numbers of a version (``"2.0.0rc1"`` gives ``(2, 0, 0)``), padded to three."""
    numbers = [int(n) for n in re.findall(r"\d+", re.split(r"[^\d.]", text.strip(), maxsplit=1)[0])]
    return tuple((numbers + [0, 0, 0])[: max(3, len(numbers))])


def _required_problem(entry: TestedRange, installed: str | None) -> VersionProblem | None:
    required = entry.extra is None
    if installed is None:
        if not required:
            return None
        return VersionProblem(
            entry.package, None, f"{entry.package} is not installed",
            f"pip install '{entry.package}>={entry.lowest}'", fatal=True,
        )
    if _release(installed) < _release(entry.lowest):
        because = f" ({entry.why})" if entry.why else ""
        needed_by = "" if required else f" for the [{entry.extra}] extra"
        return VersionProblem(
            entry.package, installed,
            f"{entry.package} {installed} is older than the oldest tested, "
            f"{entry.lowest}{needed_by}{because}",
            f"pip install '{entry.package}>={entry.lowest}'", fatal=required,
        )
    if entry.below is not None and _release(installed) >= _release(entry.below):
        return VersionProblem(
            entry.package, installed,
            f"{entry.package} {installed} is at or above {entry.below}, which is known to break "
            f"({entry.why})",
            f"pip install '{entry.package}<{entry.below}'", fatal=required,
        )
    return None


def version_problems() -> list[VersionProblem]:
    """Every installed version outside :data:`TESTED` (older than the lowest, or at a declared
    upper bound) and every :data:`KNOWN_BAD` combination; a package in a known-bad combination is
    named once, by the combination (the more precise message). Versions newer than the newest
    tested are not problems: see :func:`newer_than_tested`."""
    problems: list[VersionProblem] = []
    for bad in KNOWN_BAD:
        mine, other = installed_version(bad.package), installed_version(bad.other)
        if mine is None or other is None:
            continue
        if _release(mine) < _release(bad.package_below) and _release(other) >= _release(bad.other_from):
            problems.append(
                VersionProblem(
                    bad.package, mine,
                    f"{bad.package} {mine} with {bad.other} {other}: {bad.what}",
                    bad.fix, fatal=bad.fatal,
                )
            )
    named = {p.package for p in problems}
    for entry in TESTED:
        problem = _required_problem(entry, installed_version(entry.package))
        if problem is not None and entry.package not in named:
            problems.append(problem)
    return problems


def newer_than_tested() -> list[str]:
    """One note per installed package newer than the newest tested release (likely fine, but
    not run by CI), saying what to install if something misbehaves."""
    notes = []
    for entry in TESTED:
        installed = installed_version(entry.package)
        if installed is not None and _release(installed) > _release(entry.newest):
            notes.append(
                f"{entry.package} {installed} is newer than the newest tested, {entry.newest}; "
                f"if something misbehaves, pip install '{entry.package}=={entry.newest}' "
                "and report it"
            )
    return notes


def require_supported_versions() -> None:
    """Raise :class:`UnsupportedVersionsError` when a fatal :func:`version_problems` exists.
    ``import prefect_etl_blocks`` calls it before importing anything that imports pyarrow."""
    fatal = [p for p in version_problems() if p.fatal]
    if fatal:
        lines = "\n".join(f"  - {p.line()}" for p in fatal)
        raise UnsupportedVersionsError(
            "prefect-etl-blocks cannot run with the installed versions:\n"
            f"{lines}\n"
            "The tested range of every dependency is in docs/versions.md "
            "(https://prefect-etl-blocks.readthedocs.io/en/latest/versions/)."
        )
