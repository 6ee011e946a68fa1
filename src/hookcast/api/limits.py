"""Request checks before any route runs: bodies over the limit get 413 (§7), text with
NUL characters gets 400 (no database stores them in text, and no name needs them), and a
JSON body is read here, once, by `jsontext.loads` with its limits (depth, 64-bit integers,
finite numbers, valid Unicode), so a body it refuses is a 400 whichever route it was sent
to. A body of JSON `null` goes on as no body (§2).

The routes get the value read here, not a second parse: their `route_class` is
`ParsedJSONRoute`, whose requests answer `json()` from the scope."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HookcastError
from ..jsontext import loads
from .errors import error_response

_NUL = (b"\x00", b"\\u0000")
# Where the middleware leaves a JSON body's value for the route.
JSON_KEY = "hookcast.json"


def is_json(content_type: bytes) -> bool:
    """Whether FastAPI reads a body of this Content-Type as JSON: application/json or
    application/*+json (the PATCH media types among them)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media.startswith(b"application/") and media.endswith((b"/json", b"+json"))


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI would read this request's body as JSON (no Content-Type: yes)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return is_json(value)
    return True


class RequestLimits:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _refuse(scope, receive, send, _too_large(self.max_bytes))
                return
        raw_path = scope.get("raw_path") or b""
        nul_in_path = "\0" in scope.get("path", "") or b"%00" in raw_path
        if b"%00" in scope.get("query_string", b"") or nul_in_path:
            await _refuse(scope, receive, send, _NUL_REFUSAL)
            return
        # Read the whole body first (it is at most max_bytes) so a refusal is answered here,
        # not turned into a parse error by the framework reading it.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await _refuse(scope, receive, send, _too_large(self.max_bytes))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body.strip() == b"null":
            body = b""  # §2: a JSON null body, an empty body and no body are the same
        if any(mark in body for mark in _NUL):
            await _refuse(scope, receive, send, _NUL_REFUSAL)
            return
        if body and _is_json(scope):
            try:
                scope[JSON_KEY] = loads(body)
            except HookcastError as exc:
                await _refuse(
                    scope, receive, send, _Refusal(exc.message, exc.status_code, exc.error_type)
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Refusal(NamedTuple):
    message: str
    status: int = 400
    error_type: str = "ValidationError"


def _too_large(limit: int) -> _Refusal:
    return _Refusal(f"The request body is over the limit of {limit} bytes.", 413, "PayloadTooLarge")


_NUL_REFUSAL = _Refusal(
    "Text in the request contains a NUL character (\\u0000), which hookcast does not store."
)


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: _Refusal) -> None:
    await error_response(refusal.status, refusal.message, refusal.error_type)(scope, receive, send)


class _ParsedRequest(Request):
    async def json(self) -> Any:
        if JSON_KEY in self.scope:
            return self.scope[JSON_KEY]
        return loads(await self.body())  # not through RequestLimits (no app does that)


class ParsedJSONRoute(APIRoute):
    """A route whose body is the value `RequestLimits` read (FastAPI's documented way to
    give a route its own Request class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed(request: Request) -> Response:
            return await handler(_ParsedRequest(request.scope, request.receive))

        return parsed
