"""Signalling over REST (§2, §3): one event per request, and hookcast's batch route.

The single-event route is the hot one for applications not written in Python, so a
well-formed request is answered by `FastSignal`, an ASGI middleware that runs just inside the
request checks (`RequestLimits`, `AspNetBinding`), in front of FastAPI (`app.HookcastAPI`),
and does only what the route needs: the key from the cache, the event data already parsed,
the group commit, 204. FastAPI's routing, dependency and validation layers cost more than
all of that together. Anything unusual (no or an unknown key, a wrong role or tenant, a
number out of range, a body that is not a JSON object) goes on to the FastAPI route below,
which answers it exactly as before; the route also keeps the operation in the OpenAPI
document.

Both routes take an `Idempotency-Key` header: a client that retries a request that timed
out gets the first one's answer and nothing is signalled twice (kept as long as
HOOKCAST_RETENTION_DAYS keeps finished deliveries)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import HookcastError, ValidationError
from ..hub import Hub
from ..intake import Signal, read_event_data
from ..keys import KeyCache
from ..model import MAX_PRIMARY_KEY
from ..rights import Right, allows
from .access import note_scope_caller
from .binding import CONTEXT_KEY
from .deps import ERRORS, HubDep, Signaller
from .errors import error_response
from .limits import JSON_KEY, ParsedJSONRoute, is_json
from .schemas import EVENT_DATA, SignalEventBody, SignalsOut


class _SignedInt(Convertor[int]):
    """An integer path segment, negative too, so that /contact.changed/-1 is a 400 that names
    the range (§3) rather than a 404 for a route that does not exist."""

    regex = "-?[0-9]+"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("signed_int", _SignedInt())


router = APIRouter(
    prefix="/api/v1/Webhook", tags=["Webhook"], responses=ERRORS, route_class=ParsedJSONRoute
)

MAX_BATCH = 1000
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="hookcast addition: a retry with the same key signals nothing again and "
        "gets the first answer.",
    ),
]


async def signal_one(
    hub: Hub,
    tenant: str,
    associate_id: int,
    event: str,
    primary_key: int,
    data: dict[str, Any] | None,
    idempotency_key: str | None = None,
) -> None:
    """A REST or Agents signal: its body read as §3 "Event data", for the caller's tenant,
    caused by the caller's associate."""
    parts = read_event_data(event, data)
    await hub.signal(
        event,
        primary_key,
        tenant=tenant,
        associate_id=associate_id,
        changes=parts.changes,
        values=parts.values,
        field_values=parts.field_values,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/Signal",
    response_model=SignalsOut,
    summary="hookcast addition: signal up to 1,000 events in one request, all or none",
)
async def signal_batch(
    hub: HubDep,
    who: Signaller,
    body: Annotated[
        list[SignalEventBody],
        Body(
            max_length=MAX_BATCH,
            description="Events as Agents/SignalEvent takes one: {EventName, PrimaryKey, Data}.",
        ),
    ],
    idempotency_key: IdempotencyKey = None,
) -> SignalsOut:
    """Every event is checked first; one bad event is a 400 whose Details name each bad
    one by its index, and nothing is stored. Otherwise all are committed together."""
    signals, problems = [], []
    for index, item in enumerate(body):
        try:
            parts = read_event_data(item.event_name, item.data)
        except ValidationError as exc:
            problems.append({"Field": f"[{index}].Data", "Message": exc.message})
            continue
        signals.append(
            Signal(
                item.event_name,
                item.primary_key,
                who.tenant,
                who.associate_id,
                parts.changes,
                parts.values,
                parts.field_values,
            )
        )
    if problems:
        raise ValidationError(f"Event {problems[0]['Field']}: {problems[0]['Message']}", problems)
    answer = await hub.signal_many(signals, idempotency_key=idempotency_key)
    return SignalsOut(accepted=len(answer.ids), ids=answer.ids, replayed=answer.replayed)


@router.post(
    "/{eventName}/{primaryKey:signed_int}",
    status_code=204,
    response_class=Response,
    openapi_extra={"requestBody": {"required": False}},
    summary="Signal an event for the caller's tenant (204 once durably stored)",
)
async def signal(
    hub: HubDep,
    who: Signaller,
    eventName: str,
    primaryKey: Annotated[int, Path(ge=0, le=MAX_PRIMARY_KEY)],
    body: Annotated[dict[str, Any] | None, Body(description=EVENT_DATA)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    await signal_one(
        hub, who.tenant, who.associate_id, eventName, primaryKey, body, idempotency_key
    )
    return Response(status_code=204)


# ----- the fast path ---------------------------------------------------------------------------

_SIGNAL_PATH = re.compile(r"/api/v1/Webhook/([^/]+)/([0-9]{1,16})")
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
_END = {"type": "http.response.body", "body": b""}


class FastSignal:
    """POST /api/v1/Webhook/{eventName}/{primaryKey}, well-formed, answered without FastAPI
    (see the module's text); everything else goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _SIGNAL_PATH.fullmatch(scope["path"])
            if match is not None and await self._signalled(scope, match, send):
                return
        await self.app(scope, receive, send)

    async def _signalled(self, scope: Scope, match: re.Match[str], send: Send) -> bool:
        """Whether the request was answered here."""
        primary_key = int(match[2])
        data = scope.get(JSON_KEY)
        if primary_key > MAX_PRIMARY_KEY or not (data is None or isinstance(data, dict)):
            return False
        token, key = None, None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                token = credentials.strip() if scheme.lower() == "bearer" else None
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
            elif name == b"content-type" and not is_json(value):
                return False
        if not token:
            return False
        state = scope["app"].state
        keys: KeyCache = state.keys
        try:
            who = await keys.principal(token)
        except Exception:  # e.g. the database is down: the route tries and answers it (503)
            return False
        tenant = scope.get(CONTEXT_KEY)
        if (
            who is None
            or not allows(who.role, Right.signal)
            or (tenant is not None and tenant.lower() != who.tenant.lower())
        ):
            return False
        note_scope_caller(scope, who)  # for the access line
        try:
            await signal_one(
                state.hub, who.tenant, who.associate_id, match[1], primary_key, data, key
            )
        except HookcastError as exc:
            answer = error_response(exc.status_code, exc.message, exc.error_type, exc.details)
            await answer(scope, _nothing, send)
            return True
        await send(_NO_CONTENT)
        await send(_END)
        return True


async def _nothing() -> Any:
    raise RuntimeError("the request body was read before")


__all__ = ["FastSignal", "router", "signal_one"]
