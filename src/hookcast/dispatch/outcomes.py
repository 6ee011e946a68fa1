"""The outcome writer's transaction: read what the policy needs, let it decide, write.

One transaction per batch: the pending deliveries and the webhooks' error runs are read
(webhook rows locked in id order), `policy.decide` computes every row, the store writes
them, and each webhook the batch disables goes to TooManyErrors through the conditional
UPDATE, with its follow-ups (transitions.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from ..model import State
from ..store import queue
from .policy import Attempted, RetryPolicy, decide
from .transitions import Transition, failure_streak_started, state_changed


def record_outcomes(
    conn: Connection, batch: Sequence[Attempted], policy: RetryPolicy, now: float
) -> list[Transition]:
    live = queue.pending_of(conn, [a.claimed.delivery_id for a in batch])
    # Deliveries finished or deleted with their webhook meanwhile leave no trace.
    batch = [a for a in batch if a.claimed.delivery_id in live]
    if not batch:
        return []
    webhooks = queue.lock_webhooks(conn, (a.claimed.webhook_id for a in batch))
    decisions = decide(batch, webhooks, policy, now)
    queue.write_outcomes(conn, decisions.attempts, decisions.counters, decisions.steps)
    for webhook_id in decisions.first_failures:
        failure_streak_started(conn, webhook_id, now)
    return [
        state_changed(conn, webhook_id, State.TooManyErrors, now)
        for webhook_id in decisions.disable
        if queue.disable_if_active(conn, webhook_id, now)
    ]
