"""``EmailNotifier`` (an SMTP ``NotificationBlock``) and ``email_notifier`` state hooks.

Sync and async follow the pattern of :mod:`prefect_etl_blocks.blocks.duckdb`: ``anotify`` is the async
twin and ``notify`` is decorated with Prefect's ``@async_dispatch(anotify)``, so ``notify`` sends
and returns in sync code and is awaitable in async code (the SMTP work then runs in a worker
thread).

``timeout_seconds`` bounds a whole delivery attempt (connect, TLS, AUTH, the message, QUIT), not
each socket read: every read and write gets only the time left before the attempt's deadline, so
a server that answers one byte a second cannot hold a flow. Failures are
:class:`~prefect_etl_blocks.core.errors.EmailDeliveryError` (transient: retried up to ``max_retries``)
or :class:`~prefect_etl_blocks.core.errors.EmailRejectedError` (the server or the settings said no:
never retried). No error, chained exception or log line holds the password.

Hooks made by :func:`email_notifier` log one error naming the server and the reason, then raise
it, so Prefect records the hook as failed (not "finished running successfully"); Prefect catches
hook errors, so the run keeps its own state and exception.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import json
import logging
import smtplib
import socket
import ssl
import string
import sys
import time
import traceback
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import Enum
from typing import Any

import anyio.to_thread
from prefect.blocks.abstract import NotificationBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator

from prefect_etl_blocks.core.errors import (
    EmailDeliveryError,
    EmailRejectedError,
    NotificationTemplateError,
    PrefectETLBlocksError,
    UnsavedBlockError,
)
from prefect_etl_blocks.runtime.compat import async_dispatch

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/email_notifier/"
DEFAULT_BLOCK_NAME = "default"
PLACEHOLDERS = (
    "flow_name", "flow_run_name", "flow_run_id", "state_name", "state_message", "parameters",
    "flow_run_url", "exception", "task_name", "task_run_name",
)
DEFAULT_BODY = (
    "Flow run {flow_run_name} of flow {flow_name} entered state {state_name}.\n\n"
    "Message: {state_message}\nParameters: {parameters}\nRun: {flow_run_url}\n\n{exception}"
)
logger = logging.getLogger("prefect_etl_blocks.blocks.notifications")


class SMTPType(str, Enum):
    """How the connection is secured."""

    SSL = "SSL"
    STARTTLS = "STARTTLS"
    INSECURE = "INSECURE"


_DEFAULT_PORTS = {SMTPType.SSL: 465, SMTPType.STARTTLS: 587, SMTPType.INSECURE: 25}


def _check_header(value: str, field: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{field} must not contain line breaks (header injection): {value!r}.")
    return value


def _check_address(value: str, field: str) -> str:
    _check_header(value, field)
    if "@" not in value or any(c.isspace() for c in value) or value.count("@") != 1:
        raise ValueError(f"{field} has an invalid email address {value!r}; expected name@example.com.")
    return value


# --- one delivery attempt under one deadline ---------------------------------------------

#: Mechanisms tried in smtplib's order of preference, each with UTF-8 credentials.
_AUTH_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")


class _DeadlineExceeded(TimeoutError):
    """The delivery attempt used up ``timeout_seconds``."""


class _Failure(Exception):
    """A setting the server cannot work with, diagnosed here; the message is final (not retried)."""


class _DeadlineReader:
    """Reply lines read from ``sock``, each ``recv`` limited to the time left in the attempt.

    It replaces the ``makefile()`` reader of :class:`smtplib.SMTP`, whose reads each wait up to
    the socket timeout: a server sending one byte per second would never trip that timeout.
    """

    def __init__(self, sock: socket.socket, client: _DeadlineSMTP) -> None:
        self._sock = sock
        self._client = client
        self._buffer = bytearray()

    def readline(self, limit: int) -> bytes:
        while True:
            newline = self._buffer.find(b"\n", 0, limit)
            if newline >= 0 or len(self._buffer) >= limit:
                end = newline + 1 if newline >= 0 else limit
                line = bytes(self._buffer[:end])
                del self._buffer[:end]
                return line
            self._sock.settimeout(self._client.remaining())
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                self._client.timed_out = True
                raise
            if not chunk:  # end of stream: smtplib reports the disconnect
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += chunk

    def close(self) -> None:
        self._buffer.clear()


class _DeadlineSMTP(smtplib.SMTP):
    """:class:`smtplib.SMTP` whose connect, TLS handshakes, reads and writes share one deadline.

    Before each socket operation the socket timeout is set to the time left, so the attempt
    ends at the deadline however the server paces its bytes. ``implicit_tls`` wraps the socket
    at connect time (``smtp_type=SSL``). No threads are involved; ``close()`` releases the socket.
    """

    def __init__(self, host: str, timeout_seconds: float, implicit_tls: ssl.SSLContext | None) -> None:
        self.deadline = time.monotonic() + timeout_seconds
        self.timed_out = False
        self._implicit_tls = implicit_tls
        super().__init__(timeout=timeout_seconds)
        self._host = host  # TLS server name; smtplib sets it only when __init__ connects

    def remaining(self) -> float:
        """Seconds left before the deadline; raises once it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise _DeadlineExceeded("the delivery attempt used up timeout_seconds")
        return left

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        sock = self._open(host, port)
        if self._implicit_tls is None:
            return sock
        try:
            sock.settimeout(self.remaining())  # bounds the whole handshake (one ssl call)
            return self._implicit_tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def _open(self, host: str, port: int) -> socket.socket:
        last_error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.remaining())
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                if isinstance(exc, TimeoutError):
                    self.timed_out = True
                    raise
                last_error = exc
        if last_error is None:
            raise OSError(f"no address found for {host!r}")
        raise last_error

    def send(self, s: str | bytes) -> None:  # type: ignore[override]
        if isinstance(s, str):
            s = s.encode(self.command_encoding)
        if not self.sock:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        sys.audit("smtplib.send", self, s)
        data = memoryview(s)
        try:
            while data:
                self.sock.settimeout(self.remaining())
                data = data[self.sock.send(data):]
        except OSError as exc:
            self.timed_out = self.timed_out or isinstance(exc, TimeoutError)
            self.close()
            raise smtplib.SMTPServerDisconnected("Server not connected") from None

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        if self.file is None:  # new connection, or smtplib dropped the reader after STARTTLS
            self.file = _DeadlineReader(self.sock, self)  # type: ignore[assignment]
        reply = super().getreply()
        if self.sock is not None:
            # The STARTTLS handshake that may follow uses the socket timeout as it stands.
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        return reply


def _utf8(text: str, field: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Raised outside the except block: the UnicodeEncodeError (whose .object is the whole
    # secret) must not become this error's __context__.
    raise _Failure(
        f"The SMTP {field} cannot be sent: it contains characters that are not valid Unicode "
        "(lone surrogates, typical of text decoded with the wrong encoding). Enter the "
        f"{field} again in the EmailNotifier block."
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _auth_exchange(client: smtplib.SMTP, mechanism: str, user: bytes, password: bytes) -> tuple[int, bytes]:
    """One SMTP AUTH dialogue (RFC 4954) with UTF-8 credentials; returns the final reply."""
    if mechanism == "PLAIN":  # RFC 4616: authzid NUL authcid NUL passwd, all UTF-8
        code, reply = client.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + password))
        answers: list[bytes] = []
    elif mechanism == "LOGIN":
        code, reply = client.docmd("AUTH", "LOGIN")
        answers = [user, password]
    else:  # CRAM-MD5 (RFC 2195)
        code, reply = client.docmd("AUTH", "CRAM-MD5")
        answers = []
        if code == 334:
            try:
                challenge = base64.b64decode(reply)
            except (binascii.Error, ValueError):
                challenge = b""
            digest = hmac.new(password, challenge, "md5").hexdigest().encode("ascii")
            code, reply = client.docmd(_b64(user + b" " + digest))
    while code == 334 and answers:
        code, reply = client.docmd(_b64(answers.pop(0)))
    if code == 334:  # a challenge we cannot answer: cancel, as RFC 4954 asks
        code, reply = client.docmd("*")
    return code, reply


def _authenticate(client: smtplib.SMTP, username: str, password: SecretStr | None, where: str) -> None:
    """Log in with UTF-8 credentials (smtplib's own ``login`` allows ASCII only)."""
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("auth"):
        raise _Failure(
            f"SMTP server {where} does not offer AUTH, but username is set. Remove username and "
            "password, or secure the connection first (smtp_type STARTTLS or SSL): many servers "
            "offer AUTH only over TLS."
        )
    offered = client.esmtp_features["auth"].upper().split()
    usable = [m for m in _AUTH_MECHANISMS if m in offered]
    if not usable:
        raise _Failure(
            f"SMTP server {where} offers AUTH {' '.join(offered) or '(none)'}; EmailNotifier "
            f"supports {', '.join(_AUTH_MECHANISMS)}. Ask the mail administrator for one of them."
        )
    user = _utf8(username, "username")
    secret = _utf8(password.get_secret_value() if password else "", "password")
    code, reply = 0, b""
    # Like smtplib: some servers advertise mechanisms they refuse, so try each one offered.
    for mechanism in usable:
        code, reply = _auth_exchange(client, mechanism, user, secret)
        if code in (235, 503):  # 503: already authenticated
            return
    raise smtplib.SMTPAuthenticationError(code, reply)


def _reply_text(reply: Any) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


class EmailNotifier(NotificationBlock):
    """Send email through an SMTP server (SSL, STARTTLS or plain), from flows or automations.

    Example:
        Load a saved notifier and send a message:
        ```python
        from prefect_etl_blocks import EmailNotifier

        notifier = EmailNotifier.load("BLOCK_NAME")
        notifier.notify("The nightly load finished.", subject="Nightly ETL")
        ```
    """

    # A mistyped password (a number, say) must not be echoed by pydantic's error message.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "Email Notifier"
    _logo_url = "https://images.ctfassets.net/gm98wzqotmnx/email-notifier/email.png"
    _documentation_url = DOCS_URL
    _description = "Send email notifications through an SMTP server (SSL, STARTTLS or plain)."

    smtp_server: str = Field(default=..., description="Host name or address of the SMTP server.")
    smtp_type: SMTPType = Field(
        default=SMTPType.STARTTLS,
        description="How the connection is secured: SSL (implicit TLS), STARTTLS or INSECURE.",
    )
    smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Server port; defaults to 465 for SSL, 587 for STARTTLS and 25 for INSECURE.",
    )
    username: str | None = Field(default=None, description="User name for SMTP AUTH; none skips AUTH.")
    password: SecretStr | None = Field(default=None, description="Password for SMTP AUTH.")
    from_address: str = Field(default=..., description="Sender address (From header and envelope).")
    to_addresses: list[str] = Field(default_factory=list, description="Recipient addresses.")
    cc: list[str] = Field(default_factory=list, description="Carbon-copy addresses (shown in the Cc header).")
    bcc: list[str] = Field(default_factory=list, description="Blind-copy addresses (envelope only, never in headers).")
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Time limit for one delivery attempt: connect, TLS, AUTH, message and QUIT together.",
    )
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate and host name.")
    ca_bundle_path: str | None = Field(
        default=None, description="Path of a CA bundle (PEM) to trust instead of the system's."
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries for transient errors (unreachable or slow server, 4xx replies)."
    )

    @field_validator("smtp_type", mode="before")
    @classmethod
    def _upper_type(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _check_address(value, "from_address")

    @field_validator("to_addresses", "cc", "bcc")
    @classmethod
    def _lists(cls, value: list[str], info: Any) -> list[str]:
        return [_check_address(v, info.field_name) for v in value]

    @property
    def port(self) -> int:
        """The port used: ``smtp_port`` or the default of ``smtp_type``."""
        return self.smtp_port or _DEFAULT_PORTS[self.smtp_type]

    def build_message(self, body: str, subject: str | None = None, recipients: list[str] | None = None) -> EmailMessage:
        """The multipart (plain text + HTML) message ``notify`` would send."""
        to = [_check_address(a, "recipients") for a in recipients] if recipients else self.to_addresses
        if not (to or self.cc or self.bcc):
            raise ValueError("EmailNotifier has no recipients: set to_addresses (or pass recipients).")
        message = EmailMessage()
        message["Subject"] = _check_header(subject or "Prefect notification", "subject")
        message["From"] = self.from_address
        if to:
            message["To"] = ", ".join(to)
        if self.cc:
            message["Cc"] = ", ".join(self.cc)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.from_address.split("@")[1])
        message.set_content(body)
        message.add_alternative(
            f"<html><body><pre style=\"font-family: monospace\">{html.escape(body)}</pre></body></html>",
            subtype="html",
        )
        return message

    @property
    def _where(self) -> str:
        return f"{self.smtp_server}:{self.port}"

    def _redact(self, text: str) -> str:
        """``text`` with the password masked (server replies and OS errors are quoted)."""
        secret = self.password.get_secret_value() if self.password else ""
        return text.replace(secret, "**********") if secret else text

    def _tls_context(self) -> ssl.SSLContext:
        problem = ""
        try:
            context = ssl.create_default_context(cafile=self.ca_bundle_path)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            raise _Failure(
                f"ca_bundle_path {self.ca_bundle_path!r} cannot be used as a CA bundle ({problem}). "
                "Point it at a readable PEM file, or unset it to trust the system's CAs."
            )
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _deliver(self, client: _DeadlineSMTP, message: EmailMessage, envelope: list[str]) -> None:
        code, reply = client.connect(self.smtp_server, self.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        client.ehlo_or_helo_if_needed()
        if self.smtp_type is SMTPType.STARTTLS:
            if not client.has_extn("starttls"):
                raise _Failure(
                    f"SMTP server {self._where} does not offer STARTTLS, but smtp_type is "
                    "'STARTTLS'. Change smtp_type to match the server: 'SSL' for implicit TLS "
                    "(usually port 465), 'STARTTLS' only for servers that advertise it (usually "
                    "port 587), or 'INSECURE' for an unencrypted server on a trusted network."
                )
            client.starttls(context=self._tls_context())
            client.ehlo_or_helo_if_needed()
        if self.username:
            _authenticate(client, self.username, self.password, self._where)
        client.send_message(message, from_addr=self.from_address, to_addrs=envelope)
        try:
            client.docmd("QUIT")
        except (OSError, smtplib.SMTPException):
            pass  # the server accepted the message; a failed goodbye must not cause a resend

    def _classify(self, exc: BaseException, timed_out: bool) -> PrefectETLBlocksError:
        """The library error for one failed attempt (built here, raised by the caller)."""
        where = self._where
        if isinstance(exc, _Failure):
            return EmailRejectedError(self._redact(str(exc)))
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            refused = exc.recipients.items()
            transient = bool(refused) and all(400 <= code < 500 for code, _ in exc.recipients.values())
            detail = "; ".join(f"{addr} ({code} {_reply_text(text)})" for addr, (code, text) in refused)
            cls = EmailDeliveryError if transient else EmailRejectedError
            return cls(self._redact(f"SMTP server {where} refused the recipients: {detail}."))
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            transient = 400 <= code < 500
            cls = EmailDeliveryError if transient else EmailRejectedError
            reply = f"{code} {_reply_text(exc.smtp_error)}"
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                text = (f"SMTP server {where} refused authentication for user {self.username!r} "
                        f"({reply}). Check username and password.")
            else:
                text = f"SMTP server {where} rejected the message: {reply}."
            if transient:
                text += " The server called this temporary; max_retries retries it."
            return cls(self._redact(text))
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return EmailRejectedError(self._redact(
                f"TLS with SMTP server {where} failed: {exc.reason or exc}. Set ca_bundle_path to "
                "the CA that signed the server certificate, or check smtp_type matches the port "
                "(SSL usually 465, STARTTLS usually 587)."
            ))
        if timed_out or isinstance(exc, TimeoutError):
            return EmailDeliveryError(
                f"SMTP server {where} did not complete the delivery within timeout_seconds="
                f"{self.timeout_seconds:g} (connect, TLS, AUTH, message and QUIT together). The "
                "server is down, overloaded or slow: check it, or raise timeout_seconds."
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return EmailRejectedError(self._redact(f"SMTP server {where} cannot take this message: {exc}"))
        if isinstance(exc, UnicodeError):
            return EmailRejectedError(self._redact(
                f"The message for SMTP server {where} has text that cannot be sent: {exc}. Use "
                "ASCII addresses, or a server that supports SMTPUTF8."
            ))
        return EmailDeliveryError(self._redact(
            f"Could not send email through SMTP server {where}: {type(exc).__name__}: {exc}. "
            "Check smtp_server, the port and that the server is reachable."
        ))

    def _attempt(self, message: EmailMessage, envelope: list[str]) -> PrefectETLBlocksError | None:
        """One delivery under one deadline; the error to raise, or None once delivered."""
        client: _DeadlineSMTP | None = None
        try:
            implicit = self._tls_context() if self.smtp_type is SMTPType.SSL else None
            client = _DeadlineSMTP(self.smtp_server, self.timeout_seconds, implicit)
            self._deliver(client, message, envelope)
        except (OSError, smtplib.SMTPException, UnicodeError, _Failure) as exc:
            # Only build the error here: raised inside this block it would keep ``exc`` (and
            # everything it references) as its __context__.
            return self._classify(exc, client is not None and client.timed_out)
        finally:
            if client is not None:
                client.close()
        return None

    def send(self, body: str, subject: str | None = None, recipients: list[str] | None = None) -> None:
        """Send now, retrying transient failures up to ``max_retries`` times.

        Each attempt, from connecting to QUIT, ends within ``timeout_seconds``.

        Raises:
            EmailDeliveryError: the server is unreachable, slow or answered 4xx (transient).
            EmailRejectedError: authentication, TLS, settings or a 5xx reply (not retried).
        """
        message = self.build_message(body, subject, recipients)
        envelope = list(dict.fromkeys((recipients or self.to_addresses) + self.cc + self.bcc))
        for attempt in range(self.max_retries + 1):
            failure = self._attempt(message, envelope)
            if failure is None:
                return
            if not failure.retryable or attempt == self.max_retries:
                raise failure from None
            time.sleep(min(0.2 * 2**attempt, 2.0))

    async def anotify(self, body: str, subject: str | None = None) -> None:
        """Async twin of :meth:`notify`."""
        await anyio.to_thread.run_sync(self.send, body, subject)

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:  # type: ignore[override]
        """Send ``body`` (plain text, also rendered as HTML) to the configured recipients."""
        self.send(body, subject)

    def __repr__(self) -> str:
        return (
            f"EmailNotifier(smtp_server={self.smtp_server!r}, port={self.port}, "
            f"smtp_type={self.smtp_type.value!r}, username={self.username!r}, password=SecretStr('**********'))"
        )

    __str__ = __repr__


def _check_template(template: str, what: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise NotificationTemplateError(f"{what} template {template!r} is not valid: {exc}.") from None
    for field in fields:
        root = field.split(".")[0].split("[")[0]
        if root not in PLACEHOLDERS:
            raise NotificationTemplateError(
                f"{what} template uses unknown placeholder {{{field}}}; valid placeholders are "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + "."
            )


def _exception_text(state: Any) -> str:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as error:  # result unavailable (not persisted): the state message says it
        exc = error
    if isinstance(exc, BaseException):
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return "".join(frames[-6:]).strip()
    return ""


def _context(obj: Any, run: Any, state: Any) -> dict[str, str]:
    from prefect.settings import PREFECT_UI_URL

    is_task = hasattr(obj, "task_key") or getattr(run, "task_key", None) is not None
    values = dict.fromkeys(PLACEHOLDERS, "")
    flow_run = run
    if is_task:
        values["task_name"] = getattr(obj, "name", "")
        values["task_run_name"] = getattr(run, "name", "")
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        flow_run = ctx.flow_run if ctx else None
        values["flow_name"] = ctx.flow.name if ctx and ctx.flow else ""
    else:
        values["flow_name"] = getattr(obj, "name", "")
    if flow_run is not None:
        values["flow_run_name"] = str(getattr(flow_run, "name", ""))
        values["flow_run_id"] = str(getattr(flow_run, "id", ""))
        values["parameters"] = str(getattr(flow_run, "parameters", {}) or {})
        ui = PREFECT_UI_URL.value()
        values["flow_run_url"] = f"{ui.rstrip('/')}/runs/flow-run/{flow_run.id}" if ui else "(PREFECT_UI_URL not set)"
    values["state_name"] = str(getattr(state, "name", ""))
    values["state_message"] = str(getattr(state, "message", "") or "")
    values["exception"] = _exception_text(state) if getattr(state, "is_failed", lambda: False)() or getattr(state, "is_crashed", lambda: False)() else ""
    return values


def _load_notifier(name: str) -> EmailNotifier:
    """The saved block ``name``; a missing one is an :class:`UnsavedBlockError` saying how to save it."""
    from prefect.exceptions import ObjectNotFound

    try:
        return EmailNotifier.load(name, _sync=True)
    except ValueError as exc:
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
    quoted = json.dumps(name)
    raise UnsavedBlockError(
        f"No EmailNotifier block named {quoted} is saved, so the hook has no SMTP server to send "
        f"through. Save one under that name with EmailNotifier(...).save({quoted}) (fields "
        "smtp_server, from_address, to_addresses, ...), or pass notifier=EmailNotifier(...) to "
        "email_notifier()."
    ) from None


def _log_failure(text: str) -> None:
    """Log ``text`` once: to the run's logger inside a run (it reaches the UI), else ours."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        run_logger: Any = get_run_logger()
    except MissingContextError:
        run_logger = logger
    run_logger.error(text)


def email_notifier(
    subject: str = "Prefect: {flow_name} run {flow_run_name} is {state_name}",
    body: str | None = None,
    recipients: list[str] | None = None,
    notifier: EmailNotifier | str | None = None,
) -> Callable[[Any, Any, Any], None]:
    """A state hook that emails about a flow or task run (``on_failure``, ``on_crashed``, ...).

    Args:
        subject: ``str.format`` template; placeholders: ``{flow_name}``, ``{flow_run_name}``,
            ``{flow_run_id}``, ``{state_name}``, ``{state_message}``, ``{parameters}``,
            ``{flow_run_url}``, ``{exception}``, and for task hooks ``{task_name}``,
            ``{task_run_name}``.
        body: template of the body; a summary with the exception by default.
        recipients: overrides the notifier's ``to_addresses``.
        notifier: an ``EmailNotifier``, the name of a saved one, or None for the block
            saved as ``"default"`` (loaded when the hook runs).

    Raises:
        NotificationTemplateError: at creation, for an unknown placeholder or bad syntax.

    The hook itself, when it cannot send, logs one error (server and reason, or the missing
    block's name and how to save it) and raises it (``EmailDeliveryError``,
    ``EmailRejectedError`` or ``UnsavedBlockError``). Prefect's hook runner logs the hook as
    failed and leaves the run's state and exception as they were.

    Example:
        ```python
        from prefect import flow
        from prefect_etl_blocks import email_notifier

        alert = email_notifier(subject="Pipeline Failed: {flow_run_name}", recipients=["team@example.com"])

        @flow(on_failure=[alert])
        def pipeline() -> None:
            ...
        ```
    """
    _check_template(subject, "subject")
    body_template = body if body is not None else DEFAULT_BODY
    _check_template(body_template, "body")
    checked = [_check_address(r, "recipients") for r in recipients] if recipients else None

    def hook(obj: Any, run: Any, state: Any) -> None:
        target = notifier if notifier is not None else DEFAULT_BLOCK_NAME
        where = f"saved block {target!r}" if isinstance(target, str) else target._where
        try:
            block = _load_notifier(target) if isinstance(target, str) else target
            where = block._where
            values = _context(obj, run, state)
            rendered = " ".join(subject.format(**values).split())
            block.send(body_template.format(**values), rendered, checked)
        except Exception as exc:
            # One clear line in the run's log, then raise: Prefect then records the hook as
            # failed instead of "finished running successfully", and its hook runner catches
            # the error, so the run keeps its own state and exception.
            _log_failure(f"Email notification via {where} failed: {exc}")
            raise

    hook.__name__ = f"email_notifier({subject!r})"
    return hook


__all__ = ["EmailNotifier", "SMTPType", "email_notifier", "DEFAULT_BLOCK_NAME", "PLACEHOLDERS"]
