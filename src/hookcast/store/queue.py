"""Every SQL statement of the delivery side: intake, claims, outcomes, state changes,
redelivery, the mail outbox, visibility and pruning. Each function runs inside the
transaction its caller opened (`Database.run`)."""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, func, insert, select, text, update

from ..model import State
from .database import RING_AFTER_COMMIT
from .rows import (
    AttemptRow,
    Claimed,
    CounterRow,
    DeliveryStatus,
    DeliveryStep,
    MailRow,
    NewEvent,
    WebhookCounters,
    WebhookSnapshot,
)
from .schema import attempts, deliveries, events, mail_outbox, webhooks, workers

PENDING, DELIVERED, GIVEN_UP = (int(s) for s in DeliveryStatus)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


@functools.lru_cache(maxsize=4096)
def _webhook_json(raw: str | None) -> Any:
    """Headers and Properties of a webhook, parsed once rather than once per delivery
    (shared, so never modified)."""
    return None if raw is None else orjson.loads(raw)


# ----- intake --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Room:
    """How many new deliveries the local dispatcher takes straight from the intake, so they
    need no claim: per webhook, how many more it can start now (`total` bounds those over all
    webhooks) and, once it runs all it may, how many more it holds until a slot of that
    webhook frees up. Webhooks not in `per_webhook` get `default`. Handed-over deliveries
    are stored leased until `lease_until`."""

    total: int
    default: tuple[int, int]  # (can start, can hold)
    per_webhook: dict[int, tuple[int, int]]
    lease_until: float


def insert_events(
    conn: Connection, batch: Sequence[NewEvent], now: float, room: Room | None = None
) -> tuple[list[int], list[Claimed], set[int]]:
    """Store events and one delivery per matching Active webhook. Returns the event ids, the
    deliveries handed to the local dispatcher (stored leased to it, see Room), and the
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
    total = room.total if room else 0
    left = {w: list(v) for w, v in room.per_webhook.items()} if room else {}
    rows, handed, queued = [], [], set()
    for delivery_id, (event_id, e, hook) in zip(
        _allocate_ids(conn, "deliveries", len(pairs)), pairs, strict=True
    ):
        uid, event_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        slots = left.setdefault(hook.id, list(room.default)) if room else [0, 0]
        if slots[0] > 0 and total > 0:  # starts at once
            slots[0] -= 1
            total -= 1
        elif slots[0] <= 0 and slots[1] > 0:  # held: starts when one of its attempts ends
            slots[1] -= 1
        else:
            slots = None
        if slots is not None:
            rows.append((delivery_id, event_id, hook.id, uid, event_uuid, room.lease_until, now))
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


# ----- outcomes (decided by dispatch/policy.py, written here) ----------------------------------


def pending_of(conn: Connection, delivery_ids: Sequence[int]) -> set[int]:
    """Which of these deliveries are still pending (not finished, not deleted meanwhile)."""
    # Filtered here, not in SQL: `id IN (...)` alone is answered by the primary key.
    rows = _raw(
        conn,
        f"SELECT id, status FROM deliveries WHERE id IN ({_marks(len(delivery_ids))})",
        tuple(delivery_ids),
    )
    return {row[0] for row in rows if row[1] == PENDING}


def lock_webhooks(conn: Connection, webhook_ids: Iterable[int]) -> dict[int, WebhookCounters]:
    """The state and error run of these webhooks, their rows locked until commit (PostgreSQL;
    SQLite's writer holds the whole database). Locked in id order, before any delivery row:
    concurrent outcome writers then queue up behind each other instead of deadlocking, and
    the counters the policy reads are the ones it overwrites."""
    ids = sorted(set(webhook_ids))
    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    rows = _raw(
        conn,
        "SELECT id, state, consecutive_errors FROM webhooks"
        f" WHERE id IN ({_marks(len(ids))}) ORDER BY id{lock}",
        tuple(ids),
    )
    return {row[0]: WebhookCounters(State(row[1]), row[2]) for row in rows}


def write_outcomes(
    conn: Connection,
    attempts: Sequence[AttemptRow],
    counters: Sequence[CounterRow],
    steps: Sequence[DeliveryStep],
) -> None:
    """The attempt log, the webhooks' counters and the deliveries' next steps of a batch."""
    _raw(conn, _INSERT_ATTEMPT, [
        (a.delivery_id, a.webhook_id, a.event_uuid, a.cycle, a.attempt, a.at, int(a.ok),
         a.http_status, a.latency_ms, a.error, a.output)
        for a in attempts
    ])  # fmt: skip
    if counters:
        _raw(conn, _COUNT, [
            (c.calls, c.errors, c.consecutive_errors, c.last_error, c.last_error_at,
             c.last_success_at, c.last_event_id, c.webhook_id)
            for c in counters
        ])  # fmt: skip
    _raw(conn, _STEP, [
        (s.status, s.cycle, s.attempt, s.event_uuid, s.next_at, s.finished_at, s.delivery_id)
        for s in steps
    ])  # fmt: skip


_INSERT_ATTEMPT = (
    "INSERT INTO attempts (delivery_id, webhook_id, event_uuid, cycle, attempt, at, ok,"
    " http_status, latency_ms, error, output) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_COUNT = (
    "UPDATE webhooks SET total_calls = total_calls + ?, total_errors = total_errors + ?,"
    " consecutive_errors = ?, last_error = COALESCE(?, last_error),"
    " last_error_at = COALESCE(?, last_error_at),"
    " last_success_at = COALESCE(?, last_success_at), last_event_id = ? WHERE id = ?"
)
_STEP = (
    "UPDATE deliveries SET status = ?, cycle = ?, attempt = ?, event_uuid = ?,"
    " next_at = ?, finished_at = ? WHERE id = ?"
)


def disable_if_active(conn: Connection, webhook_id: int, now: float) -> bool:
    """Move an Active webhook to TooManyErrors. The conditional UPDATE is the one place the
    transition happens: however many batches or workers race, only one of them sees the
    Active row and changes it (True)."""
    changed = _raw(
        conn,
        "UPDATE webhooks SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
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
        events=orjson.loads(hook.events),
        registered_at=hook.registered_at,
        registered_associate_id=hook.registered_associate_id,
        updated_at=hook.updated_at,
        updated_associate_id=hook.updated_associate_id,
        errors_email=hook.errors_email,
        last_event_id=hook.last_event_id,
        last_error=hook.last_error,
        consecutive_errors=hook.consecutive_errors,
    )


def give_up_pending(conn: Connection, webhook_id: int, now: float) -> None:
    """A webhook no longer Active: its pending deliveries are kept for Redeliver, not retried."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.webhook_id == webhook_id, deliveries.c.status == PENDING)
        .values(status=GIVEN_UP, finished_at=now)
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
