"""Sends the ErrorsEmail outbox in the background: a slow or dead mail server delays only
the mail, never a delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage

from ..settings import Settings
from ..store import queue
from ..store.database import Database
from .mail import Mailer

log = logging.getLogger("hookcast.mail")


class Outbox:
    def __init__(self, db: Database, settings: Settings, mailer: Mailer | None = None) -> None:
        self._db = db
        self._settings = settings
        self._mailer = mailer or Mailer(settings)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._mailer.enabled:
            self._task = asyncio.create_task(self._run(), name="hookcast-outbox")
        else:
            log.info("no HOOKCAST_SMTP_HOST: ErrorsEmail messages stay queued in the outbox")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = time.time()
            mails = await self._db.run(queue.claim_mail, now, now + 600)
            for mail in mails:
                message = EmailMessage()
                message["From"] = self._settings.smtp_from
                message["To"] = mail.recipient
                message["Subject"] = mail.subject
                message.set_content(mail.body)
                sent = await self._mailer.send(message)
                await self._db.run(
                    queue.finish_mail,
                    mail.id,
                    sent,
                    time.time(),
                    None if sent else "the mail server did not accept it",
                )
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval * 30)
            except TimeoutError:
                pass
