"""``EmailNotifier`` from the server side (issue 20, part 3): on a real ``prefect server start``,
Automations created through Prefect's Python API deliver mail to aiosmtpd through a saved
``EmailNotifier`` when a flow run fails, and when a load of ours fails
(``prefect.asset.materialization.failed`` for ``duckdb://*``). The flows run in a subprocess
against the server, as a worker's would; the server renders the templates and sends the mail."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fixtures.prefect_server import PrefectServer
from tests.fixtures.smtp import SMTPServer

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.xdist_group("prefect_server"),
    pytest.mark.timeout(600),
]

#: How long the server may take from the event to the delivered mail.
MAIL_WAIT_SECONDS = 120

FLOWS = """
import sys

import polars as pl
from prefect import flow
from prefect.runtime import flow_run

from prefect_etl_blocks import DuckDBConnection
from prefect_etl_blocks.errors import DataCheckError


@flow(name=sys.argv[1])
def nightly() -> None:
    print("RUN", flow_run.id, flow_run.name, flush=True)
    raise RuntimeError("the source file sales.parquet is missing")


@flow(name=sys.argv[1])
def nightly_load(database: str) -> None:
    print("RUN", flow_run.id, flow_run.name, flush=True)
    db = DuckDBConnection(database=database)
    try:
        db.load_frame(pl.DataFrame({"qty": [-1]}), "stock", checks=["qty >= 0"])
    except DataCheckError:
        return  # the flow run completes: only the asset automation may send mail
    raise AssertionError("the load did not fail")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        nightly_load(sys.argv[2])
    else:
        nightly(return_state=True)
"""


FAILED_RUN_SUBJECT = "Flow run {{ flow_run.name }} failed"
FAILED_RUN_BODY = (
    "Flow {{ flow.name }}, run {{ flow_run.name }} ({{ flow_run.id }}) is "
    "{{ flow_run.state.name }}: {{ flow_run.state.message }}"
)
FAILED_LOAD_SUBJECT = "Load failed: {{ event.resource.id }}"
FAILED_LOAD_BODY = (
    "{{ event.resource.id }} was not loaded in flow run {{ flow_run.name }}: "
    "{{ event.payload.error }}: {{ event.payload.message }}"
)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "automations.md"


def failed_run_trigger(**match_related: str):
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={"prefect.flow-run.Failed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=match_related,
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def failed_load_trigger():
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={"prefect.asset.materialization.failed"},
        match={"prefect.resource.id": "duckdb://*"},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


@contextmanager
def on_server(server: PrefectServer) -> Iterator[None]:
    """This process's Prefect client talks to ``server`` (instead of the session harness)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


@contextmanager
def automation_with_email(
    server: PrefectServer, smtp: SMTPServer, trigger, subject: str, body: str
):
    """A saved ``EmailNotifier`` for ``smtp`` and an Automation sending through it; both are
    deleted afterwards, so no other test's events reach a stopped mail server."""
    from prefect.automations import Automation, SendNotification

    from prefect_etl_blocks import EmailNotifier

    tag = uuid.uuid4().hex[:8]
    with on_server(server):
        notifier = EmailNotifier(
            smtp_server=smtp.host,
            smtp_port=smtp.port,
            smtp_type="INSECURE",
            from_address="prefect@example.com",
            to_addresses=["data-team@example.com"],
            timeout_seconds=10,
        )
        notifier.save(f"automation-mail-{tag}")
        automation = Automation(
            name=f"petl-mail-{tag}",
            trigger=trigger,
            actions=[
                SendNotification(
                    block_document_id=notifier._block_document_id, subject=subject, body=body
                )
            ],
        ).create()
    try:
        yield
    finally:
        with on_server(server):
            automation.delete()
            EmailNotifier.delete(f"automation-mail-{tag}")


def run_flows(server: PrefectServer, tmp_path: Path, *args: str) -> tuple[str, str]:
    """Run the probe flows in a fresh interpreter against ``server``; the run's id and name."""
    script = tmp_path / "petl_automation_flows.py"
    script.write_text(FLOWS)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=server.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    runs = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert done.returncode == 0 and len(runs) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    return runs[0][0], runs[0][1]


def wait_for_mail(smtp: SMTPServer, server: PrefectServer, subject: str):
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while time.monotonic() < deadline:
        for mail in smtp.mailbox.messages:
            if mail["message"]["Subject"] == subject:
                return mail
        time.sleep(0.5)
    got = [m["message"]["Subject"] for m in smtp.mailbox.messages]
    pytest.fail(
        f"no mail with subject {subject!r} within {MAIL_WAIT_SECONDS} s (got {got}); "
        f"server log:\n{server.logs()}"
    )


def text_of(mail) -> str:
    return mail["message"].get_body(preferencelist=("plain",)).get_content()


def test_a_failed_flow_run_sends_mail_through_a_saved_email_notifier(
    prefect_server: PrefectServer, smtp_plain: SMTPServer, tmp_path: Path
) -> None:
    flow_name = f"petl-nightly-{uuid.uuid4().hex[:8]}"
    # This test's flow only: the session's server also sees other tests' runs.
    trigger = failed_run_trigger(
        **{"prefect.resource.role": "flow", "prefect.resource.name": flow_name}
    )
    with automation_with_email(
        prefect_server, smtp_plain, trigger, FAILED_RUN_SUBJECT, FAILED_RUN_BODY
    ):
        run_id, run_name = run_flows(prefect_server, tmp_path, flow_name)
        mail = wait_for_mail(smtp_plain, prefect_server, f"Flow run {run_name} failed")

    assert mail["rcpt_tos"] == ["data-team@example.com"]
    assert mail["message"]["From"] == "prefect@example.com"
    body = text_of(mail)
    assert f"Flow {flow_name}, run {run_name} ({run_id}) is Failed:" in body
    assert "the source file sales.parquet is missing" in body


def test_a_failed_load_sends_mail_for_its_duckdb_asset(
    prefect_server: PrefectServer, smtp_plain: SMTPServer, tmp_path: Path
) -> None:
    from prefect_etl_blocks.lineage import asset_key

    database = tmp_path / f"wh-{uuid.uuid4().hex[:8]}.duckdb"
    key = asset_key(str(database), "stock")
    with automation_with_email(
        prefect_server, smtp_plain, failed_load_trigger(), FAILED_LOAD_SUBJECT, FAILED_LOAD_BODY
    ):
        _, run_name = run_flows(prefect_server, tmp_path, "petl-nightly-load", str(database))
        mail = wait_for_mail(smtp_plain, prefect_server, f"Load failed: {key}")

    body = text_of(mail)
    assert f"{key} was not loaded in flow run {run_name}: DataCheckError:" in body
    assert 'failed loading into table "stock"; the table was left exactly as it was' in body


def test_the_documented_json_is_the_tested_automation() -> None:
    """docs/automations.md gives each recipe as JSON for ``prefect automation create``; read as
    Prefect's CLI reads it, each is the automation the tests above deliver mail with."""
    from prefect.automations import SendNotification
    from prefect.events.schemas.automations import AutomationCore

    block_id = uuid.uuid4()
    found = {}
    for text in re.findall(r"^```json\n(.*?)^```", DOCS.read_text(), re.S | re.M):
        data = json.loads(text.replace("BLOCK_DOCUMENT_ID", str(block_id)))
        found[data["name"]] = AutomationCore.model_validate(data)
    expected = {
        "mail-on-failed-flow-run": (failed_run_trigger(), FAILED_RUN_SUBJECT, FAILED_RUN_BODY),
        "mail-on-failed-load": (failed_load_trigger(), FAILED_LOAD_SUBJECT, FAILED_LOAD_BODY),
    }
    assert set(found) == set(expected)
    for name, (trigger, subject, body) in expected.items():
        assert found[name].trigger.model_dump(exclude={"id"}) == trigger.model_dump(
            exclude={"id"}
        ), name
        assert found[name].actions == [
            SendNotification(block_document_id=block_id, subject=subject, body=body)
        ], name
