"""The retry schedule and the state machine of §6, as pure functions without I/O.

The dispatcher asks `next_step` what to do with a delivery after an attempt, folds a batch of
one webhook's outcomes into a `CounterDelta` it can apply in a single SQL UPDATE, and asks
`next_state` whether the counters it got back move the webhook to TooManyErrors.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hookcast.model import State


class DeliveryStatus(enum.IntEnum):
    PENDING = 0
    DELIVERED = 1
    GIVEN_UP = 2


class _DeliverySettings(Protocol):
    """The part of `hookcast.settings.Settings` the policy reads (kept structural so this
    module imports nothing with I/O)."""

    @property
    def retry_delays(self) -> Sequence[float]: ...
    @property
    def cycles(self) -> int: ...
    @property
    def cycle_delay(self) -> float: ...
    @property
    def max_consecutive_errors(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_delays: tuple[float, ...] = (1.0, 4.0)  # delay before attempt 2, 3, ... of a cycle
    cycles: int = 3
    cycle_delay: float = 60.0
    max_consecutive_errors: int = 9

    @property
    def attempts_per_cycle(self) -> int:
        return len(self.retry_delays) + 1

    @classmethod
    def from_settings(cls, settings: _DeliverySettings) -> RetryPolicy:
        return cls(
            retry_delays=tuple(float(d) for d in settings.retry_delays),
            cycles=settings.cycles,
            cycle_delay=float(settings.cycle_delay),
            max_consecutive_errors=settings.max_consecutive_errors,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    gone: bool = False  # answered 410
    retry_after: float | None = None  # seconds asked by 429/503 Retry-After

    def __post_init__(self) -> None:
        # A 410 is a failure; an outcome both ok and gone would count one way and stop another.
        if self.ok and self.gone:
            raise ValueError("an outcome cannot be both ok and gone")


@dataclass(frozen=True, slots=True)
class Step:
    status: DeliveryStatus
    cycle: int  # 0-based cycle of the NEXT attempt (unchanged when finished)
    attempt: int  # 0-based attempt within that cycle (= X-SuperOffice-Retry of the next attempt)
    delay: float | None  # seconds until the next attempt; None when not PENDING
    new_cycle: bool  # True when a new cycle starts -> the caller gives it a new EventId


def _retry_delay(fixed: float, retry_after: float | None, cap: float) -> float:
    """Retry-After replaces the fixed delay, capped by the cycle delay and never negative."""
    if retry_after is None or math.isnan(retry_after):
        return fixed
    return max(0.0, min(retry_after, cap))


def next_step(cycle: int, attempt: int, outcome: Outcome, policy: RetryPolicy) -> Step:
    """What follows attempt `attempt` of cycle `cycle` (both 0-based) that ended in `outcome`."""
    if outcome.ok:
        return Step(DeliveryStatus.DELIVERED, cycle, attempt, None, False)
    if outcome.gone:
        return Step(DeliveryStatus.GIVEN_UP, cycle, attempt, None, False)
    if attempt + 1 < policy.attempts_per_cycle:
        delay = _retry_delay(policy.retry_delays[attempt], outcome.retry_after, policy.cycle_delay)
        return Step(DeliveryStatus.PENDING, cycle, attempt + 1, delay, False)
    if cycle + 1 < policy.cycles:
        # A Retry-After is capped by the cycle delay, so it can never shorten the pause between
        # cycles: the next cycle always waits the full cycle delay.
        return Step(DeliveryStatus.PENDING, cycle + 1, 0, policy.cycle_delay, True)
    return Step(DeliveryStatus.GIVEN_UP, cycle, attempt, None, False)


@dataclass(frozen=True, slots=True)
class Counters:
    total_calls: int = 0
    total_errors: int = 0
    consecutive_errors: int = 0


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """The effect of an ordered batch of outcomes of ONE webhook, appliable in SQL:
    total_calls += calls; total_errors += errors;
    consecutive_errors = tail_errors if had_success else consecutive_errors + errors"""

    calls: int
    errors: int
    had_success: bool
    tail_errors: int  # failures after the batch's last success
    gone: bool  # some attempt in the batch was answered 410
    head_errors: int = 0  # failures before the batch's first success (all, without one)
    longest_run: int = 0  # the longest run of failures inside the batch


def fold(outcomes: Sequence[Outcome]) -> CounterDelta:
    errors = tail_errors = head_errors = longest_run = 0
    had_success = gone = False
    for outcome in outcomes:
        if outcome.ok:
            had_success = True
            tail_errors = 0
        else:
            errors += 1
            tail_errors += 1
            longest_run = max(longest_run, tail_errors)
            head_errors += not had_success
            gone = gone or outcome.gone
    return CounterDelta(
        len(outcomes), errors, had_success, tail_errors, gone, head_errors, longest_run
    )


def trips(consecutive_before: int, delta: CounterDelta, policy: RetryPolicy) -> bool:
    """Whether a batch reached the TooManyErrors threshold at any point, as if its outcomes
    had been counted one by one (a run of 9 failures followed by a success still trips)."""
    limit = policy.max_consecutive_errors
    reached_from_before = delta.head_errors > 0 and consecutive_before + delta.head_errors >= limit
    return delta.gone or reached_from_before or delta.longest_run >= limit


def apply(counters: Counters, delta: CounterDelta) -> Counters:
    consecutive = (
        delta.tail_errors if delta.had_success else counters.consecutive_errors + delta.errors
    )
    return Counters(
        total_calls=counters.total_calls + delta.calls,
        total_errors=counters.total_errors + delta.errors,
        consecutive_errors=consecutive,
    )


def count(counters: Counters, outcome: Outcome) -> Counters:
    """The counters after one attempt: every attempt is a call, a success resets the run."""
    if outcome.ok:
        return Counters(counters.total_calls + 1, counters.total_errors, 0)
    return Counters(
        counters.total_calls + 1, counters.total_errors + 1, counters.consecutive_errors + 1
    )


def next_state(state: State, counters: Counters, gone: bool, policy: RetryPolicy) -> State | None:
    """The state the webhook moves to, or None for no change. Only an Active webhook trips:
    a Stopped one is not delivered to, and TooManyErrors is already there."""
    # == rather than `is`: a state read back from the database may be a plain int.
    if state == State.Active and (
        gone or counters.consecutive_errors >= policy.max_consecutive_errors
    ):
        return State.TooManyErrors
    return None
