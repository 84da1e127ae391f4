"""One Prefect test harness per session, with its own PREFECT_HOME, and sample data.

Several generated projects tested by one pytest run (a monorepo) share one harness: the first
project's starts it, and the others see PREFECT_ETL_TEST_HARNESS and use it.
"""

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
{%- if cookiecutter.result_storage == "s3" %}

from {{ cookiecutter.module_name }} import settings  # noqa: E402

# Task results go to a local folder in the tests (saved in ``harness``); flow runs elsewhere
# use the S3 block of settings.RESULT_STORAGE_BLOCK. Set before the flow module is imported.
TEST_RESULTS_BLOCK = settings.RESULT_STORAGE_BLOCK.split("/", 1)[1] + "-tests"
settings.TASK_OPTIONS["result_storage"] = f"local-file-system/{TEST_RESULTS_BLOCK}"
{%- endif %}


def _prepare_server() -> None:
    from {{ cookiecutter.module_name }}.setup_limits import ensure_limits

    ensure_limits()
{%- if cookiecutter.result_storage == "s3" %}
    from prefect.filesystems import LocalFileSystem

    LocalFileSystem(basepath=tempfile.mkdtemp(prefix="results-")).save(TEST_RESULTS_BLOCK, overwrite=True)
{%- endif %}


@pytest.fixture(scope="session", autouse=True)
def harness():
    if os.environ.get("PREFECT_ETL_TEST_HARNESS"):  # another project of this pytest run started it
        _prepare_server()
        yield
        return
    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_ETL_TEST_HARNESS"] = "1"
        try:
            _prepare_server()
            yield
        finally:
            del os.environ["PREFECT_ETL_TEST_HARNESS"]


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
    write_sample_sales(tmp_path / "sales", rows=2000, files=3, seed=7)
    return tmp_path / "sales"
