"""The Prefect UI of a real server, in headless Chromium (Debian's package): our block types are
in the blocks catalog and their create forms show our fields. Screenshots are kept in
``test-artifacts/``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.prefect_server import PrefectServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("prefect_server"), pytest.mark.timeout(300)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FORMS = {
    "duckdb-connection": ["DuckDB Connection", "Database", "Read Only", "Lock Timeout Seconds", "Init Sql"],
    "parquet-source": ["Parquet Source", "Path", "Hive Partitioning", "Expected Schema"],
    "email-notifier": ["Email Notifier", "Smtp Server", "Password", "Ca Bundle Path"],
    "s3-result-storage": ["S3 Result Storage", "Bucket Name", "Bucket Folder"],
}


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make chromium` (apt-get install chromium).")
    return path


def browse(url: str, tmp_path: Path, *, screenshot: Path | None = None) -> str:
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1800", "--virtual-time-budget=20000",
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    result = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def registered(prefect_server: PrefectServer) -> PrefectServer:
    result = subprocess.run([sys.executable, "-m", "prefect_etl_blocks.cli", "register"], env=prefect_server.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return prefect_server


def test_blocks_catalog_lists_our_block_types(registered: PrefectServer, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "ui-blocks-catalog.png"
    png.unlink(missing_ok=True)
    browse(f"{registered.ui_url}/blocks/catalog", tmp_path, screenshot=png)
    assert png.exists() and png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = browse(f"{registered.ui_url}/blocks/catalog", tmp_path)
    for title in ("DuckDB Connection", "Parquet Source", "S3 Result Storage", "Email Notifier"):
        assert title in dom, f"{title} missing from the blocks catalog page"


@pytest.mark.parametrize("slug", sorted(FORMS))
def test_create_form_shows_our_fields(registered: PrefectServer, tmp_path: Path, slug: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"{registered.ui_url}/blocks/catalog/{slug}/create"
    browse(url, tmp_path, screenshot=ARTIFACTS / f"ui-form-{slug}.png")
    dom = browse(url, tmp_path)
    missing = [text for text in FORMS[slug] if text not in dom]
    assert not missing, f"{missing} not on the {slug} create form"
