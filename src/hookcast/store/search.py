"""Deliveries across a tenant's webhooks: search with cursor paging, an attempt's log, and
redelivery of everything a search matches in one set-based UPDATE.

A delivery's status as people see it: `pending` (queued, not tried yet in this cycle),
`failing` (pending after a failed attempt), `delivered`, `given_up`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)

from .codec import from_json
from .dialect import dialect_of
from .rows import DELIVERED, GIVEN_UP, PENDING
from .schema import attempts, deliveries, events, webhooks

__all__ = [
    "SEARCH_STATUSES",
    "DeliveryFilter",
    "SearchStatus",
    "count_matching",
    "delivery_attempts",
    "hourly_outcomes",
    "redeliver_matching",
    "search_deliveries",
    "status_of",
]

SearchStatus = Literal["pending", "failing", "delivered", "given_up"]
SEARCH_STATUSES: tuple[SearchStatus, ...] = ("pending", "failing", "delivered", "given_up")
ACTIVE = 1  # model.State.Active; the store compares the stored number


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """What a search matches; every field set narrows it. Times are epoch seconds of the
    delivery's creation, `since` included, `until` excluded."""

    tenant: str
    event: str | None = None
    primary_key: int | None = None
    status: SearchStatus | None = None
    webhook_id: int | None = None
    event_id: str | None = None  # the EventId of the delivery's current cycle
    delivery_uid: str | None = None  # the webhook-id header
    since: float | None = None
    until: float | None = None


def status_of(status: int, cycle: int, attempt: int) -> SearchStatus:
    if status == DELIVERED:
        return "delivered"
    if status == GIVEN_UP:
        return "given_up"
    return "failing" if cycle or attempt else "pending"


def _conditions(f: DeliveryFilter) -> list[ColumnElement[bool]]:
    d = deliveries.c
    where: list[ColumnElement[bool]] = [webhooks.c.tenant == f.tenant]
    if f.event is not None:
        where.append(events.c.name == f.event)
    if f.primary_key is not None:
        where.append(events.c.primary_key == f.primary_key)
    if f.webhook_id is not None:
        where.append(d.webhook_id == f.webhook_id)
    if f.event_id is not None:
        where.append(d.event_uuid == f.event_id)
    if f.delivery_uid is not None:
        where.append(d.uid == f.delivery_uid)
    if f.since is not None:
        where.append(d.created_at >= f.since)
    if f.until is not None:
        where.append(d.created_at < f.until)
    if f.status == "delivered":
        where.append(d.status == DELIVERED)
    elif f.status == "given_up":
        where.append(d.status == GIVEN_UP)
    elif f.status == "pending":
        where.extend([d.status == PENDING, d.cycle == 0, d.attempt == 0])
    elif f.status == "failing":
        where.extend([d.status == PENDING, or_(d.cycle > 0, d.attempt > 0)])
    return where


def _matching(columns: list[Any], f: DeliveryFilter) -> Select[Any]:
    joined = deliveries.join(webhooks, webhooks.c.id == deliveries.c.webhook_id).join(
        events, events.c.id == deliveries.c.event_id
    )
    return select(*columns).select_from(joined).where(*_conditions(f))


def search_deliveries(
    conn: Connection, f: DeliveryFilter, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """Up to `limit` matching deliveries, newest first, with ids below `before` (the cursor),
    each with its latest attempt's outcome (None before the first)."""
    d = deliveries.c
    query = _matching(
        [
            d.id,
            d.webhook_id,
            webhooks.c.name.label("webhook_name"),
            d.uid,
            d.status,
            d.cycle,
            d.attempt,
            d.event_uuid,
            d.created_at,
            d.finished_at,
            d.merged_events,
            events.c.name.label("event"),
            events.c.primary_key,
        ],
        f,
    )
    if before is not None:
        query = query.where(d.id < before)
    rows = [dict(r._mapping) for r in conn.execute(query.order_by(d.id.desc()).limit(limit))]
    latest = _latest_attempts(conn, [r["id"] for r in rows])
    for r in rows:
        r["last_attempt"] = latest.get(r["id"])
        r["merged_events"] = from_json(r["merged_events"])
    return rows


def _latest_attempts(conn: Connection, delivery_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not delivery_ids:
        return {}
    newest = (
        select(func.max(attempts.c.id))
        .where(attempts.c.delivery_id.in_(delivery_ids))
        .group_by(attempts.c.delivery_id)
    )
    a = attempts.c
    rows = conn.execute(
        select(a.delivery_id, a.id, a.at, a.ok, a.http_status, a.latency_ms, a.error).where(
            a.id.in_(newest.scalar_subquery())
        )
    )
    return {r.delivery_id: dict(r._mapping) for r in rows}


def count_matching(conn: Connection, f: DeliveryFilter) -> tuple[int, int]:
    """(how many deliveries match, how many of them a redelivery would queue)."""
    d = deliveries.c
    replayable = and_(d.status != PENDING, webhooks.c.state == ACTIVE, d.probe == 0)
    row = conn.execute(
        _matching(
            [func.count(), func.coalesce(func.sum(case((replayable, 1), else_=0)), 0)],
            f,
        )
    ).one()
    return int(row[0]), int(row[1])


def redeliver_matching(conn: Connection, f: DeliveryFilter, now: float) -> int:
    """Queue again, as fresh cycles with new EventIds, every finished (delivered or given
    up) matching delivery of an Active webhook: one UPDATE, however many rows. Pending ones
    are queued already; a stopped webhook's would only be given up again."""
    d = deliveries.c
    # AutoRecover's probes (d.probe) are a log of test events, never deliveries to replay.
    chosen = _matching([d.id], f).where(
        d.status != PENDING, webhooks.c.state == ACTIVE, d.probe == 0
    )
    queued = conn.execute(
        update(deliveries)
        .where(d.id.in_(chosen.correlate(None).scalar_subquery()))
        .values(
            status=PENDING,
            cycle=0,
            attempt=0,
            event_uuid=literal_column(dialect_of(conn).new_uuid_sql),
            next_at=now,
            finished_at=None,
        )
    ).rowcount
    if queued:
        dialect_of(conn).notify(conn, None)
    return int(queued)


def delivery_attempts(conn: Connection, tenant: str, delivery_id: int) -> dict[str, Any] | None:
    """One delivery of the tenant's with all its attempts (oldest first), excerpts included;
    None if there is no such delivery."""
    found = _matching(
        [
            deliveries,
            webhooks.c.name.label("webhook_name"),
            webhooks.c.type.label("webhook_type"),
            events.c.name.label("event"),
            events.c.primary_key,
        ],
        DeliveryFilter(tenant=tenant),
    ).where(deliveries.c.id == delivery_id)
    row = conn.execute(found).first()
    if row is None:
        return None
    delivery = dict(row._mapping)
    delivery["merged_events"] = from_json(delivery["merged_events"])
    delivery["attempts"] = [
        dict(r._mapping)
        for r in conn.execute(
            select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
        )
    ]
    return delivery


def hourly_outcomes(
    conn: Connection, webhook_ids: list[int], since: float, hours: int
) -> dict[int, list[tuple[int, int]]]:
    """Per webhook, (successes, failures) of its attempts in each hour from `since`."""
    found: dict[int, list[tuple[int, int]]] = {i: [(0, 0)] * hours for i in webhook_ids}
    if not webhook_ids:
        return found
    a = attempts.c
    # Whole seconds, then integer division: the same buckets on SQLite and PostgreSQL (whose
    # CAST of a fraction rounds rather than truncates).
    hour = (func.cast(a.at, BigInteger) - int(since)) // 3600
    rows = conn.execute(
        select(a.webhook_id, hour, func.sum(a.ok), func.count())
        .where(a.webhook_id.in_(webhook_ids), a.at >= since)
        .group_by(a.webhook_id, hour)
    )
    for webhook_id, h, ok, total in rows:
        if 0 <= h < hours:
            found[webhook_id][h] = (int(ok), int(total) - int(ok))
    return found
