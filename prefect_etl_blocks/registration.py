"""``petl register``: register this package's block types with the configured Prefect API.

Unlike a bare ``Block.register_type_and_schema()``, it refuses to run without an API URL
(Prefect would otherwise start a throw-away ephemeral server and register the blocks there,
where nobody sees them) and checks the API answers within ``timeout_seconds`` instead of
hanging on an unreachable address. Sync only: it is a command-line step.
"""

from __future__ import annotations

import sys
from typing import TextIO

from prefect.blocks.core import Block


def block_classes() -> list[type[Block]]:
    """Every block class this package exports, plus block types their fields refer to."""
    import prefect_etl_blocks

    found: list[type[Block]] = []
    for name in prefect_etl_blocks.__all__:
        obj = getattr(prefect_etl_blocks, name)
        if isinstance(obj, type) and issubclass(obj, Block):
            for field in obj.model_fields.values():
                for nested in _nested_blocks(field.annotation):
                    if nested not in found:
                        found.append(nested)
            if obj not in found:
                found.append(obj)
    return found


def _nested_blocks(annotation: object) -> list[type[Block]]:
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return [annotation]
    nested: list[type[Block]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        nested += _nested_blocks(arg)
    return nested


def register_blocks(timeout_seconds: float = 15.0, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Register every block type with the API in ``PREFECT_API_URL``; returns an exit code.

    Prints one line per block type registered. Returns 1, with a message saying what to do,
    when no API is configured or the API does not answer within ``timeout_seconds``.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_API_URL, temporary_settings

    out = out or sys.stdout
    err = err or sys.stderr
    url = PREFECT_API_URL.value()
    if not url:
        print(
            "petl register: no Prefect API configured (PREFECT_API_URL is not set), so there is no "
            "server to register the blocks with. Start one (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or select a Prefect Cloud profile.",
            file=err,
        )
        return 1
    with temporary_settings(updates={PREFECT_API_REQUEST_TIMEOUT: timeout_seconds}):
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
        if problem is not None:
            print(
                f"petl register: the Prefect API at {url} did not answer within {timeout_seconds:g} s "
                f"({type(problem).__name__}: {problem}). Check that the server is running and "
                "PREFECT_API_URL is right.",
                file=err,
            )
            return 1
        classes = block_classes()
        for cls in classes:
            cls.register_type_and_schema()
            print(f"registered {cls.get_block_type_slug():24} {cls.get_block_type_name()}", file=out)
    print(f"{len(classes)} block types registered with {url}", file=out)
    return 0
