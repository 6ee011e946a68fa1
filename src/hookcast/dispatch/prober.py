"""AutoRecover's probe loop (docs/delivery-options.md): beside the dispatcher, in every
process that delivers, it sends the test event (§4) to the webhooks in TooManyErrors whose
probe is due and writes what came of it (recovery.py).

Probes are claimed in the database with a lease (store/recovery.py): with several processes
exactly one probes each time, and one that dies mid-probe leaves it to the others once the
lease runs out. When no webhook is being probed the loop costs one read of the earliest
recover_at (a partial index of the webhooks being probed) per poll interval, nothing per
delivery; it sleeps until that time or a poll interval, whichever comes first, and this
process's dispatcher wakes it when it disables a webhook.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from ..errors import DatabaseUnavailable
from ..net.sender import HttpSender
from ..payload import format_timestamp
from ..settings import Settings
from ..store import recovery as store
from ..store.database import Database
from ..tasks import cancel_and_wait
from ..verification import send_test_event
from .recovery import ProbeEnd, RecoverySchedule, probe_attempt, record_probe

log = logging.getLogger("hookcast.recovery")

CLAIM_LIMIT = 16  # probes at once per process; each may take up to the attempt timeout


class Prober:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        sender: HttpSender,
        *,
        on_recovered: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_recovered`: a webhook is Active again, its redeliveries, state event and mail
        are committed: wake the dispatcher and the outbox."""
        self._db = db
        self._settings = settings
        self._sender = sender
        self._on_recovered = on_recovered
        self.schedule = RecoverySchedule.from_settings(settings)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.probes = 0  # probes this process made

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hookcast-prober")

    def wake(self) -> None:
        """A webhook was disabled here: its first probe time may be the earliest now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop at once: a probe cut short is made by some process after its lease."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        poll = self._settings.poll_interval
        while not self._stopping:
            self._wake.clear()  # before reading: a wake-up during the read is kept
            try:
                due = await self._db.read(store.next_probe_at)
                if due is not None and due <= time.time():
                    if await self._probe_due():
                        continue  # more may be due
                    # Due but taken: by another process's claim being committed, or locked
                    # by an outcome writer. Look again shortly rather than spin.
                    due = time.time() + min(poll, 0.05)
            except DatabaseUnavailable:  # logged once per outage (Database.health)
                due = None
            except Exception:
                log.exception("AutoRecover probing failed; retrying")
                due = None
            timeout = poll if due is None else min(poll, max(0.0, due - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _probe_due(self) -> int:
        """Claim the due probes and make them; how many."""
        now = time.time()
        claimed = await self._db.run(store.claim, now, now + self._settings.lease, CLAIM_LIMIT)
        ended = await asyncio.gather(
            *(self._probe(target) for target in claimed), return_exceptions=True
        )
        for error in ended:
            # Unwritten: the claim's lease runs out and some process probes it again.
            if isinstance(error, Exception) and not isinstance(error, DatabaseUnavailable):
                log.error("writing an AutoRecover probe failed", exc_info=error)
        return len(claimed)

    async def _probe(self, target: store.ProbeTarget) -> None:
        event_uuid, uid = str(uuid.uuid4()), str(uuid.uuid4())
        started = time.time()
        occurred_at = format_timestamp(datetime.fromtimestamp(started, UTC))
        outcome = await send_test_event(
            self._sender,
            url=target.target_url,
            secret=target.secret,
            name=target.name,
            headers=target.headers,
            properties=target.properties,
            tenant=target.tenant,
            associate_id=target.associate_id,
            settings=self._settings,
            event_id=event_uuid,
            delivery_id=uid,
            timestamp=occurred_at,
            log_request=True,
        )
        self.probes += 1
        entry = store.ProbeLog(
            occurred_at,
            event_uuid,
            uid,
            probe_attempt(outcome, event_uuid, target.webhook_id, started),
        )
        end: ProbeEnd = await self._db.run(
            lambda conn: record_probe(conn, target, outcome, entry, self.schedule, time.time())
        )
        self._report(target, outcome.ok, outcome.error, end)
        if end.recovered is not None:
            self._on_recovered()

    def _report(
        self, target: store.ProbeTarget, ok: bool, error: str | None, end: ProbeEnd
    ) -> None:
        number = target.probes + 1
        if not end.counted:
            log.info(
                "webhook %s: probe %d ended after its probing was stopped or taken over",
                target.webhook_id,
                number,
            )
        elif end.recovered is not None:
            log.warning(
                "webhook %s of tenant %s recovered: probe %d answered 2xx, Active again",
                target.webhook_id,
                target.tenant,
                number,
            )
        elif end.next_at is None:
            log.warning(
                "webhook %s of tenant %s: AutoRecover gave up after %d probes (%s); it stays "
                "TooManyErrors",
                target.webhook_id,
                target.tenant,
                number,
                error,
            )
        else:
            log.info(
                "webhook %s: probe %d failed (%s); next in %.0f s",
                target.webhook_id,
                number,
                error,
                end.next_at - time.time(),
            )
