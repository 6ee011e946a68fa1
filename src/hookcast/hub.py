"""The Hub: hookcast inside a Python application, and the engine of `hookcast serve`.

    async with Hub(Settings(database_url="sqlite:///hooks.db")) as hub:
        await hub.signal("contact.changed", 994863, tenant="Cust1234", associate_id=316,
                         changes={"name": "Ada"})

`signal` returns once the event and its deliveries are committed. With `deliver=True` (the
default) the hub also runs the dispatcher on the same event loop; `deliver=False` only
stores events, for applications that leave delivery to `hookcast worker`.
Blocking applications use `Hub.start_in_thread()` and `signal_sync(...)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from . import metrics, tracing
from .dispatch.listen import listen
from .dispatch.outbox import Outbox
from .dispatch.outbox_drain import OutboxDrain
from .dispatch.plugins import load_plugins
from .dispatch.plugins.crmscript import ScriptRunner
from .dispatch.prober import Prober
from .dispatch.transitions import Transition
from .dispatch.worker import Dispatcher
from .errors import DatabaseUnavailable, ValidationError
from .intake import Intake, Signal, new_event, signal_key
from .net.sender import HttpSender
from .net.transport import Transport
from .oslimits import raise_open_files_limit
from .settings import Settings
from .store import queue
from .store.database import Database
from .store.queue import Signalled
from .store.rows import Claimed, NewEvent
from .tasks import cancel_and_wait

log = logging.getLogger("hookcast")
HEARTBEAT_SECONDS = 5.0
# A dispatcher without a heartbeat for this long no longer takes a share of the webhooks'
# rate limits (a killed one's row stays behind): three missed heartbeats.
LIVE_SECONDS = 3 * HEARTBEAT_SECONDS


class Hub:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: Database | None = None,
        deliver: bool = True,
        kind: str = "embedded",
        transport: Transport | None = None,
    ) -> None:
        """`transport`: what deliveries, verification and Webhook/Test post through (default:
        the keep-alive HTTP/1.1 client; a `hookcast.net.MockTransport` in unit tests)."""
        self.settings = settings or Settings()
        self._own_db = db is None
        self.db = db or Database(
            self.settings.database_url, sqlite_synchronous=self.settings.sqlite_synchronous
        )
        self.deliver = deliver
        self.sender = HttpSender(self.settings, transport=transport)
        # Spans and trace propagation (hookcast.tracing); None, and nothing imported, when off.
        self.tracing = tracing.from_settings(self.settings)
        metrics.tenants.limit = self.settings.metrics_tenants
        # The CRMScript sandbox of this process (API and dispatcher); workers start on use.
        self.scripts = ScriptRunner(self.settings, self.sender)
        self.dispatcher: Dispatcher | None = None
        self.outbox: Outbox | None = None
        self.outbox_drain: OutboxDrain | None = None  # events applications wrote (0008)
        self.prober: Prober | None = None  # AutoRecover's probes (dispatch/prober.py)
        self._intake: Intake | None = None
        self._background: list[asyncio.Task[None]] = []
        self.worker_id = str(uuid.uuid4())
        self.kind = kind
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----- life cycle ------------------------------------------------------------------------

    async def start(self) -> Hub:
        self._loop = asyncio.get_running_loop()
        raise_open_files_limit()  # every connection in flight holds a file descriptor
        if self._own_db:
            await asyncio.to_thread(self.db.migrate)
        if self.deliver:
            if self.settings.lease <= self.settings.attempt_timeout:
                log.warning(
                    "HOOKCAST_LEASE (%s s) is not longer than HOOKCAST_ATTEMPT_TIMEOUT (%s s): "
                    "other processes may attempt a slow delivery again before it finishes",
                    self.settings.lease,
                    self.settings.attempt_timeout,
                )
            self.outbox = Outbox(self.db, self.settings)
            self.dispatcher = Dispatcher(
                self.db,
                self.settings,
                load_plugins(self.settings, self.sender, self.db, self.scripts),
                on_transitions=self._on_transitions,
                tracing=self.tracing,
            )
            self.outbox_drain = OutboxDrain(
                self.db,
                on_commit=self._committed,
                handover=self.dispatcher.handover,
                poll_interval=self.settings.poll_interval,
                batch=self.settings.batch_size * 10,
            )
            self.prober = Prober(self.db, self.settings, self.sender, on_recovered=self.wake)
            self.outbox.start()
            self.dispatcher.start()
            self.outbox_drain.start()
            self.prober.start()
            self._background = [
                asyncio.create_task(self._prune_loop(), name="hookcast-prune"),
                asyncio.create_task(self._heartbeat_loop(), name="hookcast-heartbeat"),
            ]
            if self.db.doorbell is not None:  # SQLite: other processes ring after committing
                self.db.doorbell.listen(self._rung)
            elif not self.db.is_sqlite:
                self._background.append(
                    asyncio.create_task(
                        listen(self.db.url, self.wake, health=self.db.health),
                        name="hookcast-listen",
                    )
                )
        self._intake = Intake(
            self.db,
            on_commit=self._committed,
            max_batch=self.settings.batch_size * 10,
            handover=self.dispatcher.handover if self.dispatcher else (lambda: None),
            tracing=self.tracing,
        )
        self._intake.start()
        return self

    async def close(self) -> None:
        if self._intake:
            await self._intake.close()
        await asyncio.gather(
            *(cancel_and_wait(task) for task in self._background), return_exceptions=True
        )
        if self.prober:
            await self.prober.stop()
        if self.dispatcher:
            if self.db.doorbell is not None:
                self.db.doorbell.stop_listening()
            if self.outbox_drain:
                await self.outbox_drain.stop()
            await self.dispatcher.stop()
            await self.db.run(queue.remove_worker, self.worker_id)
        if self.outbox:
            await self.outbox.stop()
        await self.scripts.aclose()
        await self.sender.close()
        if self.tracing is not None:
            await asyncio.to_thread(tracing.flush)  # spans still batched for export
        if self._own_db:
            self.db.close()

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    def start_in_thread(cls, settings: Settings | None = None, **kwargs: Any) -> Hub:
        """A hub on its own event loop in a daemon thread, for blocking applications."""
        hub = cls(settings, **kwargs)
        loop = asyncio.new_event_loop()
        hub._thread = threading.Thread(target=loop.run_forever, name="hookcast-hub", daemon=True)
        hub._thread.start()
        asyncio.run_coroutine_threadsafe(hub.start(), loop).result()
        return hub

    def close_sync(self) -> None:
        """Stop a hub started with `start_in_thread`."""
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    # ----- signalling -------------------------------------------------------------------------

    async def signal(
        self,
        event: str,
        primary_key: int,
        *,
        tenant: str,
        associate_id: int = 0,
        changes: Sequence[str] | Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        field_values: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Store an event and its deliveries durably; returns the event's id.

        `changes`: the changed field names, or a mapping of name to new value (the names go
        into the payload's Changes, the values to CRMScript hooks). `values`: the id values of
        a deleted row (only for *.deleted events). `idempotency_key`: a retry with the same
        key signals nothing again and returns the first one's id. Raises
        hookcast.ValidationError (and hookcast.Conflict for a key reused for another event)."""
        item = new_event(
            event,
            primary_key,
            tenant=tenant,
            associate_id=associate_id,
            changes=changes,
            values=values,
            field_values=field_values,
            occurred_at=occurred_at,
        )
        return (await self._store([item], idempotency_key)).ids[0]

    async def signal_many(
        self, signals: Iterable[Signal], *, idempotency_key: str | None = None
    ) -> Signalled:
        """Store events and their deliveries durably, all in one transaction or none (one
        invalid event: ValidationError naming it, nothing stored); returns their ids in
        order. With `idempotency_key` (the events of one tenant), a retry with the same key
        stores nothing and answers the first call's ids with `replayed` set."""
        batch = []
        for index, s in enumerate(signals):
            try:
                batch.append(new_event(**s._asdict()))
            except ValidationError as exc:
                raise ValidationError(
                    f"Event {index}: {exc.message}",
                    [{"Field": f"[{index}]", "Message": exc.message}],
                ) from None
        return await self._store(batch, idempotency_key)

    async def _store(self, batch: list[NewEvent], idempotency_key: str | None) -> Signalled:
        if self._intake is None:
            raise RuntimeError("start the Hub first (async with Hub(...) as hub)")
        if not batch:
            return Signalled([])
        key = signal_key(idempotency_key, batch)
        if self.tracing is None:
            answer = await self._intake.submit(batch, key)
        else:
            with self.tracing.signal(batch) as traceparent:
                if traceparent is not None:  # stored with the events, for their attempts
                    batch = [dataclasses.replace(e, traceparent=traceparent) for e in batch]
                answer = await self._intake.submit(batch, key)
        if not answer.replayed:
            metrics.signalled([e.tenant for e in batch])
        return answer

    def signal_sync(self, event: str, primary_key: int, **kwargs: Any) -> int:
        """`signal` for code that is not async; blocks until the event is durable."""
        if self._loop is None:
            raise RuntimeError("start the Hub first (Hub.start_in_thread(...))")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "signal_sync would block the hub's own event loop; await hub.signal()"
            )
        future: Future[int] = asyncio.run_coroutine_threadsafe(
            self.signal(event, primary_key, **kwargs), self._loop
        )
        return future.result()

    # ----- internals ---------------------------------------------------------------------------

    def wake(self) -> None:
        """New deliveries or mails were committed in this process."""
        if self.dispatcher:
            self.dispatcher.wake()
        if self.outbox:
            self.outbox.wake()
        if self.outbox_drain:
            self.outbox_drain.wake()

    def halt(self, webhook_id: int) -> None:
        """A webhook was stopped or deleted here: deliver nothing more of it (§6, issue 12)."""
        if self.dispatcher:
            self.dispatcher.drop_webhooks([webhook_id])

    def _rung(self, webhook_ids: set[int] | None) -> None:
        """Another process committed new deliveries (for these webhooks; None: anything)."""
        if webhook_ids is None:
            if self.outbox_drain:  # perhaps an application's outbox commit (see wake(rung=))
                self.outbox_drain.wake(rung=True)
            self.wake()
        elif self.dispatcher:
            self.dispatcher.wake_for(webhook_ids)

    def _committed(self, handed: list[Claimed], queued: set[int]) -> None:
        """Signals were stored: run the deliveries handed to us; the queued ones may wake the
        claimer."""
        if self.dispatcher:
            if handed:
                self.dispatcher.admit(handed)
            if queued:
                self.dispatcher.wake_for(queued)

    def _on_transitions(self, transitions: list[Transition]) -> None:
        self.wake()
        if transitions and self.prober:  # disabled here: a first probe may be due soonest
            self.prober.wake()

    async def _heartbeat_loop(self) -> None:
        started = time.time()
        while True:
            assert self.dispatcher is not None
            row = {
                "id": self.worker_id,
                "kind": self.kind,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": started,
                "heartbeat_at": time.time(),
                "in_flight": self.dispatcher.in_flight,
                "attempts": self.dispatcher.attempts,
            }
            try:
                live = await self.db.run(queue.beat, row, time.time() - LIVE_SECONDS)
                # Our place among the live dispatchers: our share of the rate limits.
                if self.worker_id in live:
                    self.dispatcher.set_share(live.index(self.worker_id), len(live))
            except DatabaseUnavailable:
                pass  # logged once per outage (Database.health)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _prune_loop(self) -> None:
        keep = self.settings.retention_days * 86400
        interval = min(3600.0, max(keep / 10, 1.0))
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.db.run(queue.prune, time.time() - keep)
                if removed:
                    log.info(
                        "pruned %d finished deliveries older than %s days",
                        removed,
                        self.settings.retention_days,
                    )
            except DatabaseUnavailable:
                pass  # tried again next interval
            except Exception:
                log.exception("pruning failed")
