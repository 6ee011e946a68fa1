"""Sends the ErrorsEmail outbox in the background: a slow or dead mail server delays only
the mail, never a delivery.

Each mail is claimed alone and marked SENDING in the claiming transaction, then tried once
(`Mailer.send`). A temporary failure (a dead server, a 4xx answer) queues it again after
the next delay of `mail_retry_delays`, the last one repeating, until the mail is
`mail_give_up_after` old (a day by default: mail outlives an SMTP outage); a permanent
refusal (5xx) or an uncertain end fails it at once. A mail left SENDING (its process died
mid-send) may have reached the server, so it is never sent again automatically: the outbox
only warns about it. An SMTP outage is logged quietly (`outage.OutageReporter`), not once per try.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Any

from ..errors import DatabaseUnavailable
from ..outage import OutageReporter
from ..settings import Settings
from ..store import queue
from ..store.database import Database
from ..tasks import cancel_and_wait
from .mail import Mailer, MailOutcome, MailResult, Notice, mail_message

log = logging.getLogger("hookcast.mail")

LEASE = 600.0  # how long a mail may stay SENDING before it counts as stuck
_WRITE_TRIES = 3  # for the outcome of an attempt; after that the mail stays SENDING


def retry_delay(
    tries: int, delays: Sequence[float], *, age: float = 0.0, give_up_after: float = float("inf")
) -> float | None:
    """The wait before the next try of a mail whose `tries`-th try failed temporarily, `age`
    seconds after it was queued: the `tries`-th delay, the last one repeating. None when it
    is given up: no delays at all, or the mail is `give_up_after` old."""
    if tries < 1:
        raise ValueError("tries counts the tries made, at least 1")
    if not delays or age >= give_up_after:
        return None
    return float(delays[min(tries, len(delays)) - 1])


class Outbox:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        mailer: Mailer | None = None,
        *,
        lease: float = LEASE,
        outage_summary_every: float = 60.0,
    ) -> None:
        self._db = db
        self._settings = settings
        self._mailer = mailer or Mailer(settings)
        self._lease = lease
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned: set[int] = set()  # stuck mails already warned about by this process
        self._smtp = OutageReporter(
            f"the SMTP server {settings.smtp_host}:{settings.smtp_port} (ErrorsEmail)",
            log,
            summary_every=outage_summary_every,
        )
        # Failures other than the database's being unavailable (which it reports itself).
        self._claims = OutageReporter(
            "claiming mail from the outbox", log, summary_every=outage_summary_every
        )

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._mailer.enabled:
            self._task = asyncio.create_task(self._run(), name="hookcast-outbox")
        else:
            log.info("no HOOKCAST_SMTP_HOST: ErrorsEmail messages stay queued in the outbox")

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming and let a mail being sent finish, for up to `grace` seconds (by
        default a little more than the mailer's timeout); then cancel it. A mail cancelled
        before the message reached the server is queued again; one cancelled after stays
        SENDING, since it may have arrived."""
        self._stopping = True
        self._wake.set()
        if not self._task:
            return
        if grace is None:
            grace = self._mailer.timeout + 1
        await asyncio.wait({self._task}, timeout=grace)
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before claiming: a wake-up that arrives during the claim is kept.
            self._wake.clear()
            now = time.time()
            try:
                await self._warn_stuck(now)
                mails = await self._db.run(queue.claim_mail, now, now + self._lease)
                due = None if mails else await self._db.read(queue.next_mail_due)
            except DatabaseUnavailable:
                mails, due = [], time.time() + 0.5
            except Exception as exc:
                log.debug("claiming mail failed; retrying", exc_info=True)
                self._claims.failed(exc)
                mails, due = [], time.time() + 0.5
            else:
                self._claims.succeeded()
            for mail in mails:
                await self._send(mail)
            if mails:
                continue  # there may be more
            # At the latest after the idle poll: other processes queue mail unannounced.
            timeout = self._settings.poll_interval * 30
            if due is not None:
                timeout = min(timeout, max(0.01, due - time.time()))  # 0 would spin on a locked row
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _warn_stuck(self, now: float) -> None:
        for mail_id, recipient, _ in await self._db.read(queue.stuck_mail, now):
            if mail_id not in self._warned:
                self._warned.add(mail_id)
                log.warning(
                    "mail %s to %s is still marked as being sent (its process stopped "
                    "mid-send): it may or may not have been sent; not resending",
                    mail_id,
                    recipient,
                )

    def _message(self, mail: queue.Mail) -> EmailMessage:
        return mail_message(
            sender=self._settings.smtp_from,
            to=mail.recipient,
            notice=Notice(mail.subject, mail.body),
            mail_id=mail.id,
            created_at=mail.created_at,
        )

    async def _send(self, mail: queue.Mail) -> None:
        handed_over = False

        def on_handover() -> None:
            nonlocal handed_over
            handed_over = True

        try:
            message = self._message(mail)
        except Exception as exc:  # e.g. a recipient the email package cannot put in To
            outcome = MailOutcome(MailResult.REFUSED, f"{type(exc).__name__}: {exc}")
        else:
            try:
                outcome = await self._mailer.send(message, on_handover=on_handover)
            except asyncio.CancelledError:
                if not handed_over:  # the server has nothing of it: it is safe to send later
                    await self._write(queue.reschedule_mail, mail.id, time.time(), None, True)
                raise
            # Any answer but "not now" means the server is there: an outage ends.
            if outcome.result is MailResult.RETRY:
                self._smtp.failed(outcome.reason or "temporary failure")
            else:
                self._smtp.succeeded()
        now = time.time()
        result, reason = outcome.result, outcome.reason
        if result is MailResult.SENT:
            await self._write(queue.finish_mail, mail.id, True, now)
        elif result is MailResult.RETRY:
            settings = self._settings
            delay = retry_delay(
                mail.tries,
                settings.mail_retry_delays,
                age=now - mail.created_at,
                give_up_after=settings.mail_give_up_after,
            )
            if delay is None:
                log.error(
                    "gave up mail %s to %s after %d tries in %.0f s; the last error: %s",
                    mail.id,
                    mail.recipient,
                    mail.tries,
                    now - mail.created_at,
                    reason,
                )
                error = f"gave up after {mail.tries} tries; the last: {reason}"
                await self._write(queue.finish_mail, mail.id, False, now, error)
            else:
                # debug only: the outage log says what matters once, not per try
                log.debug(
                    "mail %s to %s: try %d failed temporarily; next try in %g s",
                    mail.id,
                    mail.recipient,
                    mail.tries,
                    delay,
                )
                await self._write(queue.reschedule_mail, mail.id, now + delay, reason)
        elif result is MailResult.REFUSED:
            log.error(
                "mail %s to %s was refused; not retrying: %s", mail.id, mail.recipient, reason
            )
            await self._write(queue.finish_mail, mail.id, False, now, reason)
        else:
            log.error(
                "mail %s to %s may or may not have been sent; not resending",
                mail.id,
                mail.recipient,
            )
            error = f"may or may not have been sent; not resending: {reason}"
            await self._write(queue.finish_mail, mail.id, False, now, error)

    async def _write(self, fn: Callable[..., None], *args: Any) -> None:
        """Record an attempt's outcome. Should that keep failing, the mail stays SENDING:
        never sent again, and warned about once its lease is over."""
        for attempt in range(1, _WRITE_TRIES + 1):
            try:
                await self._db.run(fn, *args)
                return
            except Exception:
                log.exception("writing the outcome of mail %s failed (try %d)", args[0], attempt)
                if attempt < _WRITE_TRIES:
                    await asyncio.sleep(0.5)
