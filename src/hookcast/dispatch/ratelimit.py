"""Per-webhook rate and in-flight limits (MaxPerSecond, MaxInFlight): the token bucket, and
this process's share of a limit that all live dispatchers split between them.

Pure: no clock, no I/O. The slot ledger (slots.py) asks these; the dispatcher passes the
times in (one clock, e.g. time.monotonic()) and tells it the live dispatchers (the
heartbeat table, read with each heartbeat: nothing per delivery).

Why split the limits instead of keeping one shared bucket in the database: a shared bucket
is exact, but every token grant is a write to one hot row per webhook (about one per
attempt at low rates, a write lock on SQLite), which the claim path otherwise never takes.
A share of `rate / dispatchers` per process costs nothing per delivery; its price is a
tolerance (docs/delivery-options.md): a dispatcher with none of the webhook's deliveries
leaves its share unused, and for up to one heartbeat after a dispatcher joins, the others
still use their older, larger shares.
"""

from __future__ import annotations

import math

# A bucket holds a tenth of a second's worth of tokens (at least one): a receiver sees at
# most rate + burst requests in any second, and a limited webhook's deliveries start in
# small steps instead of one timer per request at high rates.
BURST_SECONDS = 0.1


def burst_of(rate: float) -> float:
    return max(1.0, rate * BURST_SECONDS)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; full when made. An attempt takes
    one token to start."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst_of(rate) if burst is None else burst
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def available(self, now: float) -> int:
        """Whole tokens available now."""
        self._refill(now)
        return int(self._tokens + 1e-9)

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        self._refill(now)
        if self._tokens + 1e-9 >= 1.0:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When the next token is there (`now` if it is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return now if missing <= 1e-9 else now + missing / self.rate

    def retune(self, rate: float, now: float) -> None:
        """A new rate (the webhook was changed, or the number of dispatchers): tokens saved
        up so far are kept, up to the new burst."""
        self._refill(now)
        self.rate = rate
        self.burst = burst_of(rate)
        self._tokens = min(self._tokens, self.burst)


class Share:
    """This dispatcher's place among the `count` live ones (`index`, from 0): its share of
    each webhook's limits."""

    __slots__ = ("count", "index")

    def __init__(self, index: int = 0, count: int = 1) -> None:
        if not 0 <= index < count:
            raise ValueError("need 0 <= index < count")
        self.index = index
        self.count = count

    def in_flight(self, limit: int) -> int:
        """Of `limit` attempts in flight: the dispatchers' shares add up to exactly
        `limit`, the first `limit % count` taking one more (0: none for this one, when there
        are more dispatchers than the limit)."""
        return limit // self.count + (1 if self.index < limit % self.count else 0)

    def rate(self, limit: float) -> float:
        return limit / self.count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Share) and (self.index, self.count) == (other.index, other.count)

    def __hash__(self) -> int:
        return hash((self.index, self.count))


def hold_limit(rate: float, lease: float) -> int:
    """How many deliveries of a rate-limited webhook a dispatcher holds (leased, waiting for
    a token) before claims skip it: what its tokens start within a quarter of a lease, so
    held ones are started long before the ledger hands them back (half a lease)."""
    return max(1, math.floor(rate * lease / 4))


def in_flight_hold(cap: int, share: Share, batch: int) -> int:
    """How many deliveries of a MaxInFlight webhook a dispatcher holds besides those it runs:
    one round (its cap) when other live dispatchers could take the rest; alone, as many as
    an unlimited webhook's (its cap and a batch), since what it handed back would only come
    back to it through another claim (a claim and a hand-back write per round)."""
    return cap if share.count > 1 else cap + batch
