"""The doctor's checks of the environment and the Prefect API: versions, API, block types,
serializer, concurrency limits, and what a generated project in the folder asks to check.

Each check returns a :class:`CheckResult`; :mod:`prefect_etl_blocks.tools.doctor` runs them all.
Calls to the API go through :func:`~prefect_etl_blocks.tools.registration.call_with_deadline`:
bounded, never retried.

Example:
    ```python
    from prefect_etl_blocks.tools.doctor_checks import CheckResult

    assert CheckResult("x", "FAIL", "broken", "mend it").line() == "FAIL  x                   broken -- fix: mend it"
    ```
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect_etl_blocks.core.errors import first_line
from prefect_etl_blocks.core.versions import version_problems
from prefect_etl_blocks.tools.registration import _api_problem, block_classes, call_with_deadline

if TYPE_CHECKING:
    from prefect.blocks.core import Block

Status = Literal["ok", "FAIL", "skip"]
DEFAULT_TIMEOUT_SECONDS = 5.0
LIMIT_SUFFIX = "-duckdb-writes"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: status, what was found, and how to fix a failure."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        """One line: ``status  name  detail -- fix: ...``."""
        text = f"{self.status:<4}  {self.name:<18}  {_one_line(self.detail)}"
        if self.fix:
            text += f" -- fix: {_one_line(self.fix)}"
        return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


# ----------------------------------------------------------------------------- versions


def check_versions() -> CheckResult:
    """The installed dependencies against the tested range (docs/versions.md): each one older
    than the oldest tested, at a declared upper bound, or in a known-bad combination (pyarrow
    older than 16 with NumPy 2) is named with its version and what to install."""
    problems = version_problems()
    if not problems:
        return CheckResult("versions", "ok", "every dependency is within the tested range")
    return CheckResult(
        "versions", "FAIL",
        "; ".join(p.detail for p in problems),
        "; ".join(dict.fromkeys(p.fix for p in problems)),
    )


# ----------------------------------------------------------------------------- Prefect API


def check_api(api_url: str | None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> CheckResult:
    """``PREFECT_API_URL`` is set and the API answers its health check within the timeout."""
    name = "Prefect API"
    if not api_url:
        return CheckResult(
            name,
            "FAIL",
            "PREFECT_API_URL is not set, so every flow run starts its own temporary server and "
            "blocks, limits and deployments are not shared",
            "start a server (`prefect server start`) and run `prefect config set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api`, or `prefect cloud login`",
        )
    problem = _api_problem(timeout_seconds, api_url)
    if problem is not None:
        return CheckResult(
            name,
            "FAIL",
            f"{api_url} did not answer within {timeout_seconds:g} s ({_reason(problem)})",
            "start the server (`prefect server start`) or correct PREFECT_API_URL "
            "(`prefect config view`); allow longer with --timeout",
        )
    return CheckResult(name, "ok", f"{api_url} answers{_server_version(api_url, timeout_seconds)}")


def _server_version(api_url: str, timeout_seconds: float) -> str:
    from prefect.client.orchestration import get_client

    def version() -> str:
        with get_client(sync_client=True) as client:
            return str(client.api_version())

    try:
        return f" (Prefect {call_with_deadline(version, timeout_seconds, api_url)})"
    except Exception:  # Prefect Cloud has no /admin/version; the health check already passed
        return ""


# ----------------------------------------------------------------------------- block types


def check_block_types(
    api_url: str | None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    classes: Sequence[type[Block]] | None = None,
) -> CheckResult:
    """Every block type of this package (``classes``) is registered with its current schema."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = "block types"
    wanted = list(classes) if classes is not None else block_classes()

    def read() -> tuple[list[str], list[str]]:
        with get_client(sync_client=True) as client:
            known = {block_type.slug for block_type in client.read_block_types()}
            missing, outdated = [], []
            for cls in wanted:
                slug = cls.get_block_type_slug()
                if slug not in known:
                    missing.append(slug)
                    continue
                try:
                    client.read_block_schema_by_checksum(cls._calculate_schema_checksum())
                except ObjectNotFound:
                    outdated.append(slug)
            return missing, outdated

    try:
        missing, outdated = call_with_deadline(read, timeout_seconds, api_url)
    except Exception as exc:
        return CheckResult(
            name, "FAIL", f"could not read block types from {api_url}: {_reason(exc)}",
            "check the Prefect API (first line) and its permissions",
        )
    fix = "run `prefect-etl register` with this PREFECT_API_URL"
    if missing:
        return CheckResult(name, "FAIL", f"not registered: {', '.join(missing)}", fix)
    if outdated:
        return CheckResult(
            name, "FAIL",
            f"registered with an older schema than this installed version: {', '.join(outdated)}",
            fix,
        )
    slugs = ", ".join(cls.get_block_type_slug() for cls in wanted)
    return CheckResult(name, "ok", f"{len(wanted)} registered with current schemas ({slugs})")


# ----------------------------------------------------------------------------- serializer


def check_serializer(type_name: str = "polars-parquet") -> CheckResult:
    """Prefect resolves ``type_name`` to a serializer that round-trips a DataFrame, and the
    ``prefect.collections`` entry point loads this package in processes that never import it
    (workers), so they can decode the results too."""
    import polars as pl
    from prefect.plugins import load_prefect_collections
    from prefect.serializers import Serializer

    name = "serializer"
    reinstall = (
        "install prefect-etl-blocks in every environment that runs flows or workers "
        "(`pip install prefect-etl-blocks`), then check again"
    )
    try:
        serializer = Serializer(type=type_name)
    except Exception as exc:
        return CheckResult(
            name, "FAIL", f"Prefect cannot resolve result_serializer={type_name!r} ({_reason(exc)})",
            reinstall,
        )
    frame = pl.DataFrame({"id": [1], "value": [0.5]})
    try:
        back = serializer.loads(serializer.dumps(frame))
        if not frame.equals(back):
            raise ValueError("the frame read back differs from the one written")
    except Exception as exc:
        return CheckResult(
            name, "FAIL", f"{type_name!r} did not round-trip a DataFrame ({_reason(exc)})", reinstall
        )
    loaded = load_prefect_collections().get("prefect_etl_blocks")
    if loaded is None or isinstance(loaded, Exception):
        why = "no prefect.collections entry point" if loaded is None else _reason(loaded)
        return CheckResult(
            name, "FAIL",
            f"{type_name!r} works here, but processes that do not import prefect_etl_blocks "
            f"cannot decode it ({why})",
            reinstall,
        )
    return CheckResult(
        name, "ok",
        f"{type_name!r} resolves to {type(serializer).__name__} and round-trips a DataFrame; "
        "workers load it through the prefect.collections entry point",
    )


# ----------------------------------------------------------------------------- project hints


@dataclass(frozen=True)
class ProjectHints:
    """What a generated project in the current folder tells the doctor to check."""

    source: str | None = None
    limits: tuple[str, ...] = ()
    database: str | None = None
    setup_limits: str | None = None
    max_concurrent_writes: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def discover_project(folder: str | os.PathLike[str] = ".") -> ProjectHints:
    """Read ``.cookiecutter.json`` (written by ``prefect-etl new``), else ``prefect.yaml``.

    The templates name their DuckDB write limit ``<project_slug>-duckdb-writes``.
    """
    root = Path(folder)
    answers_file = root / ".cookiecutter.json"
    if answers_file.is_file():
        try:
            answers = json.loads(answers_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return ProjectHints(notes=(f"{answers_file} is unreadable ({_reason(exc)})",))
        slug = answers.get("project_slug")
        module = answers.get("module_name")
        setup = None
        if isinstance(module, str) and (root / module / "setup_limits.py").is_file():
            setup = f"python -m {module}.setup_limits"
        writes = str(answers.get("max_concurrent_writes", ""))
        database = answers.get("duckdb_path")
        return ProjectHints(
            source=".cookiecutter.json",
            limits=(f"{slug}{LIMIT_SUFFIX}",) if isinstance(slug, str) and slug else (),
            database=str(root / database) if isinstance(database, str) and database else None,
            setup_limits=setup,
            max_concurrent_writes=int(writes) if writes.isdigit() else None,
        )
    deploy_file = root / "prefect.yaml"
    if deploy_file.is_file():
        import yaml

        try:
            spec = yaml.safe_load(deploy_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            return ProjectHints(notes=(f"{deploy_file} is unreadable ({_reason(exc)})",))
        slug = spec.get("name") if isinstance(spec, dict) else None
        database = None
        for deployment in (spec.get("deployments") or []) if isinstance(spec, dict) else []:
            params = deployment.get("parameters") if isinstance(deployment, dict) else None
            if isinstance(params, dict) and isinstance(params.get("database"), str):
                database = str(root / params["database"])
                break
        return ProjectHints(
            source="prefect.yaml",
            limits=(f"{slug}{LIMIT_SUFFIX}",) if isinstance(slug, str) and slug else (),
            database=database,
        )
    return ProjectHints()


# ----------------------------------------------------------------------------- concurrency limits


def check_concurrency_limits(
    names: Sequence[str],
    api_url: str | None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    hints: ProjectHints | None = None,
) -> CheckResult:
    """The global concurrency limits in ``names`` exist and are active."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = "concurrency limits"
    hints = hints or ProjectHints()
    if not names:
        return CheckResult(
            name, "skip",
            "not checked: no --limit NAME given and no .cookiecutter.json or prefect.yaml in "
            f"{os.getcwd()}",
        )

    def read() -> dict[str, Any]:
        found: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            for limit_name in names:
                try:
                    found[limit_name] = client.read_global_concurrency_limit_by_name(limit_name)
                except ObjectNotFound:
                    found[limit_name] = None
        return found

    try:
        found = call_with_deadline(read, timeout_seconds, api_url)
    except Exception as exc:
        return CheckResult(
            name, "FAIL", f"could not read concurrency limits from {api_url}: {_reason(exc)}",
            "check the Prefect API (first line) and its permissions",
        )
    origin = f" (from {hints.source})" if hints.source else ""
    missing = [n for n, limit in found.items() if limit is None]
    inactive = [n for n, limit in found.items() if limit is not None and not limit.active]
    if missing:
        size = hints.max_concurrent_writes or 1
        creates = " and ".join(f"`prefect gcl create {n} --limit {size}`" for n in missing)
        fix = f"run `{hints.setup_limits}` in the project" if hints.setup_limits else ""
        fix = f"{fix}, or {creates}" if fix else creates
        return CheckResult(name, "FAIL", f"missing: {', '.join(missing)}{origin}", fix)
    if inactive:
        return CheckResult(
            name, "FAIL", f"inactive, so writes are not limited: {', '.join(inactive)}{origin}",
            " and ".join(f"`prefect gcl enable {n}`" for n in inactive),
        )
    described = ", ".join(f"{n} (limit {limit.limit})" for n, limit in found.items())
    return CheckResult(name, "ok", f"{described}{origin}")
