"""REST routes of §2 under /api/v1/Webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from ..model import MAX_ASSOCIATE_ID, MAX_ID, format_date, format_epoch
from .deps import (
    ERRORS,
    PATCH_MEDIA_TYPES,
    CarrierBody,
    Manager,
    PatchBody,
    Reader,
    RegistryDep,
    linked_webhook,
    patch_request,
    webhook_out,
)
from .limits import ParsedJSONRoute
from .schemas import (
    STATE_NAMES,
    DeliveriesPage,
    DeliveryOut,
    DeliveryStatus,
    NotificationOut,
    NotificationsPage,
    RedeliverOut,
    TestResponse,
    UsageOut,
    WebhookOut,
    WebhookWithLinks,
)

router = APIRouter(
    prefix="/api/v1/Webhook", tags=["Webhook"], responses=ERRORS, route_class=ParsedJSONRoute
)
WebhookIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The WebhookId")]


@router.get("/default", summary="A pre-filled webhook carrier", response_model=WebhookOut)
async def get_default(_: Reader) -> WebhookOut:
    return WebhookOut.default()


@router.get(
    "", summary="The caller's webhooks, optionally filtered", response_model=list[WebhookOut]
)
async def list_webhooks(
    reg: RegistryDep,
    who: Reader,
    nameFilter: Annotated[str | None, Query(description="exact webhook name")] = None,
    eventFilter: Annotated[str | None, Query(description="a subscribed event name")] = None,
    statusFilter: Annotated[
        str | None,
        Query(
            description="a State name (any case) or number; Unknown = all",
            json_schema_extra={"enum": ["", *STATE_NAMES, "0", "1", "2", "3"]},
        ),
    ] = None,
) -> list[WebhookOut]:
    hooks = await reg.list(who, name=nameFilter, event=eventFilter, state=statusFilter)
    return [webhook_out(who, h) for h in hooks]


@router.post("", summary="Register a webhook (verified first, §5)", response_model=WebhookWithLinks)
async def create_webhook(
    request: Request, reg: RegistryDep, who: Manager, body: CarrierBody
) -> WebhookWithLinks:
    return linked_webhook(request, who, await reg.create(who, body))


@router.post(
    "/Test", summary="Send the test event to a carrier; stores nothing", response_model=TestResponse
)
async def test_webhook(reg: RegistryDep, who: Manager, body: CarrierBody) -> TestResponse:
    result = await reg.test(who, body)
    return TestResponse(success=result.success, message=result.message)


@router.get(
    "/Notifications",
    response_model=NotificationsPage,
    summary="hookcast addition: InApp notifications (FirstFailure, Disabling, Recovered), newest first",
)
async def notifications(
    reg: RegistryDep,
    who: Reader,
    associateId: Annotated[
        int | None, Query(ge=0, le=MAX_ASSOCIATE_ID, description="only this associate's")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> NotificationsPage:
    total, rows = await reg.notifications(who, associateId, limit, offset)
    items = [
        NotificationOut(
            notification_id=r["id"],
            associate_id=r["associate_id"],
            associate_name=r["associate_name"],
            webhook_id=r["webhook_id"],
            webhook_name=r["webhook_name"],
            kind=r["kind"],
            message=r["message"],
            event_id=r["event_id"],
            created=format_epoch(r["created_at"]),
        )
        for r in rows
    ]
    return NotificationsPage(total=total, limit=limit, offset=offset, items=items)


@router.get("/{webhookId:int}", summary="One webhook", response_model=WebhookWithLinks)
async def get_webhook(
    request: Request, reg: RegistryDep, who: Reader, webhookId: WebhookIdPath
) -> WebhookWithLinks:
    return linked_webhook(request, who, await reg.get(who, webhookId))


@router.put(
    "/{webhookId:int}", summary="Replace the writable fields", response_model=WebhookWithLinks
)
async def put_webhook(
    request: Request,
    reg: RegistryDep,
    who: Manager,
    webhookId: WebhookIdPath,
    body: CarrierBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> WebhookWithLinks:
    hook = await reg.replace(who, webhookId, body, if_unmodified_since)
    return linked_webhook(request, who, hook)


@router.patch(
    "/{webhookId:int}",
    summary="JSON Patch (array) or JSON Merge Patch (object)",
    response_model=WebhookWithLinks,
    openapi_extra=PATCH_MEDIA_TYPES,
)
async def patch_webhook(
    request: Request,
    reg: RegistryDep,
    who: Manager,
    webhookId: WebhookIdPath,
    body: PatchBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> WebhookWithLinks:
    patch, media_type = patch_request(request, body)
    hook = await reg.patch(who, webhookId, patch, media_type, if_unmodified_since)
    return linked_webhook(request, who, hook)


@router.delete(
    "/{webhookId:int}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook and drop its pending deliveries",
)
async def delete_webhook(
    reg: RegistryDep,
    who: Manager,
    webhookId: WebhookIdPath,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> Response:
    await reg.delete(who, webhookId, if_unmodified_since)
    return Response(status_code=204)


@router.get("/{webhookId:int}/LastError", summary="The most recent delivery error, or null")
async def last_error(reg: RegistryDep, who: Reader, webhookId: WebhookIdPath) -> str | None:
    return await reg.last_error(who, webhookId)


@router.get(
    "/{webhookId:int}/Usage",
    summary="hookcast addition: delivery counters",
    response_model=UsageOut,
)
async def usage(reg: RegistryDep, who: Reader, webhookId: WebhookIdPath) -> UsageOut:
    u = await reg.usage(who, webhookId)
    return UsageOut(
        total_calls=u.total_calls,
        total_errors=u.total_errors,
        consecutive_errors=u.consecutive_errors,
        last_error=u.last_error,
        last_error_at=format_date(u.last_error_at) if u.last_error_at else None,
        last_success_at=format_date(u.last_success_at) if u.last_success_at else None,
    )


_DELIVERY_STATUS: tuple[DeliveryStatus, ...] = ("pending", "delivered", "given_up")


@router.get(
    "/{webhookId:int}/Deliveries",
    response_model=DeliveriesPage,
    summary="hookcast addition: the delivery log, newest first, paged",
)
async def deliveries(
    reg: RegistryDep,
    who: Reader,
    webhookId: WebhookIdPath,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> DeliveriesPage:
    total, rows = await reg.deliveries(who, webhookId, limit, offset)
    items = [
        DeliveryOut(
            attempt_id=r["id"],
            at=format_epoch(r["at"]),
            event=r["event"],
            primary_key=r["primary_key"],
            event_id=r["event_uuid"],
            delivery_id=r["uid"],
            cycle=r["cycle"],
            attempt=r["attempt"],
            outcome="success" if r["ok"] else "failure",
            status=_DELIVERY_STATUS[r["status"]],
            http_status=r["http_status"],
            latency_ms=round(r["latency_ms"], 3),
            error=r["error"],
            output=r["output"],
        )
        for r in rows
    ]
    return DeliveriesPage(total=total, limit=limit, offset=offset, items=items)


@router.post(
    "/{webhookId:int}/Redeliver",
    response_model=RedeliverOut,
    summary="hookcast addition: queue the given-up deliveries again",
)
async def redeliver(reg: RegistryDep, who: Manager, webhookId: WebhookIdPath) -> RedeliverOut:
    return RedeliverOut(queued=await reg.redeliver(who, webhookId))
