"""Moves the event outbox into events and deliveries: what applications wrote inside their
own transactions (hookcast.sqlalchemy, hookcast.contrib.django) becomes deliveries once it
is committed. (Not to be confused with outbox.py, the ErrorsEmail outbox.)

Woken after an application's commit (SQLite: the doorbell; PostgreSQL: the NOTIFY the
application's transaction sent, delivered at its commit) and polled every poll interval for
a wake-up that was lost. Each pass is one transaction per batch; a batch that fails is taken
again one row at a time, so that one bad row cannot hold up the rest (it stays, logged)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..errors import DatabaseUnavailable
from ..outage import OutageReporter
from ..store import event_outbox
from ..store.database import Database
from ..store.queue import Handover
from ..store.rows import Claimed
from ..tasks import cancel_and_wait

log = logging.getLogger("hookcast.dispatch")


class OutboxDrain:
    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[list[Claimed], set[int]], None],
        handover: Callable[[], Handover | None] = lambda: None,
        poll_interval: float = 1.0,
        batch: int = 1000,
    ) -> None:
        """`on_commit` and `handover` as for the Intake: the local dispatcher takes new
        deliveries straight from the drain where it can."""
        self._db = db
        self._on_commit = on_commit
        self._handover = handover
        self._poll = poll_interval
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = OutageReporter("moving the event outbox into deliveries", log)
        self.moved = 0  # events moved by this process, for tests and metrics
        self._rung = False

    def start(self) -> None:
        self._wake.set()  # whatever was committed while no dispatcher ran
        self._task = asyncio.create_task(self._run(), name="hookcast-outbox-drain")

    def wake(self, *, rung: bool = False) -> None:
        """`rung`: another process rang the SQLite doorbell. An application rings as it
        commits, just before its commit lands, while it still holds the write lock: the next
        pass then takes the write lock at once (instead of a read first, which could still
        see the outbox without that commit), and so reads after the commit."""
        self._rung = self._rung or rung
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def drain(self) -> int:
        """Move everything waiting now; returns how many events moved."""
        moved = 0
        while True:
            count = await self._pass(self._batch)
            moved += count
            if count < self._batch:  # (or a bad row: it stays until the next wake-up)
                return moved

    async def _pass(self, limit: int, only: list[int] | None = None) -> int:
        try:
            count, handed, queued = await self._db.run(
                event_outbox.drain, limit, time.time(), self._handover(), only
            )
        except DatabaseUnavailable:
            return 0  # reported by the database; the next poll tries again
        except Exception as exc:
            if only is None:
                return await self._one_by_one(limit)
            self._failures.failed(f"outbox row {only[0]} cannot be stored, it stays: {exc}")
            return 0
        if count:
            self.moved += count
            self._on_commit(handed, queued)
        return count

    async def _one_by_one(self, limit: int) -> int:
        moved = 0
        for row_id in await self._db.read(event_outbox.waiting, limit):
            moved += await self._pass(1, [row_id])
        return moved

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            rung, self._rung = self._rung, False
            try:
                # Otherwise a read first: most wake-ups are for other work, and SQLite's
                # write lock is not taken for nothing.
                waiting = rung or bool(await self._db.read(event_outbox.waiting))
                if waiting:
                    await self.drain()
                    self._failures.succeeded()
            except DatabaseUnavailable:
                pass
            except Exception as exc:  # never let the loop die: the next poll tries again
                self._failures.failed(exc)
