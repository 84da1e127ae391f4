"""Extensions offline: built-ins load without the network, pip wheels are found for the running
DuckDB version only, and every failure names the pip package to install. The install from the
real 1.5.5 wheels runs in the DuckLake venv (marked ``ducklake``)."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from prefect_etl_blocks.compat import DUCKDB_VERSION, duckdb_version_tag, query_polars
from prefect_etl_blocks.errors import DataError, ExtensionLoadError
from prefect_etl_blocks.extensions import (
    canonical_name,
    find_wheel_extension,
    load_extension,
    pip_package,
)


def fake_wheel(root, package: str, tag: str, name: str, content: bytes = b"not an extension") -> str:
    """A folder laid out like the ``duckdb-extension-*`` wheels, with ``content`` as the binary."""
    folder = root / package / "extensions" / tag
    folder.mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    path = folder / f"{name}.duckdb_extension"
    path.write_bytes(content)
    return str(path)


def test_a_built_in_extension_loads_without_the_network() -> None:
    con = duckdb.connect()
    assert load_extension(con, "json", allow_network=False) == "loaded"
    assert con.execute("SELECT json_extract('{\"a\": 1}', '$.a')::INT").fetchall() == [(1,)]


@pytest.mark.parametrize("name", ["json; DROP TABLE x", "../evil", "", "a b"])
def test_names_that_are_not_plain_are_refused(name: str) -> None:
    with pytest.raises(ExtensionLoadError, match="is not valid"):
        load_extension(duckdb.connect(), name, allow_network=False)


def test_a_missing_extension_names_the_pip_package_and_the_version(tmp_path) -> None:
    con = duckdb.connect(config={"extension_directory": str(tmp_path / "ext")})
    version = duckdb.__version__
    with pytest.raises(ExtensionLoadError) as caught:
        load_extension(con, "mysql", allow_network=False)
    message = str(caught.value)
    assert f"DuckDB extension 'mysql' could not be loaded on DuckDB {version}." in message
    assert f"pip install 'duckdb-extension-mysql-scanner=={version}'" in message
    assert "The network was not tried." in message
    assert isinstance(caught.value, DataError)


def test_pip_package_and_canonical_names() -> None:
    assert pip_package("postgres", "v1.5.5") == "duckdb-extension-postgres-scanner==1.5.5"
    assert pip_package("ducklake") == "duckdb-extension-ducklake"
    assert canonical_name("postgres", duckdb.connect()) == "postgres_scanner"
    assert canonical_name("s3") == "httpfs"


def test_a_wheel_is_found_for_the_running_version_only(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = duckdb_version_tag(duckdb.connect())
    mine = fake_wheel(tmp_path, "duckdb_extension_petlfake", tag, "petlfake")
    fake_wheel(tmp_path, "duckdb_extension_petlold", "v0.9.0", "petlold")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_wheel_extension("petlfake", tag)
    assert found is not None and str(found.path) == mine and found.package == "duckdb_extension_petlfake"
    assert find_wheel_extension("petlold", tag) is None
    assert find_wheel_extension("petlabsent", tag) is None


def test_a_broken_wheel_file_is_reported_with_its_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect(config={"extension_directory": str(tmp_path / "ext")})
    path = fake_wheel(tmp_path / "site", "duckdb_extension_petlbroken", duckdb_version_tag(con), "petlbroken")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ExtensionLoadError) as caught:
        load_extension(con, "petlbroken", allow_network=False)
    message = str(caught.value)
    assert repr(path) in message and "'duckdb_extension_petlbroken' did not load" in message


def test_compat_helpers_agree_with_the_running_duckdb() -> None:
    con = duckdb.connect()
    assert duckdb_version_tag(con) == "v" + duckdb.__version__
    assert DUCKDB_VERSION[:2] == tuple(int(p) for p in duckdb.__version__.split(".")[:2])
    frame = query_polars(con, "SELECT ?::INTEGER AS answer", [42])
    assert frame.equals(pl.DataFrame({"answer": [42]}, schema={"answer": pl.Int32}))


@pytest.mark.ducklake
@pytest.mark.parametrize("name", ["ducklake", "postgres", "httpfs"])
def test_the_real_wheels_install_offline_into_a_fresh_extension_directory(tmp_path, name: str) -> None:
    directory = tmp_path / "ext"
    con = duckdb.connect(config={"extension_directory": str(directory)})
    assert load_extension(con, name, allow_network=False) == "wheel"
    canonical = canonical_name(name, con)
    installed = list(directory.rglob(f"{canonical}.duckdb_extension"))
    assert len(installed) == 1
    assert con.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [canonical]
    ).fetchall() == [(True,)]
    # A second connection finds it installed and loads it from disk.
    again = duckdb.connect(config={"extension_directory": str(directory)})
    assert load_extension(again, name, allow_network=False) == "loaded"
