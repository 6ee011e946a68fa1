"""AutoRecover in the store (docs/delivery-options.md): a webhook in TooManyErrors with
AutoRecover on has its next probe time in `webhooks.recover_at`, set in the transaction that
disabled it. Processes claim due probes with a lease (recover_at moves to the lease's end,
so a process that dies mid-probe leaves it to the next one after the lease), and write each
probe's end: the next probe time, or the webhook Active again. Each probe is logged as a
delivery of the test event (`deliveries.probe` = 1) with its one attempt, so the attempt log
shows it; redelivery never queues such a row. SQLAlchemy Core: none of this is on the
delivery path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..model import WEBHOOK_TYPE, State
from .codec import from_json, to_json
from .dialect import dialect_of
from .rows import DELIVERED, GIVEN_UP, AttemptRow
from .schema import deliveries, events, webhooks
from .statements import run

TOO_MANY_ERRORS = int(State.TooManyErrors)


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A webhook claimed for one probe, with what the probe needs."""

    webhook_id: int
    tenant: str
    name: str
    target_url: str
    secret: str | None
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    associate_id: int  # the webhook's last editor: ChangedByAssociateId of the test event
    disabled_at: float  # recover_since
    probes: int  # probes made before this one; the claim's token (see finish_probe)


def schedule(conn: Connection, webhook_id: int, since: float, at: float | None) -> bool:
    """Start probing a webhook in TooManyErrors, if AutoRecover is on and it posts over
    HTTPS (other types have no test event to send): first probe at `at`."""
    w = webhooks.c
    done = conn.execute(
        update(webhooks)
        .where(
            w.id == webhook_id,
            w.auto_recover == 1,
            w.type == WEBHOOK_TYPE,
            w.state == TOO_MANY_ERRORS,
        )
        .values(recover_since=since, recover_at=at, recover_probes=0)
    ).rowcount
    return bool(done)


def clear(conn: Connection, webhook_id: int) -> None:
    """Probe it no more (its state or AutoRecover changed by the API). The count and the
    start of the last probing stay, as history."""
    conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id, webhooks.c.recover_at.is_not(None))
        .values(recover_at=None)
    )


def next_probe_at(conn: Connection) -> float | None:
    """When the first scheduled probe is due (None: no webhook is being probed): one look
    at the partial index ix_webhooks_recover."""
    at: float | None = conn.execute(
        select(func.min(webhooks.c.recover_at)).where(webhooks.c.recover_at.is_not(None))
    ).scalar_one()
    return at


def claim(conn: Connection, now: float, lease_until: float, limit: int) -> list[ProbeTarget]:
    """Take up to `limit` due probes: their recover_at moves to the lease's end. On
    PostgreSQL the rows are locked and others' locked rows skipped, and a row another
    process claimed since this transaction began fails the recheck of `recover_at <= now`:
    exactly one process probes each time."""
    w = webhooks.c
    rows = conn.execute(
        select(
            w.id,
            w.tenant,
            w.name,
            w.target_url,
            w.secret,
            w.headers,
            w.properties,
            w.updated_associate_id,
            w.recover_since,
            w.recover_probes,
        )
        .where(w.recover_at <= now, w.state == TOO_MANY_ERRORS, w.type == WEBHOOK_TYPE)
        .order_by(w.recover_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    conn.execute(
        update(webhooks).where(w.id.in_([r.id for r in rows])).values(recover_at=lease_until)
    )
    return [
        ProbeTarget(
            webhook_id=r.id,
            tenant=r.tenant,
            name=r.name,
            target_url=r.target_url,
            secret=r.secret,
            headers=from_json(r.headers),
            properties=from_json(r.properties),
            associate_id=r.updated_associate_id,
            disabled_at=r.recover_since,
            probes=r.recover_probes,
        )
        for r in rows
    ]


def _still_ours(target: ProbeTarget) -> Any:
    """The probe's claim still stands: the webhook is still being probed (the API did not
    clear it) and no other process has counted a probe since (after our lease ran out)."""
    w = webhooks.c
    return (
        (w.id == target.webhook_id)
        & (w.state == TOO_MANY_ERRORS)
        & w.recover_at.is_not(None)
        & (w.recover_probes == target.probes)
    )


def finish_probe(conn: Connection, target: ProbeTarget, next_at: float | None) -> bool:
    """A failed probe: count it, due again at `next_at` (None: probing stops)."""
    done = conn.execute(
        update(webhooks)
        .where(_still_ours(target))
        .values(recover_at=next_at, recover_probes=target.probes + 1)
    ).rowcount
    return bool(done)


def reactivate(conn: Connection, target: ProbeTarget, now: float) -> bool:
    """A probe answered 2xx: Active again, its error run reset as setting it Active by the
    API does (and failed_since_success too: the owners hear that it recovered, so the next
    failure starts a new run that they hear of)."""
    done = conn.execute(
        update(webhooks)
        .where(_still_ours(target))
        .values(
            state=int(State.Active),
            updated_at=now,
            consecutive_errors=0,
            failed_since_success=0,
            recover_at=None,
            recover_probes=target.probes + 1,
        )
    ).rowcount
    return bool(done)


@dataclass(frozen=True, slots=True)
class ProbeLog:
    """One probe as the attempt log keeps it: the test event, its delivery, its attempt."""

    occurred_at: str  # the body's Timestamp
    event_uuid: str  # EventId
    uid: str  # webhook-id
    attempt: AttemptRow  # delivery_id is filled in by log_probe


def log_probe(conn: Connection, target: ProbeTarget, log: ProbeLog, now: float) -> int:
    """Write a probe into the delivery log (if its webhook still exists); the delivery id."""
    exists = conn.execute(select(webhooks.c.id).where(webhooks.c.id == target.webhook_id)).first()
    if exists is None:
        return 0
    dialect = dialect_of(conn)
    (event_id,) = dialect.allocate_ids(conn, "events", 1)
    conn.execute(
        insert(events).values(
            id=event_id,
            tenant=target.tenant,
            name="test",
            primary_key=0,
            associate_id=target.associate_id,
            occurred_at=log.occurred_at,
            changes=to_json([]),
            created_at=now,
        )
    )
    (delivery_id,) = dialect.allocate_ids(conn, "deliveries", 1)
    conn.execute(
        insert(deliveries).values(
            id=delivery_id,
            event_id=event_id,
            webhook_id=target.webhook_id,
            uid=log.uid,
            status=DELIVERED if log.attempt.ok else GIVEN_UP,
            event_uuid=log.event_uuid,
            next_at=now,
            created_at=log.attempt.at,
            finished_at=now,
            probe=1,
        )
    )
    run(conn, "insert_attempt", [log.attempt._replace(delivery_id=delivery_id)])
    return delivery_id
