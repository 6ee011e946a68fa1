"""A real HTTPS webhook receiver for tests.

It runs aiohttp.web on its own event loop in its own thread, so the same receiver serves
async tests, synchronous tests and FastAPI TestClient tests (which run their own loop).
It listens on 127.0.0.1 with a trustme certificate, records every request and answers as
its `Behaviour` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import trustme
from aiohttp import web


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # path and query as sent
    headers: list[tuple[str, str]]  # in wire order, names as sent
    body: bytes
    at: float = 0.0  # time.monotonic() on arrival

    def header(self, name: str) -> str | None:
        """The first value of a header, name case-insensitive."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering; cut short when the receiver stops
    location: str | None = None  # sent as Location (for redirects)
    headers: dict[str, str] = field(default_factory=dict)
    statuses: tuple[int, ...] = ()  # answers for the next requests, in order; then `status`


class Receiver:
    """Start with `start()` or `with Receiver(cert) as r:`; post to `r.url`."""

    def __init__(
        self, cert: trustme.LeafCert, *, host: str = "127.0.0.1", path: str = "/hook"
    ) -> None:
        self._cert = cert
        self.host = host
        self.path = path
        self.port = 0
        self.behaviour = Behaviour()
        self._requests: list[RecordedRequest] = []
        self._answered = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._transports: set[asyncio.Transport] = set()
        self._unanswered = 0  # requests arrived and not yet answered
        self.peak_open = 0  # the most at once since start or reset_peak()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._stopping is not None and self._runner is not None
        self._stopping.set()  # release handlers still in their delay
        await self._runner.cleanup()
        # Keep-alive connections a client still holds: close their sockets now, not at
        # garbage collection after this loop is gone (ResourceWarning).
        for transport in self._transports:
            transport.abort()
        self._transports.clear()
        await asyncio.sleep(0)  # let the aborts' connection_lost callbacks run

    # -- behaviour and records --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{self.path}"

    def url_for(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_open = self._unanswered

    def respond(self, **changes: Any) -> None:
        """Change how later requests are answered, e.g. `respond(status=500, body=b"boom")`."""
        self.behaviour = replace(self.behaviour, **changes)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def answered(self) -> int:
        """How many requests got their answer so far: fewer than `requests` while some are
        still held in their `delay`."""
        with self._lock:
            return self._answered

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived (for synchronous tests)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.01)
        return self.requests

    async def wait_for_async(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Like `wait_for`, without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            await asyncio.sleep(0.01)
        return self.requests

    async def _wait(self, request: web.Request, delay: float) -> None:
        """Hold the answer for `delay`, cut short when the receiver stops or the client
        hangs up (its attempt timed out): `peak_open` counts what clients still wait for."""
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(left, 0.02))
            if self._stopping.is_set() or request.transport is None:
                return
            if request.transport.is_closing():
                return

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self._transports.add(request.transport)
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.raw_path,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(recorded)
            self._unanswered += 1
            self.peak_open = max(self.peak_open, self._unanswered)
            behaviour = self.behaviour
            status = behaviour.status
            if behaviour.statuses:
                status = behaviour.statuses[0]
                self.behaviour = replace(behaviour, statuses=behaviour.statuses[1:])
        if behaviour.delay:
            await self._wait(request, behaviour.delay)
        headers = dict(behaviour.headers)
        if behaviour.location is not None:
            headers["Location"] = behaviour.location
        with self._lock:
            self._answered += 1
            self._unanswered -= 1
        return web.Response(status=status, body=behaviour.body, headers=headers)
