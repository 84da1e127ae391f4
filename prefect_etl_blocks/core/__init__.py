"""The core: identifiers, filters, checks and the load engine over plain DuckDB connections.

It imports neither Prefect nor anything above it (tests/test_architecture.py); sources come in
through the small protocol in :mod:`prefect_etl_blocks.core.loading.staging`.
"""
