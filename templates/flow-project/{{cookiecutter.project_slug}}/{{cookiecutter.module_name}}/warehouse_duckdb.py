"""Where the tables live: one DuckDB file. DuckDB takes one writer at a time.

Every write holds the global concurrency limit ``WRITE_LIMIT_NAME`` (see setup_limits.py): at
most ``MAX_CONCURRENT_WRITES`` runs write at once, the others queue. ``strict=True``: a missing
limit is an error, never a silently unprotected write.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.concurrency.sync import concurrency
from prefect_etl_blocks import DuckDBConnection

from {{ cookiecutter.module_name }}.settings import DUCKDB_PATH, MAX_CONCURRENT_WRITES, STRICT_WRITE_LIMIT, WRITE_LIMIT_NAME

Warehouse = DuckDBConnection
# The flow's default ``database`` parameter.
TARGET = DUCKDB_PATH


def connect(database: str) -> DuckDBConnection:
    """The DuckDB file ``database`` (created on first write)."""
    return DuckDBConnection(database=database)


@contextmanager
def write_slot() -> Iterator[None]:
    """Hold one of the MAX_CONCURRENT_WRITES write slots while the body writes."""
    with concurrency(WRITE_LIMIT_NAME, occupy=1, strict=STRICT_WRITE_LIMIT):
        yield
    print(f"Write limit {WRITE_LIMIT_NAME}: {MAX_CONCURRENT_WRITES} at once")
