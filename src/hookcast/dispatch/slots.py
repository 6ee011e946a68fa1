"""The slot ledger: which leased deliveries run now, which wait, and how many more to take.

Pure bookkeeping, no I/O, no clock and no asyncio: the dispatcher asks it and does what it
says (starts the attempts, hands deliveries back, wakes the claimer). The rules:

- At most `concurrency` attempts run at once, at most `cap(webhook)` of any one webhook, so
  a slow or dead receiver can hold only its own slots. When every slot is busy, the webhooks
  waiting for one are served per tenant in turn, then per webhook in turn (`Turns`), so one
  tenant's many webhooks do not crowd out another's. The cap is `per_webhook`, lowered to
  its endpoint's adaptive limit (adaptive.py): a receiver that times out runs one probe
  while its other deliveries wait, and one that answers fast grows back to `per_webhook`.
- A delivery leased to us that cannot start is *held*. One held because its webhook runs all
  it may starts only in place of an ended attempt of that same webhook: a hanging receiver's
  held deliveries never take a slot from a healthy one. (One held only because every slot
  was busy, its webhook being below its cap, starts in the next slot that comes free.)
- Outcomes not yet written count against the free slots too (beyond one batch, which the
  writer is committing): a database that falls behind slows claiming down.
- A webhook with `2 * cap` running and held is *saturated*: claims skip its due
  deliveries (a hanging receiver's backlog) until one of its attempts ends.
- The intake hands a webhook up to a batch more than claims would hold (`cap + batch_size`
  held): under load new deliveries then come straight from the intake, already leased,
  instead of through the queue, a claim each.
- A webhook that stops being Active is dropped at once (`drop_webhook`): its held
  deliveries are let go without an attempt and its running ones are named for cancelling.
- Held deliveries go back to the queue after half a lease (their webhook is slow), before
  their lease runs out and another process could attempt them too.
- A webhook's own limits (MaxInFlight, MaxPerSecond: ratelimit.py), this process's share
  of them: its cap is at most its in-flight share (0: claims skip it, what reaches us goes
  back at once), and each attempt of a rate-limited webhook takes a token to start. One
  leased without a token is held (not failed, not attempted) until `token_starts` finds
  one for it, at the time `next_token` names; claims skip the webhook while it holds what
  its tokens start within a quarter of a lease (`hold_limit`), and more than that goes back
  at once. Webhooks without limits pay for none of this.

The times passed in (`admit`, `stale`) only need to come from one clock, e.g.
`time.monotonic()`; the lease end given to `handover` is stored with the deliveries, so it
is epoch seconds.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable
from typing import Generic, NamedTuple, Protocol, TypeVar

from ..model import DeliveryOptions
from ..outcome import AttemptOutcome
from .adaptive import AdaptiveLimits
from .ratelimit import Share, TokenBucket, burst_of, hold_limit, in_flight_hold


class Leased(Protocol):
    """A delivery leased to this process (store.rows.Claimed)."""

    @property
    def delivery_id(self) -> int: ...

    @property
    def webhook_id(self) -> int: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def options(self) -> DeliveryOptions: ...


D = TypeVar("D", bound=Leased)


class Admit(enum.Enum):
    START = "start"  # start its attempt now (counted as running)
    HOLD = "hold"  # leased to us; it starts later, see SlotLedger.finished
    SKIP = "skip"  # ours already (running or held): its lease ran out while it ran or waited
    # Hand it back now (no longer ours): its webhook holds as many as its share of
    # MaxInFlight here (0: none), or as many as its tokens start within a quarter of a lease.
    # The other dispatchers' shares take the rest.
    RELEASE = "release"


class Finished(NamedTuple, Generic[D]):
    """What an ended attempt frees: held deliveries to start in its place (none: the slot
    is free for the claimer; more than one when its endpoint's limit grew), and whether its
    webhook just stopped being saturated (its due deliveries may be claimed again)."""

    start: list[D]
    unsaturated: bool


class Handover:
    """The local dispatcher's decisions on new deliveries, made by the intake's insert (in
    its transaction, one `take` per matched delivery, in order): take it (stored leased to
    us until `lease_until`, then admitted) or leave it queued for any claimer.

    Per webhook it takes up to as many as can start now (`total` bounds those over all
    webhooks), then, once the webhook runs all it may, up to as many as it holds until a
    slot of that webhook frees up. A snapshot: it does not see the ledger change after it
    was made, so it can be used on the database thread."""

    __slots__ = ("_default", "_left", "_limited", "_parked", "_total", "lease_until")

    def __init__(
        self,
        total: int,
        default: tuple[int, int],
        per_webhook: dict[int, list[int]],
        lease_until: float,
        parked: dict[int, float] | None = None,
        limited: tuple[Share, float] | None = None,
    ) -> None:
        self._total = total
        self._default = default  # (can start, can hold) of a webhook the ledger does not know
        self._left = per_webhook  # webhook -> [can start, can hold], used up by take()
        self.lease_until = lease_until
        self._parked = parked or {}  # webhook -> until when its due backlog is parked
        # (share, lease) for a webhook the ledger does not know whose options limit it.
        self._limited = limited or (Share(), 0.0)

    def parked_until(self, webhook_id: int) -> float | None:
        """A delivery not taken of a webhook whose backlog is parked is stored parked too:
        claims would only step over it (see Dispatcher._claim)."""
        return self._parked.get(webhook_id)

    def take(self, webhook_id: int, options: DeliveryOptions | None = None) -> bool:
        """Take this new delivery of `webhook_id`, whose webhook has these `options`?"""
        left = self._left.get(webhook_id)
        if left is None:
            left = self._left[webhook_id] = self._first(options)
        if left[0] > 0 and self._total > 0:  # starts at once
            left[0] -= 1
            self._total -= 1
            return True
        if left[0] <= 0 and left[1] > 0:  # held: starts when one of its attempts ends
            left[1] -= 1
            return True
        return False

    def _first(self, options: DeliveryOptions | None) -> list[int]:
        """(can start, can hold) of a webhook the ledger does not know: its limits' share
        here bounds them (a fresh bucket is full)."""
        if options is None or (options.max_in_flight is None and options.max_per_second is None):
            return list(self._default)
        share, lease = self._limited
        start, hold = self._default  # (cap, cap + batch)
        if options.max_in_flight is not None:
            batch = hold - start
            start = min(start, share.in_flight(options.max_in_flight))
            hold = min(hold, in_flight_hold(start, share, batch))
        if options.max_per_second is not None:
            rate = share.rate(options.max_per_second)
            limit = hold_limit(rate, lease) if start else 0
            # With MaxInFlight too, no more than admit() keeps held for it (above).
            hold = limit if options.max_in_flight is None else min(hold, limit)
            return [min(start, int(burst_of(rate))), hold]
        return [start, hold]


class Turns:
    """Webhooks waiting for any free slot: the tenants take turns, and within a tenant its
    webhooks do (a webhook that still waits after its turn goes to the back)."""

    __slots__ = ("_tenant_of", "_tenants")

    def __init__(self) -> None:
        self._tenants: dict[str, dict[int, None]] = {}  # in turn order; webhooks in turn order
        self._tenant_of: dict[int, str] = {}

    def __bool__(self) -> bool:
        return bool(self._tenants)

    def add(self, tenant: str, webhook_id: int) -> None:
        self._tenant_of[webhook_id] = tenant
        self._tenants.setdefault(tenant, {})[webhook_id] = None

    def discard(self, webhook_id: int) -> None:
        tenant = self._tenant_of.pop(webhook_id, None)
        if tenant is not None:
            webhooks = self._tenants[tenant]
            webhooks.pop(webhook_id, None)
            if not webhooks:
                del self._tenants[tenant]

    def pop(self) -> int:
        """The next webhook in turn; its tenant goes to the back of the tenants' turn."""
        tenant = next(iter(self._tenants))
        webhooks = self._tenants.pop(tenant)
        webhook_id = next(iter(webhooks))
        del webhooks[webhook_id]
        del self._tenant_of[webhook_id]
        if webhooks:
            self._tenants[tenant] = webhooks
        return webhook_id

    def clear(self) -> None:
        self._tenants.clear()
        self._tenant_of.clear()


class SlotLedger(Generic[D]):
    """Running and held deliveries of one dispatcher, and the caps on them."""

    def __init__(
        self,
        *,
        concurrency: int,
        per_webhook: int,
        batch_size: int,
        lease: float,
        limits: AdaptiveLimits | None = None,
    ):
        self.concurrency = concurrency  # attempts running at once
        self.per_webhook = per_webhook  # of them for one webhook, at most
        self.batch_size = batch_size  # deliveries per claim, outcomes per write
        self.limits = limits  # None: every webhook may run per_webhook
        self.lease = lease
        self.stopping = False
        self._endpoint: dict[int, str] = {}  # webhook id -> endpoint, of webhooks we hold or run
        self._running: dict[int, int] = {}  # delivery id -> webhook id
        self._by_webhook: dict[int, int] = {}  # webhook id -> attempts running (> 0)
        # Leased to us but not started, oldest first, with when they were held.
        self._held: dict[int, deque[tuple[float, D]]] = {}  # webhook id -> (held at, delivery)
        self._held_ids: set[int] = set()
        # Webhooks whose held deliveries wait for any slot (it runs fewer than per_webhook),
        # in the order they take the next free ones.
        self._waiting = Turns()
        self._tenant: dict[int, str] = {}  # webhook id -> tenant, of webhooks we hold or run
        # Failed attempts whose outcome is not written yet, per webhook: it starts nothing
        # until they are, since writing one may disable it (TooManyErrors).
        self._unwritten_failures: dict[int, int] = {}
        # When each webhook we run or hold last made progress (was admitted with nothing of
        # it running or held, or an attempt of it ended), on admit()'s clock: see stuck().
        self._progress_at: dict[int, float] = {}
        # Webhooks whose options limit them (MaxInFlight, MaxPerSecond), as last admitted,
        # and the token buckets of the rate-limited ones; this process's share of the limits.
        self._limited: dict[int, DeliveryOptions] = {}
        self._buckets: dict[int, TokenBucket] = {}
        self.share = Share()

    # ----- questions -------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    def running_for(self, webhook_id: int) -> int:
        return self._by_webhook.get(webhook_id, 0)

    def held_for(self, webhook_id: int) -> int:
        return len(self._held.get(webhook_id, ()))

    @property
    def held(self) -> int:
        return len(self._held_ids)

    def webhooks(self) -> set[int]:
        """The webhooks with attempts running or deliveries held here."""
        return {*self._by_webhook, *self._held}

    def free(self, unwritten: int) -> int:
        """Slots for new attempts, `unwritten` being the outcomes not yet written. Held
        deliveries do not count: each starts only in place of an attempt that ended."""
        return self.concurrency - len(self._running) - max(0, unwritten - self.batch_size)

    def claim_limit(self, unwritten: int) -> int:
        """How many due deliveries to claim now (at most a batch; 0: none)."""
        return max(0, min(self.free(unwritten), self.batch_size))

    def cap(self, webhook_id: int) -> int:
        """How many attempts of this webhook may run: per_webhook, or its endpoint's
        adaptive limit when lower, or this process's share of its MaxInFlight when lower."""
        if webhook_id in self._unwritten_failures:
            return 0
        endpoint = self._endpoint.get(webhook_id)
        if self.limits is None or endpoint is None:
            cap = self.per_webhook
        else:
            cap = min(self.per_webhook, self.limits.limit(endpoint))
        if self._limited:
            options = self._limited.get(webhook_id)
            if options is not None and options.max_in_flight is not None:
                cap = min(cap, self.share.in_flight(options.max_in_flight))
        return cap

    def hold_limit(self, webhook_id: int) -> int | None:
        """How many deliveries of a rate-limited webhook may be held for a token (None: it
        is not rate-limited)."""
        bucket = self._buckets.get(webhook_id) if self._buckets else None
        return None if bucket is None else hold_limit(bucket.rate, self.lease)

    @property
    def rate_limited(self) -> bool:
        return bool(self._buckets)

    def next_token(self, now: float) -> float | None:
        """When the next held delivery of a rate-limited webhook may get its token (one that
        could start but for the token); None: none waits for one."""
        first = None
        if self.stopping or len(self._running) >= self.concurrency:
            return None  # (asked again when a slot comes free)
        for webhook_id, bucket in self._buckets.items():
            if webhook_id in self._held and self.running_for(webhook_id) < self.cap(webhook_id):
                at = bucket.ready_at(now)
                first = at if first is None else min(first, at)
        return first

    def _default_cap(self) -> int:
        return (
            self.per_webhook if self.limits is None else min(self.per_webhook, self.limits.initial)
        )

    def saturated(self) -> list[int]:
        """Webhooks with every slot busy and as many held in turn: claim none of theirs."""
        held, running, cap = self._held, self._by_webhook, self.cap
        found = [w for w, n in running.items() if n + len(held.get(w, ())) >= 2 * cap(w)]
        # Held with nothing running: waiting for any slot, or we are stopping.
        found += [w for w, items in held.items() if w not in running and len(items) >= 2 * cap(w)]
        if self._limited:
            listed = set(found)
            found += [w for w in self._limited if w not in listed and self._over_limits(w)]
        return found

    def _over_limits(self, webhook_id: int) -> bool:
        """No share of its MaxInFlight here, or as many held for a token as it may hold."""
        options = self._limited[webhook_id]
        if options.max_in_flight is not None and self.share.in_flight(options.max_in_flight) == 0:
            return True
        hold = self.hold_limit(webhook_id)
        return hold is not None and len(self._held.get(webhook_id, ())) >= hold

    def stuck(self, saturated: list[int], now: float, after: float) -> list[int]:
        """Of the `saturated()` webhooks, those none of whose attempts ended for `after`
        seconds (a hanging receiver): their due backlog may be parked, since nothing of it
        can start soon."""
        return [
            w
            for w in saturated
            if now - self._progress_at.get(w, now) >= after
            # a rate-limited webhook below its cap waits for tokens, not for a hung receiver
            and not (w in self._buckets and self.running_for(w) < self.cap(w))
        ]

    def handover(
        self,
        unwritten: int,
        lease_until: float,
        parked: dict[int, float] | None = None,
        now: float | None = None,
    ) -> Handover | None:
        """How many new deliveries the intake hands over (None: none, we are stopping).
        `now` (admit()'s clock): for the tokens of rate-limited webhooks."""
        if self.stopping:
            return None
        held, batch, limited = self._held, self.batch_size, self._limited
        busy = {}
        for w in {*self._by_webhook, *held, *limited}:
            cap = self.cap(w)
            bucket = self._buckets.get(w) if self._buckets else None
            if bucket is None and limited and w in limited:  # MaxInFlight
                hold = in_flight_hold(cap, self.share, batch)
                busy[w] = [cap - self._by_webhook.get(w, 0), hold - len(held.get(w, ()))]
            elif bucket is None:
                busy[w] = [cap - self._by_webhook.get(w, 0), cap + batch - len(held.get(w, ()))]
            else:
                tokens = bucket.available(-math.inf if now is None else now)
                hold = hold_limit(bucket.rate, self.lease)
                if limited[w].max_in_flight is not None:  # as admit() keeps: no hand-back
                    hold = min(hold, in_flight_hold(cap, self.share, batch))
                busy[w] = [
                    min(cap - self._by_webhook.get(w, 0), tokens),
                    hold - len(held.get(w, ())),
                ]
        default = self._default_cap()
        return Handover(
            self.free(unwritten),
            (default, default + batch),
            busy,
            lease_until,
            parked,
            (self.share, self.lease),
        )

    # ----- changes ---------------------------------------------------------------------------

    def admit(self, item: D, now: float) -> Admit:
        """A delivery leased to us (claimed, or handed over by the intake): START it (the
        ledger counts it running from now), HOLD it, or SKIP it (ours already)."""
        delivery_id = item.delivery_id
        if delivery_id in self._running or delivery_id in self._held_ids:
            return Admit.SKIP
        webhook_id = item.webhook_id
        self._endpoint[webhook_id] = item.endpoint
        self._tenant[webhook_id] = item.tenant
        options = item.options
        if options.max_in_flight is not None or options.max_per_second is not None:
            self._set_limits(webhook_id, options, now)
        elif self._limited and webhook_id in self._limited:
            self._unset_limits(webhook_id)
        if webhook_id not in self._by_webhook and webhook_id not in self._held:
            self._progress_at[webhook_id] = now  # busy from now on: stuck() counts from here
        n = self._by_webhook.get(webhook_id, 0)
        cap = self.cap(webhook_id)
        if not self.stopping and n < cap:
            if len(self._running) < self.concurrency:
                if self._token(webhook_id, now):
                    self._running[delivery_id] = webhook_id
                    self._by_webhook[webhook_id] = n + 1
                    return Admit.START
            else:
                # Every slot is busy (a claim and the intake's hand-over were decided on
                # the same free slots): it takes a slot that comes free, in its tenant's turn.
                self._waiting.add(item.tenant, webhook_id)
        if self._limited and webhook_id in self._limited and not self.stopping:
            hold = self.hold_limit(webhook_id)
            held_now = len(self._held.get(webhook_id, ()))
            if (hold is not None and held_now >= hold) or (
                self._limited[webhook_id].max_in_flight is not None
                and webhook_id not in self._unwritten_failures
                and held_now >= in_flight_hold(cap, self.share, self.batch_size)
            ):
                return Admit.RELEASE
        held = self._held.get(webhook_id)
        if held is None:
            held = self._held[webhook_id] = deque()
        held.append((now, item))
        self._held_ids.add(delivery_id)
        return Admit.HOLD

    def finished(
        self, delivery_id: int, outcome: AttemptOutcome | None = None, now: float | None = None
    ) -> Finished[D]:
        """An attempt ended (with `outcome`; None: cancelled, which says nothing of the
        endpoint), at `now` (admit()'s clock; None: progress not recorded). Returns the held
        deliveries to start in its place (counted as running already): the next of the same
        webhook, as many as its cap now allows, else one waiting for any slot."""
        webhook_id = self._running.pop(delivery_id, None)
        if webhook_id is None:  # dropped with its webhook meanwhile
            return Finished([], False)
        if now is not None:
            self._progress_at[webhook_id] = now
        n = self._by_webhook[webhook_id] - 1
        if n:
            self._by_webhook[webhook_id] = n
        else:
            del self._by_webhook[webhook_id]
        if outcome is not None and self.limits is not None:
            self.limits.record(self._endpoint[webhook_id], outcome)
        if outcome is not None and not outcome.ok:
            self._unwritten_failures[webhook_id] = self._unwritten_failures.get(webhook_id, 0) + 1
        if self.stopping:
            return Finished([], False)
        if webhook_id in self._held:
            if self._buckets and webhook_id in self._buckets:
                # Saturated by its cap (as below) or by what it holds for a token.
                cap, busy = self.cap(webhook_id), n + len(self._held[webhook_id])
                was = busy + 1 >= 2 * cap or self._over_limits(webhook_id)
                starts = self._start_up_to_cap(webhook_id, now)
                unsaturated = was and not (busy >= 2 * cap or self._over_limits(webhook_id))
                if starts or not self._waiting:
                    return Finished(starts, unsaturated)
                # None has its token yet (the timer starts them): the slot goes to another
                # webhook's delivery waiting for one.
                return Finished(self._start_waiting(now), unsaturated)
            # Was it saturated? Its count of running and held drops by one now.
            cap = self.cap(webhook_id)
            unsaturated = (
                n + 1 + len(self._held[webhook_id]) >= 2 * cap > n + len(self._held[webhook_id])
            )
            return Finished(self._start_up_to_cap(webhook_id, now), unsaturated)
        return Finished(self._start_waiting(now), False)

    def _start_waiting(self, now: float | None) -> list[D]:
        """A slot came free: the next held delivery waiting for any slot, in turn."""
        while self._waiting:
            waiting = self._waiting.pop()
            if (
                waiting in self._held
                and self._by_webhook.get(waiting, 0) < self.cap(waiting)
                and self._token(waiting, now)
            ):
                item = self._start_held(waiting)
                if waiting in self._held and self._by_webhook[waiting] < self.cap(waiting):
                    self._waiting.add(self._tenant[waiting], waiting)  # waits on, behind
                return [item]
        return []

    def written(self, failed: Iterable[int], now: float | None = None) -> list[D]:
        """The outcomes of failed attempts of these webhooks (one id per attempt) are
        written, and their webhooks still Active (those it disabled were dropped first).
        Returns the held deliveries that start now (counted running); `now` (admit()'s
        clock) for the tokens of rate-limited webhooks."""
        cleared = []
        for webhook_id in failed:
            n = self._unwritten_failures.get(webhook_id, 0) - 1
            if n > 0:
                self._unwritten_failures[webhook_id] = n
            elif self._unwritten_failures.pop(webhook_id, None) is not None:
                cleared.append(webhook_id)
        return [item for w in cleared for item in self._start_up_to_cap(w, now)]

    def token_starts(self, now: float) -> tuple[list[D], bool]:
        """Held deliveries of rate-limited webhooks whose tokens are there (at
        `next_token`): those that start now (counted running), and whether a webhook
        stopped being saturated (it may be claimed again)."""
        starts: list[D] = []
        unsaturated = False
        if self.stopping:
            return starts, unsaturated
        for webhook_id in list(self._buckets):
            if webhook_id not in self._held:
                continue
            if len(self._running) >= self.concurrency:
                break  # next_token() asks again once a slot is free
            was = self._over_limits(webhook_id)
            starts += self._start_up_to_cap(webhook_id, now)
            unsaturated = unsaturated or (was and not self._over_limits(webhook_id))
        return starts, unsaturated

    def set_share(self, share: Share, now: float) -> bool:
        """This process's place among the live dispatchers: its shares of the webhooks'
        limits. True if that changed them."""
        if share == self.share:
            return False
        self.share = share
        for webhook_id, bucket in self._buckets.items():
            rate = self._limited[webhook_id].max_per_second
            assert rate is not None
            bucket.retune(share.rate(rate), now)
        return True

    def _set_limits(self, webhook_id: int, options: DeliveryOptions, now: float) -> None:
        if self._limited.get(webhook_id) is options:
            return
        self._limited[webhook_id] = options
        rate = options.max_per_second
        bucket = self._buckets.get(webhook_id)
        if rate is None:
            self._buckets.pop(webhook_id, None)
        elif bucket is None:
            self._buckets[webhook_id] = TokenBucket(self.share.rate(rate), now)
        elif bucket.rate != self.share.rate(rate):
            bucket.retune(self.share.rate(rate), now)

    def _unset_limits(self, webhook_id: int) -> None:
        self._limited.pop(webhook_id, None)
        self._buckets.pop(webhook_id, None)

    def _token(self, webhook_id: int, now: float | None) -> bool:
        """Take the token an attempt of this webhook needs to start (True when it is not
        rate-limited). `now` None: the bucket's own last time (nothing refills)."""
        if not self._buckets:
            return True
        bucket = self._buckets.get(webhook_id)
        return bucket is None or bucket.take(-math.inf if now is None else now)

    def drop_webhook(self, webhook_id: int) -> tuple[list[int], list[int]]:
        """A webhook is no longer Active: forget its held deliveries (they were given up with
        it, §6) and name its running ones, to cancel. Returns (held, running) delivery ids."""
        self._unwritten_failures.pop(webhook_id, None)
        self._progress_at.pop(webhook_id, None)
        self._unset_limits(webhook_id)  # learnt again from its next delivery
        held = [item.delivery_id for _, item in self._held.pop(webhook_id, ())]
        self._held_ids.difference_update(held)
        self._waiting.discard(webhook_id)
        running = [d for d, w in self._running.items() if w == webhook_id]
        for delivery_id in running:
            del self._running[delivery_id]
        self._by_webhook.pop(webhook_id, None)
        return held, running

    def stale(self, now: float) -> list[int]:
        """Held deliveries to hand back: held for half a lease or longer, as of `now`
        (their webhook is slow), before the lease runs out and another process could
        attempt them too. They are no longer ours."""
        cutoff = now - self.lease / 2
        released = []
        for webhook_id, held in list(self._held.items()):
            while held and held[0][0] < cutoff:
                released.append(held.popleft()[1].delivery_id)
            if not held:
                del self._held[webhook_id]
                self._waiting.discard(webhook_id)
        self._held_ids.difference_update(released)
        self._forget_idle()
        return released

    def _forget_idle(self) -> None:
        """Endpoints of webhooks with nothing running or held (their limits stay in
        AdaptiveLimits)."""
        if len(self._endpoint) > 2 * (len(self._by_webhook) + len(self._held)) + 1024:
            keep = {*self._by_webhook, *self._held}
            self._endpoint = {w: e for w, e in self._endpoint.items() if w in keep}
            self._tenant = {w: t for w, t in self._tenant.items() if w in keep}
            self._progress_at = {w: t for w, t in self._progress_at.items() if w in keep}

    def stop(self) -> None:
        """Start nothing more: admitted deliveries are held, ended attempts free their slot
        and the intake hands nothing over."""
        self.stopping = True

    def release_held(self) -> list[int]:
        """Every held delivery, to hand back; they are no longer ours."""
        released = list(self._held_ids)
        self._held.clear()
        self._held_ids.clear()
        self._waiting.clear()
        return released

    def _start_up_to_cap(self, webhook_id: int, now: float | None = None) -> list[D]:
        """Start this webhook's held deliveries while its cap, the global one and its
        tokens allow."""
        cap = self.cap(webhook_id)
        starts = []
        while (
            webhook_id in self._held
            and self._by_webhook.get(webhook_id, 0) < cap
            and len(self._running) < self.concurrency
            and self._token(webhook_id, now)
        ):
            starts.append(self._start_held(webhook_id))
        return starts

    def _start_held(self, webhook_id: int) -> D:
        held = self._held[webhook_id]
        item = held.popleft()[1]
        if not held:
            del self._held[webhook_id]
        self._held_ids.discard(item.delivery_id)
        self._running[item.delivery_id] = webhook_id
        self._by_webhook[webhook_id] = self._by_webhook.get(webhook_id, 0) + 1
        return item
