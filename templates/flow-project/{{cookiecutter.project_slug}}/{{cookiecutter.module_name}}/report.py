"""The flow run's load report: one markdown artifact with what every load did (in a dry run: would have done)."""

from prefect.artifacts import create_markdown_artifact
from prefect_etl_blocks import LoadResult

from {{ cookiecutter.module_name }}.settings import FLOW_NAME

DRY_RUN_KEY = f"{FLOW_NAME}-dry-run"
LOADS_KEY = f"{FLOW_NAME}-loads"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def loads_markdown(results: list[LoadResult], dry_run: bool = False) -> str:
    """One table row per load: inserted, updated, deleted, schema changes and checks."""
    title = "Dry run: every load ran in full, then nothing was kept" if dry_run else "Loads"
    lines = [
        f"# {title}",
        "",
        "| table | mode | inserted | updated | deleted | schema changes | checks |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for result in results:
        changes = "; ".join(result.schema_changes) or ("table created" if result.created else "none")
        checks = ", ".join(
            f"{check.name}: {'passed' if check.passed else f'{check.failing} failing'}" for check in result.checks
        )
        lines.append(
            f"| `{_cell(result.table)}` | {result.mode} | {result.inserted} | {result.updated} | {result.deleted} "
            f"| {_cell(changes)} | {_cell(checks or 'none')} |"
        )
    return "\n".join(lines) + "\n"


def publish_loads(results: list[LoadResult], dry_run: bool = False) -> None:
    """Publish the report as the artifact DRY_RUN_KEY (a dry run) or LOADS_KEY."""
    create_markdown_artifact(
        key=DRY_RUN_KEY if dry_run else LOADS_KEY,
        markdown=loads_markdown(results, dry_run),
        description=f"{len(results)} load(s)" + (", dry run: nothing kept" if dry_run else ""),
    )
