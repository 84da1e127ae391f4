"""Create (or resize) the global concurrency limit around DuckDB writes.

    python -m {{ cookiecutter.module_name }}.setup_limits

Run it once per Prefect server (and again after changing MAX_CONCURRENT_WRITES). It is
idempotent. The flow uses ``strict=True``, so without this limit a run fails loudly instead of
writing without protection.
"""

from prefect.client.orchestration import get_client

from {{ cookiecutter.module_name }}.settings import MAX_CONCURRENT_WRITES, WRITE_LIMIT_NAME


def ensure_limits() -> None:
    """Create or update the write limit on the configured Prefect API."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(WRITE_LIMIT_NAME, MAX_CONCURRENT_WRITES)
    print(f"global concurrency limit {WRITE_LIMIT_NAME!r} = {MAX_CONCURRENT_WRITES}")


if __name__ == "__main__":
    ensure_limits()
