"""What the routers share: the caller, the services on `app.state`, the error responses
they document, the webhook carrier body, PATCH bodies and `_Links`.

The services are FastAPI dependencies (`reg: RegistryDep`) so a route names what it uses;
they read `app.state`, which `app.create_app`'s lifespan fills. They are `async def` on
purpose: FastAPI runs a plain `def` dependency in its thread pool, a hop per request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Request

from ..hub import Hub
from ..model import Principal, Webhook
from ..registry import Registry
from ..rights import Right, allows
from ..scripts import Scripts
from ..store.database import Database
from .auth import caller
from .schemas import ErrorBody, Links, PatchOperation, WebhookIn, WebhookOut, WebhookWithLinks

# The error answers every resource route may give (§8), for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 412, 413)
}

# ----- who is calling, and the services ---------------------------------------------------

# Each route names the one right it needs (§7); `auth.caller` checks it.
Reader = Annotated[Principal, Depends(caller(Right.read))]
Manager = Annotated[Principal, Depends(caller(Right.manage))]
Signaller = Annotated[Principal, Depends(caller(Right.signal))]


async def _hub(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


async def _database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


async def _registry(request: Request) -> Registry:
    return request.app.state.registry  # type: ignore[no-any-return]


async def _scripts(request: Request) -> Scripts:
    return request.app.state.scripts  # type: ignore[no-any-return]


HubDep = Annotated[Hub, Depends(_hub)]
DatabaseDep = Annotated[Database, Depends(_database)]
RegistryDep = Annotated[Registry, Depends(_registry)]
ScriptsDep = Annotated[Scripts, Depends(_scripts)]

# ----- bodies ------------------------------------------------------------------------------

CarrierBody = Annotated[WebhookIn, Body(description="A webhook carrier (§1).")]


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


def patch_request(
    request: Request, body: list[PatchOperation] | dict[str, Any]
) -> tuple[list[dict[str, Any]] | dict[str, Any], str]:
    """A PATCH body as `patching.apply_patch` takes it, and the request's media type."""
    media_type = (
        request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    )
    patch = [op.model_dump(exclude_unset=True) for op in body] if isinstance(body, list) else body
    return patch, media_type


# ----- answers -----------------------------------------------------------------------------


def links(request: Request, collection: str, item_id: int) -> Links:
    """`_Links` of one resource under /api/v1/<collection>."""
    base = str(request.base_url).rstrip("/") + f"/api/v1/{collection}"
    return Links(self=f"{base}/{item_id}", archive=base)


def webhook_out(who: Principal, hook: Webhook) -> WebhookOut:
    """A webhook as a list answers it, its Secrets left out for a key without the right."""
    return WebhookOut.of(hook, secrets=allows(who.role, Right.secrets))


def linked_webhook(request: Request, who: Principal, hook: Webhook) -> WebhookWithLinks:
    """A single webhook as answered (REST and Agents), with `_Links`; its Secrets left out
    for a key without the right."""
    return WebhookWithLinks.of_linked(
        hook, links(request, "Webhook", hook.id), secrets=allows(who.role, Right.secrets)
    )
