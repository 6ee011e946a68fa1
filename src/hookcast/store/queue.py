"""Every SQL statement of the delivery side: intake, claims, outcomes, state changes,
redelivery, the mail outbox, visibility and pruning. Each function runs inside the
transaction its caller opened (`Database.run`)."""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, bindparam, delete, func, insert, select, text, update

from ..dispatch.mail import errors_mail
from ..dispatch.policy import CounterDelta, DeliveryStatus, RetryPolicy, fold, next_step
from ..model import State, format_epoch
from ..outcome import AttemptOutcome
from ..payload import format_timestamp
from .database import RING_AFTER_COMMIT
from .schema import attempts, deliveries, events, mail_outbox, webhooks, workers

PENDING, DELIVERED, GIVEN_UP = (int(s) for s in DeliveryStatus)
STATE_EVENT_VERBS = {
    State.Active: "started",
    State.Stopped: "stopped",
    State.TooManyErrors: "errors",
}


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


@functools.lru_cache(maxsize=4096)
def _webhook_json(raw: str | None) -> Any:
    """Headers and Properties of a webhook, parsed once rather than once per delivery
    (shared, so never modified)."""
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
    outcome: AttemptOutcome
    at: float


@dataclass(frozen=True, slots=True)
class Transition:
    webhook_id: int
    tenant: str
    state: State
    mail_queued: bool


# ----- intake --------------------------------------------------------------------------------


class Handover(Protocol):
    """The local dispatcher's decision, per new delivery, whether it takes it straight from
    the intake, so it needs no claim (dispatch/slots.py decides). Asked once per matched
    delivery, in order, inside the insert's transaction; a taken delivery is stored leased
    until `lease_until`."""

    @property
    def lease_until(self) -> float: ...

    def take(self, webhook_id: int) -> bool: ...


def insert_events(
    conn: Connection, batch: Sequence[NewEvent], now: float, handover: Handover | None = None
) -> tuple[list[int], list[Claimed], set[int]]:
    """Store events and one delivery per matching Active webhook. Returns the event ids, the
    deliveries handed to the local dispatcher (stored leased to it, see Handover), and the
    webhooks whose new deliveries were queued instead, due at once for any claimer."""
    event_ids = _allocate_ids(conn, "events", len(batch))
    _raw(
        conn,
        _INSERT_EVENT,
        [
            (
                event_id,
                e.tenant,
                e.name,
                e.primary_key,
                e.associate_id,
                e.occurred_at,
                _json(e.changes),
                _json(e.change_values),
                _json(e.row_values),
                _json(e.field_values),
                now,
            )
            for event_id, e in zip(event_ids, batch, strict=True)
        ],
    )
    targets = match(conn, {(e.tenant, e.name) for e in batch})
    pairs = [
        (event_id, e, hook)
        for event_id, e in zip(event_ids, batch, strict=True)
        for hook in targets.get((e.tenant, e.name), ())
    ]
    take, lease_until = (handover.take, handover.lease_until) if handover else (None, 0.0)
    rows, handed, queued = [], [], set()
    for delivery_id, (event_id, e, hook) in zip(
        _allocate_ids(conn, "deliveries", len(pairs)), pairs, strict=True
    ):
        uid, event_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        if take is not None and take(hook.id):
            rows.append((delivery_id, event_id, hook.id, uid, event_uuid, lease_until, now))
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
                )
            )
        else:
            rows.append((delivery_id, event_id, hook.id, uid, event_uuid, now, now))
            queued.add(hook.id)
    if rows:
        _raw(conn, _INSERT_DELIVERY, rows)
    if queued:
        notify(conn, queued)
    return event_ids, handed, queued


_INSERT_EVENT = (
    "INSERT INTO events (id, tenant, name, primary_key, associate_id, occurred_at, changes,"
    " change_values, row_values, field_values, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, webhook_id, uid, status, cycle, attempt, event_uuid,"
    " next_at, created_at) VALUES (?,?,?,?,0,0,0,?,?,?)"
)


def _raw(conn: Connection, sql: str, params: Any = ()) -> Any:
    """A hand-written statement for the hot path, on the driver's own cursor in this
    transaction: no SQLAlchemy expression or result object per statement (a batch runs
    several). Written with `?` marks; a list of tuples runs as executemany. Returns the
    DB-API cursor (iterate it for rows; `rowcount`)."""
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if isinstance(params, list):
        cursor.executemany(sql, params)
    else:
        cursor.execute(sql, params)
    return cursor


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _allocate_ids(conn: Connection, table: str, count: int) -> list[int]:
    """Ids for rows about to be inserted, known before the insert (no RETURNING needed)."""
    if not count:
        return []
    if conn.dialect.name == "postgresql":
        rows = _raw(
            conn,
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, ?)",
            (count,),
        )
        return [row[0] for row in rows]
    # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so nobody else
    # can take these ids before we insert them.
    base = _raw(conn, f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]
    return list(range(base + 1, base + count + 1))


NOTIFY_CHANNEL = "hookcast_deliveries"


def notify(conn: Connection, webhook_ids: Iterable[int] | None = None) -> None:
    """Wake idle dispatchers in other processes when this transaction commits: NOTIFY on
    PostgreSQL (every machine), the doorbell on SQLite (store/doorbell.py), which also says
    for which webhooks (None: any), so that a dispatcher whose only busy webhook is a
    hanging receiver's is not woken for that one's deliveries."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return
    ring = conn.info.get(RING_AFTER_COMMIT, set())
    if ring is not None:
        conn.info[RING_AFTER_COMMIT] = None if webhook_ids is None else ring | set(webhook_ids)


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


def match(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Target]]:
    """(tenant, event) -> the Active webhooks subscribed, through the event index."""
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant, event in keys:
        by_tenant[tenant].append(event)
    found: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for tenant, names in by_tenant.items():
        rows = _raw(
            conn,
            "SELECT we.event, w.id, w.name, w.type, w.target_url, w.secret, w.headers,"
            " w.properties FROM webhook_events we JOIN webhooks w ON w.id = we.webhook_id"
            f" WHERE we.tenant = ? AND we.event IN ({_marks(len(names))}) AND w.state = 1",
            (tenant, *names),
        )
        for event, *hook in rows:
            found[(tenant, event)].append(
                Target(
                    hook[0],
                    hook[1],
                    hook[2],
                    hook[3],
                    hook[4],
                    _webhook_json(hook[5]),
                    _webhook_json(hook[6]),
                )
            )
    return found


# ----- claims ----------------------------------------------------------------------------------

_CLAIMED = (
    "SELECT d.id, d.uid, d.cycle, d.attempt, d.event_uuid, d.webhook_id, w.name, w.type,"
    " w.target_url, w.secret, w.headers, w.properties, e.tenant, e.name, e.primary_key,"
    " e.associate_id, e.occurred_at, e.changes, e.change_values, e.row_values, e.field_values"
    " FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id"
    " WHERE d.id IN ({}) ORDER BY d.id"
)


def claim(
    conn: Connection, now: float, lease_until: float, limit: int, exclude: Iterable[int] = ()
) -> list[Claimed]:
    """Lease up to `limit` due deliveries: their next_at moves to the lease's end."""
    exclude = list(exclude)
    skip = f" AND webhook_id NOT IN ({_marks(len(exclude))})" if exclude else ""
    # PostgreSQL: concurrent claimers skip each other's rows instead of waiting for them.
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    ids = [
        row[0]
        for row in _raw(
            conn,
            "UPDATE deliveries SET next_at = ? WHERE id IN (SELECT id FROM deliveries"
            f" WHERE status = 0 AND next_at <= ?{skip} ORDER BY next_at LIMIT ?{lock}) RETURNING id",
            (lease_until, now, *exclude, limit),
        )
    ]
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
            headers=_webhook_json(r[10]),
            properties=_webhook_json(r[11]),
            tenant=r[12],
            event=r[13],
            primary_key=r[14],
            associate_id=r[15],
            occurred_at=r[16],
            changes=_unjson(r[17]) or [],
            change_values=_unjson(r[18]),
            row_values=_unjson(r[19]),
            field_values=_unjson(r[20]),
        )
        for r in _raw(conn, _CLAIMED.format(_marks(len(ids))), tuple(ids))
    ]


def release(conn: Connection, delivery_ids: Sequence[int], now: float) -> None:
    """Hand claimed deliveries back untouched, due at once. (By primary key alone: a row
    given up meanwhile keeps its status; only its unused next_at changes.)"""
    if delivery_ids:
        conn.execute(
            update(deliveries).where(deliveries.c.id.in_(delivery_ids)).values(next_at=now)
        )
        notify(conn)


def next_due(conn: Connection, after: float) -> float | None:
    """When the first pending delivery due after `after` falls due. Asked right after a
    claim at `after` that found less than it asked for: what is due already then belongs to
    webhooks that claim skipped (saturated), and an index range that starts at `after`
    never visits their backlog."""
    return _raw(
        conn, "SELECT MIN(next_at) FROM deliveries WHERE status = 0 AND next_at > ?", (after,)
    ).fetchone()[0]


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
    live = {
        row[0]
        for row in _raw(
            conn, f"SELECT id, status FROM deliveries WHERE id IN ({_marks(len(ids))})", tuple(ids)
        )
        if row[1] == PENDING
    }
    # Deliveries deleted with their webhook meanwhile leave no trace.
    results = [r for r in results if r.claimed.delivery_id in live]
    if not results:
        return []
    _raw(
        conn,
        _INSERT_ATTEMPT,
        [
            (
                r.claimed.delivery_id,
                r.claimed.webhook_id,
                r.claimed.event_uuid,
                r.claimed.cycle,
                r.claimed.attempt,
                r.at,
                int(r.outcome.ok),
                r.outcome.status,
                r.outcome.latency_ms,
                r.outcome.error,
                r.outcome.excerpt or None,
            )
            for r in results
        ],
    )
    tripped = _count(conn, results, policy, now)
    # Read after the counters' row locks: a transition committed by another writer is seen.
    webhook_ids = tuple({r.claimed.webhook_id for r in results})
    active = {
        row[0]
        for row in _raw(
            conn,
            f"SELECT id FROM webhooks WHERE state = 1 AND id IN ({_marks(len(webhook_ids))})",
            webhook_ids,
        )
    }
    steps = []
    for r in results:
        c = r.claimed
        step = next_step(c.cycle, c.attempt, r.outcome, policy)
        status = int(step.status)
        if status == PENDING and c.webhook_id not in active:
            status = GIVEN_UP  # disabled or stopped meanwhile: kept for Redeliver, not retried
        steps.append(
            (
                status,
                step.cycle,
                step.attempt,
                str(uuid.uuid4()) if step.new_cycle else c.event_uuid,
                now + (step.delay or 0.0),
                None if status == PENDING else now,
                c.delivery_id,
            )
        )
    _raw(
        conn,
        "UPDATE deliveries SET status = ?, cycle = ?, attempt = ?, event_uuid = ?,"
        " next_at = ?, finished_at = ? WHERE id = ?",
        steps,
    )
    return [state_changed(conn, webhook_id, State.TooManyErrors, now) for webhook_id in tripped]


_INSERT_ATTEMPT = (
    "INSERT INTO attempts (delivery_id, webhook_id, event_uuid, cycle, attempt, at, ok,"
    " http_status, latency_ms, error, output) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def _count(
    conn: Connection, results: Sequence[Result], policy: RetryPolicy, now: float
) -> list[int]:
    """Apply the batch to each webhook's counters; returns the webhooks it disabled."""
    by_webhook: dict[int, list[Result]] = defaultdict(list)
    for r in sorted(results, key=lambda r: r.claimed.webhook_id):
        by_webhook[r.claimed.webhook_id].append(r)
    rows, transitions = [], []
    for webhook_id, batch in by_webhook.items():
        delta = fold([r.outcome for r in batch])
        if _trip(conn, webhook_id, delta, policy, now):
            transitions.append(webhook_id)
        failure = next((r for r in reversed(batch) if not r.outcome.ok), None)
        success = next((r for r in reversed(batch) if r.outcome.ok), None)
        rows.append(
            (
                delta.calls,
                delta.errors,
                delta.had_success,
                delta.tail_errors,
                delta.errors,
                failure.outcome.error if failure else None,
                failure.at if failure else None,
                success.at if success else None,
                batch[-1].claimed.event_uuid,
                webhook_id,
            )
        )
    _raw(conn, _COUNT, rows)
    return transitions


_COUNT = (
    "UPDATE webhooks SET total_calls = total_calls + ?, total_errors = total_errors + ?,"
    " consecutive_errors = CASE WHEN ? THEN ? ELSE consecutive_errors + ? END,"
    " last_error = COALESCE(?, last_error), last_error_at = COALESCE(?, last_error_at),"
    " last_success_at = COALESCE(?, last_success_at), last_event_id = ? WHERE id = ?"
)


def _trip(
    conn: Connection, webhook_id: int, delta: CounterDelta, policy: RetryPolicy, now: float
) -> bool:
    """Move an Active webhook to TooManyErrors if this batch reached the threshold (see
    policy.trips). The conditional UPDATE is the one place the transition happens: however
    many batches or workers race, only one of them sees the Active row and changes it."""
    limit = policy.max_consecutive_errors
    sql = "UPDATE webhooks SET state = ?, updated_at = ? WHERE id = ? AND state = ?"
    params: tuple[Any, ...] = (int(State.TooManyErrors), now, webhook_id, int(State.Active))
    if delta.gone or delta.longest_run >= limit:
        pass
    elif delta.head_errors:
        sql += " AND consecutive_errors + ? >= ?"
        params += (delta.head_errors, limit)
    else:
        return False  # the usual case: no failures at the head of the batch, no statement
    changed = _raw(conn, sql, params)
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
    insert_events(
        conn,
        [
            NewEvent(
                tenant=hook.tenant,
                name=f"webhook{webhook_id}.{verb}",
                primary_key=webhook_id,
                associate_id=hook.updated_associate_id,
                occurred_at=_timestamp(now),
                changes=[],
                field_values={
                    "events": orjson.loads(hook.events),
                    "registered": format_epoch(hook.registered_at),
                    "registered_associate_id": hook.registered_associate_id,
                    "state": int(state),
                    "updated": format_epoch(hook.updated_at),
                    "updated_associate_id": hook.updated_associate_id,
                },
            )
        ],
        now,
    )
    mail_queued = False
    if state is State.TooManyErrors and hook.errors_email:
        message = errors_mail(
            to=hook.errors_email,
            sender="",
            webhook_name=hook.name,
            webhook_id=webhook_id,
            tenant=hook.tenant,
            target_url=hook.target_url,
            last_event_id=hook.last_event_id,
            last_error=hook.last_error,
            consecutive_errors=hook.consecutive_errors,
        )
        conn.execute(
            insert(mail_outbox).values(
                webhook_id=webhook_id,
                recipient=hook.errors_email,
                subject=message["Subject"],
                body=message.get_content(),
                next_at=now,
                created_at=now,
            )
        )
        mail_queued = True
    return Transition(webhook_id, hook.tenant, state, mail_queued)


def _timestamp(epoch: float) -> str:
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


def redeliver(conn: Connection, webhook_id: int, now: float) -> int:
    """Queue the given-up deliveries of a webhook again, as fresh cycles."""
    given_up = [
        row[0]
        for row in conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.webhook_id == webhook_id, deliveries.c.status == GIVEN_UP
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
        conn.execute(
            update(mail_outbox)
            .where(mail_outbox.c.id.in_([r.id for r in rows]))
            .values(next_at=lease_until)
        )
    return [Mail(r.id, r.recipient, r.subject, r.body) for r in rows]


def finish_mail(
    conn: Connection, mail_id: int, sent: bool, now: float, error: str | None = None
) -> None:
    conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == mail_id)
        .values(status=1 if sent else 2, sent_at=now if sent else None, error=error)
    )


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


def webhooks_by_state(conn: Connection) -> dict[str, int]:
    counts = dict.fromkeys((s.name for s in State if s is not State.Unknown), 0)
    for state, count in conn.execute(
        select(webhooks.c.state, func.count()).group_by(webhooks.c.state)
    ):
        counts[State(state).name] = count
    return counts


def prune(conn: Connection, before: float) -> int:
    """Drop finished deliveries (and their attempts) older than `before`, then events that
    no longer have deliveries."""
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


def list_workers(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(workers).order_by(workers.c.started_at))]
