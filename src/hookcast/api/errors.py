"""The one place where errors become the §8 body, SuperOffice's REST error shape:
{"Error": true, "ErrorType", "ErrorMessage", "ErrorSource", "Details" (when there are)}:
the exception handlers `install` registers, and `CatchUnexpected`, the outermost
middleware, for everything else (a 500)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HookcastError
from .schemas import ErrorBody

log = logging.getLogger("hookcast.api")

UNEXPECTED = "hookcast failed unexpectedly; the error is in its log."

_STATUS_TYPES = {
    400: "ValidationError",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def error_response(
    status: int,
    message: str,
    error_type: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        error_type=error_type, error_message=_sentence(message), details=details or None
    )
    return JSONResponse(
        body.model_dump(by_alias=True, exclude_none=True), status_code=status, headers=headers
    )


def _sentence(message: str) -> str:
    """ErrorMessage is a sentence (§8), whichever library phrased it."""
    message = message.strip()
    return message if message.endswith((".", "!", "?")) else message + "."


def _describe(err: dict[str, Any]) -> dict[str, Any]:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    return {
        "Field": ".".join(loc) or "body",
        "Message": err.get("msg", "").removeprefix("Value error, "),
    }


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names only the first
    route that matched). Routers are walked whatever way the FastAPI version keeps them:
    flattened into the app's routes (before 0.165) or whole, with full paths (0.165 on)."""
    methods: set[str] = set()
    scope = {**request.scope, "method": "__none__"}
    routes = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)
        if included is not None:
            routes.extend(included.routes)
            continue
        try:
            matched = route.matches(scope)[0] is not Match.NONE
        except Exception:  # a route kind that cannot match a bare method probe
            continue
        if matched:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def method_not_allowed_message(method: str, allowed: list[str]) -> str:
    if not allowed:  # never "use ." (an empty list)
        return f"{method} is not allowed here."
    return f"{method} is not allowed here; use {', '.join(allowed)}."


def install(app: FastAPI) -> None:
    @app.exception_handler(HookcastError)
    async def _hookcast(_: Request, exc: HookcastError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return error_response(exc.status_code, exc.message, exc.error_type, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "The request body is not valid JSON.", "ValidationError")
        details = [_describe(e) for e in errors]
        first = details[0] if details else {"Field": "body", "Message": "invalid"}
        more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
        return error_response(
            400, f"{first['Field']}: {first['Message']}{more}", "ValidationError", details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and message == "Not Found":
            message = "There is no such resource."
        elif exc.status_code == 405:
            # Starlette names only the first route that matched the path; list them all.
            allowed = _allowed_methods(request)
            if not allowed and headers and headers.get("Allow"):  # Starlette's, if ours found none
                allowed = sorted(m.strip() for m in headers["Allow"].split(","))
            message = method_not_allowed_message(request.method, allowed)
            headers = {"Allow": ", ".join(allowed)} if allowed else None
        return error_response(
            exc.status_code, message, _STATUS_TYPES.get(exc.status_code, "Error"), headers=headers
        )


class CatchUnexpected:
    """Any exception nothing else answered becomes a 500 with the §8 body and one log line,
    and goes no further (app.py puts one outside everything but the access log, and one
    inside FastAPI around its routes). Starlette's own last-resort handler re-raises after
    answering, and uvicorn then logs the error again and closes the keep-alive connection
    (with what the client had pipelined on it); here the connection stays open for the
    client's next request. Only an error after the answer has started closes it, as it
    must: the answer cannot be finished."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.error(
                "unexpected error answering %s %s",
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            if not started:
                answer = error_response(500, UNEXPECTED, "InternalError")
                await answer(scope, receive, send)
