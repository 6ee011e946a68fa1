"""The transport seam: what the sender needs from an HTTP stack to make one delivery attempt.

A `Transport` POSTs one body to one URL and returns the `Answer`, or raises `TransportError`
when no complete answer arrived. It neither retries nor times out on its own: the sender
bounds every call with the attempt timeout (cancellation must leave the transport usable)
and turns answers and errors into an `AttemptOutcome`.

Two implementations: `Http11Transport` (http11.py), the pooled keep-alive client that
production uses, and `MockTransport` (mock.py), which hands each request to a function, for
unit tests of the sender and the dispatcher without sockets.

    TransportError         no complete answer: DNS, connect, TLS, a broken or cut answer,
                           an invalid URL or header, a closed transport
      .refused == True     the target guard refused every address of the target
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Answer", "Request", "Transport", "TransportError"]


class TransportError(Exception):
    """No complete answer arrived. `message` is a short sentence fit for LastError;
    `refused` says the target guard refused the target (no connection was attempted)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Request:
    """One POST as a transport receives it (what a `MockTransport` handler sees)."""

    url: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), None)


@dataclass(frozen=True, slots=True)
class Answer:
    """The receiver's answer, as the transport read it."""

    status: int
    reason: str = ""
    version: str = "1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)  # in wire order
    body: bytes = b""  # at most the transport's body limit
    truncated: bool = False  # the body was longer than that limit (and was cut there)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Transport(Protocol):
    """The seam the sender posts through. Used inside one event loop."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST `body` to `url` with these headers (Host and Content-Length are the
        transport's); raises TransportError when no complete answer arrived."""
        ...

    async def close(self) -> None:
        """Release connections; a closed transport raises TransportError on `post`."""
        ...
