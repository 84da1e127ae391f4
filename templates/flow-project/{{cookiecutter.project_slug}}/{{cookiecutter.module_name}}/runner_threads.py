"""The partitioned flow's task runner: MAX_WORKERS threads in the flow's process."""

from prefect.task_runners import ThreadPoolTaskRunner

# Tasks of the flow run at once (one per Parquet file).
MAX_WORKERS = {{ cookiecutter.max_workers | int }}


def task_runner() -> ThreadPoolTaskRunner:
    """A thread pool of MAX_WORKERS threads."""
    return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
