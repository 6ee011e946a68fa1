"""The access log and the request's trace context (docs/observability.md).

`AccessLog` is the outermost middleware: one line per HTTP request on `hookcast.access`
once its answer is sent (method, path, status, latency, the API key's id and tenant, the
client), whatever answered it (a route, an error handler, the body limits, the last-resort
500); the lines of the requests one turn of the event loop answered share one record. It
replaces uvicorn's access log (off in `serve`), which knows neither the key nor the
latency. The key itself never reaches it: auth.py leaves the key's id in the request state
(`note_caller`), and the path is scrubbed like any other text (logs.redact); the query
string is left out.

With tracing or trace propagation on, a request whose `traceparent` header names a trace
is handled in that trace's context, unless a span is current already, so that a signal
over REST joins the caller's trace as signal() from Python joins the current span's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import ACCESS, Lines, redact
from ..model import Principal

__all__ = ["KEY_ID", "AccessLog", "note_caller", "note_scope_caller"]

KEY_ID = "hookcast_key_id"  # request state: the caller's API key id
TENANT = "hookcast_tenant"


def note_caller(request: Request, who: Principal) -> None:
    """Remember who called (the key's id and tenant, never the key) for the access line."""
    request.state.hookcast_key_id = who.key_id
    request.state.hookcast_tenant = who.tenant


def note_scope_caller(scope: Scope, who: Principal) -> None:
    """`note_caller` for code that has the ASGI scope, not a Request (api/signals.py)."""
    state = scope.setdefault("state", {})
    state[KEY_ID], state[TENANT] = who.key_id, who.tenant


class AccessLog:
    def __init__(self, app: ASGIApp, *, log: bool = True, trace: bool = False) -> None:
        """`log`: write the lines (also only while hookcast.access takes INFO); `trace`:
        take the trace context of a `traceparent` header."""
        self.app = app
        self.log = log
        self.trace = trace
        self._rows: list[dict[str, Any]] = []  # lines not yet written (see _write)
        self._writing: asyncio.AbstractEventLoop | None = None  # where _write is due

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not (self.log and ACCESS.isEnabledFor(logging.INFO)):
            await self._handle(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        # Shared with the inner scopes (the routing copies the scope, not this dict): where
        # auth.py leaves the caller's key id.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, watched)
        finally:
            client = scope.get("client")
            self._rows.append(
                {
                    "method": scope["method"],
                    "path": redact(scope["path"]),
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    "key": state.get(KEY_ID),
                    "tenant": state.get(TENANT),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                }
            )
            loop = asyncio.get_running_loop()
            if self._writing is not loop:  # else due already (a new loop: a test client's)
                self._writing = loop
                loop.call_soon(self._write)

    def _write(self) -> None:
        """The lines of the requests answered since the last call, as one record: at a few
        thousand requests a second a record each cost more than the request's own work
        (19 µs against 4.5 µs a line in records of 32)."""
        self._writing = None
        rows, self._rows = self._rows, []
        if rows:
            ACCESS.info(Lines("request", rows))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.trace:
            await self.app(scope, receive, send)
            return
        context = _remote_context(scope)
        if context is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context as otel_context

        token = otel_context.attach(context)
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


def _remote_context(scope: Scope) -> Any:
    """The context of the request's `traceparent`, when no span is current; else None."""
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if get_current_span().get_span_context().is_valid:
        return None
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }
    if "traceparent" not in carrier:
        return None
    return TraceContextTextMapPropagator().extract(carrier)
