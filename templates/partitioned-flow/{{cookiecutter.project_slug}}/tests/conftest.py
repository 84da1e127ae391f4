"""One Prefect test harness per session, with its own PREFECT_HOME, and sample data."""

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("PREFECT_API_URL", None)

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

        ensure_limits()
        yield


def write_sales(folder, files: int = 3, rows: int = 2000, seed: int = 7) -> None:
    """Sample sales Parquet files: category, value (some negative), quantity."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(files):
        pl.DataFrame(
            {
                "category": rng.choice(["books", "games", "toys"], rows),
                "value": np.round(rng.normal(20, 15, rows), 2),
                "quantity": rng.integers(1, 5, rows),
            }
        ).write_parquet(folder / f"part-{i}.parquet")


@pytest.fixture
def sales_dir(tmp_path):
    write_sales(tmp_path / "sales")
    return tmp_path / "sales"
