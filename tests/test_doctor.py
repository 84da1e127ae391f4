"""``prefect-etl doctor``: every check healthy and unhealthy, against real parts on loopback.

Checks that need the Prefect API run against the session's real ``prefect server start``
(tests/fixtures/prefect_server.py); S3 is moto's server, SMTP is aiosmtpd, DuckDB real files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import duckdb
import pytest

from prefect_etl_blocks.doctor import (
    CheckResult,
    check_api,
    check_block_types,
    check_concurrency_limits,
    check_database,
    check_notifier,
    check_result_storage,
    check_serializer,
    discover_project,
)
from prefect_etl_blocks.registration import call_with_deadline
from tests.fixtures.prefect_server import PrefectServer
from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.fixtures.smtp import SMTP_PASSWORD, SMTP_USER, SMTPServer, free_port


def dead_url() -> str:
    """A loopback address where nothing listens (a port just released)."""
    return f"http://127.0.0.1:{free_port()}"


# ----------------------------------------------------------------------------- result lines


def test_result_line_has_status_name_detail_and_fix() -> None:
    line = CheckResult("DuckDB file", "FAIL", "x.duckdb is\nlocked", "stop it").line()
    assert line == "FAIL  DuckDB file         x.duckdb is locked -- fix: stop it"
    assert CheckResult("notifier", "skip", "not checked").line().startswith("skip  notifier ")
    assert CheckResult("x", "ok", "fine").failed is False
    assert CheckResult("x", "FAIL", "broken").failed is True


# ----------------------------------------------------------------------------- Prefect API


def test_api_unset_fails_and_says_what_to_set() -> None:
    result = check_api(None)
    assert result.status == "FAIL"
    assert "PREFECT_API_URL is not set" in result.detail
    assert "prefect config set PREFECT_API_URL=" in result.fix


def test_api_unreachable_fails_within_the_timeout() -> None:
    url = f"{dead_url()}/api"
    started = time.monotonic()
    result = check_api(url, timeout_seconds=2)
    assert time.monotonic() - started < 10
    assert result.status == "FAIL"
    assert f"{url} did not answer within 2 s" in result.detail
    assert "prefect server start" in result.fix


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_api_reachable(prefect_server: PrefectServer) -> None:
    result = check_api(prefect_server.api_url, timeout_seconds=10)
    assert result.status == "ok", result.line()
    assert f"{prefect_server.api_url} answers (Prefect " in result.detail


# ----------------------------------------------------------------------------- block types


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_block_types_registered_on_the_server(prefect_server: PrefectServer) -> None:
    result = check_block_types(prefect_server.api_url, timeout_seconds=10)
    assert result.status == "ok", result.line()
    for slug in ("duckdb-connection", "parquet-source", "s3-result-storage", "email-notifier"):
        assert slug in result.detail


def _probe_block(slug: str, with_extra_field: bool = False) -> type:
    """A block type the server has never seen (its slug is unique to the test)."""
    from prefect.blocks.core import Block

    namespace: dict = {"_block_type_slug": slug, "_block_type_name": slug, "__annotations__": {"a": int}, "a": 1}
    if with_extra_field:
        namespace["__annotations__"]["b"] = str
        namespace["b"] = "x"
    with warnings.catch_warnings():  # the second class reuses the slug on purpose
        warnings.simplefilter("ignore")
        return type(f"Probe{uuid.uuid4().hex[:6]}", (Block,), namespace)


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_block_types_missing_then_registered_then_outdated(prefect_server: PrefectServer) -> None:
    from prefect_etl_blocks import DuckDBConnection

    slug = f"doctor-probe-{uuid.uuid4().hex[:8]}"
    probe = _probe_block(slug)
    result = check_block_types(prefect_server.api_url, 10, classes=[DuckDBConnection, probe])
    assert result.status == "FAIL"
    assert result.detail == f"not registered: {slug}"
    assert "prefect-etl register" in result.fix

    call_with_deadline(lambda: probe.register_type_and_schema(), 10, prefect_server.api_url)
    assert check_block_types(prefect_server.api_url, 10, classes=[DuckDBConnection, probe]).status == "ok"

    newer = _probe_block(slug, with_extra_field=True)
    result = check_block_types(prefect_server.api_url, 10, classes=[newer])
    assert result.status == "FAIL"
    assert result.detail == f"registered with an older schema than this installed version: {slug}"


def test_block_types_unreachable_api_fails() -> None:
    result = check_block_types(f"{dead_url()}/api", timeout_seconds=2)
    assert result.status == "FAIL" and "could not read block types" in result.detail


# ----------------------------------------------------------------------------- serializer


def test_serializer_resolves_and_round_trips() -> None:
    result = check_serializer()
    assert result.status == "ok", result.line()
    assert "PolarsParquetSerializer" in result.detail
    assert "prefect.collections entry point" in result.detail


def test_serializer_unknown_type_fails() -> None:
    result = check_serializer("polars-parquet-v99")
    assert result.status == "FAIL"
    assert "cannot resolve result_serializer='polars-parquet-v99'" in result.detail
    assert "pip install prefect-etl-blocks" in result.fix


# ----------------------------------------------------------------------------- concurrency limits


def test_limits_skip_when_none_are_known() -> None:
    result = check_concurrency_limits([], api_url=None)
    assert result.status == "skip" and "not checked" in result.detail and "--limit" in result.detail


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_limits_present_missing_and_inactive(prefect_server: PrefectServer, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    slug = f"doctor-{uuid.uuid4().hex[:8]}"
    present, inactive = f"{slug}-duckdb-writes", f"{slug}-paused"

    def create() -> None:
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=present, limit=2))
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=inactive, limit=1, active=False)
            )

    call_with_deadline(create, 10, prefect_server.api_url)
    url = prefect_server.api_url
    result = check_concurrency_limits([present], url, 10)
    assert result.status == "ok", result.line()
    assert result.detail == f"{present} (limit 2)"

    (tmp_path / ".cookiecutter.json").write_text(
        json.dumps({"project_slug": f"{slug}-other", "module_name": "other", "max_concurrent_writes": "3"})
    )
    hints = discover_project(tmp_path)
    result = check_concurrency_limits(hints.limits, url, 10, hints)
    assert result.status == "FAIL"
    assert result.detail == f"missing: {slug}-other-duckdb-writes (from .cookiecutter.json)"
    assert f"`prefect gcl create {slug}-other-duckdb-writes --limit 3`" in result.fix

    result = check_concurrency_limits([inactive], url, 10)
    assert result.status == "FAIL" and f"inactive, so writes are not limited: {inactive}" in result.detail
    assert f"`prefect gcl enable {inactive}`" in result.fix


def test_discover_project_reads_cookiecutter_answers_then_prefect_yaml(tmp_path: Path) -> None:
    assert discover_project(tmp_path).limits == ()
    (tmp_path / "prefect.yaml").write_text(
        "name: sales-etl\ndeployments:\n  - name: x\n    parameters:\n      database: wh.duckdb\n"
    )
    hints = discover_project(tmp_path)
    assert (hints.source, hints.limits, hints.database) == (
        "prefect.yaml", ("sales-etl-duckdb-writes",), str(tmp_path / "wh.duckdb")
    )
    (tmp_path / "sales").mkdir()
    (tmp_path / "sales" / "setup_limits.py").write_text("")
    (tmp_path / ".cookiecutter.json").write_text(
        json.dumps({"project_slug": "orders", "module_name": "sales", "duckdb_path": "o.duckdb"})
    )
    hints = discover_project(tmp_path)
    assert hints.source == ".cookiecutter.json"
    assert hints.limits == ("orders-duckdb-writes",)
    assert hints.database == str(tmp_path / "o.duckdb")
    assert hints.setup_limits == "python -m sales.setup_limits"


# ----------------------------------------------------------------------------- DuckDB file


def test_database_writable_existing_and_new(tmp_path: Path) -> None:
    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).close()
    result = check_database(path)
    assert result.status == "ok" and "no other process holds its lock" in result.detail
    new = tmp_path / "sub" / "new.duckdb"
    result = check_database(new)
    assert result.status == "ok" and "does not exist yet" in result.detail
    assert not new.exists() and not new.parent.exists()  # the doctor creates nothing


def test_database_skip_without_a_path() -> None:
    assert check_database(None).status == "skip"


def test_database_locked_by_another_process_names_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(path)!r})\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = check_database(path)
        assert result.status == "FAIL"
        assert f"is locked by process {holder.pid} (" in result.detail
        assert "one writing process per file" in result.fix
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)
    assert check_database(path).status == "ok"


def test_database_not_a_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    result = check_database(path)
    assert result.status == "FAIL" and "is not a DuckDB database file" in result.detail
    assert path.read_text() == "not a database"


def test_database_path_is_a_folder(tmp_path: Path) -> None:
    result = check_database(tmp_path)
    assert result.status == "FAIL" and "is a folder" in result.detail


# ----------------------------------------------------------------------------- result storage


def _storage(bucket: str, endpoint: str, secret: str = SECRET_KEY):
    from prefect_aws import AwsCredentials

    from prefect_etl_blocks import S3ResultStorage

    return S3ResultStorage(
        bucket_name=bucket,
        bucket_folder="results",
        credentials=AwsCredentials(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
            aws_client_parameters={"endpoint_url": endpoint},
        ),
    )


def test_result_storage_reachable(s3_server, bucket: str) -> None:
    result = check_result_storage(_storage(bucket, s3_server.endpoint_url), api_url=None)
    assert result.status == "ok", result.line()
    assert result.detail == f"s3://{bucket}/results at {s3_server.endpoint_url} can be listed"


def test_result_storage_dead_endpoint_fails_within_the_timeout() -> None:
    endpoint = dead_url()
    started = time.monotonic()
    result = check_result_storage(_storage("results", endpoint), api_url=None, timeout_seconds=2)
    assert time.monotonic() - started < 10
    assert result.status == "FAIL"
    assert f"s3://results/results at {endpoint}: EndpointConnectionError" in result.detail
    assert "endpoint_url" in result.fix
    assert SECRET_KEY not in result.line()


def test_result_storage_missing_bucket(s3_server) -> None:
    result = check_result_storage(_storage("no-such-bucket-here", s3_server.endpoint_url), api_url=None)
    assert result.status == "FAIL" and "NoSuchBucket" in result.detail
    assert "create bucket 'no-such-bucket-here'" in result.fix


def test_result_storage_skip_without_a_block() -> None:
    assert check_result_storage(None, api_url=None).status == "skip"


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_result_storage_by_block_name(prefect_server: PrefectServer, s3_server, bucket: str) -> None:
    name = f"doctor-{uuid.uuid4().hex[:8]}"
    storage = _storage(bucket, s3_server.endpoint_url)
    call_with_deadline(lambda: storage.save(name), 15, prefect_server.api_url)
    result = check_result_storage(name, prefect_server.api_url, 10)
    assert result.status == "ok", result.line()
    result = check_result_storage(f"{name}-absent", prefect_server.api_url, 10)
    assert result.status == "FAIL"
    assert result.detail == f"no s3-result-storage block named '{name}-absent'"


# ----------------------------------------------------------------------------- notifier


def _notifier(smtp: SMTPServer, kind: str, **extra):
    from prefect_etl_blocks import EmailNotifier

    return EmailNotifier(
        smtp_server=smtp.host, smtp_port=smtp.port, smtp_type=kind, from_address="etl@example.com",
        to_addresses=["team@example.com"], timeout_seconds=5, **extra,
    )


def test_notifier_plain_connects_without_sending(smtp_plain: SMTPServer) -> None:
    result = check_notifier(_notifier(smtp_plain, "INSECURE"), api_url=None)
    assert result.status == "ok", result.line()
    assert "accepted connect + EHLO + QUIT; nothing was sent" in result.detail
    assert smtp_plain.mailbox.messages == []


def test_notifier_starttls_with_login(smtp_starttls: SMTPServer) -> None:
    notifier = _notifier(
        smtp_starttls, "STARTTLS", username=SMTP_USER, password=SMTP_PASSWORD,
        ca_bundle_path=smtp_starttls.ca_path,
    )
    result = check_notifier(notifier, api_url=None)
    assert result.status == "ok", result.line()
    assert f"STARTTLS + AUTH as '{SMTP_USER}' + QUIT" in result.detail
    assert smtp_starttls.mailbox.messages == []


def test_notifier_ssl_untrusted_certificate_fails(smtp_ssl: SMTPServer) -> None:
    result = check_notifier(_notifier(smtp_ssl, "SSL", username=SMTP_USER, password=SMTP_PASSWORD), api_url=None)
    assert result.status == "FAIL" and "SSLCertVerificationError" in result.detail
    assert "ca_bundle_path" in result.fix
    trusted = _notifier(smtp_ssl, "SSL", username=SMTP_USER, password=SMTP_PASSWORD, ca_bundle_path=smtp_ssl.ca_path)
    assert check_notifier(trusted, api_url=None).status == "ok"


def test_notifier_wrong_password_fails_without_showing_it(smtp_starttls: SMTPServer) -> None:
    wrong = "wrong-password-never-shown"
    notifier = _notifier(
        smtp_starttls, "STARTTLS", username=SMTP_USER, password=wrong, ca_bundle_path=smtp_starttls.ca_path
    )
    result = check_notifier(notifier, api_url=None)
    assert result.status == "FAIL" and "SMTPAuthenticationError: 535" in result.detail
    assert "username and password" in result.fix
    assert wrong not in result.line()


def test_notifier_unreachable_fails_quickly() -> None:
    from prefect_etl_blocks import EmailNotifier

    notifier = EmailNotifier(
        smtp_server="127.0.0.1", smtp_port=free_port(), smtp_type="INSECURE", from_address="etl@example.com"
    )
    started = time.monotonic()
    result = check_notifier(notifier, api_url=None, timeout_seconds=2)
    assert time.monotonic() - started < 10
    assert result.status == "FAIL" and "ConnectionRefusedError" in result.detail
    assert "smtp_server and smtp_port" in result.fix


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.xdist_group("prefect_server")
def test_notifier_by_block_name(prefect_server: PrefectServer, smtp_plain: SMTPServer) -> None:
    name = f"doctor-{uuid.uuid4().hex[:8]}"
    notifier = _notifier(smtp_plain, "INSECURE")
    call_with_deadline(lambda: notifier.save(name), 15, prefect_server.api_url)
    result = check_notifier(name, prefect_server.api_url, 10)
    assert result.status == "ok", result.line()
    assert smtp_plain.mailbox.messages == []
    result = check_notifier(f"{name}-absent", prefect_server.api_url, 10)
    assert result.status == "FAIL" and result.detail == f"no email-notifier block named '{name}-absent'"
