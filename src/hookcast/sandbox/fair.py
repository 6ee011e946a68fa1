"""Which waiting script run gets the next free worker: pure policy, no I/O.

Each tenant has its own FIFO queue; tenants with waiting runs are served in turn (round
robin), and no tenant holds more than `per_tenant` workers at once. So one tenant's many
slow runs take at most its share, and another tenant's trivial Validate gets the next free
worker after at most one run of each tenant ahead of it in the rotation.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self, slots: int, per_tenant: int) -> None:
        if slots < 1 or per_tenant < 1:
            raise ValueError("slots and per_tenant must be at least 1")
        self.slots = slots
        self.per_tenant = per_tenant
        self.busy = 0
        self._running: dict[str, int] = {}
        self._waiting: OrderedDict[str, deque[T]] = OrderedDict()  # rotation order

    def push(self, tenant: str, item: T) -> None:
        self._waiting.setdefault(tenant, deque()).append(item)

    def remove(self, tenant: str, item: T) -> bool:
        """Withdraw a waiting item (its caller gave up); False when it is not waiting."""
        queue = self._waiting.get(tenant)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._waiting[tenant]
        return True

    def pop(self) -> tuple[str, T] | None:
        """The next item to start, counted as running; None when no slot is free or every
        waiting tenant is at its cap."""
        if self.busy >= self.slots:
            return None
        for tenant in list(self._waiting):
            if self._running.get(tenant, 0) >= self.per_tenant:
                continue
            queue = self._waiting.pop(tenant)  # re-inserted at the end: its turn is used
            item = queue.popleft()
            if queue:
                self._waiting[tenant] = queue
            self._running[tenant] = self._running.get(tenant, 0) + 1
            self.busy += 1
            return tenant, item
        return None

    def done(self, tenant: str) -> None:
        """A started item finished: its slot is free again."""
        left = self._running.get(tenant, 0) - 1
        if left > 0:
            self._running[tenant] = left
        else:
            self._running.pop(tenant, None)
        self.busy = max(0, self.busy - 1)

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())
