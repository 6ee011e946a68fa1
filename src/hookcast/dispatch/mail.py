"""Notification mail (§6): the FirstFailure and Disabling notices to ErrorEmails, and
AutoRecover's Recovered notice (`recovered_text`).

`notice_text` writes a notice and `mail_message` makes the mail of it (`in_app_text` the
InApp line); `Mailer.send` makes one
SMTP attempt and never raises for SMTP or network problems: it says whether the mail was
sent, may be retried, was refused for good, or may have arrived (`classify`), and the outbox
decides from that.
"""

from __future__ import annotations

import enum
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, NamedTuple

import aiosmtplib

from ..guard import make_ssl_context
from ..model import NotifyWhen
from ..settings import Settings

__all__ = [
    "MailOutcome",
    "MailResult",
    "Mailer",
    "Notice",
    "classify",
    "in_app_text",
    "mail_message",
    "message_id",
    "notice_text",
    "recovered_in_app_text",
    "recovered_text",
]

logger = logging.getLogger("hookcast.mail")

# Header values must be one line: a Name with CR/LF must not inject headers (or crash the policy).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def _what(kind: NotifyWhen) -> str:
    return "was disabled after too many errors" if kind is NotifyWhen.Disabling else "failed"


class Notice(NamedTuple):
    subject: str
    body: str


def notice_text(
    kind: NotifyWhen,
    *,
    webhook_name: str,
    webhook_id: int,
    tenant: str,
    target_url: str,
    last_event_id: str | None,
    last_error: str | None,
    consecutive_errors: int,
    recovering: bool = False,
) -> Notice:
    """The plain-text notice of a FirstFailure or a Disabling (§6), as the outbox keeps it;
    never carries the Secret. `recovering`: AutoRecover probes the disabled webhook."""
    name = _one_line(webhook_name)
    base = f"/api/v1/Webhook/{webhook_id}"
    facts = f"""\
  Webhook:             {name}
  WebhookId:           {webhook_id}
  Tenant:              {tenant}
  TargetUrl:           {target_url}
  Last EventId:        {last_event_id or "(none)"}
  Last error:          {last_error or "(none recorded)"}
  Consecutive errors:  {consecutive_errors}
"""
    if kind is NotifyWhen.Disabling:
        text = f"""\
hookcast stopped delivering to one of your webhooks: its State is now
TooManyErrors because its deliveries kept failing (or the receiver
answered 410 Gone).

{facts}
Events that could not be delivered are kept as given up; none are lost.
{_RECOVERING if recovering else ""}
What to do:
  1. Fix the receiver at the TargetUrl so that it answers 2xx again.
  2. Set State back to Active (hookcast verifies the receiver first):
       PATCH {base}
       [{{"op": "replace", "path": "State", "value": "Active"}}]
     or PUT {base} with "State": "Active".
  3. Queue the given-up deliveries again:
       POST {base}/Redeliver
"""
    else:
        text = f"""\
A delivery to one of your webhooks failed, after earlier ones had
succeeded. hookcast keeps retrying; if the failures go on, the webhook
is disabled (State TooManyErrors) and you hear from it again.

{facts}
What to do:
  1. Check the receiver at the TargetUrl: it must answer 2xx in time.
  2. The attempts and their errors: GET {base}/Deliveries
"""
    subject = f'hookcast: webhook "{name}" (id {webhook_id}) ' + (
        _what(kind) if kind is NotifyWhen.Disabling else "failed to deliver"
    )
    body = text + (
        "\nThis message was sent automatically to the ErrorEmails addresses of the "
        "webhook\n(NotifyVia Email).\n"
    )
    return Notice(subject, body)


# The Disabling notice of a webhook that AutoRecover probes.
_RECOVERING = """
AutoRecover is on: hookcast sends the receiver the test event now and then
(less and less often, for a few days) and sets the webhook Active again
by itself at the first 2xx answer, queueing the given-up deliveries again.
You hear from it then.
"""


def recovered_text(
    *,
    webhook_name: str,
    webhook_id: int,
    tenant: str,
    target_url: str,
    probes: int,
    redelivered: int,
) -> Notice:
    """The plain-text notice that AutoRecover set a webhook Active again; never carries
    the Secret."""
    name = _one_line(webhook_name)
    base = f"/api/v1/Webhook/{webhook_id}"
    body = f"""\
One of your webhooks is delivering again: hookcast's test event (AutoRecover)
was answered with 2xx, so its State is Active again.

  Webhook:             {name}
  WebhookId:           {webhook_id}
  Tenant:              {tenant}
  TargetUrl:           {target_url}
  Probes:              {probes}
  Queued again:        {redelivered} given-up deliveries

The probes and the deliveries: GET {base}/Deliveries

This message was sent automatically to the ErrorEmails addresses of the
webhook (NotifyVia Email, NotifyWhen Disabling).
"""
    return Notice(f'hookcast: webhook "{name}" (id {webhook_id}) recovered', body)


def recovered_in_app_text(webhook_name: str, webhook_id: int, redelivered: int) -> str:
    """The one line of AutoRecover's Recovered InApp notification."""
    return (
        f'Webhook "{_one_line(webhook_name)}" (id {webhook_id}) recovered: Active again, '
        f"{redelivered} given-up deliveries queued again."
    )


def mail_message(
    *, sender: str, to: str, notice: Notice, mail_id: int, created_at: float
) -> EmailMessage:
    """An outbox mail as sent: the same Date and Message-ID on every try, so a copy that
    arrives twice is recognisable downstream."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = _one_line(notice.subject)
    message["Date"] = formatdate(created_at, usegmt=True)
    message["Message-ID"] = message_id(mail_id, created_at, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(notice.body)
    return message


def in_app_text(
    kind: NotifyWhen, webhook_name: str, webhook_id: int, last_error: str | None
) -> str:
    """The one line an InApp notification shows."""
    error = _one_line((last_error or "").split("\n", 1)[0])[:200]
    return f'Webhook "{_one_line(webhook_name)}" (id {webhook_id}) {_what(kind)}' + (
        f": {error}" if error else "."
    )


_DOMAIN_JUNK = re.compile(r"[^A-Za-z0-9.\-]+")  # what may not go into a Message-ID's domain
_MAX_REASON = 1000  # characters of an error kept in the outbox row and the log


class MailResult(enum.Enum):
    """How one SMTP attempt ended, and so what the outbox does with the mail."""

    SENT = "sent"  # the server took responsibility for it (250 to the message)
    RETRY = "retry"  # a temporary failure, nothing delivered: safe to try again later
    REFUSED = "refused"  # a permanent refusal (5xx) or a mail that cannot be sent: never again
    # The connection broke after the message was handed over (DATA), before the server's
    # verdict: it may have been delivered, so it must not be sent again.
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class MailOutcome:
    result: MailResult
    reason: str | None = None  # redacted: never carries the SMTP password


def _reply_result(code: int, handed_over: bool) -> MailResult:
    if 400 <= code <= 499:
        return MailResult.RETRY
    if 500 <= code <= 599:
        return MailResult.REFUSED
    # Not a reply code SMTP defines (aiosmtplib's -1: unparsable): the server misbehaved.
    return MailResult.UNCERTAIN if handed_over else MailResult.RETRY


def classify(exc: BaseException, *, handed_over: bool) -> MailResult:
    """What a failed attempt means. `handed_over`: the DATA command had been started, so the
    message may have reached the server. A reply code decides whenever there is one (a
    negative reply means the server did not take the mail, whenever it came); a broken
    connection or a timeout is temporary before the handover and uncertain after it."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):  # every recipient was refused
        codes = [refused.code for refused in exc.recipients]
        return (
            MailResult.RETRY
            if codes and all(400 <= code <= 499 for code in codes)
            else MailResult.REFUSED
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_result(exc.code, handed_over)
    if isinstance(exc, TimeoutError | OSError):  # incl. disconnects, TLS errors, refused connects
        return MailResult.UNCERTAIN if handed_over else MailResult.RETRY
    # The rest cannot get better by waiting: the server lacks what the settings need
    # (STARTTLS, AUTH, SMTPUTF8), an address aiosmtplib cannot send to, or a bug.
    return MailResult.UNCERTAIN if handed_over else MailResult.REFUSED


class _Client(aiosmtplib.SMTP):
    """Tells how far a conversation got: nothing of the message reaches the server before
    `data()`, and the server has accepted it once `data()` returns."""

    handed_over = False
    accepted = False
    on_handover: Callable[[], None] | None = None

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.handed_over = True
        if self.on_handover is not None:
            self.on_handover()
        response = await super().data(*args, **kwargs)
        self.accepted = True  # data() returns only on 250
        return response


class Mailer:
    """Sends mail with the SMTP settings, one attempt per `send`; the outbox decides about
    retries from the result."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self.timeout = timeout  # per SMTP command and for connecting
        # Only STARTTLS needs a context; built now so a broken CA bundle fails at start-up.
        if tls_context is None and settings.smtp_starttls:
            tls_context = make_ssl_context(settings.ca_bundle)
        self._tls_context = tls_context

    @property
    def enabled(self) -> bool:
        return bool(self._settings.smtp_host)

    async def send(
        self, message: EmailMessage, *, on_handover: Callable[[], None] | None = None
    ) -> MailOutcome:
        """One attempt; never raises for SMTP, network or address problems. `on_handover` is
        called when the message starts going to the server (the DATA command): from then on
        a cancelled attempt may have delivered it."""
        s = self._settings
        to = message.get("To", "?")
        if not s.smtp_host:
            logger.warning("not sending mail to %s: no SMTP host is configured", to)
            return MailOutcome(MailResult.RETRY, "no SMTP host is configured")
        client = _Client(
            hostname=s.smtp_host,
            port=s.smtp_port,
            # Explicit: aiosmtplib's default (None) would try STARTTLS opportunistically.
            start_tls=s.smtp_starttls,
            tls_context=self._tls_context if s.smtp_starttls else None,
            username=s.smtp_user or None,
            password=s.smtp_password if s.smtp_user else None,
            timeout=self.timeout,
        )
        client.on_handover = on_handover
        try:
            await client.connect()  # with STARTTLS and the login, as configured
            await client.send_message(message)
        except Exception as exc:
            reason = self._redact(exc)
            result = classify(exc, handed_over=client.handed_over)
            # No exc_info and a redacted message: the password must never reach a log. A
            # temporary failure is the outbox's to report (once per outage, not per try).
            logger.log(
                logging.DEBUG if result is MailResult.RETRY else logging.WARNING,
                "mail to %s via %s:%s failed (%s): %s",
                to,
                s.smtp_host,
                s.smtp_port,
                result.value,
                reason,
            )
            return MailOutcome(result, reason)
        finally:
            if not client.accepted:  # also when cancelled: drop it, no polite QUIT to wait for
                client.close()
        logger.info("mail to %s sent via %s:%s", to, s.smtp_host, s.smtp_port)
        try:
            await client.quit()
        except Exception:
            pass  # sent is sent, whatever the QUIT gets
        finally:
            client.close()
        return MailOutcome(MailResult.SENT)

    def _redact(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._settings.smtp_password:
            text = text.replace(self._settings.smtp_password, "***")
        return text[:_MAX_REASON]


def message_id(mail_id: int, created_at: float, sender: str) -> str:
    """The Message-ID of an outbox mail: the same on every try, so a copy that arrives twice
    is recognisable downstream. The creation time (ms) keeps the ids of a new database from
    repeating those of an old one that counted from 1 too."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = _DOMAIN_JUNK.sub("", domain) if at else ""
    domain = domain or "hookcast.localhost"
    return f"<hookcast.mail.{mail_id}.{round(created_at * 1000)}@{domain}>"
