"""The declared versions are honest and a bad environment gets a clear message.

* pyproject.toml's lower bounds, the lowest leg's pins (ci/constraints-lowest.txt), the table in
  prefect_etl_blocks/versions.py and docs/versions.md say the same thing.
* ``prefect-etl doctor`` and ``import prefect_etl_blocks`` name the package, its version and what
  to install. The real environment cannot be both healthy and broken, so the checks are fed
  versions through ``versions.installed_version``; the import test uses a real process whose
  ``sys.path`` starts with fake distribution metadata (nothing is installed).
* compat's Polars fallbacks give the same rows on every Polars (the lowest leg runs them for real).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from prefect_etl_blocks import compat, versions
from prefect_etl_blocks.doctor import check_versions, run_doctor
from prefect_etl_blocks.errors import DataError
from prefect_etl_blocks.versions import TESTED, UnsupportedVersionsError, version_problems

ROOT = Path(__file__).resolve().parents[1]
CORE = ("prefect", "prefect-aws", "polars", "duckdb", "pyarrow", "numpy")


def dependencies() -> list[str]:
    """pyproject.toml's ``dependencies`` and its ``pandas`` extra, as written (no tomllib on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^dependencies = \[(.*?)^\]", text)[1]
    pandas = re.search(r"(?m)^pandas = \[(.*?)\]", text)[1]
    return re.findall(r'(?m)^\s*"([^"]+)",?\s*$', block) + re.findall(r'"([^"]+)"', pandas)


def declared_lower_bounds() -> dict[str, str]:
    """``{package: lower bound}`` of pyproject's dependencies and of the pandas extra."""
    found = {}
    for requirement in dependencies():
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", requirement)
        if match:
            found[match[1].lower()] = match[2]
    return found


def lowest_pins() -> dict[str, str]:
    text = (ROOT / "ci" / "constraints-lowest.txt").read_text()
    return dict(re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)$", text))


def same(a: str, b: str) -> bool:
    return versions._release(a) == versions._release(b)


# ----------------------------------------------------------------------------- one range, four places


def test_every_lower_bound_is_pinned_by_the_lowest_leg_and_in_the_table() -> None:
    bounds, pins = declared_lower_bounds(), lowest_pins()
    table = {r.package: r for r in TESTED}
    assert set(CORE) <= set(bounds), f"pyproject.toml must bound {set(CORE) - set(bounds)} from below"
    for package, bound in bounds.items():
        assert package in pins and same(pins[package], bound), (
            f"pyproject.toml says {package}>={bound} but ci/constraints-lowest.txt pins "
            f"{package}=={pins.get(package)}: the lowest leg must run every lower bound"
        )
        assert package in table and same(table[package].lowest, bound), (
            f"versions.TESTED must list {package} with lowest {bound} (pyproject.toml)"
        )
    assert set(pins) == set(bounds), "ci/constraints-lowest.txt pins a package pyproject.toml does not bound"


def test_upper_bounds_only_where_a_break_is_known() -> None:
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    capped = [r for r in dependencies() if "<" in r]
    assert capped == ["fastapi<0.151"]
    comment = lines[lines.index('    "fastapi<0.151",') - 1]
    assert comment.strip().startswith("#") and "breaks" in comment


def test_docs_and_readme_state_both_ends_of_each_range() -> None:
    page = (ROOT / "docs" / "versions.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for r in TESTED:
        row = re.search(rf"(?m)^\| `{re.escape(r.package)}` \| (\S+) \| (\S+) \|", page)
        assert row and (row[1], row[2]) == (r.lowest, r.newest), (
            f"docs/versions.md must have the row | `{r.package}` | {r.lowest} | {r.newest} |"
        )
        if r.package in CORE:
            assert f"{r.package} {r.lowest} – {r.newest}" in readme, f"README: {r.package} range"
    assert "versions.md" in (ROOT / "mkdocs.yml").read_text()


# ----------------------------------------------------------------------------- doctor


def fake_versions(monkeypatch: pytest.MonkeyPatch, **changed: str | None) -> None:
    """Every tested package at its newest tested release, except ``changed`` (``_`` for ``-``)."""
    installed: dict[str, str | None] = {r.package: r.newest for r in TESTED}
    installed["fastapi"] = "0.150.0"
    installed.update({k.replace("_", "-"): v for k, v in changed.items()})
    monkeypatch.setattr(versions, "installed_version", lambda package: installed.get(package))


def test_pyarrow_15_with_numpy_2_is_named_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, pyarrow="15.0.2", numpy="2.4.6")
    result = check_versions()
    assert result.status == "FAIL"
    assert "pyarrow 15.0.2 with numpy 2.4.6: pyarrow older than 16 was built for NumPy 1.x" in result.detail
    assert result.fix == "pip install 'pyarrow>=16'"
    assert [p.fatal for p in version_problems() if p.package == "pyarrow"] == [True]


def test_an_old_polars_is_named_with_its_version_and_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, polars="1.0.0")
    result = check_versions()
    assert result.line() == (
        "FAIL  versions            polars 1.0.0 is older than the oldest tested, 1.34.0 (1.34 adds "
        "LazyFrame.collect_batches (LazyFrame loads in bounded memory); older releases fail the "
        "suite: 1.0 to 1.2 hold the GIL while reading s3:// Parquet metadata, 1.3 panics on Object "
        "columns, empty frames and S3 prefixes, 1.20 fails the Parquet round-trip property test) "
        "-- fix: pip install 'polars>=1.34.0'"
    )


def test_missing_required_package_fails_but_a_missing_extra_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, duckdb=None, pandas=None)
    problems = version_problems()
    assert [(p.package, p.installed, p.fix, p.fatal) for p in problems] == [
        ("duckdb", None, "pip install 'duckdb>=1.5.0'", True)
    ]


def test_an_old_optional_pandas_fails_the_doctor_but_not_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, pandas="1.5.3")
    assert check_versions().status == "FAIL"
    assert "pandas 1.5.3 is older than the oldest tested, 2.0.0 for the [pandas] extra" in check_versions().detail
    versions.require_supported_versions()  # does not raise: pandas is optional


def test_prefect_38_with_a_new_fastapi_is_a_known_bad_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, prefect="3.8.0", fastapi="0.151.0")
    (problem,) = version_problems()
    assert problem.line() == (
        "prefect 3.8.0 with fastapi 0.151.0: Prefect 3.8 cannot start its server with FastAPI 0.151 "
        "or newer (Body() got an unexpected keyword argument 'min_items') -- fix: pip install 'fastapi<0.151'"
    )
    assert not problem.fatal


def test_newer_than_tested_is_a_note_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_versions(monkeypatch, polars="9.0.0")
    assert check_versions().status == "ok"
    assert versions.newer_than_tested() == [
        "polars 9.0.0 is newer than the newest tested, 2.1.0; if something misbehaves, "
        "pip install 'polars==2.1.0' and report it"
    ]


def test_doctor_lists_a_bad_environment_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.fixtures.smtp import free_port

    fake_versions(monkeypatch, pyarrow="14.0.0", numpy="2.0.0", polars="9.0.0")
    out = io.StringIO()
    code = run_doctor(api_url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1, folder=tmp_path, out=out)
    lines = out.getvalue().splitlines()
    assert code == 1
    assert lines[0] == (
        "FAIL  versions            pyarrow 14.0.0 with numpy 2.0.0: pyarrow older than 16 was built for "
        "NumPy 1.x and fails at import under NumPy 2 -- fix: pip install 'pyarrow>=16'"
    )
    assert "note  polars 9.0.0 is newer than the newest tested, 2.1.0" in lines[-2]


def test_the_doctor_says_nothing_about_versions_in_this_environment() -> None:
    assert check_versions().status == "ok", check_versions().line()


# ----------------------------------------------------------------------------- import


def test_import_with_pyarrow_15_and_numpy_2_names_the_fix_before_importing_pyarrow(tmp_path: Path) -> None:
    """A real interpreter whose metadata says pyarrow 15.0.2 (fake dist-info first on sys.path)."""
    info = tmp_path / "pyarrow-15.0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyarrow\nVersion: 15.0.2\n")
    numpy_info = tmp_path / "numpy-2.1.0.dist-info"
    numpy_info.mkdir()
    (numpy_info / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 2.1.0\n")
    code = (
        "import sys\n"
        "try:\n"
        "    import prefect_etl_blocks\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, 'pyarrow' in sys.modules, 'numpy' in sys.modules)\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "UnsupportedVersionsError False False",
        "prefect-etl-blocks cannot run with the installed versions:",
        "  - pyarrow 15.0.2 with numpy 2.1.0: pyarrow older than 16 was built for NumPy 1.x and fails "
        "at import under NumPy 2 -- fix: pip install 'pyarrow>=16'",
        "The tested range of every dependency is in docs/versions.md "
        "(https://prefect-etl-blocks.readthedocs.io/en/latest/versions/).",
    ]
    assert issubclass(UnsupportedVersionsError, ImportError) and issubclass(UnsupportedVersionsError, DataError)


# ----------------------------------------------------------------------------- compat fallbacks


@pytest.mark.parametrize("streaming", [True, False], ids=["collect_batches", "collect-and-slice"])
def test_collect_batches_gives_every_row_once_in_bounded_slices(
    monkeypatch: pytest.MonkeyPatch, streaming: bool
) -> None:
    if streaming and not compat.HAS_COLLECT_BATCHES:
        streaming = False  # this Polars (< 1.34) has only the fallback: run it
    monkeypatch.setattr(compat, "HAS_COLLECT_BATCHES", streaming)
    frame = pl.LazyFrame({"id": range(10_007)}).with_columns(double=pl.col("id") * 2)
    batches = list(compat.collect_batches(frame, 1_000))
    assert all(0 < b.height <= 1_000 for b in batches)
    assert pl.concat(batches).equals(frame.collect())
    assert sum(b.height for b in compat.collect_batches(frame.filter(pl.col("id") < 0), 1_000)) == 0


def test_dtype_stand_ins_match_no_real_dtype() -> None:
    stand_in = compat._polars_dtype("NoSuchDtype")
    assert stand_in not in (pl.Int64, pl.Float32, pl.String, pl.Datetime("us"))
    assert pl.Float32 not in (stand_in,) and not (pl.Int64 == stand_in)
    assert compat.Int128 is getattr(pl, "Int128", compat.Int128)
