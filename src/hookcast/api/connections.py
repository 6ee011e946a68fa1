"""The HTTP connections of `hookcast serve`: deadlines for slow clients and a cap on open
connections, on uvicorn's httptools protocol.

uvicorn times out only idle keep-alive connections: a client that opens a connection and
sends nothing, or its headers a byte at a time (slowloris), or a body that never ends,
holds its socket (a file descriptor) for as long as it likes, and a few thousand of them
make every other request fail. Here each request must bring its headers within
`header_timeout` of its first byte (a new connection: of its opening) and its body within
`body_timeout` after them, its request line and headers within `max_header_bytes`;
otherwise the connection is closed (with a 408 or 431 when no response has begun).
Beyond `max_connections` open at once a new connection is answered 503 and closed at once,
and the log says so once each time the cap is reached.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("hookcast.api")


def _response(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


_TIMEOUT = _response(b"408 Request Timeout")
_TOO_LARGE = _response(b"431 Request Header Fields Too Large")
_FULL = _response(b"503 Service Unavailable")


class ConnectionLimits:
    """The limits, and the cap's state shared by every connection of the server."""

    def __init__(
        self,
        *,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
        max_connections: int,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.refused = 0  # connections refused since the cap was last reached
        self.at_cap = False
        self.cut = 0  # connections closed at a deadline or over the header size, in all

    def admit(self, open_now: int) -> bool:
        """A new connection arrives while `open_now` are open (not counting it)."""
        if open_now < self.max_connections:
            if self.at_cap and open_now < self.max_connections * 0.9:
                log.warning(
                    "open connections below the cap again (%d of %d); %d were refused",
                    open_now,
                    self.max_connections,
                    self.refused,
                )
                self.at_cap, self.refused = False, 0
            return True
        if not self.at_cap:
            log.warning(
                "open connections reached the cap of %d (HOOKCAST_MAX_CONNECTIONS): new "
                "connections are answered 503 and closed until some close",
                self.max_connections,
            )
            self.at_cap = True
        self.refused += 1
        return False


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol under `limits`, for `uvicorn.Config(http=...)`."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if not limits.admit(len(self.connections)):
                transport.write(_FULL)
                transport.close()
                return
            super().connection_made(transport)
            self._arm(limits.header_timeout)  # a connection that says nothing is cut too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if getattr(self, "transport", None) is not None:  # else refused: never made
                super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm(limits.header_timeout)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(limits.body_timeout)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > limits.max_header_bytes and not self.transport.is_closing():
                limits.cut += 1
                self._close(_TOO_LARGE)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            limits.cut += 1
            log.debug("closing a connection from %s: request not received in time", self.client)
            self._close(_TIMEOUT)

        def _close(self, response: bytes) -> None:
            # A response of the app's own may have begun (a handler that reads the body
            # late): then only closing is left; the app sees http.disconnect.
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(response)
            self.transport.close()

    return GuardedHttpToolsProtocol


def limits_for(settings: Any, open_files: int | None) -> ConnectionLimits:
    """The limits of `settings`, the cap lowered to leave file descriptors for deliveries
    (their connections, the database's, the log) when the open files limit is lower."""
    cap = settings.max_connections
    if open_files is not None:
        # Deliveries in flight get up to half of them, the database and the log a few more.
        spare = open_files - min(settings.concurrency, open_files // 2) - 64
        if spare < cap:
            cap = max(16, spare)
            log.warning(
                "HOOKCAST_MAX_CONNECTIONS lowered from %d to %d: the open files limit is %d",
                settings.max_connections,
                cap,
                open_files,
            )
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_connections=cap,
    )
