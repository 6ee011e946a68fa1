"""AutoRecover (docs/delivery-options.md, "Self-healing endpoints"): the probe schedule, a
pure function of when a webhook was disabled and how many probes it has had, and the
transactions that start, end and record probing (written by store/recovery.py). The loop
that sends the probes is prober.py.

Probe n (0-based) is due `offset(n)` after the disabling: the delays double from the first
one up to the cap (`first, 2 first, 4 first, ..., cap, cap, ...`) and probing stops once the
next probe would fall later than `give_up_after` after the disabling. The times are anchored
on the disabling, not on when the previous probe ran, so a probe made late (a poll interval,
a slow answer) does not push the rest back; one so late that the next is already past (no
process ran meanwhile) is followed by the next a full delay later, never by a burst.

A webhook disabled by a 410 Gone is not probed: the receiver asked to be removed. Probes are
not deliveries: they count in no usage counter (§4 says so of the test event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sqlalchemy import Connection

from ..model import State
from ..outcome import AttemptOutcome
from ..store import queue
from ..store import recovery as store
from ..store.rows import AttemptRow
from .transitions import Transition, recovered, state_changed

__all__ = ["ProbeEnd", "RecoverySchedule", "disable", "record_probe", "settle"]

_MAX_DOUBLINGS = 64  # 2**64 x any sane first delay is past any cap


class _RecoverySettings(Protocol):
    """The part of `hookcast.settings.Settings` the schedule reads."""

    @property
    def recover_first_delay(self) -> float: ...
    @property
    def recover_max_delay(self) -> float: ...
    @property
    def recover_give_up_after(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RecoverySchedule:
    first_delay: float = 60.0  # before the first probe, after the disabling
    max_delay: float = 6 * 3600.0  # the doubling stops here
    give_up_after: float = 3 * 86400.0  # no probe later than this after the disabling

    def __post_init__(self) -> None:
        if not 0 < self.first_delay <= self.max_delay:
            raise ValueError("the first probe delay must be above 0 and not above the cap")
        if self.give_up_after < 0:
            raise ValueError("the probing span must not be negative")

    @classmethod
    def from_settings(cls, settings: _RecoverySettings) -> RecoverySchedule:
        return cls(
            float(settings.recover_first_delay),
            float(settings.recover_max_delay),
            float(settings.recover_give_up_after),
        )

    @property
    def _doublings(self) -> int:
        """How many delays double before the cap: delay(n) is capped from n = this on."""
        n, delay = 0, self.first_delay
        while delay < self.max_delay and n < _MAX_DOUBLINGS:
            n, delay = n + 1, delay * 2
        return n

    def delay(self, n: int) -> float:
        """The wait before probe n (0-based), after probe n - 1 (or the disabling)."""
        if n < 0:
            raise ValueError("probes are counted from 0")
        return self.max_delay if n >= self._doublings else self.first_delay * 2.0**n

    def offset(self, n: int) -> float:
        """When probe n is due, in seconds after the disabling: delay(0) + ... + delay(n)."""
        k = self._doublings
        if n < k:
            return self.first_delay * (2.0 ** (n + 1) - 1)
        return self.first_delay * (2.0**k - 1) + (n - k + 1) * self.max_delay

    def next_probe(self, disabled_at: float, probes: int, now: float) -> float | None:
        """When the next probe of a webhook disabled at `disabled_at` that has had `probes`
        probes is due, asked at `now` (at the disabling, or when a probe failed): on the
        schedule, or a full delay from now if that time has passed. None: the span is over,
        probing stops (the webhook stays TooManyErrors)."""
        at = disabled_at + self.offset(probes)
        if at <= now:
            at = now + self.delay(probes)
        return at if at <= disabled_at + self.give_up_after else None

    def planned(self) -> list[float]:
        """Every probe's offset after the disabling, when each is on time."""
        offsets: list[float] = []
        while (at := self.offset(len(offsets))) <= self.give_up_after:
            offsets.append(at)
        return offsets


DEFAULT_SCHEDULE = RecoverySchedule()


# ----- transactions ----------------------------------------------------------------------------


def disable(
    conn: Connection, webhook_id: int, gone: bool, schedule: RecoverySchedule, now: float
) -> Transition | None:
    """Active -> TooManyErrors by errors (the one place: queue.disable_if_active), with its
    follow-ups; with AutoRecover on (and not for a 410 Gone) the first probe is scheduled in
    the same transaction, before the Disabling notice is written, which then says so. None:
    another batch or process disabled it first."""
    if not queue.disable_if_active(conn, webhook_id, now):
        return None
    if not gone:
        store.schedule(conn, webhook_id, now, schedule.next_probe(now, 0, now))
    return state_changed(conn, webhook_id, State.TooManyErrors, now)


def settle(
    conn: Connection,
    webhook_id: int,
    *,
    state_set: bool,
    auto_recover_before: bool,
    auto_recover: bool,
    state: State,
    schedule: RecoverySchedule,
    now: float,
) -> bool:
    """A webhook was written by the API: it is no longer probed once its State changed
    (Active, Stopped: whoever did that decides now) or AutoRecover went off (or does not
    apply: only Type webhook has a test event); turning AutoRecover on for a webhook in
    TooManyErrors starts probing it from now (also after a 410 Gone or an ended probing:
    the owner asked for it). True when probing starts."""
    if state_set or not auto_recover:
        store.clear(conn, webhook_id)
        return False
    if auto_recover and not auto_recover_before and state is State.TooManyErrors:
        return store.schedule(conn, webhook_id, now, schedule.next_probe(now, 0, now))
    return False


class ProbeEnd(NamedTuple):
    recovered: Transition | None  # Active again: its state event, notices, redeliveries
    next_at: float | None  # when it is probed again (None: recovered, stopped, or over)
    counted: bool  # False: the claim no longer stood (the API changed it meanwhile)


def record_probe(
    conn: Connection,
    target: store.ProbeTarget,
    outcome: AttemptOutcome,
    log: store.ProbeLog,
    schedule: RecoverySchedule,
    now: float,
) -> ProbeEnd:
    """Write what a probe came to, in one transaction: the probe in the delivery log, and
    either the webhook Active again (a 2xx: its given-up deliveries queued again, its
    `webhook{id}.started` signalled, its owners told) or its next probe time."""
    store.log_probe(conn, target, log, now)
    if outcome.ok:
        if not store.reactivate(conn, target, now):
            return ProbeEnd(None, None, False)
        return ProbeEnd(recovered(conn, target.webhook_id, target.probes + 1, now), None, True)
    next_at = schedule.next_probe(target.disabled_at, target.probes + 1, now)
    counted = store.finish_probe(conn, target, next_at)
    return ProbeEnd(None, next_at, counted)


def probe_attempt(
    outcome: AttemptOutcome, event_uuid: str, webhook_id: int, at: float
) -> AttemptRow:
    """The attempt-log line of a probe (its delivery id is filled in when it is written)."""
    return AttemptRow(
        0,
        webhook_id,
        event_uuid,
        0,
        0,
        at,
        int(outcome.ok),
        outcome.status,
        outcome.latency_ms,
        outcome.error,
        None,
        outcome.request or None,
        outcome.excerpt or None,
    )
