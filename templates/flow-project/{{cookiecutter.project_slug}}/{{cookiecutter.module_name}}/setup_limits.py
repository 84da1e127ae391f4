"""Create (or resize) the global concurrency limit around DuckDB writes.

    python -m {{ cookiecutter.module_name }}.setup_limits

Run it once per Prefect server (and again after changing MAX_CONCURRENT_WRITES). It is
idempotent. The flow uses ``strict=True``, so without this limit a run fails loudly instead of
writing without protection.

It refuses to run without ``PREFECT_API_URL``: Prefect would start a temporary server for this
one command, and the limit would be gone with it.
"""

import sys

from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

from {{ cookiecutter.module_name }}.settings import MAX_CONCURRENT_WRITES, WRITE_LIMIT_NAME


def ensure_limits() -> None:
    """Create or update the write limit on the configured Prefect API."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(WRITE_LIMIT_NAME, MAX_CONCURRENT_WRITES)
    print(f"global concurrency limit {WRITE_LIMIT_NAME!r} = {MAX_CONCURRENT_WRITES}")


NO_SERVER = """setup_limits: PREFECT_API_URL is not set, so the limit would be created on a temporary
server that is gone when this command ends; your flow runs would never see it. Point Prefect at
the server your flows and workers use, then run this again:
  prefect server start                                           # in another terminal, if you have no server
  prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api   # or your server's URL (or: prefect cloud login)"""


def main() -> int:
    """``python -m {{ cookiecutter.module_name }}.setup_limits``: refuse without a Prefect server."""
    if not get_current_settings().api.url:
        print(NO_SERVER, file=sys.stderr)
        return 1
    ensure_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
