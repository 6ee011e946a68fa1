"""The retry schedule and the state machine of §6, as pure functions without I/O.

`decide` turns a batch of attempt outcomes into the rows the store writes: the attempt log,
each webhook's counters, each delivery's next step (`next_step`), and the webhooks that move
to TooManyErrors (`trips`). It reads the webhooks' state and error runs as the store found
them under their row locks, so the decision is the one the store writes.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..model import State
from ..outcome import AttemptOutcome
from ..store.rows import (
    GIVEN_UP,
    PENDING,
    AttemptRow,
    Claimed,
    CounterRow,
    DeliveryStatus,
    DeliveryStep,
    SuccessRow,
    WebhookCounters,
)

__all__ = [
    "Attempted",
    "CounterDelta",
    "Decisions",
    "RetryPolicy",
    "Step",
    "decide",
    "fold",
    "next_step",
    "trips",
]


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


# ----- one delivery: the retry schedule ------------------------------------------------------


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


def next_step(cycle: int, attempt: int, outcome: AttemptOutcome, policy: RetryPolicy) -> Step:
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


# ----- one webhook: counters and TooManyErrors ------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """The effect of an ordered batch of outcomes of ONE webhook on its counters:
    total_calls += calls; total_errors += errors;
    consecutive_errors = tail_errors if had_success else consecutive_errors + errors"""

    calls: int
    errors: int
    had_success: bool
    tail_errors: int  # failures after the batch's last success
    gone: bool  # some attempt in the batch was answered 410
    head_errors: int = 0  # failures before the batch's first success (all, without one)
    longest_run: int = 0  # the longest run of failures inside the batch

    def consecutive_after(self, before: int) -> int:
        return self.tail_errors if self.had_success else before + self.errors


def fold(outcomes: Sequence[AttemptOutcome]) -> CounterDelta:
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


def starts_failure_streak(failed_before: bool, delta: CounterDelta) -> bool:
    """Whether a batch holds the first failed attempt after a success (NotifyWhen
    FirstFailure, §6): a failure while none had happened since the last success, or one
    after a success of the batch."""
    return (not failed_before and delta.head_errors > 0) or delta.errors > delta.head_errors


def failed_since_success_after(failed_before: bool, delta: CounterDelta) -> bool:
    return delta.tail_errors > 0 if delta.had_success else failed_before or delta.errors > 0


# ----- a batch: everything the store writes ---------------------------------------------------


class Attempted(NamedTuple):
    """One finished attempt, as the dispatcher hands it to the outcome writer."""

    claimed: Claimed
    outcome: AttemptOutcome
    at: float  # when it started (epoch seconds)


@dataclass(frozen=True, slots=True)
class Decisions:
    attempts: list[AttemptRow]
    counters: list[CounterRow]  # in webhook id order
    steps: list[DeliveryStep]
    disable: list[int]  # Active webhooks this batch moves to TooManyErrors
    # Active webhooks whose batch holds the first failure after a success (also when the
    # same batch disables them)
    first_failures: list[int] = field(default_factory=list)
    # The counters of a batch without failures, set without reading them (see decide)
    successes: list[SuccessRow] = field(default_factory=list)


def needs_counters(batch: Sequence[Attempted]) -> bool:
    """Whether deciding a batch needs its webhooks' state and error run, read under their
    row locks: only when an attempt failed. A batch of successes delivers every delivery
    and ends every error run whatever the counters were, so its counters are written
    without being read, as the transaction's last statement: with many workers on one
    webhook, the row lock is then held from that statement to the commit, not for the
    whole transaction."""
    return not all(a.outcome.ok for a in batch)


def decide(
    batch: Sequence[Attempted],
    webhooks: Mapping[int, WebhookCounters] | None,
    policy: RetryPolicy,
    now: float,
    new_event_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Decisions:
    """The rows a batch of outcomes comes to. `webhooks` holds the state and error run of
    each webhook in the batch as found under its row lock; a webhook missing from it was
    deleted meanwhile and gets no counters. None: the batch has no failure and nothing was
    read (`needs_counters`); each webhook gets a SuccessRow. A pending delivery of a webhook that is not
    Active (stopped, disabled, or disabled by this very batch) is given up: kept for
    Redeliver, not retried."""
    by_webhook: dict[int, list[Attempted]] = defaultdict(list)
    for a in batch:
        by_webhook[a.claimed.webhook_id].append(a)
    counters, disable, first_failures, active = [], [], [], set()
    successes = []
    for webhook_id in sorted(by_webhook):
        attempted = by_webhook[webhook_id]
        if webhooks is None:
            successes.append(
                SuccessRow(
                    len(attempted),
                    max(a.at for a in attempted),
                    attempted[-1].claimed.event_uuid,
                    webhook_id,
                )
            )
            continue
        found = webhooks.get(webhook_id)
        if found is None:
            continue
        delta = fold([a.outcome for a in attempted])
        if found.state == State.Active:
            if trips(found.consecutive_errors, delta, policy):
                disable.append(webhook_id)
            else:
                active.add(webhook_id)
            if starts_failure_streak(found.failed_since_success, delta):
                first_failures.append(webhook_id)
        failure = next((a for a in reversed(attempted) if not a.outcome.ok), None)
        success = next((a for a in reversed(attempted) if a.outcome.ok), None)
        counters.append(
            CounterRow(
                calls=delta.calls,
                errors=delta.errors,
                consecutive_errors=delta.consecutive_after(found.consecutive_errors),
                failed_since_success=int(
                    failed_since_success_after(found.failed_since_success, delta)
                ),
                last_error=failure.outcome.error if failure else None,
                last_error_at=failure.at if failure else None,
                last_success_at=success.at if success else None,
                last_event_id=attempted[-1].claimed.event_uuid,
                webhook_id=webhook_id,
            )
        )
    steps = []
    for c, outcome, _ in batch:
        step = next_step(c.cycle, c.attempt, outcome, policy)
        status = int(step.status)
        if status == PENDING and c.webhook_id not in active:
            status = GIVEN_UP
        steps.append(
            DeliveryStep(
                status,
                step.cycle,
                step.attempt,
                new_event_id() if step.new_cycle else c.event_uuid,
                now + (step.delay or 0.0),
                None if status == PENDING else now,
                c.delivery_id,
            )
        )
    attempts = [
        AttemptRow(
            c.delivery_id,
            c.webhook_id,
            c.event_uuid,
            c.cycle,
            c.attempt,
            at,
            int(outcome.ok),
            outcome.status,
            outcome.latency_ms,
            outcome.error,
            outcome.excerpt or None,
        )
        for c, outcome, at in batch
    ]
    return Decisions(attempts, counters, steps, disable, first_failures, successes)
