"""The outcome writer's transaction: read what the policy needs, let it decide, write.

One transaction per batch: the pending deliveries and, when an attempt failed, the webhooks'
error runs are read (webhook rows locked in id order), `policy.decide` computes every row, the store writes
them, and each webhook the batch disables goes to TooManyErrors through the conditional
UPDATE, with its follow-ups (transitions.py) and, with AutoRecover, its first probe time
(recovery.py); a batch that starts a webhook's run of errors
writes its FirstFailure notices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection

from ..model import Ordering
from ..store import queue
from ..store.rows import PENDING
from .policy import Attempted, RetryPolicy, decide, needs_counters
from .recovery import DEFAULT_SCHEDULE, RecoverySchedule, disable
from .transitions import Transition, failure_run_started


class Recorded(NamedTuple):
    disabled: list[Transition]  # the webhooks this batch moved to TooManyErrors
    mail_queued: bool  # notices went to the outbox


def record_outcomes(
    conn: Connection,
    batch: Sequence[Attempted],
    policy: RetryPolicy,
    now: float,
    recovery: RecoverySchedule = DEFAULT_SCHEDULE,
) -> Recorded:
    live = queue.pending_of(conn, [a.claimed.delivery_id for a in batch])
    # Deliveries finished or deleted with their webhook meanwhile leave no trace.
    batch = [a for a in batch if a.claimed.delivery_id in live]
    if not batch:
        return Recorded([], False)
    webhooks = (
        queue.lock_webhooks(conn, (a.claimed.webhook_id for a in batch))
        if needs_counters(batch)
        else None
    )
    decisions = decide(batch, webhooks, policy, now)
    queue.write_outcomes(
        conn, decisions.attempts, decisions.counters, decisions.steps, decisions.successes
    )
    # A finished delivery of a PerRecord webhook lets the next one of its record be claimed
    # (it was due already, so no claimer would look for it before its next poll).
    released = {
        a.claimed.webhook_id
        for a, step in zip(batch, decisions.steps, strict=True)
        if step.status != PENDING and a.claimed.options.ordering is Ordering.PerRecord
    }
    if released:
        queue.wake_claimers(conn, released)
    # A 410 Gone disables too, but AutoRecover does not probe it: the receiver asked to go.
    gone = {a.claimed.webhook_id for a in batch if a.outcome.gone}
    disabled = [
        t
        for webhook_id in decisions.disable
        if (t := disable(conn, webhook_id, webhook_id in gone, recovery, now)) is not None
    ]
    disabled_ids = {t.webhook_id for t in disabled}
    mailed = [
        failure_run_started(conn, webhook_id, webhook_id in disabled_ids, now)
        for webhook_id in decisions.first_failures
    ]
    return Recorded(disabled, any(mailed) or any(t.mail_queued for t in disabled))
