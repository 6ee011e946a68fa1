"""The dispatcher: claims due deliveries in batches under a lease, runs each through its
plugin, and writes the outcomes in batches.

Two loops share one event loop. The claim loop keeps up to `concurrency` attempts in
flight, at most `per_webhook_concurrency` for any one webhook and no more than its
endpoint's adaptive limit (adaptive.py), so a slow or dead receiver can hold only its own
slots (the accounting, and why each rule exists: slots.py). The writer commits outcomes
while new attempts run: one transaction per batch, never one per delivery; it waits
`outcome_window` for more outcomes before committing fewer than a batch, so many slow
receivers cost about as many commits as one fast one. A webhook that this process disables
is dropped at once: its held deliveries are let go, its attempts in flight cancelled.

A webhook's MaxInFlight and MaxPerSecond (ratelimit.py) are split between the live
dispatchers (the hub tells this one its place with each heartbeat, `set_share`); held
deliveries of a rate-limited webhook start from a timer set for their next token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from ..errors import DatabaseUnavailable
from ..model import Ordering
from ..outcome import AttemptOutcome, ErrorKind
from ..settings import Settings
from ..store import queue
from ..store.database import Database
from ..store.rows import Claimed
from .adaptive import AdaptiveLimits
from .outcomes import Recorded, record_outcomes
from .plugins import Plugin
from .policy import Attempted, RetryPolicy
from .ratelimit import Share
from .recovery import RecoverySchedule
from .report import report
from .slots import Admit, Handover, SlotLedger
from .transitions import Transition

if TYPE_CHECKING:
    from ..tracing import Tracing

log = logging.getLogger("hookcast.dispatch")


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        plugins: dict[str, Plugin],
        *,
        on_transitions: Callable[[list[Transition]], None] = lambda _: None,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: spans of attempts (hookcast.tracing); None when tracing is off."""
        self._db = db
        self._tracing = tracing
        self._settings = settings
        self._plugins = plugins
        self._on_transitions = on_transitions
        self.policy = RetryPolicy.from_settings(settings)
        self.recovery = RecoverySchedule.from_settings(settings)
        self._wake = asyncio.Event()
        # When a claim may find something for a webhook we can take: 0 = now. After a claim
        # that found less than it asked for, the next due time (at most a poll interval
        # away), unless wake() says that something changed first. So slots coming free do
        # not each cost a claim that scans the due rows of a saturated webhook (a hanging
        # receiver's backlog).
        self._claim_at = 0.0
        self._wakes = 0
        self._states_checked = time.monotonic()  # see _drop_inactive
        self._parked: dict[int, float] = {}  # webhook id -> until when its backlog is parked
        self._stopping = False
        self._closing = False  # set once no attempt can add outcomes any more
        self._tasks: dict[int, asyncio.Task[None]] = {}  # delivery id -> its attempt
        # Running and held deliveries by webhook, the caps on them (times: time.monotonic()).
        self._slots: SlotLedger[Claimed] = SlotLedger(
            concurrency=settings.concurrency,
            per_webhook=settings.per_webhook_concurrency,
            batch_size=settings.batch_size,
            lease=settings.lease,
            limits=AdaptiveLimits(
                initial=min(
                    settings.endpoint_initial_concurrency, settings.per_webhook_concurrency
                ),
                ceiling=settings.per_webhook_concurrency,
            ),
        )
        self._background: set[asyncio.Task[None]] = set()
        self._results: list[Attempted] = []
        self._results_ready = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self.attempts = 0  # attempts finished by this process, for the heartbeat
        self._writer: asyncio.Task[None] | None = None
        # When held deliveries of rate-limited webhooks get their next token (see _arm).
        self._token_timer: asyncio.TimerHandle | None = None
        self._token_at = 0.0  # time.monotonic() the timer is set for

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def occupancy(self) -> dict[str, int]:
        """This process's deliveries by state, for /metrics: attempts running, deliveries
        held for a slot, outcomes not yet written."""
        return {
            "running": len(self._tasks),
            "held": self._slots.held,
            "writing": len(self._results),
        }

    def in_flight_for(self, webhook_id: int) -> int:
        """Attempts of one webhook running now (its endpoint's limit caps them)."""
        return self._slots.running_for(webhook_id)

    @property
    def idle(self) -> bool:
        """No attempt in flight, no wake-up pending, and the next claim put in the future
        (done only after a claim that took all that was due, with no wake-up meanwhile):
        until a wake-up or that time (the next due retry, at the latest a poll interval
        away), it claims nothing."""
        return not self._tasks and not self._wake.is_set() and self._claim_at > time.time()

    def wake(self) -> None:
        """Something may be due: new deliveries were committed, retries were scheduled or a
        webhook is no longer saturated."""
        self._claim_at = 0.0
        self._wakes += 1
        self._wake.set()

    def start(self) -> None:
        self._claimer = asyncio.create_task(self._claim_loop(), name="hookcast-claim")
        self._writer = asyncio.create_task(self._write_loop(), name="hookcast-outcomes")

    async def stop(self) -> None:
        """Stop claiming, let attempts in flight finish (up to the attempt timeout), hand
        back what did not, and write every outcome."""
        self._stopping = True
        self._slots.stop()
        if self._token_timer is not None:
            self._token_timer.cancel()
        self._wake.set()
        if self._claimer:
            await self._claimer
        if self._tasks:
            await asyncio.wait(
                list(self._tasks.values()), timeout=self._settings.attempt_timeout + 1
            )
        unfinished = list(self._tasks) + self._slots.release_held()
        for task in self._tasks.values():
            task.cancel()
        if unfinished:
            await self._db.run(queue.release, unfinished, time.time())
        # The writer is never cancelled: a cancelled commit could drop finished outcomes,
        # whose deliveries would then be sent again by another process after the lease.
        self._closing = True
        self._results_ready.set()
        if self._writer:
            await self._writer
        for plugin in self._plugins.values():
            await plugin.close()

    async def drain(self) -> int:
        """Burst mode, in the manner of arq's `Worker.run_check`: claim and run deliveries
        until none is due and none is in flight, write every outcome, then return how many
        attempts were made. Retries scheduled for later stay queued. For tests and one-off
        runs that need to know when delivery is done; instead of start(), not beside it."""
        if self._claimer is not None:
            raise RuntimeError("drain() is for a dispatcher that was not started")
        made = self.attempts
        batch = self._settings.batch_size
        while True:
            stale = self._slots.stale(time.monotonic())
            if stale:
                await self._db.run(queue.release, stale, time.time())
            limit = self._slots.claim_limit(len(self._results))
            claimed = (
                (await self._claim(limit, self._slots.saturated(), time.time()))[0] if limit else []
            )
            if len(self._results) >= batch or (self._results and not self._tasks):
                await self._flush()  # a failure may be due again at once: claim again
            elif self._tasks:
                await asyncio.wait(list(self._tasks.values()), return_when=asyncio.FIRST_COMPLETED)
            elif self._token_timer is not None:  # held for a rate-limited webhook's tokens
                await asyncio.sleep(max(0.0, self._token_at - time.monotonic()) + 0.001)
            elif not claimed:
                return self.attempts - made

    # ----- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        settings = self._settings
        while not self._stopping:
            # Cleared before claiming: a wake-up that arrives during the claim is kept.
            self._wake.clear()
            self._release_stale_holds()
            await self._drop_inactive()
            # Outcomes not yet written count against the slots too; held deliveries do not
            # (each starts in place of an attempt that ended), see SlotLedger.
            limit = self._slots.claim_limit(len(self._results))
            if limit > 0 and self._claim_at <= time.time():
                saturated = self._slots.saturated()
                wakes = self._wakes
                now = time.time()
                try:
                    claimed, due = await self._claim(limit, saturated, now)
                    if len(claimed) == limit:
                        continue  # there may be more
                except DatabaseUnavailable:  # logged once per outage (Database.health)
                    await asyncio.sleep(0.5)
                    continue
                except Exception:
                    log.exception("claiming deliveries failed; retrying")
                    await asyncio.sleep(0.5)
                    continue
                if self._wakes == wakes:  # else what the claim saw is already outdated
                    # At the latest after a poll interval: other processes may queue work
                    # unannounced (another user's, a crashed one's leases running out).
                    poll_at = now + settings.poll_interval
                    self._claim_at = poll_at if due is None else min(due, poll_at)
            timeout = settings.poll_interval
            if limit > 0:
                timeout = min(timeout, max(0.0, self._claim_at - time.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._claim_at = 0.0  # due, or time to poll

    def wake_for(self, webhook_ids: set[int]) -> None:
        """New deliveries were queued for these webhooks: wake the claimer unless every one
        of them is saturated (e.g. a hanging receiver: that would be a claim for nothing)."""
        if not webhook_ids <= set(self._slots.saturated()):
            self.wake()

    async def _claim(
        self, limit: int, saturated: list[int], now: float
    ) -> tuple[list[Claimed], float | None]:
        """Claim and admit up to `limit`; with fewer, also when the next delivery falls due
        (queue.claim_or_next_due)."""
        # Stuck webhooks' due backlog is parked until a lease from now (as if leased to us,
        # not held): no claim steps over it meanwhile, another process gets it back by then,
        # and the first attempt of theirs to end here makes it due again (_finished).
        lease_until = now + self._settings.lease
        park = self._slots.stuck(saturated, time.monotonic(), self._settings.poll_interval)
        claimed, due = await self._db.run(
            queue.claim_or_next_due, now, lease_until, limit, saturated, park, lease_until
        )
        for webhook_id in park:
            self._parked[webhook_id] = lease_until
        self.admit(claimed)
        return claimed, due

    def admit(self, items: list[Claimed]) -> None:
        """Run deliveries leased to this process (claimed, or handed over by the intake);
        those that cannot start yet are held (SlotLedger.admit), those over their webhook's
        limits here handed back."""
        now = time.monotonic()
        admit = self._slots.admit
        released = []
        for item in items:
            admitted = admit(item, now)
            if admitted is Admit.START:
                self._start(item)
            elif admitted is Admit.RELEASE:
                released.append(item.delivery_id)
        if released:
            self._background_write(queue.release, released, time.time())
        self._arm()

    def handover(self) -> Handover | None:
        """Which new deliveries the intake hands straight to us (queue.insert_events)."""
        now = time.time()
        parked = {w: until for w, until in self._parked.items() if until > now}
        return self._slots.handover(
            len(self._results), now + self._settings.lease, parked, time.monotonic()
        )

    def set_share(self, index: int, count: int) -> None:
        """This dispatcher is number `index` (from 0) of `count` live ones (the heartbeat
        table): its share of each webhook's MaxInFlight and MaxPerSecond."""
        if self._slots.set_share(Share(index, count), time.monotonic()):
            self._arm()
            self.wake()  # a larger share may take more of what claims skipped

    def _arm(self) -> None:
        """Set the timer for the next token a held delivery of a rate-limited webhook waits
        for (none: nothing waits for one). Webhooks without a rate limit never get here."""
        if not self._slots.rate_limited:
            if self._token_timer is not None:
                self._token_timer.cancel()
                self._token_timer = None
            return
        now = time.monotonic()
        at = self._slots.next_token(now)
        if at is None:
            return  # an ended attempt or a freed slot asks again
        if self._token_timer is not None:
            if self._token_at <= at:
                return  # set for then or earlier already
            self._token_timer.cancel()
        self._token_at = at
        self._token_timer = asyncio.get_running_loop().call_later(at - now, self._tokens)

    def _tokens(self) -> None:
        """The timer: start the held deliveries whose tokens are there."""
        self._token_timer = None
        starts, unsaturated = self._slots.token_starts(time.monotonic())
        for item in starts:
            self._start(item)
        if unsaturated:
            self.wake()
        self._arm()

    def _release_stale_holds(self) -> None:
        """Hand back held deliveries before their lease runs out (their webhook is slow), so
        no process attempts them twice."""
        stale = self._slots.stale(time.monotonic())
        if stale:
            self._background_write(queue.release, stale, time.time())

    def _background_write(self, write: Callable[..., None], *args: Any) -> None:
        """A write nothing waits for (deliveries due again); the claimer wakes once it is
        done, since they and their webhooks may be claimed now."""
        task = asyncio.create_task(self._quiet_write(write, *args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self.wake())

    async def _quiet_write(self, write: Callable[..., None], *args: Any) -> None:
        try:
            await self._db.run(write, *args)
        except DatabaseUnavailable:
            pass  # their leases or park times run out instead: due again then, nothing lost

    async def _drop_inactive(self) -> None:
        """Once per poll interval: drop what we hold or run of webhooks no longer Active.
        Stopped or deleted through this process's API they are dropped at once (Hub.halt);
        this catches the changes other processes made. (And parked backlogs come back.)"""
        now = time.monotonic()
        if now < self._states_checked + self._settings.poll_interval:
            return
        self._states_checked = now
        # Parked backlogs whose time has come (parked by a process that stopped, or by us
        # when no attempt of theirs ended meanwhile) are due again.
        self._background_write(queue.unpark_expired, time.time())
        webhooks = self._slots.webhooks()
        if not webhooks:
            return
        try:
            inactive = await self._db.read(queue.inactive_of, webhooks)
        except DatabaseUnavailable:
            return  # checked again next poll
        except Exception:
            log.exception("reading the states of webhooks in delivery failed")
            return
        if inactive:
            self.drop_webhooks(sorted(inactive))

    def _start(self, item: Claimed) -> None:
        """Run an attempt the ledger counts as running."""
        self._tasks[item.delivery_id] = asyncio.create_task(self._attempt(item))

    def _finished(self, item: Claimed, outcome: AttemptOutcome | None) -> None:
        """An attempt ended: start the held deliveries the ledger puts in its place, if any;
        else a slot is free for the claimer. A parked backlog of its webhook is due again."""
        starts, unsaturated = self._slots.finished(item.delivery_id, outcome, time.monotonic())
        for start in starts:
            self._start(start)
        if self._slots.rate_limited or self._token_timer is not None:
            self._arm()
        if outcome is not None and self._parked.pop(item.webhook_id, None) is not None:
            self._background_write(queue.unpark, item.webhook_id, time.time())
        if unsaturated:
            self.wake()  # no longer saturated: its due deliveries may be claimed again
        elif not starts:
            self._wake.set()  # a slot came free

    def drop_webhooks(self, webhook_ids: list[int]) -> None:
        """These webhooks are no longer Active (§6): start nothing more of theirs, let their
        held deliveries go (given up with the webhook) and cancel their attempts in flight,
        which are then not counted."""
        for webhook_id in webhook_ids:
            self._parked.pop(webhook_id, None)  # given up with the webhook
            _, running = self._slots.drop_webhook(webhook_id)
            for delivery_id in running:
                task = self._tasks.pop(delivery_id, None)
                if task is not None:
                    task.cancel()
        self._wake.set()

    async def _attempt(self, item: Claimed) -> None:
        started = time.time()
        outcome: AttemptOutcome | None = None
        try:
            plugin = self._plugins.get(item.webhook_type)
            if plugin is None:
                outcome = AttemptOutcome.failed(
                    f"no plugin for Type {item.webhook_type!r}", ErrorKind.PLUGIN
                )
            elif self._tracing is None:
                outcome = await plugin.deliver(item)
            else:
                outcome = await self._tracing.attempt(item, plugin.deliver)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin bug is a failed attempt, not a lost delivery
            log.exception("plugin %s failed on delivery %s", item.webhook_type, item.delivery_id)
            outcome = AttemptOutcome.failed(
                f"plugin error: {exc}", ErrorKind.PLUGIN, (time.time() - started) * 1000
            )
        finally:
            self._tasks.pop(item.delivery_id, None)
            self._finished(item, outcome)
        self._results.append(Attempted(item, outcome, started))
        self.attempts += 1
        self._results_ready.set()

    # ----- outcomes ----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        window = self._settings.outcome_window
        while not (self._closing and not self._results):
            await self._results_ready.wait()
            self._results_ready.clear()
            if window and not self._closing and len(self._results) < self._settings.batch_size:
                # More outcomes to share the commit with, from attempts ending meanwhile.
                await asyncio.sleep(window)
            await self._flush()

    def _record(self, conn: Connection, batch: list[Attempted]) -> Recorded:
        # The clock is read in the transaction: a webhook's updated_at is when it was
        # disabled, not when the batch began waiting for the database.
        return record_outcomes(conn, batch, self.policy, time.time(), self.recovery)

    async def _flush(self) -> None:
        """Write the outcomes there are; of those that arrive meanwhile, only whole batches
        (the rest wait for the next window, so a trickle does not become a commit each)."""
        failures = 0
        batch_size = self._settings.batch_size
        due = len(self._results)
        while self._results and (due > 0 or len(self._results) >= batch_size or self._closing):
            batch = self._results[:batch_size]
            try:
                recorded = await self._db.run(self._record, batch)
            except Exception as exc:
                # Kept: the leases hold the deliveries meanwhile, so nothing is lost.
                failures += 1
                if not isinstance(exc, DatabaseUnavailable):  # else logged once per outage
                    log.exception("writing %d outcomes failed; retrying", len(batch))
                if self._closing and failures >= 3:
                    del self._results[:]  # shutting down: the leases bring them back
                    return
                await asyncio.sleep(0.5)
                continue
            # Removed only once committed (attempts append behind, never in front).
            del self._results[: len(batch)]
            due -= len(batch)
            report(batch, lines=self._settings.log_attempts)
            for t in recorded.disabled:
                log.warning(
                    "webhook %s of tenant %s disabled: TooManyErrors", t.webhook_id, t.tenant
                )
            if recorded.disabled:
                self.drop_webhooks([t.webhook_id for t in recorded.disabled])
            # Webhooks held since an attempt failed may start again (those still Active).
            for item in self._slots.written(
                (a.claimed.webhook_id for a in batch if not a.outcome.ok), time.monotonic()
            ):
                self._start(item)
            if self._slots.rate_limited:
                self._arm()
            if recorded.disabled or recorded.mail_queued:
                self._on_transitions(recorded.disabled)  # new events, mail for the outbox
            if any(
                not r.outcome.ok or r.claimed.options.ordering is Ordering.PerRecord for r in batch
            ):
                # Retries may now be due sooner than the claimer thought; the next delivery
                # of a record whose delivery finished was held back, not scheduled.
                self.wake()
            else:
                self._wake.set()  # written outcomes free their slots
