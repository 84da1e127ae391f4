"""``EmailNotifier`` (an SMTP ``NotificationBlock``) and ``email_notifier`` state hooks.

Delivery is :mod:`prefect_etl_blocks.core.smtp` (aiosmtplib, natively async): ``asend`` and
``anotify`` are the primary path; ``send`` runs ``asend`` to completion from sync code, and
``notify`` is decorated with Prefect's ``@async_dispatch(anotify)``, so it sends and returns in
sync code and is awaitable in async code.

``timeout_seconds`` bounds a whole delivery attempt (connect, TLS, AUTH, the message, QUIT), not
each socket read, so a server that answers one byte a second cannot hold a flow. Failures are
:class:`~prefect_etl_blocks.core.errors.EmailDeliveryError` (transient: retried up to ``max_retries``)
or :class:`~prefect_etl_blocks.core.errors.EmailRejectedError` (the server or the settings said no:
never retried). No error, chained exception or log line holds the password.

Hooks made by :func:`email_notifier` log one error naming the server and the reason, then raise
it, so Prefect records the hook as failed (not "finished running successfully"); Prefect catches
hook errors, so the run keeps its own state and exception.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import string
import traceback
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from prefect.blocks.abstract import NotificationBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator

from prefect_etl_blocks.core.errors import (
    NotificationTemplateError,
    PrefectETLBlocksError,
    UnsavedBlockError,
)
from prefect_etl_blocks.core.smtp import (
    DEFAULT_PORTS,
    FAILURES,
    SMTPEndpoint,
    SMTPSession,
    SMTPType,
    classify,
    run_blocking,
    run_session,
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


def _check_header(value: str, field: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{field} must not contain line breaks (header injection): {value!r}.")
    return value


def _check_address(value: str, field: str) -> str:
    _check_header(value, field)
    if "@" not in value or any(c.isspace() for c in value) or value.count("@") != 1:
        raise ValueError(f"{field} has an invalid email address {value!r}; expected name@example.com.")
    return value


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
        return self.smtp_port or DEFAULT_PORTS[self.smtp_type]

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

    def _endpoint(self, timeout_seconds: float | None = None) -> SMTPEndpoint:
        """Where and how to connect (``timeout_seconds`` defaults to the block's)."""
        return SMTPEndpoint(
            self.smtp_server, self.port, self.smtp_type, timeout_seconds or self.timeout_seconds,
            self.username, self.password.get_secret_value() if self.password else None,
            self.ca_bundle_path, self.verify_tls,
        )

    async def _attempt(self, message: EmailMessage, envelope: list[str]) -> PrefectETLBlocksError | None:
        """One delivery under one deadline; the error to raise, or None once delivered."""
        endpoint = self._endpoint()

        async def send(session: SMTPSession) -> None:
            await session.client.send_message(message, sender=self.from_address, recipients=envelope)

        try:
            await run_session(endpoint, send)
        except FAILURES as exc:
            # Only build the error here: raised inside this block it would keep ``exc`` (and
            # everything it references) as its __context__.
            return classify(exc, endpoint)
        return None

    async def asend(self, body: str, subject: str | None = None, recipients: list[str] | None = None) -> None:
        """Send now, retrying transient failures up to ``max_retries`` times.

        Each attempt, from connecting to QUIT, ends within ``timeout_seconds``.

        Raises:
            EmailDeliveryError: the server is unreachable, slow or answered 4xx (transient).
            EmailRejectedError: authentication, TLS, settings or a 5xx reply (not retried).
        """
        message = self.build_message(body, subject, recipients)
        envelope = list(dict.fromkeys((recipients or self.to_addresses) + self.cc + self.bcc))
        for attempt in range(self.max_retries + 1):
            failure = await self._attempt(message, envelope)
            if failure is None:
                return
            if not failure.retryable or attempt == self.max_retries:
                raise failure from None
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))

    def send(self, body: str, subject: str | None = None, recipients: list[str] | None = None) -> None:
        """Sync twin of :meth:`asend` (also from sync hooks of async flows)."""
        run_blocking(lambda: self.asend(body, subject, recipients))

    async def anotify(self, body: str, subject: str | None = None) -> None:
        """Async twin of :meth:`notify`."""
        await self.asend(body, subject)

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
        # _sync: in a hook of an async flow, result() would otherwise return a coroutine.
        exc = state.result(raise_on_failure=False, _sync=True)
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
