"""``prefect-etl register``: register this package's block types with the configured Prefect API.

Two things differ from ``prefect block register -m prefect_etl_blocks``:

* With no ``PREFECT_API_URL`` Prefect's command starts a temporary ephemeral server, registers
  the blocks in the SQLite file under ``PREFECT_HOME`` and exits 0, so the blocks never reach the
  server the team uses. ``prefect-etl register`` refuses instead and says what to set.
* An address that does not answer fails within ``timeout_seconds``. Prefect's client retries a
  timed-out request five times with backoff (a socket that accepts and never replies took 86 s
  at ``--timeout 3``), so the reachability check runs without retries, in a thread with a hard
  deadline.

Sync only: it is a command-line step.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO, TypeVar, get_args

from prefect.blocks.core import Block

T = TypeVar("T")


def block_classes() -> list[type[Block]]:
    """Every block class this package exports, after the block types their fields refer to.

    Nested block types (``AwsCredentials`` in ``ParquetSource.aws_credentials``, and so on,
    at any depth) come before the blocks that use them, in the order Prefect registers them.
    """
    from prefect_etl_blocks.tools.collection import BLOCK_CLASSES

    found: list[type[Block]] = []
    for cls in BLOCK_CLASSES:
        _add_with_nested(cls, found)
    return found


def _add_with_nested(cls: type[Block], found: list[type[Block]]) -> None:
    if cls in found:
        return
    for field in cls.model_fields.values():
        for nested in _blocks_in(field.annotation):
            _add_with_nested(nested, found)
    if cls not in found:
        found.append(cls)


def _blocks_in(annotation: object) -> list[type[Block]]:
    """Block classes in a field annotation (``Optional[X]``, ``X | Y``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return [annotation]
    nested: list[type[Block]] = []
    for arg in get_args(annotation):
        nested += _blocks_in(arg)
    return nested


def call_with_deadline(
    call: Callable[[], T], timeout_seconds: float, api_url: str | None = None
) -> T:
    """Run ``call()`` against the Prefect API with a hard deadline; return or raise its outcome.

    Inside ``call`` the Prefect client times out each request after ``timeout_seconds`` and never
    retries, and ``PREFECT_API_URL`` is ``api_url`` when given. The whole call gets
    ``timeout_seconds + 1`` seconds, then :class:`TimeoutError` is raised.

    Example:
        ```python
        from prefect_etl_blocks.tools.registration import call_with_deadline

        assert call_with_deadline(lambda: 42, timeout_seconds=1) == 42
        ```
    """
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        updates: dict[Any, Any] = {
            PREFECT_API_REQUEST_TIMEOUT: timeout_seconds,
            PREFECT_CLIENT_MAX_RETRIES: 0,
        }
        if api_url:
            updates[PREFECT_API_URL] = api_url
        try:
            with temporary_settings(updates=updates):
                outcome.append((True, call()))
        except Exception as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    # A daemon thread: a server that trickles bytes never trips httpx's per-read timeout,
    # but cannot keep the command past the deadline either.
    thread = threading.Thread(target=run, name="prefect-etl-api-call", daemon=True)
    thread.start()
    thread.join(timeout_seconds + 1.0)
    if not outcome:
        raise TimeoutError(f"no answer after {timeout_seconds:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _api_problem(timeout_seconds: float, api_url: str | None = None) -> BaseException | None:
    """``None`` when the API answers its health check within ``timeout_seconds``."""
    from prefect.client.orchestration import get_client

    def health() -> BaseException | None:
        with get_client(sync_client=True) as client:
            return client.api_healthcheck()

    try:
        return call_with_deadline(health, timeout_seconds, api_url)
    except Exception as exc:  # reported to the user as the reason
        return exc


def register_blocks(timeout_seconds: float = 15.0, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Register every block type with the API in ``PREFECT_API_URL``; returns an exit code.

    Prints one line per block type registered (slug and display name), nested block types
    included. Returns 1, with a message saying what to do, when no API is configured, the API
    does not answer within ``timeout_seconds``, or the API refuses a registration.

    Example:
        ```bash
        export PREFECT_API_URL=http://127.0.0.1:4200/api
        prefect-etl register --timeout 10
        ```
    """
    from prefect.settings import PREFECT_API_URL

    out = out or sys.stdout
    err = err or sys.stderr
    url = PREFECT_API_URL.value()
    if not url:
        print(
            "prefect-etl register: no Prefect API configured (PREFECT_API_URL is not set), so there is no "
            "server to register the blocks with. Start one (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or select a Prefect Cloud profile "
            "(`prefect profile use ...`).",
            file=err,
        )
        return 1
    problem = _api_problem(timeout_seconds)
    if problem is not None:
        print(
            f"prefect-etl register: the Prefect API at {url} did not answer within {timeout_seconds:g} s "
            f"({type(problem).__name__}: {problem}). Check that the server is running and "
            "PREFECT_API_URL is right, or allow longer with --timeout.",
            file=err,
        )
        return 1
    classes = block_classes()
    for cls in classes:
        slug = cls.get_block_type_slug()
        try:
            cls.register_type_and_schema()
        except Exception as exc:  # e.g. 401/403 from Prefect Cloud, 5xx from the server
            print(
                f"prefect-etl register: the Prefect API at {url} refused block type {slug!r} "
                f"({type(exc).__name__}: {exc}). Check the API key / permissions and the server log.",
                file=err,
            )
            return 1
        print(f"registered {slug:24} {cls.get_block_type_name()}", file=out)
    print(f"{len(classes)} block types registered with {url}", file=out)
    return 0
