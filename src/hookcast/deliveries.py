"""The delivery log across a tenant's webhooks: search, one delivery's attempts, and replay
of one delivery or of everything a search matches. The REST routes (api/deliveries.py) and
the console call these; nothing here knows about HTTP requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import NotFound
from .model import Principal
from .store import search
from .store.database import Database
from .store.search import DeliveryFilter, SearchStatus

__all__ = ["DeliveryFilter", "DeliveryLog", "ReplayCount", "SearchStatus"]


@dataclass(frozen=True, slots=True)
class ReplayCount:
    matched: int  # deliveries the search matches
    queued: int  # of them, queued again (or, for a count, that a replay would queue)


class DeliveryLog:
    def __init__(self, db: Database, wake: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.wake = wake

    async def search(
        self, f: DeliveryFilter, limit: int, cursor: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of matching deliveries (newest first) and the cursor of the next page
        (None on the last)."""
        rows = await self.db.read(search.search_deliveries, f, limit + 1, cursor)
        more = len(rows) > limit
        rows = rows[:limit]
        for r in rows:
            r["state"] = search.status_of(r["status"], r["cycle"], r["attempt"])
        return rows, rows[-1]["id"] if more else None

    async def delivery(self, who: Principal, delivery_id: int) -> dict[str, Any]:
        found = await self.db.read(search.delivery_attempts, who.tenant, delivery_id)
        if found is None:
            raise NotFound(f"There is no delivery {delivery_id}.")
        found["state"] = search.status_of(found["status"], found["cycle"], found["attempt"])
        return found

    async def count(self, f: DeliveryFilter) -> ReplayCount:
        """How many deliveries match, and how many a replay would queue."""
        return ReplayCount(*await self.db.read(search.count_matching, f))

    async def hourly(
        self, webhook_ids: list[int], hours: int = 24
    ) -> dict[int, list[tuple[int, int]]]:
        """Per webhook, (successes, failures) in each of the last `hours` hours, oldest first."""
        since = (int(time.time()) // 3600 - hours + 1) * 3600.0
        return await self.db.read(search.hourly_outcomes, webhook_ids, since, hours)

    async def redeliver(self, f: DeliveryFilter) -> ReplayCount:
        """Queue every finished matching delivery of an Active webhook again, in one
        set-based UPDATE on the database thread (the event loop keeps serving)."""
        matched, _ = await self.db.read(search.count_matching, f)
        queued = await self.db.run(search.redeliver_matching, f, time.time())
        if queued:
            self.wake()
        return ReplayCount(matched, queued)
