"""Prefect's private API, imported here and nowhere else.

Checked against Prefect 3.8.0 (the lowest supported release) and 3.9.1: both ship
``prefect._internal.compatibility.async_dispatch.async_dispatch``, the sync/async dispatch that
Prefect's own collections (prefect-aws, prefect-sqlalchemy) use, so a block method called from a
``async def`` flow returns a coroutine and from sync code runs to completion. A Prefect release
that moves it breaks this one line; ``tests/test_architecture.py`` keeps every other module off
``prefect._internal``.
"""

from __future__ import annotations

from prefect._internal.compatibility.async_dispatch import async_dispatch

__all__ = ["async_dispatch"]
