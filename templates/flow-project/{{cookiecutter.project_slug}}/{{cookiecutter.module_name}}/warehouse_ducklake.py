"""Where the tables live: a DuckLake, the saved DuckLakeConnection block (catalog, data path, credentials).

A DuckLake takes many writers at once (each load is one commit; conflicts are retried), so no
global write limit is held: ``write_slot`` holds nothing.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect_etl_blocks import DuckLakeConnection

from {{ cookiecutter.module_name }}.settings import DUCKLAKE_BLOCK

Warehouse = DuckLakeConnection
# The flow's default ``lake_block`` parameter.
TARGET = DUCKLAKE_BLOCK


def connect(lake_block: str) -> DuckLakeConnection:
    """The lake of the saved block ``lake_block``."""
    return DuckLakeConnection.load(lake_block)


@contextmanager
def write_slot() -> Iterator[None]:
    """Nothing to hold: the lake takes many writers at once."""
    yield
