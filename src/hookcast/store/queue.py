"""Every SQL statement of the delivery side: intake, claims, outcomes, state changes,
redelivery, the mail outbox, visibility and pruning. Each function runs inside the
transaction its caller opened (`Database.run`)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, text, tuple_, update

from ..dispatch.mail import errors_mail
from ..dispatch.policy import CounterDelta, DeliveryStatus, Outcome, RetryPolicy, fold, next_step
from ..model import State, format_epoch
from ..payload import format_timestamp
from .schema import attempts, deliveries, events, mail_outbox, webhook_events, webhooks, workers

PENDING, DELIVERED, GIVEN_UP = (int(s) for s in DeliveryStatus)
STATE_EVENT_VERBS = {State.Active: "started", State.Stopped: "stopped", State.TooManyErrors: "errors"}


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant: str
    name: str  # lower-case
    primary_key: int
    associate_id: int
    occurred_at: str  # the payload Timestamp
    changes: list[str]
    change_values: dict[str, Any] | None = None
    row_values: dict[str, Any] | None = None
    field_values: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """One delivery attempt to make, with everything needed to make it."""

    delivery_id: int
    uid: str
    cycle: int
    attempt: int
    event_uuid: str
    webhook_id: int
    webhook_name: str
    webhook_type: str
    target_url: str
    secret: str | None
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    tenant: str
    event: str
    primary_key: int
    associate_id: int
    occurred_at: str
    changes: list[str]
    change_values: dict[str, Any] | None
    row_values: dict[str, Any] | None
    field_values: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt, as the dispatcher hands it to `record_outcomes`."""

    claimed: Claimed
    outcome: Outcome
    at: float
    latency_ms: float
    http_status: int | None = None
    error: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    webhook_id: int
    tenant: str
    state: State
    mail_queued: bool


# ----- intake --------------------------------------------------------------------------------


def insert_events(conn: Connection, batch: Sequence[NewEvent], now: float) -> tuple[list[int], int]:
    """Store events and one delivery per matching Active webhook; returns (event ids, deliveries)."""
    rows = [
        {
            "tenant": e.tenant, "name": e.name, "primary_key": e.primary_key,
            "associate_id": e.associate_id, "occurred_at": e.occurred_at,
            "changes": _json(e.changes), "change_values": _json(e.change_values),
            "row_values": _json(e.row_values), "field_values": _json(e.field_values),
            "created_at": now,
        }
        for e in batch
    ]
    result = conn.execute(insert(events).returning(events.c.id, sort_by_parameter_order=True), rows)
    event_ids = [row[0] for row in result]
    targets = match(conn, {(e.tenant, e.name) for e in batch})
    new_deliveries = [
        {"event_id": event_id, "webhook_id": webhook_id, "uid": str(uuid.uuid4()),
         "event_uuid": str(uuid.uuid4()), "next_at": now, "created_at": now}
        for event_id, e in zip(event_ids, batch, strict=True)
        for webhook_id in targets.get((e.tenant, e.name), ())
    ]
    if new_deliveries:
        conn.execute(insert(deliveries), new_deliveries)
        notify(conn)
    return event_ids, len(new_deliveries)


NOTIFY_CHANNEL = "hookcast_deliveries"


def notify(conn: Connection) -> None:
    """PostgreSQL: wake idle dispatchers on every machine when this transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


def match(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    """(tenant, event) -> ids of the Active webhooks subscribed, through the event index."""
    keys = list(keys)
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    if not keys:
        return found
    query = (
        select(webhook_events.c.tenant, webhook_events.c.event, webhook_events.c.webhook_id)
        .join(webhooks, webhooks.c.id == webhook_events.c.webhook_id)
        .where(
            tuple_(webhook_events.c.tenant, webhook_events.c.event).in_(keys),
            webhooks.c.state == int(State.Active),
        )
    )
    for tenant, event, webhook_id in conn.execute(query):
        found[(tenant, event)].append(webhook_id)
    return found


# ----- claims ----------------------------------------------------------------------------------

_CLAIM_COLUMNS = (
    deliveries.c.id, deliveries.c.uid, deliveries.c.cycle, deliveries.c.attempt,
    deliveries.c.event_uuid, deliveries.c.webhook_id,
    webhooks.c.name.label("webhook_name"), webhooks.c.type, webhooks.c.target_url,
    webhooks.c.secret, webhooks.c.headers, webhooks.c.properties,
    events.c.tenant, events.c.name.label("event"), events.c.primary_key, events.c.associate_id,
    events.c.occurred_at, events.c.changes, events.c.change_values, events.c.row_values,
    events.c.field_values,
)


def claim(
    conn: Connection, now: float, lease_until: float, limit: int, exclude: Iterable[int] = ()
) -> list[Claimed]:
    """Lease up to `limit` due deliveries: their next_at moves to the lease's end."""
    due = (
        select(deliveries.c.id)
        .where(deliveries.c.status == PENDING, deliveries.c.next_at <= now)
        .order_by(deliveries.c.next_at)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL: concurrent claimers skip each other
    )
    exclude = list(exclude)
    if exclude:
        due = due.where(deliveries.c.webhook_id.not_in(exclude))
    ids = [row[0] for row in conn.execute(due)]
    if not ids:
        return []
    conn.execute(update(deliveries).where(deliveries.c.id.in_(ids)).values(next_at=lease_until))
    query = (
        select(*_CLAIM_COLUMNS)
        .select_from(deliveries.join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
                     .join(events, events.c.id == deliveries.c.event_id))
        .where(deliveries.c.id.in_(ids))
        .order_by(deliveries.c.next_at)
    )
    return [
        Claimed(
            delivery_id=r.id, uid=r.uid, cycle=r.cycle, attempt=r.attempt, event_uuid=r.event_uuid,
            webhook_id=r.webhook_id, webhook_name=r.webhook_name, webhook_type=r.type,
            target_url=r.target_url, secret=r.secret, headers=_unjson(r.headers),
            properties=_unjson(r.properties), tenant=r.tenant, event=r.event,
            primary_key=r.primary_key, associate_id=r.associate_id, occurred_at=r.occurred_at,
            changes=_unjson(r.changes) or [], change_values=_unjson(r.change_values),
            row_values=_unjson(r.row_values), field_values=_unjson(r.field_values),
        )
        for r in conn.execute(query)
    ]


def release(conn: Connection, delivery_ids: Sequence[int], now: float) -> None:
    """Hand claimed deliveries back untouched, due at once. (By primary key alone: a row
    given up meanwhile keeps its status; only its unused next_at changes.)"""
    if delivery_ids:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(delivery_ids)).values(next_at=now))
        notify(conn)


def next_due(conn: Connection, exclude: Iterable[int] = ()) -> float | None:
    query = select(func.min(deliveries.c.next_at)).where(deliveries.c.status == PENDING)
    exclude = list(exclude)
    if exclude:
        query = query.where(deliveries.c.webhook_id.not_in(exclude))
    return conn.execute(query).scalar()


# ----- outcomes ----------------------------------------------------------------------------------


def record_outcomes(
    conn: Connection, results: Sequence[Result], policy: RetryPolicy, now: float
) -> list[Transition]:
    """Write a batch of attempt outcomes: the attempt log, the webhooks' counters and the
    TooManyErrors transitions they cause, then each delivery's next step.

    Webhook rows are locked first, in id order, before any delivery row: concurrent
    writers on PostgreSQL then queue up behind each other instead of deadlocking."""
    ids = [r.claimed.delivery_id for r in results]
    # Filtered here, not in SQL: `id IN (...)` alone is answered by the primary key.
    live = {row.id for row in conn.execute(
        select(deliveries.c.id, deliveries.c.status).where(deliveries.c.id.in_(ids)))
        if row.status == PENDING}
    # Deliveries deleted with their webhook meanwhile leave no trace.
    results = [r for r in results if r.claimed.delivery_id in live]
    if not results:
        return []
    conn.execute(insert(attempts), [
        {"delivery_id": r.claimed.delivery_id, "webhook_id": r.claimed.webhook_id,
         "event_uuid": r.claimed.event_uuid, "cycle": r.claimed.cycle, "attempt": r.claimed.attempt,
         "at": r.at, "ok": int(r.outcome.ok), "http_status": r.http_status,
         "latency_ms": r.latency_ms, "error": r.error, "output": r.output}
        for r in results
    ])
    tripped = _count(conn, results, policy, now)
    # Read after the counters' row locks: a transition committed by another writer is seen.
    active = {row[0] for row in conn.execute(select(webhooks.c.id).where(
        webhooks.c.id.in_({r.claimed.webhook_id for r in results}),
        webhooks.c.state == int(State.Active)))}
    steps = []
    for r in results:
        c = r.claimed
        step = next_step(c.cycle, c.attempt, r.outcome, policy)
        status = int(step.status)
        if status == PENDING and c.webhook_id not in active:
            status = GIVEN_UP  # disabled or stopped meanwhile: kept for Redeliver, not retried
        steps.append({
            "b_id": c.delivery_id, "b_status": status, "b_cycle": step.cycle,
            "b_attempt": step.attempt,
            "b_uuid": str(uuid.uuid4()) if step.new_cycle else c.event_uuid,
            "b_next": now + (step.delay or 0.0), "b_finished": None if status == PENDING else now,
        })
    conn.execute(
        update(deliveries).where(deliveries.c.id == bindparam("b_id")).values(
            status=bindparam("b_status"), cycle=bindparam("b_cycle"), attempt=bindparam("b_attempt"),
            event_uuid=bindparam("b_uuid"), next_at=bindparam("b_next"),
            finished_at=bindparam("b_finished"),
        ),
        steps,
    )
    return [state_changed(conn, webhook_id, State.TooManyErrors, now) for webhook_id in tripped]


def _count(conn: Connection, results: Sequence[Result], policy: RetryPolicy, now: float) -> list[int]:
    """Apply the batch to each webhook's counters; returns the webhooks it disabled."""
    by_webhook: dict[int, list[Result]] = defaultdict(list)
    for r in sorted(results, key=lambda r: r.claimed.webhook_id):
        by_webhook[r.claimed.webhook_id].append(r)
    rows, transitions = [], []
    for webhook_id, batch in by_webhook.items():
        delta = fold([r.outcome for r in batch])
        if _trip(conn, webhook_id, delta, policy, now):
            transitions.append(webhook_id)
        failures = [r for r in batch if not r.outcome.ok]
        successes = [r for r in batch if r.outcome.ok]
        rows.append({
            "b_id": webhook_id, "b_calls": delta.calls, "b_errors": delta.errors,
            "b_success": delta.had_success, "b_tail": delta.tail_errors,
            "b_last_error": failures[-1].error if failures else None,
            "b_error_at": failures[-1].at if failures else None,
            "b_success_at": successes[-1].at if successes else None,
            "b_event_id": batch[-1].claimed.event_uuid,
        })
    conn.execute(
        update(webhooks).where(webhooks.c.id == bindparam("b_id")).values(
            total_calls=webhooks.c.total_calls + bindparam("b_calls"),
            total_errors=webhooks.c.total_errors + bindparam("b_errors"),
            consecutive_errors=case(
                (bindparam("b_success"), bindparam("b_tail")),
                else_=webhooks.c.consecutive_errors + bindparam("b_errors"),
            ),
            last_error=func.coalesce(bindparam("b_last_error"), webhooks.c.last_error),
            last_error_at=func.coalesce(bindparam("b_error_at"), webhooks.c.last_error_at),
            last_success_at=func.coalesce(bindparam("b_success_at"), webhooks.c.last_success_at),
            last_event_id=bindparam("b_event_id"),
        ),
        rows,
    )
    return transitions


def _trip(conn: Connection, webhook_id: int, delta: CounterDelta, policy: RetryPolicy, now: float) -> bool:
    """Move an Active webhook to TooManyErrors if this batch reached the threshold (see
    policy.trips). The conditional UPDATE is the one place the transition happens: however
    many batches or workers race, only one of them sees the Active row and changes it."""
    limit = policy.max_consecutive_errors
    condition = [webhooks.c.id == webhook_id, webhooks.c.state == int(State.Active)]
    if delta.gone or delta.longest_run >= limit:
        pass
    elif delta.head_errors:
        condition.append(webhooks.c.consecutive_errors + delta.head_errors >= limit)
    else:
        return False
    changed = conn.execute(
        update(webhooks).where(*condition).values(state=int(State.TooManyErrors), updated_at=now)
    )
    return changed.rowcount == 1


# ----- state changes --------------------------------------------------------------------------


def state_changed(conn: Connection, webhook_id: int, state: State, now: float) -> Transition:
    """What follows a webhook's change to `state` (§6), in the same transaction: pending
    deliveries of a webhook that is no longer Active are given up (kept for Redeliver), the
    `webhook{id}.started|stopped|errors` event is signalled, and the ErrorsEmail queued."""
    hook = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
    if state is not State.Active:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == PENDING)
            .values(status=GIVEN_UP, finished_at=now)
        )
    verb = STATE_EVENT_VERBS[state]
    insert_events(conn, [NewEvent(
        tenant=hook.tenant, name=f"webhook{webhook_id}.{verb}", primary_key=webhook_id,
        associate_id=hook.updated_associate_id, occurred_at=_timestamp(now), changes=[],
        field_values={
            "events": orjson.loads(hook.events),
            "registered": format_epoch(hook.registered_at),
            "registered_associate_id": hook.registered_associate_id,
            "state": int(state),
            "updated": format_epoch(hook.updated_at),
            "updated_associate_id": hook.updated_associate_id,
        },
    )], now)
    mail_queued = False
    if state is State.TooManyErrors and hook.errors_email:
        message = errors_mail(
            to=hook.errors_email, sender="", webhook_name=hook.name, webhook_id=webhook_id,
            tenant=hook.tenant, target_url=hook.target_url, last_event_id=hook.last_event_id,
            last_error=hook.last_error, consecutive_errors=hook.consecutive_errors,
        )
        conn.execute(insert(mail_outbox).values(
            webhook_id=webhook_id, recipient=hook.errors_email, subject=message["Subject"],
            body=message.get_content(), next_at=now, created_at=now,
        ))
        mail_queued = True
    return Transition(webhook_id, hook.tenant, state, mail_queued)


def _timestamp(epoch: float) -> str:
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))





def redeliver(conn: Connection, webhook_id: int, now: float) -> int:
    """Queue the given-up deliveries of a webhook again, as fresh cycles."""
    given_up = [row[0] for row in conn.execute(
        select(deliveries.c.id).where(deliveries.c.webhook_id == webhook_id,
                                      deliveries.c.status == GIVEN_UP)
    )]
    if given_up:
        conn.execute(
            update(deliveries).where(deliveries.c.id == bindparam("b_id")).values(
                status=PENDING, cycle=0, attempt=0, event_uuid=bindparam("b_uuid"), next_at=now,
                finished_at=None,
            ),
            [{"b_id": i, "b_uuid": str(uuid.uuid4())} for i in given_up],
        )
        notify(conn)
    return len(given_up)


# ----- mail outbox -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    id: int
    recipient: str
    subject: str
    body: str


def claim_mail(conn: Connection, now: float, lease_until: float) -> list[Mail]:
    rows = conn.execute(
        select(mail_outbox.c.id, mail_outbox.c.recipient, mail_outbox.c.subject, mail_outbox.c.body)
        .where(mail_outbox.c.status == 0, mail_outbox.c.next_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        conn.execute(update(mail_outbox).where(mail_outbox.c.id.in_([r.id for r in rows]))
                     .values(next_at=lease_until))
    return [Mail(r.id, r.recipient, r.subject, r.body) for r in rows]


def finish_mail(conn: Connection, mail_id: int, sent: bool, now: float, error: str | None = None) -> None:
    conn.execute(update(mail_outbox).where(mail_outbox.c.id == mail_id).values(
        status=1 if sent else 2, sent_at=now if sent else None, error=error))


def list_mail(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(mail_outbox).order_by(mail_outbox.c.id))]


# ----- visibility and housekeeping ------------------------------------------------------------


def list_attempts(conn: Connection, webhook_id: int, limit: int, offset: int) -> list[dict[str, Any]]:
    query = (
        select(
            attempts.c.id, attempts.c.at, attempts.c.event_uuid, attempts.c.cycle, attempts.c.attempt,
            attempts.c.ok, attempts.c.http_status, attempts.c.latency_ms, attempts.c.error,
            attempts.c.output, deliveries.c.uid, deliveries.c.status, events.c.name.label("event"),
            events.c.primary_key,
        )
        .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id)
                     .join(events, events.c.id == deliveries.c.event_id))
        .where(attempts.c.webhook_id == webhook_id)
        .order_by(attempts.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def count_attempts(conn: Connection, webhook_id: int) -> int:
    return int(conn.execute(
        select(func.count()).select_from(attempts).where(attempts.c.webhook_id == webhook_id)
    ).scalar_one())


def queue_depth(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))
    names = {PENDING: "pending", DELIVERED: "delivered", GIVEN_UP: "given_up"}
    depth = dict.fromkeys(names.values(), 0)
    depth.update({names[status]: count for status, count in rows})
    return depth


def webhooks_by_state(conn: Connection) -> dict[str, int]:
    counts = dict.fromkeys((s.name for s in State if s is not State.Unknown), 0)
    for state, count in conn.execute(select(webhooks.c.state, func.count()).group_by(webhooks.c.state)):
        counts[State(state).name] = count
    return counts


def prune(conn: Connection, before: float) -> int:
    """Drop finished deliveries (and their attempts) older than `before`, then events that
    no longer have deliveries."""
    old = select(deliveries.c.id).where(deliveries.c.status != PENDING,
                                        deliveries.c.finished_at < before)
    conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(old)))
    removed = conn.execute(delete(deliveries).where(deliveries.c.id.in_(old.scalar_subquery()))).rowcount
    conn.execute(delete(events).where(
        events.c.created_at < before,
        ~select(deliveries.c.id).where(deliveries.c.event_id == events.c.id).exists(),
    ))
    return removed



# ----- workers -------------------------------------------------------------------------------


def heartbeat(conn: Connection, row: dict[str, Any]) -> None:
    updated = conn.execute(
        update(workers).where(workers.c.id == row["id"])
        .values(heartbeat_at=row["heartbeat_at"], in_flight=row["in_flight"], attempts=row["attempts"])
    ).rowcount
    if not updated:
        conn.execute(insert(workers).values(**row))


def remove_worker(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(workers).where(workers.c.id == worker_id))


def list_workers(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(workers).order_by(workers.c.started_at))]
