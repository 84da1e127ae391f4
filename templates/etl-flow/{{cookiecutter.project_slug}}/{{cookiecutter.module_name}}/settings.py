"""Settings chosen when the project was generated; change them here (and in prefect.yaml)."""

from datetime import timedelta

FLOW_NAME = {{ cookiecutter.flow_name | pyrepr }}
SOURCE_PATH = {{ cookiecutter.source_path | pyrepr }}
TARGET_TABLE = {{ cookiecutter.target_table | pyrepr }}
DUCKDB_PATH = {{ cookiecutter.duckdb_path | pyrepr }}
CACHE_EXPIRATION = timedelta(hours={{ cookiecutter.cache_expiration_hours | int }})
RETRIES = {{ cookiecutter.retries | int }}
RETRY_DELAY_SECONDS = {{ cookiecutter.retry_delay_seconds | int }}
TIMEOUT_SECONDS = 3600
# Global concurrency limit held around every DuckDB write (see setup_limits.py).
WRITE_LIMIT_NAME = {{ (cookiecutter.project_slug ~ "-duckdb-writes") | pyrepr }}
MAX_CONCURRENT_WRITES = {{ cookiecutter.max_concurrent_writes | int }}
# strict=True: a missing limit is an error, never a silently unprotected write.
STRICT_WRITE_LIMIT = True
{%- if cookiecutter.result_storage == "s3" %}
RESULT_STORAGE_BLOCK = {{ ("s3-result-storage/" ~ cookiecutter.project_slug ~ "-results") | pyrepr }}
{%- endif %}
{%- if cookiecutter.notifications == "email" %}
EMAIL_NOTIFIER_BLOCK = {{ (cookiecutter.project_slug ~ "-email") | pyrepr }}
{%- endif %}
{%- if cookiecutter.__template == "partitioned-flow" %}
TASK_RUNNER = {{ cookiecutter.task_runner | pyrepr }}
MAX_WORKERS = {{ cookiecutter.max_workers | int }}
DASK_ADDRESS = {{ cookiecutter.dask_address | pyrepr }}
{%- endif %}
