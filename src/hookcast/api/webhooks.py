"""REST routes of §2 under /api/v1/Webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from ..errors import ValidationError
from ..model import (
    MAX_ID,
    Principal,
    Webhook,
    WebhookIn,
    WebhookOut,
    WebhookWithLinks,
    default_carrier,
    format_date,
    format_epoch,
    webhook_out,
)
from ..registry import Registry
from .auth import principal
from .errors import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 412, 413)
}
router = APIRouter(prefix="/api/v1/Webhook", tags=["Webhook"], responses=ERRORS)
Caller = Annotated[Principal, Depends(principal)]
WebhookIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The WebhookId")]
STATE_NAMES = ["Unknown", "Active", "Stopped", "TooManyErrors"]
CarrierBody = Annotated[WebhookIn, Body(description="A webhook carrier (§1).")]


class TestResponse(BaseModel):
    Success: bool
    Message: str


class UsageOut(BaseModel):
    total_calls: int
    total_errors: int
    consecutive_errors: int
    last_error: str | None
    last_error_at: str | None
    last_success_at: str | None


def registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


def with_links(request: Request, hook: Webhook) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/api/v1/Webhook"
    return {**webhook_out(hook), "_Links": {"Self": f"{base}/{hook.id}", "Archive": base}}


@router.get("/default", summary="A pre-filled webhook carrier", response_model=WebhookOut)
async def get_default(_: Caller) -> dict[str, Any]:
    return default_carrier()


@router.get(
    "", summary="The caller's webhooks, optionally filtered", response_model=list[WebhookOut]
)
async def list_webhooks(
    request: Request,
    who: Caller,
    nameFilter: Annotated[str | None, Query(description="exact webhook name")] = None,
    eventFilter: Annotated[str | None, Query(description="a subscribed event name")] = None,
    statusFilter: Annotated[
        str | None,
        Query(
            description="a State name (any case) or number; Unknown = all",
            json_schema_extra={"enum": ["", *STATE_NAMES, "0", "1", "2", "3"]},
        ),
    ] = None,
) -> list[dict[str, Any]]:
    hooks = await registry(request).list(
        who, name=nameFilter, event=eventFilter, state=statusFilter
    )
    return [webhook_out(h) for h in hooks]


@router.post("", summary="Register a webhook (verified first, §5)", response_model=WebhookWithLinks)
async def create_webhook(request: Request, who: Caller, body: CarrierBody) -> dict[str, Any]:
    hook = await registry(request).create(who, body)
    return with_links(request, hook)


@router.post(
    "/Test", summary="Send the test event to a carrier; stores nothing", response_model=TestResponse
)
async def test_webhook(request: Request, who: Caller, body: CarrierBody) -> TestResponse:
    result = await registry(request).test(who, body)
    return TestResponse(Success=result.success, Message=result.message)


@router.get("/{webhookId:int}", summary="One webhook", response_model=WebhookWithLinks)
async def get_webhook(request: Request, who: Caller, webhookId: WebhookIdPath) -> dict[str, Any]:
    return with_links(request, await registry(request).get(who, webhookId))


@router.put(
    "/{webhookId:int}", summary="Replace the writable fields", response_model=WebhookWithLinks
)
async def put_webhook(
    request: Request,
    who: Caller,
    webhookId: WebhookIdPath,
    body: CarrierBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    hook = await registry(request).replace(who, webhookId, body, if_unmodified_since)
    return with_links(request, hook)


class PatchOperation(BaseModel):
    """One RFC 6902 operation; paths are case-insensitive and may omit the leading slash."""

    model_config = ConfigDict(extra="allow")
    op: Literal["add", "replace", "remove", "test"]
    path: str
    value: Any = None


PatchBody = Annotated[
    list[PatchOperation] | dict[str, Any],
    Body(description="A JSON Patch array (RFC 6902) or a JSON Merge Patch object (RFC 7396)."),
]
PATCH_MEDIA_TYPES = {
    "requestBody": {
        "content": {
            "application/json-patch+json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/PatchOperation"},
                }
            },
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }
    }
}


@router.patch(
    "/{webhookId:int}",
    summary="JSON Patch (array) or JSON Merge Patch (object)",
    response_model=WebhookWithLinks,
    openapi_extra=PATCH_MEDIA_TYPES,
)
async def patch_webhook(
    request: Request,
    who: Caller,
    webhookId: WebhookIdPath,
    body: PatchBody,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    media_type = (
        request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    )
    patch = [op.model_dump(exclude_unset=True) for op in body] if isinstance(body, list) else body
    hook = await registry(request).patch(who, webhookId, patch, media_type, if_unmodified_since)
    return with_links(request, hook)


@router.delete(
    "/{webhookId:int}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook and drop its pending deliveries",
)
async def delete_webhook(
    request: Request,
    who: Caller,
    webhookId: WebhookIdPath,
    if_unmodified_since: Annotated[str | None, Header()] = None,
) -> Response:
    await registry(request).delete(who, webhookId, if_unmodified_since)
    return Response(status_code=204)


@router.get("/{webhookId:int}/LastError", summary="The most recent delivery error, or null")
async def last_error(request: Request, who: Caller, webhookId: WebhookIdPath) -> str | None:
    return await registry(request).last_error(who, webhookId)


@router.get(
    "/{webhookId:int}/Usage",
    summary="hookcast addition: delivery counters",
    response_model=UsageOut,
)
async def usage(request: Request, who: Caller, webhookId: WebhookIdPath) -> UsageOut:
    u = await registry(request).usage(who, webhookId)
    return UsageOut(
        total_calls=u.total_calls,
        total_errors=u.total_errors,
        consecutive_errors=u.consecutive_errors,
        last_error=u.last_error,
        last_error_at=format_date(u.last_error_at) if u.last_error_at else None,
        last_success_at=format_date(u.last_success_at) if u.last_success_at else None,
    )


class DeliveryOut(BaseModel):
    """One attempt of one delivery (newest first)."""

    AttemptId: int
    At: str
    Event: str
    PrimaryKey: int
    EventId: str
    DeliveryId: str  # the webhook-id header: the same for every attempt of one delivery
    Cycle: int
    Attempt: int  # X-SuperOffice-Retry of that attempt
    Outcome: Literal["success", "failure"]
    Status: Literal["pending", "delivered", "given_up"]  # where the delivery stands now
    HttpStatus: int | None
    LatencyMs: float
    Error: str | None
    Output: str | None


class DeliveriesPage(BaseModel):
    Total: int
    Limit: int
    Offset: int
    Items: list[DeliveryOut]


class RedeliverOut(BaseModel):
    Queued: int


_DELIVERY_STATUS = ("pending", "delivered", "given_up")


@router.get(
    "/{webhookId:int}/Deliveries",
    response_model=DeliveriesPage,
    summary="hookcast addition: the delivery log, newest first, paged",
)
async def deliveries(
    request: Request,
    who: Caller,
    webhookId: WebhookIdPath,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> DeliveriesPage:
    total, rows = await registry(request).deliveries(who, webhookId, limit, offset)
    items = [
        DeliveryOut(
            AttemptId=r["id"],
            At=format_epoch(r["at"]),
            Event=r["event"],
            PrimaryKey=r["primary_key"],
            EventId=r["event_uuid"],
            DeliveryId=r["uid"],
            Cycle=r["cycle"],
            Attempt=r["attempt"],
            Outcome="success" if r["ok"] else "failure",
            Status=_DELIVERY_STATUS[r["status"]],
            HttpStatus=r["http_status"],
            LatencyMs=round(r["latency_ms"], 3),
            Error=r["error"],
            Output=r["output"],
        )
        for r in rows
    ]
    return DeliveriesPage(Total=total, Limit=limit, Offset=offset, Items=items)


@router.post(
    "/{webhookId:int}/Redeliver",
    response_model=RedeliverOut,
    summary="hookcast addition: queue the given-up deliveries again",
)
async def redeliver(request: Request, who: Caller, webhookId: WebhookIdPath) -> RedeliverOut:
    return RedeliverOut(Queued=await registry(request).redeliver(who, webhookId))


SignalBody = Annotated[
    dict[str, Any] | None,
    Body(description="The changed fields and their new values; the names become Changes."),
]


async def reject_null_body(request: Request) -> None:
    """An optional body may be absent, but a body of JSON `null` is a mistake, not 'none'."""
    if (await request.body()).strip() == b"null":
        raise ValidationError("The body must be a JSON object (or absent), not null.")


@router.post(
    "/{eventName}/{primaryKey:int}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(reject_null_body)],
    openapi_extra={"requestBody": {"required": False}},
    summary="Signal an event for the caller's tenant (204 once durably stored)",
)
async def signal_event(
    request: Request,
    who: Caller,
    eventName: str,
    primaryKey: Annotated[int, Path(ge=0, le=MAX_ID)],
    body: SignalBody = None,
) -> Response:
    await request.app.state.hub.signal(
        eventName,
        primaryKey,
        tenant=who.tenant,
        associate_id=who.associate_id,
        changes=body or None,
    )
    return Response(status_code=204)
