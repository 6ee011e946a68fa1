"""The host-provided HTTP transport used by the script `HTTP` class. The interpreter never
opens sockets itself: the host enforces the target guard, TLS, timeouts and sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class HttpTransportError(Exception):
    """A transport failure or refusal (DNS, connect, TLS, timeout, guard)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HttpTransport(Protocol):
    def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> HttpResponse: ...
