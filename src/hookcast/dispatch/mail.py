"""Notification mail (§6): the FirstFailure and Disabling notices to ErrorEmails.

`notice_mail` builds the message (`in_app_text` the InApp line); `Mailer.send` delivers it
over SMTP and never raises for SMTP or network problems, so the outbox can run it in the
background.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from ..guard import make_ssl_context
from ..model import NotifyWhen
from ..settings import Settings

__all__ = ["Mailer", "in_app_text", "notice_mail"]

logger = logging.getLogger("hookcast.mail")

# Header values must be one line: a Name with CR/LF must not inject headers (or crash the policy).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()


def notice_mail(
    *,
    kind: NotifyWhen,
    to: str,
    sender: str,
    webhook_name: str,
    webhook_id: int,
    tenant: str,
    target_url: str,
    last_event_id: str | None,
    last_error: str | None,
    consecutive_errors: int,
) -> EmailMessage:
    """The plain-text notice of a FirstFailure or a Disabling (§6); never carries the Secret."""
    name = _one_line(webhook_name)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f'hookcast: webhook "{name}" (id {webhook_id}) ' + (
        "was disabled after too many errors"
        if kind is NotifyWhen.Disabling
        else "failed to deliver"
    )
    message["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid() would otherwise ask DNS for our FQDN, synchronously.
    domain = sender.rpartition("@")[2].strip(" >") or "hookcast.localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
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
    message.set_content(
        text + "\nThis message was sent automatically to the ErrorEmails addresses of the "
        "webhook\n(NotifyVia Email).\n"
    )
    return message


def in_app_text(
    kind: NotifyWhen, webhook_name: str, webhook_id: int, last_error: str | None
) -> str:
    """The one line an InApp notification shows."""
    what = "was disabled after too many errors" if kind is NotifyWhen.Disabling else "failed"
    error = _one_line((last_error or "").split("\n", 1)[0])[:200]
    return f'Webhook "{_one_line(webhook_name)}" (id {webhook_id}) {what}' + (
        f": {error}" if error else "."
    )


class Mailer:
    """Sends mail with the SMTP settings; `send` retries with exponential backoff."""

    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int = 3,
        backoff: float = 1.0,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._settings = settings
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        # Only STARTTLS needs a context; built now so a broken CA bundle fails at start-up.
        if tls_context is None and settings.smtp_starttls:
            tls_context = make_ssl_context(settings.ca_bundle)
        self._tls_context = tls_context

    @property
    def enabled(self) -> bool:
        return bool(self._settings.smtp_host)

    async def send(self, message: EmailMessage) -> bool:
        """True once the server accepted the mail; False when disabled or given up."""
        s = self._settings
        to = message.get("To", "?")
        if not s.smtp_host:
            logger.warning("not sending mail to %s: no SMTP host is configured", to)
            return False
        for attempt in range(1, self._attempts + 1):
            try:
                await aiosmtplib.send(
                    message,
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    # Explicit: aiosmtplib's default (None) would try STARTTLS opportunistically.
                    start_tls=s.smtp_starttls,
                    tls_context=self._tls_context if s.smtp_starttls else None,
                    username=s.smtp_user or None,
                    password=s.smtp_password if s.smtp_user else None,
                    timeout=self._timeout,
                )
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                # No exc_info and a redacted message: the password must never reach a log.
                logger.warning(
                    "mail to %s via %s:%s failed (attempt %d of %d): %s",
                    to,
                    s.smtp_host,
                    s.smtp_port,
                    attempt,
                    self._attempts,
                    self._redact(exc),
                )
                if attempt < self._attempts:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                continue
            logger.info("mail to %s sent via %s:%s", to, s.smtp_host, s.smtp_port)
            return True
        logger.error("gave up sending mail to %s after %d attempts", to, self._attempts)
        return False

    def _redact(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._settings.smtp_password:
            text = text.replace(self._settings.smtp_password, "***")
        return text
