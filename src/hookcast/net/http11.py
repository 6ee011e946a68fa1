"""The delivery transport: one HTTP/1.1 request per attempt over pooled keep-alive
connections, on asyncio's Protocol with httptools' response parser (the C parser uvicorn
uses). `Http11Transport` is the `Transport` (transport.py) that production posts through.

Why not aiohttp here: a delivery is one small POST and a short answer, and aiohttp's
general-purpose client spends about three times the CPU per request on it (bench/README.md,
"The delivery transport"); on a machine the receivers share, that CPU is the throughput.
The target guard runs on every address connected to, as in guard.py.

Connections: names resolve through a `CachingResolver` (resolver.py: DNS answers kept for
their TTL); at most `handshakes_per_host` TCP/TLS set-ups run at once per target, so a burst
to a slow host opens its connections a few at a time; and a new TLS connection offers the
session of the last one to the same target, so a receiver that issues session tickets
skips the full handshake (and its certificate chain and key exchange).

Session resumption and asyncio: `loop.create_connection` takes no `session`, and its TLS
layer calls `SSLContext.wrap_bio()` without one. The documented way in is
`SSLContext.sslobject_class`: our SSLObject subclass sets `session` right before its first
handshake step (allowed until the handshake starts), taking it from a context variable that
`_connect` sets around `create_connection`: the TLS layer runs that first step in a callback
scheduled from inside the call, which carries the caller's context (asyncio and uvloop
alike). Without the variable (other users of the same SSLContext) nothing changes.

`post` raises `TransportError` (a short sentence fit for LastError; `refused` set when the
guard refused the target) when no complete answer arrived; the caller bounds it with the
attempt timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import ipaddress
import socket
import ssl
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httptools
import yarl

from .. import guard as target_guard
from .resolver import CachingResolver, ResolveError
from .transport import Answer, TransportError

__all__ = ["Http11Transport"]

IDLE_SECONDS = 15.0  # a pooled connection idle longer is closed, not reused (as aiohttp does)
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of an answer; more is refused
CONNECT_SECONDS = 2.0  # per address, when more than one is left to try (no happy eyeballs)
MAX_TLS_SESSIONS = 4096  # targets whose last TLS session is kept for resumption

Key = tuple[str, str, int]  # (scheme, host, port): one pool, one handshake limit, one session

# The TLS session a connection being set up offers (see the module's docstring).
_OFFER: contextvars.ContextVar[ssl.SSLSession | None] = contextvars.ContextVar(
    "hookcast_tls_offer", default=None
)


class _ResumingSSLObject(ssl.SSLObject):
    """An SSLObject that offers `_OFFER`'s session on its first handshake step, and decodes
    the peer's certificate into a dict only when someone reads it."""

    _offered = False

    def getpeercert(self, binary_form: bool = False) -> Any:
        # The TLS layer (asyncio's and uvloop's) calls this after every handshake to fill
        # get_extra_info("peercert"), which nothing here reads; OpenSSL has verified the
        # chain and the name by then. Decoding costs more than the rest of a resumed
        # handshake on a certificate with many names, so the dict is made on first use.
        if binary_form:
            return super().getpeercert(True)
        return _PeerCert(functools.partial(super().getpeercert, False))

    def do_handshake(self) -> None:
        if not self._offered:
            self._offered = True
            session = _OFFER.get()
            if session is not None and not self.server_side:
                try:
                    self.session = session
                except (ValueError, ssl.SSLError):
                    pass  # e.g. from another SSLContext: a full handshake then
        super().do_handshake()


class _PeerCert(Mapping[str, Any]):
    """`getpeercert()`'s dict, decoded on first use."""

    def __init__(self, decode: Callable[[], dict[str, Any] | None]) -> None:
        self._decode = decode
        self._cert: dict[str, Any] | None = None

    @property
    def _data(self) -> dict[str, Any]:
        if self._cert is None:
            self._cert = self._decode() or {}
        return self._cert

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str  # without brackets
    port: int
    authority: str  # the Host header
    path: str  # path and query, as sent
    literal: bool  # host is an IP address


@functools.lru_cache(maxsize=4096)
def _parse(url: str) -> _Target:
    """Host (IDNA-encoded), port and the path and query as sent (percent-encoded), as
    aiohttp's yarl writes them."""
    try:
        parsed = yarl.URL(url)
        host = parsed.raw_host
        port = parsed.port
        path = parsed.raw_path_qs or "/"
    except (ValueError, UnicodeError) as exc:
        raise TransportError(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not host or port is None:
        raise TransportError(f"invalid URL: {url}")
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    shown = f"[{host}]" if ":" in host else host
    authority = shown if parsed.is_default_port() else f"{shown}:{port}"
    return _Target(parsed.scheme, host, port, authority, path, literal)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.lost = asyncio.get_running_loop().create_future()  # done once the socket is closed
        self.ssl_object: ssl.SSLObject | None = None  # kept: the transport's goes with close()
        self.session_kept = False  # its TLS session was stored for the next connection
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head_bytes = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._received = False
        self.reusable = False

    async def request(self, head: bytes, body: bytes) -> Answer:
        assert self.transport is not None
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    @property
    def received_nothing(self) -> bool:
        return not self._received

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ----- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ssl_object = transport.get_extra_info("ssl_object")

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: a confused peer
            return
        try:
            self._parser.feed_data(data)
            if not self._headers_done:
                # httptools buffers a header line however long it is: a hostile receiver
                # must not make us hold megabytes per delivery.
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._fail(
                        TransportError(
                            f"the answer's headers are longer than {MAX_HEAD_BYTES // 1024} KiB"
                        )
                    )
                    self.close()
        except httptools.HttpParserUpgrade:  # not a subclass of HttpParserError
            self._fail(
                TransportError(
                    "invalid HTTP answer: 101 Switching Protocols, which was not asked for"
                )
            )
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and self._parser.get_status_code() and not self._framed():
                self._complete(keep=False)  # a body delimited by the end of the connection
            elif self._received:
                self._fail(
                    TransportError("the target closed the connection in the middle of its answer")
                )
            else:
                self._fail(TransportError("the target closed the connection without answering"))

    # ----- httptools callbacks -------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, chunk: bytes) -> None:
        if self._size > self._max_body:
            return  # cut already
        room = self._max_body - self._size
        if len(chunk) > room:
            self._body.append(chunk[:room])
            self._size = self._max_body + 1
            self._complete(keep=False, truncated=True)
            self.close()
            return
        self._body.append(chunk)
        self._size += len(chunk)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._reset()
            self._received = True
            return
        self._complete(keep=self._parser.should_keep_alive())

    # ----- internals -----------------------------------------------------------------------

    def _framed(self) -> bool:
        return any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self._headers)

    def _complete(self, *, keep: bool, truncated: bool = False) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.reusable = keep and not truncated
        self._waiter.set_result(
            Answer(
                status=self._parser.get_status_code(),
                reason=self._reason.decode("latin-1"),
                version=self._parser.get_http_version(),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._headers],
                body=b"".join(self._body),
                truncated=truncated,
            )
        )

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)


class Http11Transport:
    """Keep-alive pools per (scheme, host, port), at most `per_host` connections each, of
    which at most `handshakes_per_host` are being set up at once. Names resolve through
    `resolver` (one with the system's nameservers unless given; a given one is shared and
    not closed here). Use inside one event loop."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        guard: target_guard.TargetGuard,
        *,
        per_host: int,
        max_body: int,
        handshakes_per_host: int = 8,
        resolver: CachingResolver | None = None,
    ) -> None:
        self._ssl = ssl_context
        if ssl_context.sslobject_class is ssl.SSLObject:
            ssl_context.sslobject_class = _ResumingSSLObject
        # A context with an SSLObject class of its own keeps it, without resumption.
        self._resume = issubclass(ssl_context.sslobject_class, _ResumingSSLObject)
        self._sessions: OrderedDict[Key, ssl.SSLSession] = OrderedDict()
        self._guard = guard
        self._per_host = per_host
        self._max_body = max_body
        self._own_resolver = resolver is None
        self._resolver = resolver if resolver is not None else CachingResolver()
        self._handshakes_per_host = handshakes_per_host
        self._handshakes: dict[Key, asyncio.Semaphore] = {}
        self._idle: dict[Key, deque[_Connection]] = defaultdict(deque)
        self._slots: dict[Key, asyncio.Semaphore] = {}
        self._open: set[_Connection] = set()
        self._closing: set[_Connection] = set()  # dropped, the socket not closed yet (TLS)
        self._swept = 0.0
        self._closed = False

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        if self._closed:
            raise TransportError("the sender is closed")
        target = _parse(url)
        head = _head(target, headers, body)
        key = (target.scheme, target.host, target.port)
        self._sweep()
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self._per_host)
        async with slots:
            conn = self._reuse(key)
            if conn is None:
                return await self._exchange(key, await self._connect(key, target), head, body)
            try:
                return await self._exchange(key, conn, head, body)
            except TransportError:
                # A pooled connection the target closed while idle fails before any byte of
                # an answer; nothing was processed, so one fresh connection is tried.
                if not conn.received_nothing:
                    raise
            return await self._exchange(key, await self._connect(key, target), head, body)

    async def _exchange(self, key: Key, conn: _Connection, head: bytes, body: bytes) -> Answer:
        try:
            answer = await conn.request(head, body)
        except BaseException:
            self._drop(conn)  # failed, cancelled or timed out mid-request: unusable
            raise
        if not conn.session_kept:
            self._keep_session(key, conn)
        if conn.reusable and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle[key].append(conn)
        else:
            self._drop(conn)
        return answer

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)
        if not conn.lost.done():
            # A TLS connection waits for the peer's close_notify before its socket closes;
            # `close()` waits for those too.
            self._closing.add(conn)
            conn.lost.add_done_callback(lambda _: self._closing.discard(conn))

    def _reuse(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed
            if not conn.closed and conn.idle_since > time.monotonic() - IDLE_SECONDS:
                return conn
            self._drop(conn)
        return None

    def _sweep(self) -> None:
        """Close pooled connections idle longer than IDLE_SECONDS (looked at a few times in
        that period, not on every request)."""
        now = time.monotonic()
        if now < self._swept + IDLE_SECONDS / 4:
            return
        self._swept = now
        for key, idle in list(self._idle.items()):
            while idle and (idle[0].closed or idle[0].idle_since <= now - IDLE_SECONDS):
                self._drop(idle.popleft())  # the oldest first
            if not idle:
                del self._idle[key]
        for key, slots in list(self._slots.items()):  # targets not in use: forget them
            if key not in self._idle and not slots.locked() and slots._value == self._per_host:
                # No request holds a slot, so no connection is being set up either.
                del self._slots[key]
                self._handshakes.pop(key, None)

    async def _connect(self, key: Key, target: _Target) -> _Connection:
        addresses = await self._addresses(target)
        handshakes = self._handshakes.get(key)
        if handshakes is None:
            handshakes = self._handshakes[key] = asyncio.Semaphore(self._handshakes_per_host)
        async with handshakes:
            tls = target.scheme == "https"
            token = _OFFER.set(self._session_for(key) if tls else None)
            try:
                return await self._open_connection(key, target, addresses)
            finally:
                _OFFER.reset(token)

    async def _open_connection(
        self, key: Key, target: _Target, addresses: list[tuple[int, str]]
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl if target.scheme == "https" else None
        error: Exception | None = None
        for i, (family, address) in enumerate(addresses):
            last = i == len(addresses) - 1
            try:
                async with asyncio.timeout(None if last else CONNECT_SECONDS):
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self._max_body),
                        host=address,
                        port=target.port,
                        family=family,
                        ssl=tls,
                        server_hostname=target.host if tls else None,
                    )
            except ssl.SSLCertVerificationError as exc:
                self._sessions.pop(key, None)
                raise TransportError(
                    f"TLS certificate verification failed: {exc.verify_message}"
                ) from None
            except ssl.SSLError as exc:
                self._sessions.pop(key, None)  # in case the offered session was the trouble
                reason = (exc.reason or str(exc)).replace("_", " ").lower()
                raise TransportError(f"TLS handshake failed: {reason}") from None
            except OSError as exc:  # TimeoutError included
                if last and isinstance(exc, TimeoutError):
                    raise  # the attempt's own timeout
                error = exc
                continue
            if self._closed:  # closed while connecting
                conn.close()
                raise TransportError("the sender is closed")
            self._open.add(conn)
            return conn
        assert error is not None
        if getattr(error, "errno", None) == errno.ECONNREFUSED or isinstance(
            error, ConnectionRefusedError
        ):
            raise TransportError("connection refused")
        if isinstance(error, TimeoutError):
            reason = f"no answer to connect within {CONNECT_SECONDS:g} s"
        else:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TransportError(f"could not connect to {target.host}:{target.port}: {reason}")

    async def _addresses(self, target: _Target) -> list[tuple[int, str]]:
        """The addresses to try, each one passed by the guard."""
        if target.literal:
            if (reason := self._guard.refusal(target.host)) is not None:
                raise TransportError(f"target refused: {reason}", refused=True)
            family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            return [(family, target.host)]
        try:
            found = await self._resolver.resolve(target.host)
        except ResolveError as exc:
            raise TransportError(f"could not resolve {target.host}: {exc.reason}") from None
        # Cached or fresh, every address is judged now: a name that rebound to a forbidden
        # address after its TTL is refused here.
        try:
            return self._guard.keep_allowed(target.host, found, lambda a: a[1])
        except target_guard.TargetRefusedError as exc:
            raise TransportError(f"target refused: {exc.message}", refused=True) from None

    def _session_for(self, key: Key) -> ssl.SSLSession | None:
        session = self._sessions.get(key)
        if session is not None and session.time + session.timeout <= time.time():
            del self._sessions[key]  # expired: the receiver would refuse it
            return None
        return session

    def _keep_session(self, key: Key, conn: _Connection) -> None:
        """Keep the TLS session of a connection that has answered (under TLS 1.3 the session
        ticket arrives after the handshake, with the first data), for the next connection."""
        conn.session_kept = True
        if not self._resume or conn.ssl_object is None:
            return
        if conn.ssl_object.session_reused and key in self._sessions:
            # The session it resumed stays on offer: Python copies a session (certificate
            # included) each time it is read, which costs as much as the resumption saves.
            # A receiver that takes a ticket only once answers the next offer with a full
            # handshake, whose session is kept then.
            return
        session = conn.ssl_object.session
        if session is None:
            return
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        if len(self._sessions) > MAX_TLS_SESSIONS:
            self._sessions.popitem(last=False)

    async def close(self) -> None:
        """Close every connection and wait (briefly) until their sockets are closed."""
        self._closed = True
        conns = [*self._open, *self._closing]
        for conn in conns:
            conn.close()
        self._open.clear()
        self._closing.clear()
        self._idle.clear()
        self._sessions.clear()
        if self._own_resolver:
            await self._resolver.close()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=1.0)


def _head(target: _Target, headers: dict[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1\r\nHost: {target.authority}\r\nContent-Length: {len(body)}\r\n"
    ]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise TransportError(f"invalid header {name!r}: line breaks are not allowed")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise TransportError("a header holds characters outside ISO-8859-1") from None
