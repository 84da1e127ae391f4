"""Shared fixtures: one Prefect test harness per session, real servers on loopback.

Every test run gets its own ``PREFECT_HOME`` (a temporary folder, one per xdist worker), so
parallel runs never lock the same SQLite file. Fixtures for the real servers live in
``tests/fixtures/`` (one module per server) and are loaded here with ``pytest_plugins``.
"""

from __future__ import annotations

import os
import tempfile

# Set before prefect is imported anywhere: settings are read from the environment.
_PREFECT_HOME = tempfile.mkdtemp(prefix="petl-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

import pytest  # noqa: E402

pytest_plugins = [
    "tests.fixtures.prefect_harness",
    "tests.fixtures.s3",
    "tests.fixtures.data",
    "tests.fixtures.smtp",
    "tests.fixtures.prefect_server",
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.lock_shim",
]


@pytest.fixture(scope="session")
def prefect_home() -> str:
    """The ``PREFECT_HOME`` of this test process (a fresh temporary folder)."""
    return _PREFECT_HOME
