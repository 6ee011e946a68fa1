"""What follows a webhook's change of state (§6), decided here and written by the store in
the caller's transaction: pending deliveries of a webhook that is no longer Active are given
up (kept for Redeliver), the `webhook{id}.started|stopped|errors` event is signalled, and on
TooManyErrors the Disabling notices (mail outbox, InApp) are written. The FirstFailure
notices of a new error run are written here too, and AutoRecover's Recovered ones
(`recovered`): told to whoever NotifyWhen Disabling told of the disabling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from ..model import NotifyVia, NotifyWhen, State, format_epoch
from ..payload import format_timestamp
from ..store import queue
from ..store.rows import MailRow, NewEvent, NoticeRow, WebhookSnapshot
from .mail import Notice, in_app_text, notice_text, recovered_in_app_text, recovered_text

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
class Notices:
    mails: list[MailRow]
    in_app: list[NoticeRow]


@dataclass(frozen=True, slots=True)
class FollowUps:
    give_up_pending: bool
    event: NewEvent
    notices: Notices


def notices(hook: WebhookSnapshot, kind: NotifyWhen) -> Notices:
    """Who hears of a FirstFailure or a Disabling, and what (pure, §6): one mail for each
    ErrorEmails address with NotifyVia Email, one InApp notification for each
    ErrorAssociates entry with NotifyVia InApp; nothing unless NotifyWhen has `kind`."""
    if kind not in hook.notify_when:
        return Notices([], [])
    return _told(
        hook,
        lambda: notice_text(
            kind,
            webhook_name=hook.name,
            webhook_id=hook.id,
            tenant=hook.tenant,
            target_url=hook.target_url,
            last_event_id=hook.last_event_id,
            last_error=hook.last_error,
            consecutive_errors=hook.consecutive_errors,
            recovering=hook.recovering,
        ),
        str(kind.name),
        lambda: in_app_text(kind, hook.name, hook.id, hook.last_error),
    )


RECOVERED = "Recovered"  # the kind of AutoRecover's notices (notifications.kind)


def recovered_notices(hook: WebhookSnapshot, probes: int, redelivered: int) -> Notices:
    """Who hears that AutoRecover set a webhook Active again (pure). NotifyWhen has no flag
    for it: those told of the disabling (NotifyWhen Disabling) are told, on the same
    channels (NotifyVia), so nobody learns of a recovery of something never reported."""
    if NotifyWhen.Disabling not in hook.notify_when:
        return Notices([], [])
    return _told(
        hook,
        lambda: recovered_text(
            webhook_name=hook.name,
            webhook_id=hook.id,
            tenant=hook.tenant,
            target_url=hook.target_url,
            probes=probes,
            redelivered=redelivered,
        ),
        RECOVERED,
        lambda: recovered_in_app_text(hook.name, hook.id, redelivered),
    )


def _told(
    hook: WebhookSnapshot, mail: Callable[[], Notice], kind: str, in_app: Callable[[], str]
) -> Notices:
    """A notice on the channels of the webhook's NotifyVia: the mail to every ErrorEmails
    address, the InApp text to every ErrorAssociates entry (each made only when used)."""
    mails: list[MailRow] = []
    if NotifyVia.Email in hook.notify_via:
        notice = mail()
        mails = [MailRow(hook.id, a, notice.subject, notice.body) for a in hook.error_emails]
    told = NotifyVia.InApp in hook.notify_via
    return Notices(mails, _in_app(hook, kind, in_app()) if told else [])


def _in_app(hook: WebhookSnapshot, kind: str, text: str) -> list[NoticeRow]:
    return [
        NoticeRow(
            tenant=hook.tenant,
            associate_id=associate["Id"],
            associate_name=associate.get("Name") or "",
            webhook_id=hook.id,
            webhook_name=hook.name,
            kind=kind,
            message=text,
            event_id=hook.last_event_id,
        )
        for associate in hook.error_associates
    ]


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
    told = notices(hook, NotifyWhen.Disabling) if state is State.TooManyErrors else Notices([], [])
    return FollowUps(state is not State.Active, event, told)


def _send(conn: Connection, told: Notices, now: float) -> bool:
    for mail in told.mails:
        queue.queue_mail(conn, mail, now)
    queue.insert_notices(conn, told.in_app, now)
    return bool(told.mails)


def state_changed(conn: Connection, webhook_id: int, state: State, now: float) -> Transition:
    """Write the follow-ups of a state change the caller has just written, in its transaction."""
    effects = follow_ups(queue.webhook_snapshot(conn, webhook_id), state, now)
    if effects.give_up_pending:
        queue.give_up_pending(conn, webhook_id, now)
    queue.insert_events(conn, [effects.event], now)
    mailed = _send(conn, effects.notices, now)
    return Transition(webhook_id, effects.event.tenant, state, mailed)


def failure_run_started(conn: Connection, webhook_id: int, disabled: bool, now: float) -> bool:
    """Write the FirstFailure notices of a webhook whose counters the caller has just
    written, in its transaction; whether a mail was queued. When the same batch disabled
    it, its Disabling notice says it all, if it asked for one."""
    hook = queue.webhook_snapshot(conn, webhook_id)
    if disabled and NotifyWhen.Disabling in hook.notify_when:
        return False
    return _send(conn, notices(hook, NotifyWhen.FirstFailure), now)


def recovered(conn: Connection, webhook_id: int, probes: int, now: float) -> Transition:
    """The follow-ups of AutoRecover setting a webhook Active again (the caller has just
    written the state, in its transaction): its given-up deliveries are queued again (the
    Redeliver path), `webhook{id}.started` is signalled, its owners are told."""
    redelivered = queue.redeliver(conn, webhook_id, now)
    started = state_changed(conn, webhook_id, State.Active, now)
    told = recovered_notices(queue.webhook_snapshot(conn, webhook_id), probes, redelivered)
    mailed = _send(conn, told, now)
    return Transition(webhook_id, started.tenant, State.Active, started.mail_queued or mailed)
