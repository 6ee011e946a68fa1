"""The delivery side of the store: intake, claims, outcomes, state changes, redelivery, the
mail outbox, visibility and pruning. Each function runs inside the transaction its caller
opened (`Database.run`) and writes what it is given: the decisions are made above, in
dispatch/. The hot path runs the named statements of statements.sql; the rest is
SQLAlchemy Core."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, update

from ..errors import IdempotencyKeyReused
from ..model import NO_OPTIONS, DeliveryOptions, NotifyVia, NotifyWhen, State
from .bursts import Burst, coalesce
from .codec import from_json, nul_free, shared_json, to_json
from .dialect import dialect_of
from .rows import (
    DELIVERED,
    GIVEN_UP,
    MAIL_FAILED,
    MAIL_QUEUED,
    MAIL_SENDING,
    MAIL_SENT,
    PARKED,
    PENDING,
    AttemptRow,
    Claimed,
    CounterRow,
    DeliveryStep,
    MailRow,
    NewEvent,
    NoticeRow,
    SuccessRow,
    WebhookCounters,
    WebhookSnapshot,
    event_values,
    options_of,
)
from .schema import (
    attempts,
    deliveries,
    events,
    mail_outbox,
    notifications,
    signal_keys,
    webhooks,
    workers,
)
from .statements import STATEMENTS, marks, run

# ----- intake --------------------------------------------------------------------------------


class Handover(Protocol):
    """The local dispatcher's decision, per new delivery, whether it takes it straight from
    the intake, so it needs no claim (dispatch/slots.py decides). Asked once per matched
    delivery, in order, inside the insert's transaction; a taken delivery is stored leased
    until `lease_until`."""

    @property
    def lease_until(self) -> float: ...

    def take(self, webhook_id: int, options: DeliveryOptions = NO_OPTIONS) -> bool:
        """Take this new delivery (its webhook's options may limit how many)."""
        ...

    def parked_until(self, webhook_id: int) -> float | None:
        """A delivery not taken is due now, or then if its webhook's backlog is parked."""
        ...


def insert_events(
    conn: Connection, batch: Sequence[NewEvent], now: float, handover: Handover | None = None
) -> tuple[list[int], list[Claimed], set[int]]:
    """Store events and one delivery per matching Active webhook. Returns the event ids, the
    deliveries handed to the local dispatcher (stored leased to it, see Handover), and the
    webhooks whose new deliveries were queued instead, due at once for any claimer."""
    dialect = dialect_of(conn)
    event_ids = dialect.allocate_ids(conn, "events", len(batch))
    run(
        conn,
        "insert_event",
        [
            (event_id, *event_values(e, now), e.traceparent)
            for event_id, e in zip(event_ids, batch, strict=True)
        ],
    )
    targets = match(conn, {(e.tenant, e.name) for e in batch})
    pairs = [
        (event_id, e, hook)
        for event_id, e in zip(event_ids, batch, strict=True)
        for hook in targets.get((e.tenant, e.name), ())
    ]
    bursts: dict[int, Burst] = {}
    queued: set[int] = set()
    if any(hook.options.coalesce_ms for _, _, hook in pairs):
        records = {
            index: record_of(e.name, e.primary_key)
            for index, (_, e, hook) in enumerate(pairs)
            if hook.options.coalesce_ms
        }
        pairs, bursts, queued = coalesce(conn, pairs, now, records)
    take, lease_until = (handover.take, handover.lease_until) if handover else (None, 0.0)
    parked_until = handover.parked_until if handover else None
    rows: list[tuple[object, ...]] = []
    burst_rows: list[tuple[object, ...]] = []
    handed: list[Claimed] = []
    for index, (delivery_id, (event_id, e, hook)) in enumerate(
        zip(dialect.allocate_ids(conn, "deliveries", len(pairs)), pairs, strict=True)
    ):
        uid, event_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        if hook.options.keyed:
            # Never handed over, always left to a claim: the claim statement holds a PerRecord
            # delivery back while an earlier one of its record is pending, and a coalescing
            # one falls due when its burst window ends.
            record = record_of(e.name, e.primary_key)
            burst = bursts.get(index)
            if burst is None:
                rows.append((delivery_id, event_id, hook.id, uid, event_uuid, now, now, record))
            else:
                due = now if burst.until is None else burst.until
                burst_rows.append(
                    (
                        *(delivery_id, event_id, hook.id, uid, event_uuid, due, now, record),
                        *(burst.until, to_json(burst.merged)),
                    )
                )
            queued.add(hook.id)
        elif take is not None and take(hook.id, hook.options):
            rows.append((delivery_id, event_id, hook.id, uid, event_uuid, lease_until, now, None))
            handed.append(
                Claimed(
                    delivery_id=delivery_id,
                    uid=uid,
                    cycle=0,
                    attempt=0,
                    event_uuid=event_uuid,
                    webhook_id=hook.id,
                    webhook_name=hook.name,
                    webhook_type=hook.type,
                    target_url=hook.target_url,
                    secret=hook.secret,
                    headers=hook.headers,
                    properties=hook.properties,
                    tenant=e.tenant,
                    event=e.name,
                    primary_key=e.primary_key,
                    associate_id=e.associate_id,
                    occurred_at=e.occurred_at,
                    changes=e.changes,
                    change_values=e.change_values,
                    row_values=e.row_values,
                    field_values=e.field_values,
                    signalled_at=now,
                    traceparent=e.traceparent,
                    options=hook.options,
                )
            )
        elif parked_until is not None and (until := parked_until(hook.id)) is not None:
            rows.append(
                (delivery_id, event_id, hook.id, uid, event_uuid, PARKED + until, now, None)
            )
        else:
            rows.append((delivery_id, event_id, hook.id, uid, event_uuid, now, now, None))
            queued.add(hook.id)
    if rows:
        run(conn, "insert_delivery", rows)
    if burst_rows:
        run(conn, "insert_burst_delivery", burst_rows)
    if queued:
        dialect.notify(conn, queued)
    return event_ids, handed, queued


class SignalKey(NamedTuple):
    """An idempotency key of a request to signal: the tenant it is scoped to, the key, and
    a digest of what the request signals."""

    tenant: str
    key: str
    fingerprint: str


class Signalled(NamedTuple):
    """What storing one request to signal gave: its events' ids, and whether they are an
    earlier request's, found by its idempotency key (nothing was signalled again)."""

    ids: list[int]
    replayed: bool = False


def store_signals(
    conn: Connection,
    requests: Sequence[tuple[Sequence[NewEvent], SignalKey | None]],
    now: float,
    handover: Handover | None = None,
) -> tuple[list[Signalled], list[Claimed], set[int]]:
    """`insert_events` for requests to signal, each a list of events and an optional
    idempotency key: a request whose key was taken before stores nothing and answers the
    ids stored then. Raises IdempotencyKeyReused when that earlier request was a different
    one."""
    answers: list[Signalled | None] = [None] * len(requests)
    fresh: list[int] = []
    taken: dict[tuple[str, str], int] = {}  # keys taken in this transaction: request index
    for index, (_, key) in enumerate(requests):
        if key is None:
            fresh.append(index)
            continue
        first = taken.get((key.tenant, key.key))
        if first is not None:  # the same key twice in one commit: a retry racing its original
            if requests[first][1] != key:
                raise IdempotencyKeyReused(key.key)
            continue
        if run(conn, "claim_signal_key", (key.tenant, key.key, key.fingerprint, now)).fetchone():
            taken[(key.tenant, key.key)] = index
            fresh.append(index)
            continue
        fingerprint, stored = run(conn, "signal_key", (key.tenant, key.key)).fetchone()
        if fingerprint != key.fingerprint:
            raise IdempotencyKeyReused(key.key)
        answers[index] = Signalled(from_json(stored), replayed=True)
    ids, handed, queued = insert_events(
        conn, [e for index in fresh for e in requests[index][0]], now, handover
    )
    at = 0
    for index in fresh:
        count = len(requests[index][0])
        answers[index] = Signalled(ids[at : at + count])
        at += count
        key = requests[index][1]
        if key is not None:
            run(conn, "store_signal_key", (to_json(ids[at - count : at]), key.tenant, key.key))
    for index, (_, key) in enumerate(requests):
        if answers[index] is None and key is not None:  # repeated within this commit
            original = answers[taken[(key.tenant, key.key)]]
            assert original is not None
            answers[index] = Signalled(original.ids, replayed=True)
    assert all(answers), "every request answered"
    return answers, handed, queued  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook as a new delivery needs it."""

    id: int
    name: str
    type: str
    target_url: str
    secret: str | None
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    options: DeliveryOptions = NO_OPTIONS


def record_of(event: str, primary_key: int) -> str:
    """The key of the record an event is about: its entity (the name up to the last dot)
    and primary key, "contact:994863" for contact.changed on 994863. Per-record ordering
    and coalescing group a webhook's deliveries by it."""
    return f"{event.rpartition('.')[0] or event}:{primary_key}"


def match(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Target]]:
    """(tenant, event) -> the Active webhooks subscribed, through the event index."""
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant, event in keys:
        by_tenant[tenant].append(event)
    found: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for tenant, names in by_tenant.items():
        rows = run(conn, "match", (tenant, *names), marks=marks(len(names)))
        for event, *hook in rows:
            found[(tenant, event)].append(
                Target(
                    hook[0],
                    hook[1],
                    hook[2],
                    hook[3],
                    hook[4],
                    shared_json(hook[5]),
                    shared_json(hook[6]),
                    options_of(*hook[7:12]),
                )
            )
    return found


# ----- claims ----------------------------------------------------------------------------------


def claim(
    conn: Connection,
    now: float,
    lease_until: float,
    limit: int,
    exclude: Iterable[int] = (),
    park: Sequence[int] = (),
    park_until: float = 0.0,
) -> list[Claimed]:
    """Lease up to `limit` due deliveries: their next_at moves to the lease's end. The due
    deliveries of the webhooks in `park` (excluded too) are parked until `park_until`."""
    exclude = list(exclude)
    dialect = dialect_of(conn)
    dialect.before_claim(conn)
    if park:
        run(conn, "park", (PARKED, park_until, *park, now), marks=marks(len(park)))
    due = STATEMENTS["due"].format(
        exclude=f" AND webhook_id NOT IN ({marks(len(exclude))})" if exclude else "",
        skip_locked=dialect.skip_locked,
    )
    ids = [row[0] for row in run(conn, "claim", (lease_until, now, *exclude, limit), due=due)]
    if not ids:
        return []
    return [
        Claimed(
            delivery_id=r[0],
            uid=r[1],
            cycle=r[2],
            attempt=r[3],
            event_uuid=r[4],
            webhook_id=r[5],
            webhook_name=r[6],
            webhook_type=r[7],
            target_url=r[8],
            secret=r[9],
            headers=shared_json(r[10]),
            properties=shared_json(r[11]),
            tenant=r[12],
            event=r[13],
            primary_key=r[14],
            associate_id=r[15],
            occurred_at=r[16],
            changes=from_json(r[17]) or [],
            change_values=from_json(r[18]),
            row_values=from_json(r[19]),
            field_values=from_json(r[20]),
            signalled_at=r[21],
            traceparent=r[22],
            options=options_of(*r[23:28]),
        )
        for r in run(conn, "claimed", tuple(ids), marks=marks(len(ids)))
    ]


def claim_or_next_due(
    conn: Connection, now: float, lease_until: float, limit: int, *rest: Any
) -> tuple[list[Claimed], float | None]:
    """`claim(conn, now, lease_until, limit, *rest)`, and when it found fewer than `limit`,
    `next_due(now)` in the same transaction (None after a full claim): a dispatcher asks
    both in a row, and with one saturated webhook every second claim finds nothing, so this
    saves a transaction (three round trips on PostgreSQL) each time."""
    claimed = claim(conn, now, lease_until, limit, *rest)
    return claimed, (next_due(conn, now) if len(claimed) < limit else None)


def wake_claimers(conn: Connection, webhook_ids: Iterable[int]) -> None:
    """Deliveries of these webhooks may be claimable now, though none fell due: tell the
    dispatchers of every process once this transaction commits."""
    dialect_of(conn).notify(conn, webhook_ids)


def unpark(conn: Connection, webhook_id: int, now: float) -> None:
    """A webhook's parked deliveries are due now."""
    run(conn, "unpark", (now, webhook_id, PARKED))
    dialect_of(conn).notify(conn, [webhook_id])


def unpark_expired(conn: Connection, now: float) -> None:
    """Parked deliveries whose park time has passed are due (by their park time)."""
    run(conn, "unpark_expired", (PARKED, PARKED, PARKED + now))


def release(conn: Connection, delivery_ids: Sequence[int], now: float) -> None:
    """Hand claimed deliveries back untouched, due at once. (By primary key alone: a row
    given up meanwhile keeps its status; only its unused next_at changes.)"""
    if delivery_ids:
        conn.execute(
            update(deliveries).where(deliveries.c.id.in_(delivery_ids)).values(next_at=now)
        )
        dialect_of(conn).notify(conn, None)


def inactive_of(conn: Connection, webhook_ids: Iterable[int]) -> set[int]:
    """Which of these webhooks are no longer Active (or no longer exist)."""
    ids = tuple(webhook_ids)
    if not ids:
        return set()
    active = run(conn, "active_of", (*ids, int(State.Active)), marks=marks(len(ids)))
    return set(ids) - {row[0] for row in active}


def next_due(conn: Connection, after: float) -> float | None:
    """When the first pending delivery due after `after` falls due. Asked right after a
    claim at `after` that found less than it asked for: what is due already then belongs to
    webhooks that claim skipped (saturated), and an index range that starts at `after`
    never visits their backlog."""
    due: float | None = run(conn, "next_due", (after,)).fetchone()[0]
    return due


# ----- outcomes (decided by dispatch/policy.py, written here) ----------------------------------


def pending_of(conn: Connection, delivery_ids: Sequence[int]) -> set[int]:
    """Which of these deliveries are still pending (not finished, not deleted meanwhile)."""
    # Filtered here, not in SQL: `id IN (...)` alone is answered by the primary key.
    ids = tuple(delivery_ids)
    rows = run(conn, "delivery_statuses", ids, marks=marks(len(ids)))
    return {row[0] for row in rows if row[1] == PENDING}


def lock_webhooks(conn: Connection, webhook_ids: Iterable[int]) -> dict[int, WebhookCounters]:
    """The state and error run of these webhooks, their rows locked until commit, in id
    order (see statements.sql)."""
    ids = tuple(sorted(set(webhook_ids)))
    rows = run(conn, "lock_webhooks", ids, marks=marks(len(ids)), lock=dialect_of(conn).row_lock)
    return {row[0]: WebhookCounters(State(row[1]), row[2], bool(row[3])) for row in rows}


def write_outcomes(
    conn: Connection,
    attempts: Sequence[AttemptRow],
    counters: Sequence[CounterRow],
    steps: Sequence[DeliveryStep],
    successes: Sequence[SuccessRow] = (),
) -> None:
    """The attempt log, the webhooks' counters and the deliveries' next steps of a batch;
    the counters of a batch of successes last (their rows are locked from then on)."""
    run(conn, "insert_attempt", [_nul_free_attempt(a) for a in attempts])
    if counters:
        run(conn, "count", [c._replace(last_error=nul_free(c.last_error)) for c in counters])
    run(conn, "step", list(steps))
    if successes:  # in webhook id order, as lock_webhooks takes them
        run(
            conn,
            "count_successes",
            [
                (s.calls, s.last_success_at, s.last_success_at, s.last_event_id, s.webhook_id)
                for s in successes
            ],
        )


def _nul_free_attempt(row: AttemptRow) -> AttemptRow:
    texts = (row.error, row.output, row.request_excerpt, row.response_excerpt)
    if not any(text and "\0" in text for text in texts):
        return row
    error, output, request, response = map(nul_free, texts)
    return row._replace(
        error=error, output=output, request_excerpt=request, response_excerpt=response
    )


def disable_if_active(conn: Connection, webhook_id: int, now: float) -> bool:
    """Move an Active webhook to TooManyErrors; True if this call did (see statements.sql)."""
    changed = run(
        conn,
        "disable_if_active",
        (int(State.TooManyErrors), now, webhook_id, int(State.Active)),
    )
    return bool(changed.rowcount == 1)


# ----- state changes --------------------------------------------------------------------------


def webhook_snapshot(conn: Connection, webhook_id: int) -> WebhookSnapshot:
    hook = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
    return WebhookSnapshot(
        id=webhook_id,
        tenant=hook.tenant,
        name=hook.name,
        target_url=hook.target_url,
        events=from_json(hook.events),
        registered_at=hook.registered_at,
        registered_associate_id=hook.registered_associate_id,
        updated_at=hook.updated_at,
        updated_associate_id=hook.updated_associate_id,
        error_emails=from_json(hook.error_emails),
        error_associates=from_json(hook.error_associates),
        notify_via=NotifyVia(hook.notify_via),
        notify_when=NotifyWhen(hook.notify_when),
        last_event_id=hook.last_event_id,
        last_error=hook.last_error,
        consecutive_errors=hook.consecutive_errors,
        recovering=hook.recover_at is not None,
    )


def give_up_pending(conn: Connection, webhook_id: int, now: float) -> None:
    """A webhook no longer Active: its pending deliveries are kept for Redeliver, not retried."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == PENDING)
        .values(status=GIVEN_UP, finished_at=now)
    )


def insert_notices(conn: Connection, notices: Sequence[NoticeRow], now: float) -> None:
    if notices:
        conn.execute(
            insert(notifications),
            [
                {
                    "tenant": n.tenant,
                    "associate_id": n.associate_id,
                    "associate_name": n.associate_name,
                    "webhook_id": n.webhook_id,
                    "webhook_name": n.webhook_name,
                    "kind": n.kind,
                    "message": n.message,
                    "event_id": n.event_id,
                    "created_at": now,
                }
                for n in notices
            ],
        )


def queue_mail(conn: Connection, mail: MailRow, now: float) -> None:
    conn.execute(
        insert(mail_outbox).values(
            webhook_id=mail.webhook_id,
            recipient=mail.recipient,
            subject=mail.subject,
            body=mail.body,
            next_at=now,
            created_at=now,
        )
    )


def redeliver(conn: Connection, webhook_id: int, now: float) -> int:
    """Queue the given-up deliveries of a webhook again, as fresh cycles."""
    given_up = [
        row[0]
        for row in conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.webhook_id == webhook_id,
                deliveries.c.status == GIVEN_UP,
                deliveries.c.probe == 0,  # AutoRecover's probes are a log, not deliveries
            )
        )
    ]
    if given_up:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values(
                status=PENDING,
                cycle=0,
                attempt=0,
                event_uuid=bindparam("b_uuid"),
                next_at=now,
                finished_at=None,
            ),
            [{"b_id": i, "b_uuid": str(uuid.uuid4())} for i in given_up],
        )
        dialect_of(conn).notify(conn, None)
    return len(given_up)


# ----- mail outbox -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    id: int
    recipient: str
    subject: str
    body: str
    created_at: float
    tries: int  # the attempts made so far, this one included


_MAX_TRIES_COUNTED = 32767  # the column is a SMALLINT; a day of retries is about 100


def _counted(tries: Any) -> Any:
    return case((tries < _MAX_TRIES_COUNTED, tries + 1), else_=tries)


def claim_mail(conn: Connection, now: float, lease_until: float, limit: int = 1) -> list[Mail]:
    """Take up to `limit` due mails for an attempt each: they move to SENDING (until
    `lease_until`) and count the try, in this transaction, so a mail whose sender dies
    before `finish_mail` stays SENDING and is never sent again automatically."""
    rows = conn.execute(
        select(
            mail_outbox.c.id,
            mail_outbox.c.recipient,
            mail_outbox.c.subject,
            mail_outbox.c.body,
            mail_outbox.c.created_at,
            mail_outbox.c.tries,
        )
        .where(mail_outbox.c.status == MAIL_QUEUED, mail_outbox.c.next_at <= now)
        .order_by(mail_outbox.c.next_at, mail_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        conn.execute(
            update(mail_outbox)
            .where(mail_outbox.c.id.in_([r.id for r in rows]))
            .values(status=MAIL_SENDING, tries=_counted(mail_outbox.c.tries), next_at=lease_until)
        )
    return [
        Mail(
            r.id, r.recipient, r.subject, r.body, r.created_at, min(r.tries + 1, _MAX_TRIES_COUNTED)
        )
        for r in rows
    ]


def finish_mail(
    conn: Connection, mail_id: int, sent: bool, now: float, error: str | None = None
) -> None:
    """The end of a mail: SENT, or FAILED with the error. Only a mail being sent changes."""
    conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == mail_id, mail_outbox.c.status == MAIL_SENDING)
        .values(
            status=MAIL_SENT if sent else MAIL_FAILED,
            sent_at=now if sent else None,
            error=error,
        )
    )


def reschedule_mail(
    conn: Connection,
    mail_id: int,
    next_at: float,
    error: str | None = None,
    untry: bool = False,
) -> None:
    """Queue a mail being sent again, due at `next_at`, with the error of its try (None:
    the error stays). `untry`: the try never reached the server (cancelled before the
    message was handed over), so it does not count."""
    values: dict[str, Any] = {"status": MAIL_QUEUED, "next_at": next_at}
    if error is not None:
        values["error"] = error
    if untry:
        values["tries"] = mail_outbox.c.tries - 1
    conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == mail_id, mail_outbox.c.status == MAIL_SENDING)
        .values(**values)
    )


def stuck_mail(conn: Connection, now: float) -> list[tuple[int, str, float]]:
    """(id, recipient, lease end) of the mails still SENDING after their lease ran out."""
    rows = conn.execute(
        select(mail_outbox.c.id, mail_outbox.c.recipient, mail_outbox.c.next_at)
        .where(mail_outbox.c.status == MAIL_SENDING, mail_outbox.c.next_at < now)
        .order_by(mail_outbox.c.id)
    )
    return [(r.id, r.recipient, r.next_at) for r in rows]


def next_mail_due(conn: Connection) -> float | None:
    """When the first queued mail falls due (None: none is queued)."""
    due: float | None = conn.execute(
        select(func.min(mail_outbox.c.next_at)).where(mail_outbox.c.status == MAIL_QUEUED)
    ).scalar_one()
    return due


# ----- visibility and housekeeping ------------------------------------------------------------


def list_attempts(
    conn: Connection, webhook_id: int, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = (
        select(
            attempts.c.id,
            attempts.c.at,
            attempts.c.event_uuid,
            attempts.c.cycle,
            attempts.c.attempt,
            attempts.c.ok,
            attempts.c.http_status,
            attempts.c.latency_ms,
            attempts.c.error,
            attempts.c.output,
            deliveries.c.uid,
            deliveries.c.status,
            events.c.name.label("event"),
            events.c.primary_key,
        )
        .select_from(
            attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id).join(
                events, events.c.id == deliveries.c.event_id
            )
        )
        .where(attempts.c.webhook_id == webhook_id)
        .order_by(attempts.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def count_attempts(conn: Connection, webhook_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(attempts).where(attempts.c.webhook_id == webhook_id)
        ).scalar_one()
    )


def queue_depth(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))
    names = {PENDING: "pending", DELIVERED: "delivered", GIVEN_UP: "given_up"}
    depth = dict.fromkeys(names.values(), 0)
    depth.update({names[status]: count for status, count in rows})
    return depth


def pending_by_due(conn: Connection, now: float) -> dict[str, int]:
    """Pending deliveries by when they are due: now (due), later (scheduled: a retry's wait,
    or a lease's end), or parked (a stuck webhook's backlog, see `claim`)."""
    next_at = deliveries.c.next_at
    row = conn.execute(
        select(
            func.count(case((next_at <= now, 1))),
            func.count(case(((next_at > now) & (next_at < PARKED), 1))),
            func.count(case((next_at >= PARKED, 1))),
        ).where(deliveries.c.status == PENDING)
    ).one()
    return {"due": row[0], "scheduled": row[1], "parked": row[2]}


def webhooks_by_state(conn: Connection) -> dict[str, int]:
    counts = dict.fromkeys((s.name for s in State if s is not State.Unknown), 0)
    for state, count in conn.execute(
        select(webhooks.c.state, func.count()).group_by(webhooks.c.state)
    ):
        counts[State(state).name] = count
    return counts


def prune(conn: Connection, before: float) -> int:
    """Drop finished deliveries (and their attempts) older than `before`, then events that
    no longer have deliveries; InApp notifications and mail sent or failed before it go too
    (a mail still queued or being sent stays)."""
    conn.execute(delete(notifications).where(notifications.c.created_at < before))
    conn.execute(delete(signal_keys).where(signal_keys.c.created_at < before))
    conn.execute(
        delete(mail_outbox).where(
            mail_outbox.c.status.in_((MAIL_SENT, MAIL_FAILED)), mail_outbox.c.created_at < before
        )
    )
    old = select(deliveries.c.id).where(
        deliveries.c.status != PENDING, deliveries.c.finished_at < before
    )
    conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(old)))
    removed = conn.execute(
        delete(deliveries).where(deliveries.c.id.in_(old.scalar_subquery()))
    ).rowcount
    conn.execute(
        delete(events).where(
            events.c.created_at < before,
            ~select(deliveries.c.id).where(deliveries.c.event_id == events.c.id).exists(),
        )
    )
    return removed


# ----- workers -------------------------------------------------------------------------------


def heartbeat(conn: Connection, row: dict[str, Any]) -> None:
    updated = conn.execute(
        update(workers)
        .where(workers.c.id == row["id"])
        .values(
            heartbeat_at=row["heartbeat_at"], in_flight=row["in_flight"], attempts=row["attempts"]
        )
    ).rowcount
    if not updated:
        conn.execute(insert(workers).values(**row))


def remove_worker(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(workers).where(workers.c.id == worker_id))


def beat(conn: Connection, row: dict[str, Any], live_since: float) -> list[str]:
    """A dispatcher's heartbeat, and the dispatchers alive now (`live_workers`)."""
    heartbeat(conn, row)
    return live_workers(conn, live_since)


def live_workers(conn: Connection, since: float) -> list[str]:
    """The ids of the dispatchers with a heartbeat since then, in id order (each one's place
    in that order decides its share of the webhooks' rate limits, dispatch/ratelimit.py)."""
    rows = conn.execute(
        select(workers.c.id).where(workers.c.heartbeat_at >= since).order_by(workers.c.id)
    )
    return [row[0] for row in rows]


def list_workers(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(workers).order_by(workers.c.started_at))]
