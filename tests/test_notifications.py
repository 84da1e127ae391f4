"""EmailNotifier and email_notifier hooks against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prefect import flow, task

from prefect_etl_blocks import EmailNotifier, email_notifier
from prefect_etl_blocks.errors import EmailDeliveryError, NotificationTemplateError
from tests.fixtures.smtp import SMTP_PASSWORD, SMTP_USER, free_port

pytestmark = pytest.mark.timeout(90)


def make(server, smtp_type: str, **kwargs) -> EmailNotifier:
    base = dict(
        smtp_server=server.host, smtp_port=server.port, smtp_type=smtp_type,
        from_address="etl@example.com", to_addresses=["team@example.com"], timeout_seconds=10, max_retries=0,
    )
    base.update(kwargs)
    return EmailNotifier(**base)


def test_plain_multipart_message(smtp_plain) -> None:
    make(smtp_plain, "INSECURE").notify("Loaded 10 rows <ok>", subject="Nightly ETL")
    (mail,) = smtp_plain.mailbox.messages
    msg = mail["message"]
    assert msg["Subject"] == "Nightly ETL" and msg["From"] == "etl@example.com"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Loaded 10 rows <ok>" in plain and "Loaded 10 rows &lt;ok&gt;" in html


def test_cc_bcc_and_several_recipients(smtp_plain) -> None:
    notifier = make(smtp_plain, "insecure", to_addresses=["a@example.com", "b@example.com"], cc=["c@example.com"], bcc=["d@example.com"])
    notifier.notify("hello")
    (mail,) = smtp_plain.mailbox.messages
    assert sorted(mail["rcpt_tos"]) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]
    assert mail["message"]["Cc"] == "c@example.com" and "d@example.com" not in str(mail["message"])


def test_auth_success_and_refusal(smtp_plain_auth) -> None:
    make(smtp_plain_auth, "INSECURE", username=SMTP_USER, password=SMTP_PASSWORD).notify("in")
    assert len(smtp_plain_auth.mailbox.messages) == 1
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{smtp_plain_auth.port} refused authentication") as info:
        make(smtp_plain_auth, "INSECURE", username=SMTP_USER, password="wrong-password").notify("x")
    assert "wrong-password" not in str(info.value)


def test_starttls_with_trusted_ca(smtp_starttls) -> None:
    notifier = make(smtp_starttls, "STARTTLS", username=SMTP_USER, password=SMTP_PASSWORD, ca_bundle_path=smtp_starttls.ca_path)
    notifier.notify("over starttls")
    assert len(smtp_starttls.mailbox.messages) == 1


def test_implicit_ssl_with_trusted_ca_and_untrusted_fails(smtp_ssl) -> None:
    make(smtp_ssl, "SSL", username=SMTP_USER, password=SMTP_PASSWORD, ca_bundle_path=smtp_ssl.ca_path).notify("ssl")
    assert len(smtp_ssl.mailbox.messages) == 1
    with pytest.raises(EmailDeliveryError, match=f"TLS with SMTP server 127.0.0.1:{smtp_ssl.port} failed.*CERTIFICATE_VERIFY_FAILED"):
        make(smtp_ssl, "SSL", username=SMTP_USER, password=SMTP_PASSWORD).notify("untrusted")


def test_default_ports() -> None:
    kw = dict(smtp_server="mail.example.com", from_address="a@example.com")
    assert EmailNotifier(smtp_type="SSL", **kw).port == 465
    assert EmailNotifier(smtp_type="starttls", **kw).port == 587
    assert EmailNotifier(smtp_type="INSECURE", **kw).port == 25


def test_async_and_sync_notify(smtp_plain) -> None:
    notifier = make(smtp_plain, "INSECURE")

    async def main() -> None:
        await notifier.notify("from async")

    asyncio.run(main())
    assert notifier.notify("from sync") is None
    assert [m["message"].get_body(("plain",)).get_content().strip() for m in smtp_plain.mailbox.messages] == ["from async", "from sync"]


def test_server_down_is_a_clear_error_without_password() -> None:
    port = free_port()
    notifier = EmailNotifier(smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE", username="u",
                             password=SMTP_PASSWORD, from_address="a@example.com", to_addresses=["b@example.com"],
                             timeout_seconds=2, max_retries=1)
    with pytest.raises(EmailDeliveryError, match=f"SMTP server 127.0.0.1:{port}: ConnectionRefusedError") as info:
        notifier.notify("x")
    assert SMTP_PASSWORD not in str(info.value)


def test_header_injection_is_rejected(smtp_plain) -> None:
    with pytest.raises(ValueError, match="to_addresses"):
        make(smtp_plain, "INSECURE", to_addresses=["a@example.com\r\nBcc: evil@example.com"])
    with pytest.raises(ValueError, match="subject must not contain line breaks"):
        make(smtp_plain, "INSECURE").notify("x", subject="hi\r\nBcc: evil@example.com")
    with pytest.raises(ValueError, match="recipients"):
        email_notifier(recipients=["x@example.com\nBcc: y@example.com"])
    assert smtp_plain.mailbox.messages == []


def test_password_is_masked_in_repr_str_and_dump() -> None:
    notifier = EmailNotifier(smtp_server="h", from_address="a@example.com", username="u", password=SMTP_PASSWORD)
    for text in (repr(notifier), str(notifier), str(notifier.model_dump())):
        assert SMTP_PASSWORD not in text


def test_unknown_placeholder_fails_at_creation() -> None:
    with pytest.raises(NotificationTemplateError, match=r"unknown placeholder \{flow\}; valid placeholders are \{flow_name\}"):
        email_notifier(subject="Failed: {flow}")
    with pytest.raises(NotificationTemplateError, match="body template"):
        email_notifier(body="{unclosed")


def test_saved_block_round_trip(smtp_plain) -> None:
    make(smtp_plain, "INSECURE", password=SMTP_PASSWORD).save("test-mailer", overwrite=True)
    loaded = EmailNotifier.load("test-mailer")
    assert loaded.password.get_secret_value() == SMTP_PASSWORD and loaded.port == smtp_plain.port


def test_failing_flow_hook_sends_one_rendered_email(smtp_plain) -> None:
    notifier = make(smtp_plain, "INSECURE")

    @flow(name="nightly-load", on_failure=[email_notifier(subject="Pipeline Failed: {flow_run_name}", recipients=["ops@example.com"], notifier=notifier)])
    def nightly(limit: int = 3) -> None:
        raise RuntimeError("disk full on loader")

    state = nightly(return_state=True)
    assert state.is_failed()
    (mail,) = smtp_plain.mailbox.messages
    assert mail["rcpt_tos"] == ["ops@example.com"]
    assert mail["message"]["Subject"].startswith("Pipeline Failed: ") and len(mail["message"]["Subject"]) > len("Pipeline Failed: ")
    body = mail["message"].get_body(("plain",)).get_content()
    assert "RuntimeError: disk full on loader" in body and "nightly-load" in body and "'limit': 3" in body


def test_task_hook_names_the_task(smtp_plain) -> None:
    notifier = make(smtp_plain, "INSECURE")

    @task(on_failure=[email_notifier(subject="Task {task_name} failed in {flow_name}", notifier=notifier)])
    def fragile() -> None:
        raise ValueError("bad row")

    @flow(name="with-task")
    def outer() -> None:
        fragile()

    assert outer(return_state=True).is_failed()
    (mail,) = smtp_plain.mailbox.messages
    assert mail["message"]["Subject"] == "Task fragile failed in with-task"
    assert "ValueError: bad row" in mail["message"].get_body(("plain",)).get_content()


def test_hook_with_server_down_keeps_the_flow_failure(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    notifier = EmailNotifier(smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE", password=SMTP_PASSWORD,
                             username="u", from_address="a@example.com", to_addresses=["b@example.com"],
                             timeout_seconds=2, max_retries=0)

    @flow(on_failure=[email_notifier(notifier=notifier)])
    def broken() -> None:
        raise KeyError("the original error")

    with caplog.at_level(logging.ERROR):
        state = broken(return_state=True)
    assert state.is_failed()
    with pytest.raises(KeyError, match="the original error"):
        state.result()
    assert f"Email notification via 127.0.0.1:{port} failed" in caplog.text
    assert SMTP_PASSWORD not in caplog.text
