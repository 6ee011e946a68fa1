"""The RPC-style Agents API of §2: POST /api/v1/Agents/Webhook/<Method>, the same operations
as the REST routes, answering the same shapes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..errors import ValidationError
from ..model import MAX_ID, WebhookOut, WebhookWithLinks, default_carrier, webhook_out
from .webhooks import (
    ERRORS,
    STATE_NAMES,
    Caller,
    CarrierBody,
    TestResponse,
    registry,
    reject_null_body,
    with_links,
)

router = APIRouter(prefix="/api/v1/Agents/Webhook", tags=["Agents"], responses=ERRORS)


class WebhookIdBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    WebhookId: int | None = Field(default=None, ge=1, le=MAX_ID)


class Filters(BaseModel):
    model_config = ConfigDict(extra="ignore")
    NameFilter: str | None = None
    EventFilter: str | None = None
    StatusFilter: StrictStr | StrictInt | None = Field(
        default=None, json_schema_extra={"enum": [*STATE_NAMES, 0, 1, 2, 3, None]}
    )


def _webhook_id(query_id: int | None, body: WebhookIdBody | None) -> int:
    webhook_id = query_id if query_id is not None else (body.WebhookId if body else None)
    if webhook_id is None:
        raise ValidationError("webhookId is required, as a query parameter or in the body.")
    return webhook_id


WebhookIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
OptionalIdBody = Annotated[WebhookIdBody | None, Body()]


@router.post(
    "/CreateDefaultWebhook", summary="A pre-filled webhook carrier", response_model=WebhookOut
)
async def create_default(_: Caller) -> dict[str, Any]:
    return default_carrier()


@router.post(
    "/SaveWebhook",
    summary="Create (WebhookId 0) or update a webhook",
    response_model=WebhookWithLinks,
)
async def save_webhook(request: Request, who: Caller, body: CarrierBody) -> dict[str, Any]:
    reg = registry(request)
    hook = await (
        reg.create(who, body) if body.WebhookId == 0 else reg.replace(who, body.WebhookId, body)
    )
    return with_links(request, hook)


@router.post(
    "/GetWebhook",
    dependencies=[Depends(reject_null_body)],
    summary="One webhook",
    response_model=WebhookWithLinks,
)
async def get_webhook(
    request: Request, who: Caller, webhookId: WebhookIdQuery = None, body: OptionalIdBody = None
) -> dict[str, Any]:
    return with_links(request, await registry(request).get(who, _webhook_id(webhookId, body)))


@router.post(
    "/DeleteWebhook",
    dependencies=[Depends(reject_null_body)],
    status_code=204,
    response_class=Response,
    summary="Delete a webhook",
)
async def delete_webhook(
    request: Request, who: Caller, webhookId: WebhookIdQuery = None, body: OptionalIdBody = None
) -> Response:
    await registry(request).delete(who, _webhook_id(webhookId, body))
    return Response(status_code=204)


@router.post(
    "/GetAllWebhooks",
    summary="The caller's webhooks, optionally filtered",
    response_model=list[WebhookOut],
)
async def get_all(
    request: Request, who: Caller, body: Annotated[Filters, Body()]
) -> list[dict[str, Any]]:
    f = body
    hooks = await registry(request).list(
        who, name=f.NameFilter, event=f.EventFilter, state=f.StatusFilter
    )
    return [webhook_out(h) for h in hooks]


@router.post("/TestWebhook", response_model=TestResponse, summary="Send the test event")
async def test_webhook(request: Request, who: Caller, body: CarrierBody) -> TestResponse:
    result = await registry(request).test(who, body)
    return TestResponse(Success=result.success, Message=result.message)


@router.post(
    "/GetLastError",
    dependencies=[Depends(reject_null_body)],
    summary="The most recent delivery error, or null",
)
async def get_last_error(
    request: Request, who: Caller, webhookId: WebhookIdQuery = None, body: OptionalIdBody = None
) -> str | None:
    return await registry(request).last_error(who, _webhook_id(webhookId, body))


class SignalEventBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    EventName: StrictStr
    PrimaryKey: StrictInt = Field(ge=0, le=MAX_ID)
    Data: dict[str, Any] | None = None


@router.post(
    "/SignalEvent",
    status_code=204,
    response_class=Response,
    summary="Signal an event for the caller's tenant (204 once durably stored)",
)
async def signal_event(request: Request, who: Caller, body: SignalEventBody) -> Response:
    await request.app.state.hub.signal(
        body.EventName,
        body.PrimaryKey,
        tenant=who.tenant,
        associate_id=who.associate_id,
        changes=body.Data or None,
    )
    return Response(status_code=204)
