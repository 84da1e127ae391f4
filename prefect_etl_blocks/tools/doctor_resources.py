"""The doctor's checks of what the flows use: the DuckDB file, the S3 result storage and the
SMTP server of an ``EmailNotifier``, each loaded from its saved block when given by name.

Nothing is written: the DuckDB file is opened and closed (not created), the bucket is listed
(one key at most) and the SMTP session, through the notifier's own client
(:mod:`prefect_etl_blocks.core.smtp`), ends with ``QUIT`` before any ``MAIL FROM``.

Example:
    ```python
    from prefect_etl_blocks.tools.doctor_resources import check_database

    assert check_database(None).status == "skip"
    ```
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib

from prefect_etl_blocks.core.errors import LOCK_CONFLICT
from prefect_etl_blocks.core.smtp import SMTPSettingsError, run_blocking, run_session, unwrap
from prefect_etl_blocks.tools.doctor_checks import (
    DEFAULT_TIMEOUT_SECONDS,
    CheckResult,
    _one_line,
    _reason,
)
from prefect_etl_blocks.tools.registration import call_with_deadline

if TYPE_CHECKING:
    from prefect_etl_blocks.blocks.notifications import EmailNotifier
    from prefect_etl_blocks.blocks.results import S3ResultStorage

# DuckDB's lock error: 'Could not set lock on file "...": Conflicting lock is held in EXE (PID N)'.
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


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
    storage = _saved_block(S3ResultStorage, storage, name, "--result-storage", timeout_seconds, api_url)
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
    cls: Any, block: Any, name: str, option: str, timeout_seconds: float, api_url: str | None
) -> Any:
    """``block`` itself, or the saved block of that name (loaded within the deadline), or the
    :class:`CheckResult` that says why there is none: skipped when ``block`` is None (not given
    with ``option``), failed when it could not be loaded."""
    if block is None:
        return CheckResult(name, "skip", f"not checked: pass {option} BLOCK_NAME")
    if not isinstance(block, str):
        return block
    try:
        return call_with_deadline(lambda: cls.load(block, _sync=True), timeout_seconds, api_url)
    except Exception as exc:
        return _load_failure(name, cls.get_block_type_slug(), block, exc)


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
    notifier = _saved_block(EmailNotifier, notifier, name, "--notifier", timeout_seconds, api_url)
    if isinstance(notifier, CheckResult):
        return notifier
    where = f"{notifier.smtp_server}:{notifier.port} ({notifier.smtp_type.value})"
    try:
        steps = call_with_deadline(
            lambda: _smtp_session(notifier, timeout_seconds), timeout_seconds, api_url
        )
    except Exception as exc:
        error = unwrap(exc)  # the refused connection or TLS error under aiosmtplib's
        reason = notifier._endpoint().redact(_smtp_reason(error))
        return CheckResult(name, "FAIL", f"{where}: {reason}", _smtp_fix(error))
    return CheckResult(name, "ok", f"{where} accepted {' + '.join(steps)}; nothing was sent")


def _smtp_session(notifier: EmailNotifier, timeout_seconds: float) -> list[str]:
    """Connect, EHLO, STARTTLS and AUTH as the block is configured, then QUIT; no MAIL FROM.

    The notifier's own client (:mod:`prefect_etl_blocks.core.smtp`), so the whole session shares
    one deadline (a server that drips bytes cannot hold it) and credentials go out as UTF-8,
    never in an error.
    """
    endpoint = notifier._endpoint(min(notifier.timeout_seconds, timeout_seconds))
    return run_blocking(lambda: run_session(endpoint))


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {_one_line(exc.message)}"
    return _reason(exc)


def _smtp_fix(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "check the block's username and password"
    if isinstance(exc, SMTPSettingsError):
        return "change the block's settings as the message says (smtp_type, smtp_port, username, ca_bundle_path)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "set ca_bundle_path to the CA that signed the server's certificate"
    if isinstance(exc, ssl.SSLError):
        return "match smtp_type to the port (465 is SSL, 587 is STARTTLS, 25 is INSECURE)"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return "the server refused the session; check its log and the block's settings"
    return "check smtp_server and smtp_port, and that the server is running and reachable"
