"""EmailNotifier and email_notifier hooks against a real aiosmtpd server on 127.0.0.1, and a
raw-socket server that answers one byte at a time (the delivery deadline)."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from prefect import flow, task

from prefect_etl_blocks import EmailNotifier, email_notifier
from prefect_etl_blocks.errors import (
    DataError,
    EmailDeliveryError,
    EmailRejectedError,
    NotificationTemplateError,
    TransientError,
    UnsavedBlockError,
)
from tests.fixtures.smtp import (
    SMTP_PASSWORD,
    SMTP_PASSWORD_UTF8,
    SMTP_USER,
    SMTP_USER_UTF8,
    free_port,
)

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
    with pytest.raises(EmailRejectedError, match=f"127.0.0.1:{smtp_plain_auth.port} refused authentication") as info:
        make(smtp_plain_auth, "INSECURE", username=SMTP_USER, password="wrong-password").notify("x")
    assert "wrong-password" not in str(info.value)


def test_starttls_with_trusted_ca(smtp_starttls) -> None:
    notifier = make(smtp_starttls, "STARTTLS", username=SMTP_USER, password=SMTP_PASSWORD, ca_bundle_path=smtp_starttls.ca_path)
    notifier.notify("over starttls")
    assert len(smtp_starttls.mailbox.messages) == 1


def test_implicit_ssl_with_trusted_ca_and_untrusted_fails(smtp_ssl) -> None:
    make(smtp_ssl, "SSL", username=SMTP_USER, password=SMTP_PASSWORD, ca_bundle_path=smtp_ssl.ca_path).notify("ssl")
    assert len(smtp_ssl.mailbox.messages) == 1
    with pytest.raises(EmailRejectedError, match=f"TLS with SMTP server 127.0.0.1:{smtp_ssl.port} failed.*CERTIFICATE_VERIFY_FAILED"):
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


def test_asend_is_awaitable_and_sends_to_the_given_recipients(smtp_plain) -> None:
    notifier = make(smtp_plain, "INSECURE")
    asyncio.run(notifier.asend("to ops only", subject="Override", recipients=["ops@example.com"]))
    (mail,) = smtp_plain.mailbox.messages
    assert mail["rcpt_tos"] == ["ops@example.com"] and mail["message"]["To"] == "ops@example.com"


def test_sync_hook_of_an_async_flow_sends_from_inside_the_running_loop(smtp_plain) -> None:
    # Prefect calls a sync hook of an async flow on the flow's event loop: the hook's blocking
    # send must still deliver, and leave no thread behind.
    notifier = make(smtp_plain, "INSECURE")
    seen: list[bool] = []

    def loop_running(flow_, run, state) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            seen.append(False)
        else:
            seen.append(True)

    @flow(name="async-with-sync-hook", on_failure=[loop_running, email_notifier(subject="async {flow_name}", notifier=notifier)])
    async def failing() -> None:
        raise RuntimeError("async failure")

    before = set(threading.enumerate())
    state = asyncio.run(failing(return_state=True))
    assert state.is_failed() and seen == [True]
    (mail,) = smtp_plain.mailbox.messages
    assert mail["message"]["Subject"] == "async async-with-sync-hook"
    assert "RuntimeError: async failure" in mail["message"].get_body(("plain",)).get_content()
    assert [t for t in new_threads(before) if t.name == "prefect-etl-smtp"] == []


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
    (failed,) = hook_records(caplog, "An error was encountered while running hook ")
    assert failed.exc_info[0] is EmailDeliveryError
    assert "finished running successfully" not in caplog.text
    assert SMTP_PASSWORD not in caplog.text


# --- helpers for the secret, deadline and hook tests ----------------------------------------

#: Scheduling slack on top of a deadline: a behavioural bound, not a benchmark.
SLACK = 1.5


def secret_forms(user: str, password: str) -> tuple[list[str], list[bytes]]:
    """Every form the password could leak in: text, UTF-8 bytes, base64 (alone and as the AUTH
    PLAIN blob), and the escaped forms ``repr`` and ``ascii`` produce."""
    raw = password.encode("utf-8", "surrogatepass")
    plain_blob = b"\0" + user.encode("utf-8", "surrogatepass") + b"\0" + raw
    b64 = [base64.b64encode(raw), base64.b64encode(plain_blob)]
    texts = [password, repr(raw)[2:-1], ascii(password)[1:-1], *(b.decode() for b in b64)]
    return texts, [raw, *b64]


def reachable(obj: object, seen: set[int] | None = None) -> Iterator[object]:
    """``obj`` and everything reachable from it through exception chains (``__cause__``,
    ``__context__``), ``args``, attributes (``vars``) and containers, plus each exception's
    ``str`` and ``repr``."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children: list[object] = []
    if isinstance(obj, BaseException):
        children += [str(obj), repr(obj), obj.__cause__, obj.__context__, *obj.args, *vars(obj).values()]
    elif isinstance(obj, dict):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children += list(obj)
    elif not isinstance(obj, (str, bytes, bytearray, int, float, bool, type(None))) and hasattr(obj, "__dict__"):
        children += list(vars(obj).values())
    for child in children:
        yield from reachable(child, seen)


def assert_no_secret(things: list[object], user: str, password: str) -> None:
    texts, raws = secret_forms(user, password)
    for thing in things:
        for item in reachable(thing):
            if isinstance(item, str):
                assert not [t for t in texts if t in item], f"password form found in {item!r}"
            elif isinstance(item, (bytes, bytearray)):
                assert not [r for r in raws if r in item], f"password bytes found in {item!r}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG into ``caplog`` (prefect, mail.log, smtplib, ours, and loggers that
    do not propagate), restored afterwards."""
    names = ["", "prefect", "mail.log", "smtplib", "prefect_etl_blocks", *logging.root.manager.loggerDict]
    loggers = {id(lg): lg for lg in (logging.getLogger(n) for n in names)}.values()
    saved = [(lg, lg.level) for lg in loggers]
    caplog.handler.setLevel(logging.DEBUG)
    attached = []
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if not lg.propagate:
            lg.addHandler(caplog.handler)
            attached.append(lg)
    try:
        yield caplog
    finally:
        for lg, level in saved:
            lg.setLevel(level)
        for lg in attached:
            lg.removeHandler(caplog.handler)


def hook_records(caplog: pytest.LogCaptureFixture, prefix: str) -> list[logging.LogRecord]:
    """Prefect's records about our hook (Prefect quotes the hook name with ``!r``)."""
    return [r for r in caplog.records if r.getMessage().startswith(prefix) and "email_notifier(" in r.getMessage()]


def own_sockets_to(port: int) -> list:
    """This process's TCP sockets whose remote end is ``port`` (the client side)."""
    return [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and not t.name.startswith("drip-")]


def drip_notifier(server, smtp_type: str = "INSECURE", **kwargs) -> EmailNotifier:
    base = dict(smtp_server=server.host, smtp_port=server.port, smtp_type=smtp_type, from_address="etl@example.com",
                to_addresses=["team@example.com"], timeout_seconds=2, max_retries=0)
    base.update(kwargs)
    return EmailNotifier(**base)


# --- non-ASCII credentials ------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_utf8_credentials_are_sent_as_utf8(smtp_server, mechanism: str) -> None:
    server = smtp_server(user=SMTP_USER_UTF8, password=SMTP_PASSWORD_UTF8, mechanisms=(mechanism,))
    make(server, "INSECURE", username=SMTP_USER_UTF8, password=SMTP_PASSWORD_UTF8).notify("héllo ✓")
    assert server.mailbox.login_attempts == 1
    (mail,) = server.mailbox.messages
    assert mail["message"].get_body(("plain",)).get_content().strip() == "héllo ✓"


def test_refused_utf8_password_leaves_no_trace(smtp_server, debug_logs, capfd) -> None:
    server = smtp_server(user=SMTP_USER_UTF8, password="another-pässwörd")
    notifier = make(server, "INSECURE", username=SMTP_USER_UTF8, password=SMTP_PASSWORD_UTF8, max_retries=2)
    with pytest.raises(EmailRejectedError) as info:
        notifier.notify("x")
    exc = info.value
    assert str(exc) == (
        f"SMTP server 127.0.0.1:{server.port} refused authentication for user '{SMTP_USER_UTF8}' "
        "(535 5.7.8 Authentication credentials invalid). Check username and password."
    )
    assert isinstance(exc, DataError) and not isinstance(exc, TransientError)
    assert exc.__cause__ is None and exc.__context__ is None and exc.__suppress_context__
    # Not retried: one connection, where each offered mechanism (PLAIN, LOGIN) was tried once.
    assert server.mailbox.login_attempts == 2
    logging.getLogger("prefect_etl_blocks.test").exception("logged with traceback", exc_info=exc)
    # The capture is real: aiosmtpd's DEBUG lines about this AUTH dialogue are in it.
    assert any(r.name == "mail.log" and r.levelno == logging.DEBUG and "AUTH" in r.getMessage() for r in debug_logs.records)
    out = capfd.readouterr()
    assert_no_secret([exc, repr(notifier), debug_logs.text, out.out, out.err], SMTP_USER_UTF8, SMTP_PASSWORD_UTF8)


@pytest.mark.parametrize("field", ["username", "password"])
def test_unencodable_credentials_are_rejected_without_the_secret(smtp_plain_auth, debug_logs, field: str) -> None:
    credentials = {"username": SMTP_USER, "password": SMTP_PASSWORD, field: "pässwörd-\ud800-秘密"}
    notifier = make(smtp_plain_auth, "INSECURE", max_retries=2, **credentials)
    with pytest.raises(EmailRejectedError) as info:
        notifier.notify("x")
    assert str(info.value) == (
        f"The SMTP {field} cannot be sent: it contains characters that are not valid Unicode (lone "
        "surrogates, typical of text decoded with the wrong encoding). Enter the "
        f"{field} again in the EmailNotifier block."
    )
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert smtp_plain_auth.mailbox.login_attempts == 0 and smtp_plain_auth.mailbox.messages == []
    assert_no_secret([info.value, debug_logs.text], credentials["username"], credentials["password"])


def test_username_without_auth_offered_is_rejected(smtp_server) -> None:
    server = smtp_server(auth=False)
    with pytest.raises(EmailRejectedError, match=f"SMTP server 127.0.0.1:{server.port} does not offer AUTH, but username is set"):
        make(server, "INSECURE", username=SMTP_USER, password=SMTP_PASSWORD, max_retries=2).notify("x")
    assert server.mailbox.messages == []


# --- TLS settings and error classes ------------------------------------------------------------


def test_starttls_not_offered_says_to_change_smtp_type(smtp_plain) -> None:
    with pytest.raises(EmailRejectedError) as info:
        make(smtp_plain, "STARTTLS", max_retries=2).notify("x")
    assert str(info.value) == (
        f"SMTP server 127.0.0.1:{smtp_plain.port} does not offer STARTTLS, but smtp_type is 'STARTTLS'. "
        "Change smtp_type to match the server: 'SSL' for implicit TLS (usually port 465), 'STARTTLS' only "
        "for servers that advertise it (usually port 587), or 'INSECURE' for an unencrypted server on a "
        "trusted network."
    )
    assert smtp_plain.mailbox.messages == []


@pytest.mark.parametrize(
    ("reply", "error", "attempts"),
    [("450 4.2.1 Mailbox busy", EmailDeliveryError, 2), ("550 5.1.1 No such user", EmailRejectedError, 1)],
)
def test_4xx_is_retried_and_5xx_is_not(smtp_server, reply: str, error: type, attempts: int) -> None:
    server = smtp_server(auth=False, rcpt_reply=reply)
    with pytest.raises(error, match=rf"127.0.0.1:{server.port} refused the recipients: team@example.com \({reply}\)"):
        make(server, "INSECURE", max_retries=1).notify("x")
    assert server.mailbox.rcpt_attempts == attempts and server.mailbox.messages == []


# --- the deadline ------------------------------------------------------------------------------


def test_slow_greeting_is_cut_at_timeout_seconds(drip_server) -> None:
    server = drip_server("greeting")
    before = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(EmailDeliveryError, match=f"127.0.0.1:{server.port} did not complete the delivery within timeout_seconds=2 "):
        drip_notifier(server).notify("x")
    elapsed = time.monotonic() - start
    assert 1.9 <= elapsed <= 2 + SLACK, elapsed
    assert server.connections == 1
    assert own_sockets_to(server.port) == [] and new_threads(before) == []


def test_slow_greeting_with_one_retry_is_bounded(drip_server) -> None:
    server = drip_server("greeting")
    start = time.monotonic()
    with pytest.raises(EmailDeliveryError, match="did not complete the delivery within timeout_seconds=2 "):
        drip_notifier(server, max_retries=1).notify("x")
    elapsed = time.monotonic() - start
    assert 2 * 2 <= elapsed <= 2 * 2 + 0.2 + SLACK, elapsed  # two attempts and a 0.2 s back-off
    assert server.connections == 2
    assert own_sockets_to(server.port) == []


def test_slow_ehlo_reply_is_cut_at_timeout_seconds(drip_server) -> None:
    server = drip_server("ehlo")
    before = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(EmailDeliveryError, match="did not complete the delivery within timeout_seconds=2 "):
        drip_notifier(server).notify("x")
    elapsed = time.monotonic() - start
    assert 1.9 <= elapsed <= 2 + SLACK, elapsed
    assert own_sockets_to(server.port) == [] and new_threads(before) == []


def test_implicit_tls_handshake_with_slow_server_is_cut(drip_server) -> None:
    server = drip_server("greeting")
    start = time.monotonic()
    with pytest.raises(EmailDeliveryError, match="did not complete the delivery within timeout_seconds=2 "):
        drip_notifier(server, smtp_type="SSL").notify("x")
    assert time.monotonic() - start <= 2 + SLACK
    assert own_sockets_to(server.port) == []


def test_cancelled_anotify_drops_the_connection_at_once(drip_server) -> None:
    server = drip_server("greeting")
    notifier = drip_notifier(server, timeout_seconds=20)

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(notifier.anotify("x"), 0.5)
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed <= 0.5 + SLACK, elapsed  # the caller's cancellation, not timeout_seconds=20
    assert server.connections == 1 and own_sockets_to(server.port) == []


# --- hooks under the Prefect harness -------------------------------------------------------------


def test_hook_with_slow_server_ends_within_timeout(drip_server, caplog: pytest.LogCaptureFixture) -> None:
    server = drip_server("greeting")

    @flow(name="slow-mail", on_failure=[email_notifier(notifier=drip_notifier(server))])
    def failing() -> None:
        raise RuntimeError("the original error")

    with caplog.at_level(logging.INFO):
        state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="the original error"):
        state.result()
    (started,) = hook_records(caplog, "Running hook ")
    (failed,) = hook_records(caplog, "An error was encountered while running hook ")
    assert 1.9 <= failed.created - started.created <= 2 + SLACK, failed.created - started.created
    assert failed.exc_info[0] is EmailDeliveryError
    assert "finished running successfully" not in caplog.text


def test_hook_with_missing_block_names_it_and_how_to_save_it(caplog: pytest.LogCaptureFixture) -> None:
    @flow(name="no-mailer", on_failure=[email_notifier(notifier="no-such-mailer")])
    def failing() -> None:
        raise KeyError("the original error")

    with caplog.at_level(logging.INFO):
        state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(KeyError, match="the original error"):
        state.result()
    (ours,) = [r for r in caplog.records if "Email notification via saved block 'no-such-mailer' failed" in r.getMessage()]
    assert ours.levelno == logging.ERROR
    assert 'No EmailNotifier block named "no-such-mailer" is saved' in ours.getMessage()
    assert 'EmailNotifier(...).save("no-such-mailer")' in ours.getMessage()
    (failed,) = hook_records(caplog, "An error was encountered while running hook ")
    assert failed.exc_info[0] is UnsavedBlockError
    assert failed.exc_info[1].__cause__ is None and failed.exc_info[1].__suppress_context__
    assert "finished running successfully" not in caplog.text


def test_hook_with_refused_utf8_password_logs_no_secret(smtp_server, debug_logs, capfd) -> None:
    server = smtp_server(user=SMTP_USER_UTF8, password="another-pässwörd")
    notifier = make(server, "INSECURE", username=SMTP_USER_UTF8, password=SMTP_PASSWORD_UTF8)

    @flow(name="utf8-mail", on_failure=[email_notifier(notifier=notifier)])
    def failing() -> None:
        raise RuntimeError("the original error")

    state = failing(return_state=True)
    assert state.is_failed()
    (failed,) = hook_records(debug_logs, "An error was encountered while running hook ")
    assert failed.exc_info[0] is EmailRejectedError
    assert f"refused authentication for user '{SMTP_USER_UTF8}'" in debug_logs.text
    assert "finished running successfully" not in debug_logs.text
    out = capfd.readouterr()
    errors = [r.exc_info[1] for r in debug_logs.records if r.exc_info]
    assert_no_secret([debug_logs.text, out.out, out.err, *errors], SMTP_USER_UTF8, SMTP_PASSWORD_UTF8)
