"""SMTP sessions over aiosmtplib, each under one deadline, with failures sorted at the boundary.

The protocol (connect, implicit TLS or STARTTLS, EHLO, AUTH CRAM-MD5/PLAIN/LOGIN, the message,
QUIT) is aiosmtplib's. What is ours:

* **One deadline per session.** aiosmtplib's ``timeout`` bounds each socket operation, not the
  whole delivery (its docs/timeouts.rst), so a server that sends one byte a second would never
  trip it. :func:`run_session` runs the whole session under one ``asyncio.wait_for``; the
  connection is aborted when the deadline passes.
* **Clear settings errors** (:class:`SMTPSettingsError`): STARTTLS or AUTH not offered, a CA
  bundle that cannot be read, credentials that cannot be encoded, each saying what to change.
* **Credentials as UTF-8 bytes**, encoded here so that an unencodable one is refused before
  anything is sent and never ends up in an exception (a ``UnicodeEncodeError`` holds the text).
* **Transient or terminal** (:func:`classify`): 4xx replies, refused or dropped connections and
  timeouts become :class:`~prefect_etl_blocks.core.errors.EmailDeliveryError` (retried); 5xx
  replies, refused AUTH and TLS set up wrongly become
  :class:`~prefect_etl_blocks.core.errors.EmailRejectedError`. Every message masks the password.

Both the ``EmailNotifier`` block and ``prefect-etl doctor`` use this client. No Prefect import.

Example:
    ```python
    from prefect_etl_blocks.core.smtp import SMTPEndpoint, SMTPType

    endpoint = SMTPEndpoint("mail.example.com", 587, SMTPType.STARTTLS, timeout_seconds=5)
    assert endpoint.where == "mail.example.com:587" and "password" not in repr(endpoint)
    ```
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import aiosmtplib

from prefect_etl_blocks.core.errors import (
    EmailDeliveryError,
    EmailRejectedError,
    PrefectETLBlocksError,
)

T = TypeVar("T")

#: AUTH mechanisms aiosmtplib tries, in its order of preference (XOAUTH2 needs a token source).
AUTH_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")


class SMTPType(str, Enum):
    """How the connection is secured."""

    SSL = "SSL"
    STARTTLS = "STARTTLS"
    INSECURE = "INSECURE"


DEFAULT_PORTS = {SMTPType.SSL: 465, SMTPType.STARTTLS: 587, SMTPType.INSECURE: 25}


class SMTPSettingsError(Exception):
    """A setting the server cannot work with, diagnosed here; the message is final (not retried)."""


class SMTPDeadlineError(TimeoutError):
    """The session used up its ``timeout_seconds``."""


@dataclass(frozen=True)
class SMTPEndpoint:
    """Where and how to open a session; ``password`` is kept out of ``repr``."""

    host: str
    port: int
    smtp_type: SMTPType
    timeout_seconds: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle_path: str | None = None
    verify_tls: bool = True

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def redact(self, text: str) -> str:
        """``text`` with the password masked (server replies and OS errors are quoted)."""
        return text.replace(self.password, "**********") if self.password else text

    def tls_context(self) -> ssl.SSLContext:
        problem = ""
        try:
            context = ssl.create_default_context(cafile=self.ca_bundle_path)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            problem = f"{type(exc).__name__}: {exc}"
        if problem:  # raised outside the except block: no chained exception
            raise SMTPSettingsError(
                f"ca_bundle_path {self.ca_bundle_path!r} cannot be used as a CA bundle ({problem}). "
                "Point it at a readable PEM file, or unset it to trust the system's CAs."
            )
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass
class SMTPSession:
    """An open session: the aiosmtplib client and the steps the server accepted so far."""

    client: aiosmtplib.SMTP
    steps: list[str] = field(default_factory=list)
    done: bool = False

    async def quit(self) -> None:
        """Say goodbye; a failed goodbye is ignored (the work is done, it must not be redone)."""
        try:
            await self.client.quit()
        except (OSError, aiosmtplib.SMTPException):
            return
        self.steps.append("QUIT")


@functools.cache
def _local_hostname() -> str:
    # What smtplib sends in EHLO; looked up once, not in a thread per session.
    return socket.getfqdn()


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Raised outside the except block: the UnicodeEncodeError (whose .object is the whole
    # secret) must not become this error's __context__.
    raise SMTPSettingsError(
        f"The SMTP {what} cannot be sent: it contains characters that are not valid Unicode "
        "(lone surrogates, typical of text decoded with the wrong encoding). Enter the "
        f"{what} again in the EmailNotifier block."
    )


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, falling back to HELO for servers without ESMTP (as smtplib does)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


async def _login(client: aiosmtplib.SMTP, endpoint: SMTPEndpoint) -> None:
    where = endpoint.where
    if not client.supports_extension("auth"):
        raise SMTPSettingsError(
            f"SMTP server {where} does not offer AUTH, but username is set. Remove username and "
            "password, or secure the connection first (smtp_type STARTTLS or SSL): many servers "
            "offer AUTH only over TLS."
        )
    if not client.supported_auth_methods:
        offered = " ".join(client.server_auth_methods).upper() or "(none)"
        raise SMTPSettingsError(
            f"SMTP server {where} offers AUTH {offered}; EmailNotifier supports "
            f"{', '.join(AUTH_MECHANISMS)}. Ask the mail administrator for one of them."
        )
    user = _utf8(endpoint.username or "", "username")
    secret = _utf8(endpoint.password or "", "password")
    try:  # aiosmtplib tries each offered mechanism: some servers advertise ones they refuse
        await client.login(user, secret)
    except aiosmtplib.SMTPAuthenticationError as exc:
        if exc.code != 503:  # 503: already authenticated
            raise


async def _session(endpoint: SMTPEndpoint, work: Callable[[SMTPSession], Awaitable[None]] | None,
                   opened: list[SMTPSession]) -> None:
    kind = endpoint.smtp_type
    context = endpoint.tls_context() if kind is not SMTPType.INSECURE else None
    client = aiosmtplib.SMTP(
        hostname=endpoint.host, port=endpoint.port, local_hostname=_local_hostname(),
        timeout=endpoint.timeout_seconds, use_tls=kind is SMTPType.SSL, start_tls=False,
        tls_context=context,
    )
    session = SMTPSession(client)
    opened.append(session)
    try:
        await client.connect()
        session.steps.append("connect (TLS)" if kind is SMTPType.SSL else "connect")
        await _greet(client)
        session.steps.append("EHLO")
        if kind is SMTPType.STARTTLS:
            if not client.supports_extension("starttls"):
                raise SMTPSettingsError(
                    f"SMTP server {endpoint.where} does not offer STARTTLS, but smtp_type is "
                    "'STARTTLS'. Change smtp_type to match the server: 'SSL' for implicit TLS "
                    "(usually port 465), 'STARTTLS' only for servers that advertise it (usually "
                    "port 587), or 'INSECURE' for an unencrypted server on a trusted network."
                )
            await client.starttls()
            await _greet(client)
            session.steps.append("STARTTLS")
        if endpoint.username:
            await _login(client, endpoint)
            session.steps.append(f"AUTH as {endpoint.username!r}")
        if work is not None:
            await work(session)
        session.done = True
        await session.quit()
    finally:
        # abort, not close: no TLS goodbye to wait for, the socket is released at once.
        if client.transport is not None:
            client.transport.abort()
        client.close()


async def run_session(
    endpoint: SMTPEndpoint, work: Callable[[SMTPSession], Awaitable[None]] | None = None
) -> list[str]:
    """Open a session (connect, EHLO, STARTTLS and AUTH as configured), run ``work``, QUIT.

    All of it ends within ``endpoint.timeout_seconds``: past it, the connection is aborted and
    :class:`SMTPDeadlineError` is raised, unless ``work`` had already finished (only the goodbye
    ran late, and the work must not be redone). Returns the steps the server accepted.
    Other failures are aiosmtplib's exceptions, OS errors or :class:`SMTPSettingsError`, as
    raised; :func:`classify` sorts them.
    """
    opened: list[SMTPSession] = []
    try:
        await asyncio.wait_for(_session(endpoint, work, opened), endpoint.timeout_seconds)
    except (TimeoutError, asyncio.TimeoutError):
        if not (opened and opened[0].done):
            raise SMTPDeadlineError(
                f"SMTP server {endpoint.where} did not answer within {endpoint.timeout_seconds:g} s"
            ) from None
    return opened[0].steps


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` to completion from sync code.

    With no event loop in this thread, on a loop of its own (``asyncio.run``, which also joins
    any thread it started). Inside a running loop (a sync hook of an async flow), on a loop in
    a short-lived thread that is joined before returning, since a running loop cannot be
    re-entered.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if not running:  # outside the except block: the caller's errors chain to nothing of ours
        return asyncio.run(make())
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, asyncio.run(make())))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=target, name="prefect-etl-smtp")
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def unwrap(exc: BaseException) -> BaseException:
    """The OS or TLS error under aiosmtplib's ``SMTPConnectError`` (refused, certificate, ...)."""
    if isinstance(exc, aiosmtplib.SMTPConnectError) and not isinstance(
        exc, (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPTimeoutError)
    ) and isinstance(exc.__cause__, OSError):
        return exc.__cause__
    return exc


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


#: What :func:`classify` sorts; anything else is a bug and propagates as it is.
FAILURES = (OSError, aiosmtplib.SMTPException, UnicodeError, SMTPSettingsError, asyncio.TimeoutError)


def classify(exc: BaseException, endpoint: SMTPEndpoint) -> PrefectETLBlocksError:
    """The library error for one failed session (built, not raised: the caller raises it
    outside its ``except`` block, so nothing is chained)."""
    where, redact = endpoint.where, endpoint.redact
    exc = unwrap(exc)
    if isinstance(exc, SMTPSettingsError):
        return EmailRejectedError(redact(str(exc)))
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        transient = bool(refused) and all(400 <= r.code < 500 for r in refused)
        detail = "; ".join(f"{r.recipient} ({r.code} {_one_line(r.message)})" for r in refused)
        cls = EmailDeliveryError if transient else EmailRejectedError
        return cls(redact(f"SMTP server {where} refused the recipients: {detail}."))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        transient = 400 <= exc.code < 500
        cls = EmailDeliveryError if transient else EmailRejectedError
        reply = f"{exc.code} {_one_line(exc.message)}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            text = (f"SMTP server {where} refused authentication for user {endpoint.username!r} "
                    f"({reply}). Check username and password.")
        else:
            text = f"SMTP server {where} rejected the message: {reply}."
        if transient:
            text += " The server called this temporary; max_retries retries it."
        return cls(redact(text))
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return EmailRejectedError(redact(
            f"TLS with SMTP server {where} failed: {exc.reason or exc}. Set ca_bundle_path to "
            "the CA that signed the server certificate, or check smtp_type matches the port "
            "(SSL usually 465, STARTTLS usually 587)."
        ))
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return EmailDeliveryError(
            f"SMTP server {where} did not complete the delivery within timeout_seconds="
            f"{endpoint.timeout_seconds:g} (connect, TLS, AUTH, message and QUIT together). The "
            "server is down, overloaded or slow: check it, or raise timeout_seconds."
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return EmailRejectedError(redact(f"SMTP server {where} cannot take this message: {exc}"))
    if isinstance(exc, UnicodeError):
        return EmailRejectedError(redact(
            f"The message for SMTP server {where} has text that cannot be sent: {exc}. Use "
            "ASCII addresses, or a server that supports SMTPUTF8."
        ))
    return EmailDeliveryError(redact(
        f"Could not send email through SMTP server {where}: {type(exc).__name__}: {exc}. "
        "Check smtp_server, the port and that the server is reachable."
    ))


__all__ = [
    "AUTH_MECHANISMS",
    "DEFAULT_PORTS",
    "FAILURES",
    "SMTPDeadlineError",
    "SMTPEndpoint",
    "SMTPSession",
    "SMTPSettingsError",
    "SMTPType",
    "classify",
    "run_blocking",
    "run_session",
    "unwrap",
]
