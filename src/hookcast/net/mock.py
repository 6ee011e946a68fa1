"""`MockTransport(handler)`: a `Transport` that hands every request to a function, for unit
tests of the sender and the dispatcher without sockets (after httpx's `MockTransport`).

    def handler(request: Request) -> Answer:
        if request.header("X-SuperOffice-Retry") == "0":
            return Answer(500, "Internal Server Error")
        return Answer(200, "OK")

    hub = Hub(settings, transport=MockTransport(handler))

The handler may be a coroutine function. Raising `TransportError` from it simulates a
network failure (`TransportError(..., refused=True)`: the target guard refused); an
exception of any other type reaches the sender like a bug in a transport would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .transport import Answer, Request, TransportError

__all__ = ["Handler", "MockTransport"]

Handler = Callable[[Request], Answer | Awaitable[Answer]]


class MockTransport:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        if self.closed:
            raise TransportError("the sender is closed")
        answer = self.handler(Request(url, dict(headers), body))
        if isinstance(answer, Answer):
            return answer
        return await answer  # an async handler

    async def close(self) -> None:
        self.closed = True
