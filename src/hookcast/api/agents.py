"""The RPC-style Agents API of §2: POST /api/v1/Agents/Webhook/<Method>, the same operations
as the REST routes, answering the same shapes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from ..errors import ValidationError
from ..model import MAX_ID
from .deps import (
    ERRORS,
    HubDep,
    Manager,
    Reader,
    RegistryDep,
    Signaller,
    linked_webhook,
    webhook_out,
)
from .limits import ParsedJSONRoute
from .schemas import (
    AgentsCarrier,
    Filters,
    SignalEventBody,
    TestResponse,
    WebhookIdBody,
    WebhookOut,
    WebhookWithLinks,
)
from .signals import signal_one

router = APIRouter(
    prefix="/api/v1/Agents/Webhook", tags=["Agents"], responses=ERRORS, route_class=ParsedJSONRoute
)


def _webhook_id(query_id: int | None, body: WebhookIdBody | None) -> int:
    webhook_id = query_id if query_id is not None else (body.webhook_id if body else None)
    if webhook_id is None:
        raise ValidationError("webhookId is required, as a query parameter or in the body.")
    return webhook_id


WebhookIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
OptionalIdBody = Annotated[WebhookIdBody | None, Body()]
AgentsBody = Annotated[
    AgentsCarrier, Body(description='A webhook carrier (§1), bare or as {"Webhook": {...}}.')
]


@router.post(
    "/CreateDefaultWebhook", summary="A pre-filled webhook carrier", response_model=WebhookOut
)
async def create_default(_: Reader) -> WebhookOut:
    return WebhookOut.default()


@router.post(
    "/SaveWebhook",
    summary="Create (WebhookId 0) or update a webhook",
    response_model=WebhookWithLinks,
)
async def save_webhook(
    request: Request, reg: RegistryDep, who: Manager, body: AgentsBody
) -> WebhookWithLinks:
    hook = await (
        reg.create(who, body) if body.webhook_id == 0 else reg.replace(who, body.webhook_id, body)
    )
    return linked_webhook(request, who, hook)


@router.post(
    "/GetWebhook",
    summary="One webhook",
    response_model=WebhookWithLinks,
)
async def get_webhook(
    request: Request,
    reg: RegistryDep,
    who: Reader,
    webhookId: WebhookIdQuery = None,
    body: OptionalIdBody = None,
) -> WebhookWithLinks:
    return linked_webhook(request, who, await reg.get(who, _webhook_id(webhookId, body)))


@router.post(
    "/DeleteWebhook",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook",
)
async def delete_webhook(
    reg: RegistryDep, who: Manager, webhookId: WebhookIdQuery = None, body: OptionalIdBody = None
) -> Response:
    await reg.delete(who, _webhook_id(webhookId, body))
    return Response(status_code=204)


@router.post(
    "/GetAllWebhooks",
    summary="The caller's webhooks, optionally filtered",
    response_model=list[WebhookOut],
)
async def get_all(
    reg: RegistryDep, who: Reader, body: Annotated[Filters | None, Body()] = None
) -> list[WebhookOut]:
    body = body or Filters()
    hooks = await reg.list(
        who, name=body.name_filter, event=body.event_filter, state=body.status_filter
    )
    return [webhook_out(who, h) for h in hooks]


@router.post("/TestWebhook", response_model=TestResponse, summary="Send the test event")
async def test_webhook(reg: RegistryDep, who: Manager, body: AgentsBody) -> TestResponse:
    result = await reg.test(who, body)
    return TestResponse(success=result.success, message=result.message)


@router.post(
    "/GetLastError",
    summary="The most recent delivery error, or null",
)
async def get_last_error(
    reg: RegistryDep, who: Reader, webhookId: WebhookIdQuery = None, body: OptionalIdBody = None
) -> str | None:
    return await reg.last_error(who, _webhook_id(webhookId, body))


@router.post(
    "/SignalEvent",
    status_code=204,
    response_class=Response,
    summary="Signal an event for the caller's tenant (204 once durably stored)",
)
async def signal(hub: HubDep, who: Signaller, body: SignalEventBody) -> Response:
    await signal_one(
        hub, who.tenant, who.associate_id, body.event_name, body.primary_key, body.data
    )
    return Response(status_code=204)
