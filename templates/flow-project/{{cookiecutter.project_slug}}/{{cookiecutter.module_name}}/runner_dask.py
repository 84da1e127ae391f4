"""The partitioned flow's task runner: Dask, on the cluster at DASK_ADDRESS or a local one of MAX_WORKERS workers."""

from prefect_dask import DaskTaskRunner

# Workers of the local cluster (one task per Parquet file each, at a time).
MAX_WORKERS = {{ cookiecutter.max_workers | int }}
# An existing Dask scheduler (tcp://host:8786); empty: start a local cluster.
DASK_ADDRESS = {{ cookiecutter.dask_address | pyrepr }}


def task_runner() -> DaskTaskRunner:
    """An existing cluster when DASK_ADDRESS is set, else a local one."""
    if DASK_ADDRESS:
        return DaskTaskRunner(address=DASK_ADDRESS)
{%- if cookiecutter.warehouse == "ducklake" %}
    # Worker processes: each loads its own partitions straight into the lake, in parallel.
    return DaskTaskRunner(cluster_kwargs={"n_workers": MAX_WORKERS, "threads_per_worker": 1, "processes": True})
{%- else %}
    # Threads in one process: the partial sums come back to the flow, which writes once.
    return DaskTaskRunner(cluster_kwargs={"n_workers": MAX_WORKERS, "threads_per_worker": 1, "processes": False})
{%- endif %}
