"""hookcast additions under /api/v1/Deliveries: search the delivery log across the caller's
webhooks (cursor paging), one delivery's attempts with what was sent and what came back,
and replay of everything a search matches."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BeforeValidator

from ..deliveries import DeliveryFilter, DeliveryLog, SearchStatus
from ..model import MAX_ID, MAX_PRIMARY_KEY, format_epoch
from .deps import ERRORS, Manager, Reader
from .limits import ParsedJSONRoute
from .schemas import ApiOut

router = APIRouter(
    prefix="/api/v1/Deliveries",
    tags=["hookcast"],
    responses=ERRORS,
    route_class=ParsedJSONRoute,
)

MAX_PAGE = 500


async def _log(request: Request) -> DeliveryLog:
    return request.app.state.delivery_log  # type: ignore[no-any-return]


LogDep = Annotated[DeliveryLog, Depends(_log)]

# ----- shapes -------------------------------------------------------------------------------


class LastAttemptOut(ApiOut):
    attempt_id: int
    at: str
    outcome: str  # success | failure
    http_status: int | None
    latency_ms: float
    error: str | None


class DeliveryItemOut(ApiOut):
    """One delivery of an event to a webhook, with its latest attempt."""

    delivery_id: int
    webhook_id: int
    webhook_name: str
    event: str
    primary_key: int
    event_id: str  # the EventId of the current cycle
    webhook_message_id: str  # the `webhook-id` header: the same for every attempt
    status: SearchStatus
    cycle: int
    attempts: int  # attempts made in the current cycle
    created: str
    finished: str | None
    # Burst coalescing: the ids of the signals (events) merged into this delivery, in
    # signal order; null when it carries one signal.
    merged_events: list[int] | None = None
    last_attempt: LastAttemptOut | None


class DeliverySearchPage(ApiOut):
    items: list[DeliveryItemOut]
    next_cursor: int | None  # pass as `cursor` for the next page; null on the last


class AttemptDetailOut(ApiOut):
    attempt_id: int
    at: str
    event_id: str
    cycle: int
    attempt: int
    outcome: str
    http_status: int | None
    latency_ms: float
    error: str | None
    output: str | None  # a CRMScript run's output
    request: str | None  # request line, headers and body start (Headers values hidden)
    response: str | None  # status line, headers and the first 4 KiB of the body


class DeliveryDetailOut(DeliveryItemOut):
    attempt_log: list[AttemptDetailOut]


class ReplayOut(ApiOut):
    matched: int  # deliveries the search matches
    queued: int  # queued again (with dryRun: that would be)
    dry_run: bool


# ----- filters ------------------------------------------------------------------------------


def _iso_only(value: Any) -> Any:
    """A date and time as ISO 8601 text only: pydantic would take a number as epoch
    seconds, which the document (format date-time) does not allow."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("expected an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def search_filter(
    who: Reader,
    event: Annotated[str | None, Query(max_length=255, description="event name")] = None,
    primaryKey: Annotated[int | None, Query(ge=0, le=MAX_PRIMARY_KEY)] = None,
    status: Annotated[SearchStatus | None, Query(description="the delivery's status")] = None,
    webhookId: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    eventId: Annotated[
        str | None, Query(max_length=36, description="EventId of the current cycle")
    ] = None,
    webhookMessageId: Annotated[
        str | None, Query(max_length=36, description="the `webhook-id` header")
    ] = None,
    since: Annotated[
        IsoDateTime | None, Query(description="created at or after (ISO 8601; UTC if no zone)")
    ] = None,
    until: Annotated[IsoDateTime | None, Query(description="created before (ISO 8601)")] = None,
) -> DeliveryFilter:
    return DeliveryFilter(
        tenant=who.tenant,
        event=event,
        primary_key=primaryKey,
        status=status,
        webhook_id=webhookId,
        event_id=eventId,
        delivery_uid=webhookMessageId,
        since=_epoch(since),
        until=_epoch(until),
    )


Filter = Annotated[DeliveryFilter, Depends(search_filter)]

# ----- answers ------------------------------------------------------------------------------


def _last(a: dict[str, Any] | None) -> LastAttemptOut | None:
    if a is None:
        return None
    return LastAttemptOut(
        attempt_id=a["id"],
        at=format_epoch(a["at"]),
        outcome="success" if a["ok"] else "failure",
        http_status=a["http_status"],
        latency_ms=round(a["latency_ms"], 3),
        error=a["error"],
    )


def item_fields(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "delivery_id": r["id"],
        "webhook_id": r["webhook_id"],
        "webhook_name": r["webhook_name"],
        "event": r["event"],
        "primary_key": r["primary_key"],
        "event_id": r["event_uuid"],
        "webhook_message_id": r["uid"],
        "status": r["state"],
        "cycle": r["cycle"],
        "attempts": r["attempt"],
        "created": format_epoch(r["created_at"]),
        "finished": format_epoch(r["finished_at"]) if r["finished_at"] else None,
        "merged_events": r["merged_events"],
    }


def attempt_detail(a: dict[str, Any]) -> AttemptDetailOut:
    return AttemptDetailOut(
        attempt_id=a["id"],
        at=format_epoch(a["at"]),
        event_id=a["event_uuid"],
        cycle=a["cycle"],
        attempt=a["attempt"],
        outcome="success" if a["ok"] else "failure",
        http_status=a["http_status"],
        latency_ms=round(a["latency_ms"], 3),
        error=a["error"],
        output=a["output"],
        request=a["request_excerpt"],
        response=a["response_excerpt"],
    )


# ----- routes -------------------------------------------------------------------------------


@router.get(
    "",
    response_model=DeliverySearchPage,
    summary="hookcast addition: search deliveries across the caller's webhooks, newest first",
)
async def search_deliveries(
    log: LogDep,
    f: Filter,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="nextCursor of the previous page")
    ] = None,
) -> DeliverySearchPage:
    rows, next_cursor = await log.search(f, limit, cursor)
    items = [DeliveryItemOut(**item_fields(r), last_attempt=_last(r["last_attempt"])) for r in rows]
    return DeliverySearchPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{deliveryId:int}",
    response_model=DeliveryDetailOut,
    summary="hookcast addition: one delivery and its attempts, with request and response",
)
async def get_delivery(
    log: LogDep,
    who: Reader,
    deliveryId: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> DeliveryDetailOut:
    d = await log.delivery(who, deliveryId)
    attempts = [attempt_detail(a) for a in d["attempts"]]
    last = d["attempts"][-1] if d["attempts"] else None
    return DeliveryDetailOut(**item_fields(d), last_attempt=_last(last), attempt_log=attempts)


@router.post(
    "/Redeliver",
    response_model=ReplayOut,
    summary="hookcast addition: queue again every delivered or given-up delivery a search "
    "matches (of Active webhooks), as fresh cycles; dryRun only counts",
)
async def redeliver(
    log: LogDep,
    _: Manager,
    f: Filter,
    dryRun: Annotated[bool, Query(description="count only, queue nothing")] = False,
) -> ReplayOut:
    count = await (log.count(f) if dryRun else log.redeliver(f))
    return ReplayOut(matched=count.matched, queued=count.queued, dry_run=dryRun)
