"""What follows a webhook's change of state (§6), decided here and written by the store in
the caller's transaction: pending deliveries of a webhook that is no longer Active are given
up (kept for Redeliver), the `webhook{id}.started|stopped|errors` event is signalled, and on
TooManyErrors the ErrorsEmail is queued in the mail outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from ..model import State, format_epoch
from ..payload import format_timestamp
from ..store import queue
from ..store.rows import MailRow, NewEvent, WebhookSnapshot
from .mail import errors_mail

STATE_EVENT_VERBS = {
    State.Active: "started",
    State.Stopped: "stopped",
    State.TooManyErrors: "errors",
}


@dataclass(frozen=True, slots=True)
class Transition:
    webhook_id: int
    tenant: str
    state: State
    mail_queued: bool


@dataclass(frozen=True, slots=True)
class FollowUps:
    give_up_pending: bool
    event: NewEvent
    mail: MailRow | None


def follow_ups(hook: WebhookSnapshot, state: State, now: float) -> FollowUps:
    """The effects of `hook` moving to `state` at `now` (pure)."""
    event = NewEvent(
        tenant=hook.tenant,
        name=f"webhook{hook.id}.{STATE_EVENT_VERBS[state]}",
        primary_key=hook.id,
        associate_id=hook.updated_associate_id,
        occurred_at=format_timestamp(datetime.fromtimestamp(now, UTC)),
        changes=[],
        field_values={
            "events": hook.events,
            "registered": format_epoch(hook.registered_at),
            "registered_associate_id": hook.registered_associate_id,
            "state": int(state),
            "updated": format_epoch(hook.updated_at),
            "updated_associate_id": hook.updated_associate_id,
        },
    )
    mail = None
    if state is State.TooManyErrors and hook.errors_email:
        message = errors_mail(
            to=hook.errors_email,
            sender="",
            webhook_name=hook.name,
            webhook_id=hook.id,
            tenant=hook.tenant,
            target_url=hook.target_url,
            last_event_id=hook.last_event_id,
            last_error=hook.last_error,
            consecutive_errors=hook.consecutive_errors,
        )
        mail = MailRow(hook.id, hook.errors_email, message["Subject"], message.get_content())
    return FollowUps(state is not State.Active, event, mail)


def state_changed(conn: Connection, webhook_id: int, state: State, now: float) -> Transition:
    """Write the follow-ups of a state change the caller has just written, in its transaction."""
    effects = follow_ups(queue.webhook_snapshot(conn, webhook_id), state, now)
    if effects.give_up_pending:
        queue.give_up_pending(conn, webhook_id, now)
    queue.insert_events(conn, [effects.event], now)
    if effects.mail is not None:
        queue.queue_mail(conn, effects.mail, now)
    return Transition(webhook_id, effects.event.tenant, state, effects.mail is not None)
