"""One Prefect test harness per session, with its own PREFECT_HOME, and sample data."""

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from prefect_etl_blocks.sales import write_sample_sales  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

        ensure_limits()
        yield


def write_sales(folder, files: int = 3, rows: int = 2000, seed: int = 7) -> None:
    """Sample sales Parquet files, from the same generator as the ``sample_data`` module."""
    write_sample_sales(folder, rows=rows, files=files, seed=seed)


{%- if cookiecutter.warehouse == "ducklake" %}


@pytest.fixture(autouse=True)
def lake(tmp_path):
    """A fresh local DuckLake (a DuckDB metadata file and a data folder), saved under the block
    name the flow loads. Production uses a PostgreSQL catalog and S3: only the block changes."""
    from prefect_etl_blocks import DuckLakeConnection
    from prefect_etl_blocks.ducklake import close_instances

    from {{ cookiecutter.module_name }}.settings import DUCKLAKE_BLOCK

    block = DuckLakeConnection(catalog=str(tmp_path / "catalog.ducklake"), data_path=str(tmp_path / "lake"))
    block.save(DUCKLAKE_BLOCK, overwrite=True)
    yield block
    close_instances()
{%- endif %}


@pytest.fixture
def sales_dir(tmp_path):
    write_sales(tmp_path / "sales")
    return tmp_path / "sales"
