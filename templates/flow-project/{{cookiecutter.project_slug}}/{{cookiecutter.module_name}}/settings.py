"""Settings chosen when the project was generated; change them here (and in prefect.yaml)."""

from datetime import timedelta

from prefect.tasks import exponential_backoff
from prefect_etl_blocks.tasks import retry_transient

FLOW_NAME = {{ cookiecutter.flow_name | pyrepr }}
SOURCE_PATH = {{ cookiecutter.source_path | pyrepr }}
TARGET_TABLE = {{ cookiecutter.target_table | pyrepr }}
{%- if cookiecutter.warehouse == "ducklake" %}
# The saved DuckLakeConnection block the flow loads into (catalog, data path, credentials).
DUCKLAKE_BLOCK = {{ cookiecutter.ducklake_block | pyrepr }}
{%- else %}
DUCKDB_PATH = {{ cookiecutter.duckdb_path | pyrepr }}
{%- endif %}
CACHE_EXPIRATION = timedelta(hours={{ cookiecutter.cache_expiration_hours | int }})
RETRIES = {{ cookiecutter.retries | int }}
RETRY_DELAY_SECONDS = {{ cookiecutter.retry_delay_seconds | int }}
# One attempt of one task; every retry of a task fits inside the flow's timeout (checked when
# the project was generated: TASK_TIMEOUT_SECONDS x (RETRIES + 1) + delays <= FLOW_TIMEOUT_SECONDS).
TASK_TIMEOUT_SECONDS = {{ cookiecutter.task_timeout_seconds | int }}
FLOW_TIMEOUT_SECONDS = {{ cookiecutter.flow_timeout_seconds | int }}
{%- if cookiecutter.result_storage == "s3" %}
# The saved S3ResultStorage block task results go to (see storage.py).
RESULT_STORAGE_BLOCK = {{ ("s3-result-storage/" ~ cookiecutter.project_slug ~ "-results") | pyrepr }}
{%- endif %}
# Options shared by every task: retries only for failures a retry can fix (a lock held by
# another writer, a network blip); bad data or a missing column fails at once.
TASK_OPTIONS = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_DELAY_SECONDS) if RETRY_DELAY_SECONDS else 0,
    "retry_jitter_factor": 0.2 if RETRY_DELAY_SECONDS else None,
    "retry_condition_fn": retry_transient,
    "timeout_seconds": TASK_TIMEOUT_SECONDS,
    "persist_result": True,
    "result_serializer": "polars-parquet",
{%- if cookiecutter.result_storage == "s3" %}
    "result_storage": RESULT_STORAGE_BLOCK,
{%- endif %}
}
# Global concurrency limit held around every DuckDB write (see setup_limits.py).
WRITE_LIMIT_NAME = {{ (cookiecutter.project_slug ~ "-duckdb-writes") | pyrepr }}
MAX_CONCURRENT_WRITES = {{ cookiecutter.max_concurrent_writes | int }}
# strict=True: a missing limit is an error, never a silently unprotected write.
STRICT_WRITE_LIMIT = True
# The deployment in prefect.yaml.
DEPLOYMENT_NAME = f"{FLOW_NAME}-scheduled"
