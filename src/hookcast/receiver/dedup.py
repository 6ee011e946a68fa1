"""De-duplication of deliveries by `webhook-id`: a protocol any shared store can meet
(Redis SET NX, a database table with a unique key) and a bounded in-memory default."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["DedupStore", "MemoryDedupStore"]


@runtime_checkable
class DedupStore(Protocol):
    """Remembers the deliveries a receiver took on. Both methods may be called from several
    threads at once (threaded WSGI servers)."""

    def claim(self, key: str) -> bool:
        """Mark `key` as taken; False if it already was (a duplicate). Atomic: of two
        concurrent claims of one key exactly one gets True."""
        ...

    def release(self, key: str) -> None:
        """Forget `key`: handling it failed, so the sender's next attempt must be handled."""
        ...


class MemoryDedupStore:
    """The keys of the last `max_entries` deliveries, each for `ttl` seconds, in this
    process only (several processes behind one URL need a shared store).

    hookcast retries a delivery for up to 3 cycles an hour or more apart (§6), each attempt
    with a fresh `webhook-timestamp`: keep keys longer than a delivery can be retried, not
    only as long as the replay window."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> when claimed, oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return False
            self._seen[key] = now
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def _expire(self, now: float) -> None:
        # Oldest first: stop at the first key still young enough.
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if now - at < self._ttl:
                return
            del self._seen[key]
