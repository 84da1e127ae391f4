"""``prefect-etl doctor``: check a setup in one screen and say how to fix each failure.

Each check is a small function returning a :class:`CheckResult` (``ok``, ``FAIL`` or ``skip``,
a detail and a fix), so they can be run and tested one by one. :func:`run_doctor` runs them in
order, prints one line per check and returns the exit code: 0 when nothing failed, else 1.

Every network call has a bounded timeout and never retries: a doctor that hangs on the very
server it is diagnosing is no help. Nothing is written: the DuckDB file is opened and closed
(not created), the bucket is listed (one key at most) and the SMTP session ends with ``QUIT``
before any ``MAIL FROM``.

Example:
    ```python
    from prefect_etl_blocks.tools.doctor import check_serializer

    result = check_serializer()
    assert result.status == "ok", result.line()
    ```
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from prefect_etl_blocks.core.errors import LOCK_CONFLICT, first_line
from prefect_etl_blocks.core.versions import newer_than_tested, version_problems
from prefect_etl_blocks.tools.registration import _api_problem, block_classes, call_with_deadline

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from prefect_etl_blocks.blocks.notifications import EmailNotifier
    from prefect_etl_blocks.blocks.results import S3ResultStorage

Status = Literal["ok", "FAIL", "skip"]
DEFAULT_TIMEOUT_SECONDS = 5.0
LIMIT_SUFFIX = "-duckdb-writes"
# DuckDB's lock error: 'Could not set lock on file "...": Conflicting lock is held in EXE (PID N)'.
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")

__all__ = [
    "CheckResult",
    "ProjectHints",
    "check_api",
    "check_block_types",
    "check_concurrency_limits",
    "check_database",
    "check_notifier",
    "check_result_storage",
    "check_serializer",
    "check_versions",
    "discover_project",
    "run_doctor",
]


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


# ----------------------------------------------------------------------------- DuckDB file


def check_database(path: str | os.PathLike[str] | None) -> CheckResult:
    """The DuckDB file can be opened for writing now, or the process holding its lock is named.

    A file that does not exist yet is not created: its nearest existing folder must be writable.
    """
    import duckdb

    name = "DuckDB file"
    if not path:
        return CheckResult(
            name, "skip", "not checked: pass --database PATH (or run in a generated project)"
        )
    target = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if target.is_dir():
        return CheckResult(
            name, "FAIL", f"{target} is a folder", "pass the path of the .duckdb file itself"
        )
    if not target.exists():
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if os.access(folder, os.W_OK | os.X_OK):
            return CheckResult(
                name, "ok", f"{target} does not exist yet; {folder} is writable, so the first load "
                "creates it",
            )
        return CheckResult(
            name, "FAIL", f"{target} does not exist and {folder} is not writable by this user",
            f"give this user write access to {folder}, or choose another path",
        )
    if not os.access(target, os.R_OK | os.W_OK):
        return CheckResult(
            name, "FAIL", f"{target} is not readable and writable by this user",
            f"give this user write access (`chmod u+rw {target}`) or run as the file's owner",
        )
    try:
        con = duckdb.connect(str(target))
    except duckdb.Error as exc:
        message = str(exc)
        if LOCK_CONFLICT in message:
            match = _LOCK_HOLDER.search(message)
            holder = f"process {match['pid']} ({match['exe']})" if match else "another process"
            pid = match["pid"] if match else "PID"
            return CheckResult(
                name, "FAIL", f"{target} is locked by {holder}",
                "DuckDB allows one writing process per file: let that process finish, or stop "
                f"it if it is idle (for example a notebook or `duckdb` shell; `ps -p {pid}` shows "
                "it); flows wait for the lock up to lock_timeout_seconds",
            )
        if "not a valid DuckDB database file" in message:
            return CheckResult(
                name, "FAIL", f"{target} is not a DuckDB database file",
                "point --database (or duckdb_path) at a DuckDB file or at a new path",
            )
        return CheckResult(
            name, "FAIL", f"{target} cannot be opened ({_reason(exc)})",
            "check the file and its folder; DuckDB's message above names the cause",
        )
    try:
        con.execute("SELECT 1").fetchone()
    finally:
        con.close()
    return CheckResult(name, "ok", f"{target} opens for writing; no other process holds its lock")


# ----------------------------------------------------------------------------- result storage


def check_result_storage(
    storage: S3ResultStorage | str | None,
    api_url: str | None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> CheckResult:
    """The S3 result storage block loads and its bucket folder can be listed (one key at most)."""
    from prefect_etl_blocks.blocks.results import S3ResultStorage

    name = "result storage"
    if storage is None:
        return CheckResult(name, "skip", "not checked: pass --result-storage BLOCK_NAME")
    storage = _saved_block(S3ResultStorage, storage, name, "s3-result-storage", timeout_seconds, api_url)
    if isinstance(storage, CheckResult):
        return storage
    where = f"s3://{storage.bucket_name}/{storage.bucket_folder or ''} at {storage._endpoint()}"
    try:
        client = _s3_client(storage, timeout_seconds)
        call_with_deadline(
            lambda: client.list_objects_v2(
                Bucket=storage.bucket_name, Prefix=storage.bucket_folder or "", MaxKeys=1
            ),
            timeout_seconds,
            api_url,
        )
    except Exception as exc:
        return CheckResult(name, "FAIL", f"{where}: {_reason(exc)}", _s3_fix(exc, storage))
    return CheckResult(name, "ok", f"{where} can be listed")


def _s3_client(storage: S3ResultStorage, timeout_seconds: float) -> Any:
    """A boto3 S3 client for the block's credentials, with bounded timeouts and no retries."""
    from botocore.config import Config

    credentials = storage.credentials
    params = credentials.aws_client_parameters.get_params_override()
    bounded = Config(
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    base = params.pop("config", None)
    params["config"] = base.merge(bounded) if base is not None else bounded
    return credentials.get_boto3_session().client("s3", **params)


def _s3_fix(exc: BaseException, storage: S3ResultStorage) -> str:
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    if code in ("NoSuchBucket", "404"):
        return (
            f"create bucket {storage.bucket_name!r} or correct bucket_name in the block "
            "(`prefect block inspect s3-result-storage/NAME`)"
        )
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return f"check the credentials block's keys and that they may list {storage.bucket_name!r}"
    return (
        "check that the object store is running and that endpoint_url in the credentials "
        "block's aws_client_parameters points at it"
    )


def _saved_block(
    cls: Any, block: Any, name: str, slug: str, timeout_seconds: float, api_url: str | None
) -> Any:
    """``block`` itself, or the saved block of that name (loaded within the deadline), or the
    failed :class:`CheckResult` that says why it could not be loaded."""
    if not isinstance(block, str):
        return block
    try:
        return call_with_deadline(lambda: cls.load(block, _sync=True), timeout_seconds, api_url)
    except Exception as exc:
        return _load_failure(name, slug, block, exc)


def _load_failure(name: str, slug: str, block_name: str, exc: BaseException) -> CheckResult:
    if isinstance(exc, ValueError) and "Unable to find block document" in str(exc):
        return CheckResult(
            name, "FAIL", f"no {slug} block named {block_name!r}",
            "save one with that name (`prefect block ls` lists the saved blocks)",
        )
    return CheckResult(
        name, "FAIL", f"could not load {slug}/{block_name} ({_reason(exc)})",
        "check the Prefect API (first line) and that the block type is registered",
    )


# ----------------------------------------------------------------------------- notifier


def check_notifier(
    notifier: EmailNotifier | str | None,
    api_url: str | None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> CheckResult:
    """The SMTP server accepts a session (EHLO, STARTTLS and AUTH as configured); nothing is sent."""
    from prefect_etl_blocks.blocks.notifications import EmailNotifier

    name = "notifier"
    if notifier is None:
        return CheckResult(name, "skip", "not checked: pass --notifier BLOCK_NAME")
    notifier = _saved_block(EmailNotifier, notifier, name, "email-notifier", timeout_seconds, api_url)
    if isinstance(notifier, CheckResult):
        return notifier
    where = f"{notifier.smtp_server}:{notifier.port} ({notifier.smtp_type.value})"
    try:
        steps = call_with_deadline(
            lambda: _smtp_session(notifier, timeout_seconds), timeout_seconds, api_url
        )
    except Exception as exc:
        return CheckResult(name, "FAIL", f"{where}: {_smtp_reason(exc)}", _smtp_fix(exc))
    return CheckResult(name, "ok", f"{where} accepted {' + '.join(steps)}; nothing was sent")


def _smtp_session(notifier: EmailNotifier, timeout_seconds: float) -> list[str]:
    """Connect, EHLO, STARTTLS and AUTH as the block is configured, then QUIT; no MAIL FROM.

    Uses the notifier's own client, so the whole session shares one deadline (a server that
    drips bytes cannot hold it) and credentials go out as UTF-8, never in an error.
    """
    from prefect_etl_blocks.blocks.notifications import _authenticate, _DeadlineSMTP

    timeout = min(notifier.timeout_seconds, timeout_seconds)
    context = notifier._tls_context()
    kind = notifier.smtp_type.value
    where = f"{notifier.smtp_server}:{notifier.port}"
    client = _DeadlineSMTP(notifier.smtp_server, timeout, context if kind == "SSL" else None)
    steps = ["connect (TLS)"] if kind == "SSL" else ["connect"]
    try:
        code, reply = client.connect(notifier.smtp_server, notifier.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        _expect_ok(client.ehlo(), "EHLO")
        steps.append("EHLO")
        if kind == "STARTTLS":
            if not client.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            client.starttls(context=context)
            _expect_ok(client.ehlo(), "EHLO after STARTTLS")
            steps.append("STARTTLS")
        if notifier.username:
            _authenticate(client, notifier.username, notifier.password, where)
            steps.append(f"AUTH as {notifier.username!r}")
        client.docmd("QUIT")
        steps.append("QUIT")
    finally:
        client.close()
    return steps


def _expect_ok(reply: tuple[int, bytes], what: str) -> None:
    code, message = reply
    if not 200 <= code < 300:
        raise smtplib.SMTPResponseException(code, message or what.encode())


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{type(exc).__name__}: {exc.smtp_code} {_one_line(text)}"
    return _reason(exc)


def _smtp_fix(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "check the block's username and password"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the server offers no STARTTLS (or AUTH) here: match smtp_type and smtp_port to it"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "set ca_bundle_path to the CA that signed the server's certificate"
    if isinstance(exc, ssl.SSLError):
        return "match smtp_type to the port (465 is SSL, 587 is STARTTLS, 25 is INSECURE)"
    if isinstance(exc, smtplib.SMTPResponseException):
        return "the server refused the session; check its log and the block's settings"
    return "check smtp_server and smtp_port, and that the server is running and reachable"


# ----------------------------------------------------------------------------- all checks


def run_doctor(
    *,
    api_url: str | None = None,
    limits: Sequence[str] = (),
    database: str | None = None,
    result_storage: str | None = None,
    notifier: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    folder: str | os.PathLike[str] = ".",
    out: TextIO | None = None,
) -> int:
    """Run every check, print one line each and a summary; return 0 when none failed, else 1.

    ``api_url`` defaults to ``PREFECT_API_URL``. Without ``limits`` or ``database`` the
    generated project in ``folder`` (if any) says which to check.
    """
    from prefect.settings import PREFECT_API_URL

    out = out or sys.stdout
    url = api_url if api_url is not None else PREFECT_API_URL.value()
    hints = discover_project(folder)
    limit_names = list(limits) or list(hints.limits)
    hints_for_limits = ProjectHints() if limits else hints
    results: list[CheckResult] = []

    def report(result: CheckResult) -> None:
        results.append(result)
        print(result.line(), file=out, flush=True)

    versions = check_versions()
    if versions.failed:  # listed only when wrong: it explains the failures that follow
        report(versions)
    api = check_api(url, timeout_seconds)
    report(api)
    needs_api = "not checked: needs the Prefect API (see the first line)"
    if api.failed:
        report(CheckResult("block types", "skip", needs_api))
    else:
        report(check_block_types(url, timeout_seconds))
    report(check_serializer())
    if api.failed and limit_names:
        report(CheckResult("concurrency limits", "skip", needs_api))
    else:
        report(check_concurrency_limits(limit_names, url, timeout_seconds, hints_for_limits))
    report(check_database(database or hints.database))
    for label, option, check in (
        ("result storage", result_storage, check_result_storage),
        ("notifier", notifier, check_notifier),
    ):
        if api.failed and option:
            report(CheckResult(label, "skip", needs_api))
        else:
            report(check(option, url, timeout_seconds))
    for note in [*hints.notes, *newer_than_tested()]:
        print(f"note  {note}", file=out)
    failed = sum(r.failed for r in results)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "FAIL", "skip")}
    verdict = "healthy" if not failed else f"{failed} check(s) failed"
    print(
        f"{verdict}: {counts['ok']} ok, {counts['FAIL']} FAIL, {counts['skip']} skip",
        file=out,
    )
    return 1 if failed else 0
