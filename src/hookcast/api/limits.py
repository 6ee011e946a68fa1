"""Request checks before any route runs: bodies over the limit get 413 (§7), and text with
NUL characters gets 400 (no database stores them in text, and no name needs them). A body
of JSON `null` goes on as no body (§2)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

_NUL = (b"\x00", b"\\u0000")


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
                await _refuse(scope, receive, send, _TooLarge(self.max_bytes))
                return
        raw_path = scope.get("raw_path") or b""
        nul_in_path = "\0" in scope.get("path", "") or b"%00" in raw_path
        if b"%00" in scope.get("query_string", b"") or nul_in_path:
            await _refuse(scope, receive, send, _Nul())
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
                await _refuse(scope, receive, send, _TooLarge(self.max_bytes))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body.strip() == b"null":
            body = b""  # §2: a JSON null body, an empty body and no body are the same
        if any(mark in body for mark in _NUL):
            await _refuse(scope, receive, send, _Nul())
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Refusal:
    status = 400
    error_type = "ValidationError"
    message = ""


class _TooLarge(_Refusal):
    status = 413
    error_type = "PayloadTooLarge"

    def __init__(self, limit: int) -> None:
        self.message = f"The request body is over the limit of {limit} bytes."


class _Nul(_Refusal):
    message = (
        "Text in the request contains a NUL character (\\u0000), which hookcast does not store."
    )


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: _Refusal) -> None:
    await error_response(refusal.status, refusal.message, refusal.error_type)(scope, receive, send)
