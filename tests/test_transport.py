"""The lean delivery transport (net/http11.py) against real TLS servers on loopback.

Most servers here are raw: an `asyncio.start_server(..., ssl=...)` server running on its own
event loop in its own thread, whose handler writes exactly the bytes a test needs (broken
answers, closes at awkward moments, slow answers) and records what arrived. Running it on
another thread keeps it independent of the test's loop, so a test can even hold its own loop
still while the server acts (the idle-close race below).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from hookcast.guard import TargetGuard, make_ssl_context
from hookcast.net import http11 as transport_module
from hookcast.net.http11 import Http11Transport
from hookcast.net.resolver import CachingResolver
from hookcast.net.sender import HttpSender
from hookcast.net.transport import Answer, TransportError
from hookcast.outcome import ErrorKind
from hookcast.settings import Settings

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
WAIT = 5.0  # the bound on every single wait in this file


# -- a raw TLS server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    connection: int  # index of the connection it arrived on, from 0
    line: str  # "POST /path HTTP/1.1"
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class RawConnection:
    """One accepted connection, as a handler sees it."""

    def __init__(
        self,
        server: RawServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.index = index
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> RawRequest | None:
        """The next request, recorded; None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode("latin-1").split("\r\n")[:-2]
            headers = [(k, v.strip()) for k, _, v in (f.partition(":") for f in fields)]
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            body = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            self.server.record_eof(self.index)
            return None
        request = RawRequest(self.index, line, headers, body)
        self.server.record_request(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_eof(self) -> None:
        """Read (and drop) until the client closes the connection; recorded as EOF."""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while await self.reader.read(65536):
                pass
        self.server.record_eof(self.index)

    async def close(self) -> None:
        """Close as a server does: TLS close_notify, then the socket."""
        self.writer.close()
        self.server.record_server_close(self.index)
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)


Handler = Callable[[RawConnection], Awaitable[None]]


class RawServer:
    """A TLS server on its own loop and thread; `handler(conn)` runs once per connection.

    `handshake_delay`: each accepted connection waits that long before its TLS handshake
    starts (a slow host); `handshaking`/`max_handshaking` count the connections waiting.
    `tls`: adjusts the server's SSLContext (versions, session tickets)."""

    def __init__(
        self,
        cert: trustme.LeafCert,
        handler: Handler,
        host: str = "127.0.0.1",
        *,
        handshake_delay: float = 0.0,
        tls: Callable[[ssl.SSLContext], None] | None = None,
    ) -> None:
        self._cert = cert
        self._handler = handler
        self.host = host
        self.port = 0
        self._handshake_delay = handshake_delay
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self.connections = 0  # accepted so far
        self.open_now = 0  # handlers running
        self.max_open = 0
        self.handshaking = 0  # accepted, TLS handshake not started yet (handshake_delay)
        self.max_handshaking = 0
        self._resumed: dict[int, bool] = {}  # connection -> its TLS session was resumed
        self._requests: list[RawRequest] = []
        self._eof: set[int] = set()
        self._server_closed: set[int] = set()
        self.server_closed_event = threading.Event()  # set by the first server-side close
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    # lifecycle

    def start(self) -> RawServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=WAIT)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=WAIT)
        self._loop.close()

    def _make_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        if self._tls is not None:
            self._tls(context)
        return context

    def new_ticket_keys(self) -> None:
        """As a restarted receiver: sessions issued so far are not resumed any more (a new
        SSLContext has new ticket keys). Only with `handshake_delay`, whose handshakes read
        the context per connection."""
        assert self._handshake_delay
        self._context = self._make_context()

    async def _start(self) -> None:
        context = self._context = self._make_context()
        if self._handshake_delay:
            # Accepts sockets itself and starts TLS on each after the delay (a stream server
            # would read the ClientHello into its buffer, where the TLS layer never sees it).
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._listener = socket.socket(family, socket.SOCK_STREAM)
            self._listener.bind((self.host, 0))
            self._listener.listen(128)
            self._listener.setblocking(False)
            self.port = self._listener.getsockname()[1]
            self._accepting = asyncio.create_task(self._accept_loop(self._listener))
            return
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(self._delayed_handshake(sock))
            self._tasks.add(task)

    async def _stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            assert self._listener is not None
            self._listener.close()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        with self._lock:
            index = self.connections
            self.connections += 1
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            with self._lock:
                self._resumed[index] = bool(ssl_object and ssl_object.session_reused)
            await self._handler(RawConnection(self, index, reader, writer))
        except (ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # stopped; ending normally keeps asyncio.streams from logging the cancellation
        finally:
            with self._lock:
                self.open_now -= 1

    async def _delayed_handshake(self, sock: socket.socket) -> None:
        with self._lock:
            self.handshaking += 1
            self.max_handshaking = max(self.max_handshaking, self.handshaking)
        try:
            await asyncio.sleep(self._handshake_delay)
        except asyncio.CancelledError:
            sock.close()  # stopped
            return
        finally:
            # Counted down before the handshake starts: the client cannot finish its
            # handshake (and start another) while this connection is still counted.
            with self._lock:
                self.handshaking -= 1
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self._context
            )
        except (ConnectionError, ssl.SSLError):
            sock.close()
            return
        await self._accept(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    # records (read from the test's thread)

    @property
    def resumed(self) -> list[bool]:
        """Per accepted connection, in order: whether its TLS session was resumed."""
        with self._lock:
            return [self._resumed[i] for i in sorted(self._resumed)]

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{shown}:{self.port}/hook"

    def url_for(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    def record_request(self, request: RawRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def record_eof(self, index: int) -> None:
        with self._lock:
            self._eof.add(index)

    def record_server_close(self, index: int) -> None:
        with self._lock:
            self._server_closed.add(index)
        self.server_closed_event.set()

    @property
    def requests(self) -> list[RawRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def eof(self) -> set[int]:
        with self._lock:
            return set(self._eof)


def response(body: bytes = b"ok", status: str = "200 OK", *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def serve(
    conn: RawConnection,
    answer: Callable[[RawRequest], bytes] = lambda request: response(request.body),
) -> None:
    """Keep-alive: answer every request until the client closes the connection."""
    while (request := await conn.read_request()) is not None:
        await conn.send(answer(request))


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def raw_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1", "::1", "localhost")


@pytest.fixture
def raw_server(raw_cert: trustme.LeafCert) -> Iterator[Callable[..., RawServer]]:
    """`raw_server(handler, host="127.0.0.1", **options)`: started now, stopped after the
    test (options: RawServer's keywords)."""
    started: list[RawServer] = []

    def make(handler: Handler = serve, host: str = "127.0.0.1", **options: Any) -> RawServer:
        server = RawServer(raw_cert, handler, host, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
async def make_transport(ca_bundle_path: str) -> AsyncIterator[Callable[..., Http11Transport]]:
    """`make_transport(allow=LOOPBACK, per_host=4, max_body=65536, handshakes_per_host=8,
    resolver=None)`; closed after the test."""
    made: list[Http11Transport] = []

    def make(
        allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK,
        *,
        per_host: int = 4,
        max_body: int = 65536,
        handshakes_per_host: int = 8,
        resolver: CachingResolver | None = None,
    ) -> Http11Transport:
        transport = Http11Transport(
            make_ssl_context(ca_bundle_path),
            TargetGuard(list(allow)),
            per_host=per_host,
            max_body=max_body,
            handshakes_per_host=handshakes_per_host,
            resolver=resolver,
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await close_fully(transport)


async def close_fully(transport: Http11Transport) -> None:
    """`close()`, then wait (bounded) until the TLS shutdowns finished and the sockets are
    closed, so none is left to the garbage collector after the test's loop is gone."""
    sockets = [
        sock
        for conn in transport._open
        if conn.transport is not None
        and (sock := conn.transport.get_extra_info("socket")) is not None
    ]
    await transport.close()
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: all(sock.fileno() == -1 for sock in sockets),
            "the client's sockets to close",
            timeout=2.0,
        )


async def post(
    transport: Http11Transport,
    url: str,
    body: bytes = b"{}",
    headers: dict[str, str] | None = None,
    timeout: float = WAIT,
) -> Answer:
    # asyncio.timeout, not wait_for: no extra task, so the request is written in the same loop
    # step as the call (the idle-close race below depends on that).
    async with asyncio.timeout(timeout):
        return await transport.post(url, headers or {"Content-Type": "application/json"}, body)


async def refused(transport: Http11Transport, url: str, **kwargs: object) -> str:
    with pytest.raises(TransportError) as failed:
        await post(transport, url, **kwargs)  # type: ignore[arg-type]
    # The flag the sender maps to ErrorKind.REFUSED: set exactly for the guard's refusals.
    assert failed.value.refused == failed.value.message.startswith("target refused: ")
    return failed.value.message


def pooled(transport: Http11Transport) -> list[transport_module._Connection]:
    return [conn for idle in transport._idle.values() for conn in idle]


# -- keep-alive ----------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(raw_server, make_transport) -> None:
    server = raw_server()
    transport = make_transport()
    for i in range(20):
        answer = await post(transport, server.url + f"?n={i}", f'{{"n":{i}}}'.encode())
        assert (answer.status, answer.reason, answer.version) == (200, "OK", "1.1")
        assert answer.body == f'{{"n":{i}}}'.encode()  # the server echoes the body
        assert answer.truncated is False
        assert answer.header("content-length") == str(len(answer.body))
    assert server.connections == 1
    requests = server.requests
    assert [r.line for r in requests] == [f"POST /hook?n={i} HTTP/1.1" for i in range(20)]
    assert all(r.header("Host") == f"127.0.0.1:{server.port}" for r in requests)
    assert all(r.header("Content-Length") == str(len(r.body)) for r in requests)
    assert all(r.header("Content-Type") == "application/json" for r in requests)


async def test_idle_connection_closed_by_the_server_is_replaced(raw_server, make_transport) -> None:
    # The server answers with keep-alive and closes right after; the client has seen the
    # close by the time of the next request.
    async def answer_then_close(conn: RawConnection) -> None:
        request = await conn.read_request()
        if request is not None:
            await conn.send(response(request.body))
            await conn.close()

    server = raw_server(answer_then_close)
    transport = make_transport()
    assert (await post(transport, server.url, b"one")).body == b"one"
    await eventually(
        lambda: not any(not c.closed for c in pooled(transport)),
        "the client to see the server's close",
    )
    assert (await post(transport, server.url, b"two")).body == b"two"
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]
    assert server.connections == 2


async def test_request_on_a_pooled_connection_the_server_just_closed_is_retried_once(
    raw_server, make_transport
) -> None:
    # The race: the server closes the idle connection, but the client has not read the close
    # yet (its loop is held still below) and writes the next request into the dead connection.
    # No byte of an answer comes back, so the transport retries once on a fresh connection.
    async def answer_then_close(conn: RawConnection) -> None:
        request = await conn.read_request()
        if request is None:
            return
        await conn.send(response(request.body))
        if conn.index == 0:
            await conn.close()
        else:
            await serve(conn)

    server = raw_server(answer_then_close)
    transport = make_transport()
    assert (await post(transport, server.url, b"one")).body == b"one"
    # Hold this loop still (bounded) until the server has closed connection 0.
    assert server.server_closed_event.wait(WAIT)
    time.sleep(0.05)  # noqa: ASYNC251 -- deliberately blocking: the close must arrive unread
    [conn] = pooled(transport)
    assert not conn.closed, "precondition: the client must not have noticed the close yet"

    answer = await post(transport, server.url, b"two")
    assert (answer.status, answer.body) == (200, b"two")
    assert server.connections == 2
    # "two" was processed exactly once, on the fresh connection.
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]
    # ... and the fresh connection is pooled and reused.
    assert (await post(transport, server.url, b"three")).body == b"three"
    assert server.connections == 2


async def test_pooled_connection_retry_happens_once_only(raw_server, make_transport) -> None:
    # Connection 0 answers once; afterwards every connection takes the request and closes
    # without answering: the transport retries once (connection 1) and then gives up.
    async def handler(conn: RawConnection) -> None:
        request = await conn.read_request()
        if request is None:
            return
        if conn.index == 0:
            await conn.send(response(request.body))
            if await conn.read_request() is None:
                return
        await conn.close()

    server = raw_server(handler)
    transport = make_transport()
    assert (await post(transport, server.url, b"one")).body == b"one"
    message = await refused(transport, server.url, body=b"two")
    assert message == "the target closed the connection without answering"
    assert server.connections == 2
    assert [(r.connection, r.body) for r in server.requests] == [
        (0, b"one"),
        (0, b"two"),
        (1, b"two"),
    ]


# -- broken answers ------------------------------------------------------------------------------


async def test_close_without_answer_on_a_fresh_connection_is_not_retried(
    raw_server, make_transport
) -> None:
    async def read_then_close(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.close()

    server = raw_server(read_then_close)
    transport = make_transport()
    message = await refused(transport, server.url, body=b"x")
    assert message == "the target closed the connection without answering"
    assert server.connections == 1
    assert [r.body for r in server.requests] == [b"x"]


async def test_close_in_the_middle_of_the_answer(raw_server, make_transport) -> None:
    async def half_answer(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await conn.close()

    server = raw_server(half_answer)
    transport = make_transport()
    message = await refused(transport, server.url)
    assert message == "the target closed the connection in the middle of its answer"
    assert server.connections == 1  # bytes of an answer arrived: never retried
    assert len(server.requests) == 1


async def test_close_right_after_the_tls_handshake(raw_server, make_transport) -> None:
    async def close_at_once(conn: RawConnection) -> None:
        await conn.close()

    server = raw_server(close_at_once)
    transport = make_transport()
    message = await refused(transport, server.url)
    assert message == "the target closed the connection without answering"
    assert server.connections == 1


async def test_garbage_answer_is_an_invalid_http_answer(raw_server, make_transport) -> None:
    # Connection 0 answers properly once, then garbage; later connections answer properly.
    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            if (request := await conn.read_request()) is None:
                return
            await conn.send(response(request.body))
            if await conn.read_request() is None:
                return
            await conn.send(b"NOT HTTP\r\n\r\n")
            await conn.wait_eof()
        else:
            await serve(conn)

    server = raw_server(handler)
    transport = make_transport()
    assert (await post(transport, server.url, b"one")).body == b"one"
    message = await refused(transport, server.url, body=b"two")
    assert message.startswith("invalid HTTP answer"), message
    # Bytes came back, so no retry on another connection; the broken one is closed.
    assert server.connections == 1
    await eventually(lambda: 0 in server.eof, "the client to close the broken connection")
    assert (await post(transport, server.url, b"three")).body == b"three"
    assert server.connections == 2


async def test_answer_in_tiny_pieces_is_parsed(raw_server, make_transport) -> None:
    wire = response(b"piecewise", "201 Created Here", "X-One: 1", "X-Two: two words")

    async def dribble(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            for i in range(0, len(wire), 3):
                await conn.send(wire[i : i + 3])
                await asyncio.sleep(0.001)

    server = raw_server(dribble)
    transport = make_transport()
    for _ in range(2):
        answer = await post(transport, server.url)
        assert (answer.status, answer.reason, answer.body) == (201, "Created Here", b"piecewise")
        assert answer.headers == [("Content-Length", "9"), ("X-One", "1"), ("X-Two", "two words")]
    assert server.connections == 1


# -- body framing --------------------------------------------------------------------------------


async def test_chunked_answer_is_decoded_and_the_connection_reused(
    raw_server, make_transport
) -> None:
    async def chunked(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await conn.send(b"5\r\nhello\r\n")
            await conn.send(b"1\r\n \r\n6\r\nworld!\r\n")
            await conn.send(b"0\r\n\r\n")

    server = raw_server(chunked)
    transport = make_transport()
    for _ in range(3):
        answer = await post(transport, server.url)
        assert (answer.status, answer.body, answer.truncated) == (200, b"hello world!", False)
    assert server.connections == 1


async def test_answer_delimited_by_connection_close(raw_server, make_transport) -> None:
    body = b"".join(b"line %d\n" % i for i in range(2000))  # ~16 KB, several writes

    async def until_close(conn: RawConnection) -> None:
        if await conn.read_request() is None:
            return
        await conn.send(b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(0, len(body), 4000):
            await conn.send(body[i : i + 4000])
        await conn.close()

    server = raw_server(until_close)
    transport = make_transport()
    for expected_connections in (1, 2):
        answer = await post(transport, server.url)
        assert (answer.status, answer.version, answer.truncated) == (200, "1.0", False)
        assert answer.body == body
        assert server.connections == expected_connections  # never pooled


@pytest.mark.parametrize(
    "status_line, connection",
    [
        ("HTTP/1.1 200 OK", "Connection: close\r\n"),
        ("HTTP/1.0 200 OK", ""),  # HTTP/1.0 without keep-alive
    ],
)
async def test_answer_that_ends_the_connection_is_not_reused(
    raw_server, make_transport, status_line: str, connection: str
) -> None:
    # The server says it is done with the connection (but leaves the socket open): a second
    # request written there would never be answered.
    async def once(conn: RawConnection) -> None:
        if (request := await conn.read_request()) is None:
            return
        await conn.send(
            f"{status_line}\r\n{connection}Content-Length: {len(request.body)}\r\n\r\n".encode()
            + request.body
        )
        await conn.wait_eof()

    server = raw_server(once)
    transport = make_transport()
    assert (await post(transport, server.url, b"one")).body == b"one"
    await eventually(lambda: 0 in server.eof, "the client to close connection 0")
    assert (await post(transport, server.url, b"two")).body == b"two"
    assert server.connections == 2
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]


async def test_body_longer_than_max_body_is_truncated_and_not_reused(
    raw_server, make_transport
) -> None:
    big = bytes(range(256)) * 20  # 5120 bytes

    async def handler(conn: RawConnection) -> None:
        await serve(conn, lambda request: response(big if request.body == b"big" else b"x" * 1000))

    server = raw_server(handler)
    transport = make_transport(max_body=1000)

    exact = await post(transport, server.url, b"exact")  # exactly max_body: complete, reused
    assert (len(exact.body), exact.truncated) == (1000, False)
    answer = await post(transport, server.url, b"big")
    assert answer.status == 200 and answer.truncated is True
    assert answer.body == big[:1000]
    assert server.connections == 1
    await eventually(lambda: 0 in server.eof, "the client to close the truncated connection")

    after = await post(transport, server.url, b"exact")
    assert (len(after.body), after.truncated) == (1000, False)
    assert server.connections == 2


# -- per-host limit ------------------------------------------------------------------------------


async def test_per_host_limit_caps_simultaneous_connections(raw_server, make_transport) -> None:
    lock = threading.Lock()
    busy = [0, 0]  # answers being prepared now, the most at once

    async def slow(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            with lock:
                busy[0] += 1
                busy[1] = max(busy[1], busy[0])
            await asyncio.sleep(0.05)
            with lock:
                busy[0] -= 1
            await conn.send(response(request.body))

    server = raw_server(slow)
    transport = make_transport(per_host=3)
    answers = await asyncio.wait_for(
        asyncio.gather(*(transport.post(server.url, {}, b"%d" % i) for i in range(10))), WAIT
    )
    assert [a.body for a in answers] == [b"%d" % i for i in range(10)]
    assert sorted(r.body for r in server.requests) == sorted(b"%d" % i for i in range(10))
    assert server.max_open <= 3 and server.connections <= 3
    assert busy[1] == 3  # the limit, and really concurrent up to it


# -- what is refused before anything is sent -----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nX-Injected: 1"},
        {"X-Evil": "a\nb"},
        {"X-Evil\r\nX-Injected": "1"},
    ],
)
async def test_header_injection_is_refused_before_connecting(
    raw_server, make_transport, headers: dict[str, str]
) -> None:
    server = raw_server()
    transport = make_transport()
    message = await refused(transport, server.url, headers=headers)
    assert "line breaks are not allowed" in message
    # The next (valid) request is the first thing the server ever saw.
    assert (await post(transport, server.url, b"fine")).body == b"fine"
    assert server.connections == 1
    assert [r.body for r in server.requests] == [b"fine"]
    assert all(r.header("X-Injected") is None for r in server.requests)


async def test_guard_refuses_an_ip_literal_before_connecting(raw_server, make_transport) -> None:
    server = raw_server()
    message = await refused(make_transport(allow=()), server.url)
    assert message.startswith("target refused: 127.0.0.1 is a loopback address"), message
    message = await refused(make_transport(allow=(ipaddress.ip_network("::1/128"),)), server.url)
    assert message.startswith("target refused: 127.0.0.1 is a loopback address"), message
    assert (await post(make_transport(), server.url, b"allowed")).body == b"allowed"
    assert server.connections == 1
    assert [r.body for r in server.requests] == [b"allowed"]


async def test_guard_refuses_a_name_resolving_to_loopback(raw_server, make_transport) -> None:
    server = raw_server()
    url = server.url_for("/hook", host="localhost")
    message = await refused(make_transport(allow=()), url)
    assert message.startswith("target refused: localhost resolves only to refused addresses"), (
        message
    )
    assert "loopback" in message
    answer = await post(make_transport(), url, b"by name")  # allowed: the same name works
    assert answer.body == b"by name"
    assert server.connections == 1
    assert [r.header("Host") for r in server.requests] == [f"localhost:{server.port}"]


# -- IPv6 ----------------------------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_ipv6_literal_is_bracketed_in_the_host_header_and_guarded(make_transport) -> None:
    # No socket needed: the request head as written, and the guard's refusal before connecting.
    head = transport_module._head(transport_module._parse("https://[::1]:8443/v6?q=1"), {}, b"six")
    assert head.startswith(b"POST /v6?q=1 HTTP/1.1\r\nHost: [::1]:8443\r\n")
    message = await refused(
        make_transport(allow=(ipaddress.ip_network("127.0.0.0/8"),)), "https://[::1]:8443/v6"
    )
    assert message.startswith("target refused: ::1 is a loopback address"), message


@pytest.mark.skipif(
    not _has_ipv6_loopback(),
    reason=(
        "this machine has no IPv6 loopback (::1) to connect to; the Host header and the guard "
        "for IPv6 literals are checked without one in the test above"
    ),
)
async def test_ipv6_literal_reaches_the_server(raw_server, make_transport) -> None:
    server = raw_server(host="::1")
    url = f"https://[::1]:{server.port}/v6?q=1"
    answer = await post(make_transport(), url, b"six")
    assert (answer.status, answer.body) == (200, b"six")
    [request] = server.requests
    assert request.line == "POST /v6?q=1 HTTP/1.1"
    assert request.header("Host") == f"[::1]:{server.port}"
    assert server.connections == 1


# -- HttpSender: the attempt timeout ---------------------------------------------------------------


async def test_send_times_out_and_drops_the_connection(raw_server, ca_bundle_path: str) -> None:
    async def first_never_answers(conn: RawConnection) -> None:
        if conn.index == 0:
            if await conn.read_request() is not None:
                await conn.wait_eof()
        else:
            await serve(conn, lambda request: response(b"late but fine"))

    server = raw_server(first_never_answers)
    settings = Settings(ca_bundle=ca_bundle_path, allow_targets="127.0.0.0/8", attempt_timeout=5)
    async with HttpSender(settings) as sender:
        # Bounded by WAIT; what shows that the 0.3 s attempt timeout cut it is the outcome.
        result = await asyncio.wait_for(sender.send(server.url, b"{}", {}, timeout=0.3), WAIT)
        assert (result.ok, result.status, result.error) == (False, None, "timed out after 0.3 s")
        assert result.kind is ErrorKind.TIMEOUT
        await eventually(lambda: 0 in server.eof, "the timed-out connection to be closed")

        result = await asyncio.wait_for(
            sender.send(server.url, b"{}", {}, timeout=2, excerpt=True), WAIT
        )
        assert (result.ok, result.status, result.error) == (True, 200, None)
        assert result.answer_body == "late but fine"
        await close_fully(sender._transport)
    assert server.connections == 2
    assert [r.connection for r in server.requests] == [0, 1]


async def test_send_never_raises_for_transport_errors(raw_server, ca_bundle_path: str) -> None:
    server = raw_server()
    settings = Settings(ca_bundle=ca_bundle_path, allow_targets="", attempt_timeout=5)
    async with HttpSender(settings) as sender:
        result = await asyncio.wait_for(sender.send(server.url, b"{}", {}), WAIT)
        assert (result.ok, result.status) == (False, None)
        assert result.error is not None and result.error.startswith(
            "target refused: 127.0.0.1 is a loopback address"
        )
        assert result.kind is ErrorKind.REFUSED
        result = await asyncio.wait_for(sender.send(server.url, b"{}", {"X": "a\r\nb"}), WAIT)
        assert (result.ok, result.status) == (False, None)
        assert result.error is not None and "line breaks are not allowed" in result.error
        assert result.kind is ErrorKind.NETWORK
    assert server.connections == 0


# -- close ---------------------------------------------------------------------------------------


async def test_close_closes_idle_pooled_connections(raw_server, make_transport) -> None:
    server = raw_server()
    transport = make_transport(per_host=2)
    answers = await asyncio.gather(
        post(transport, server.url, b"a"), post(transport, server.url, b"b")
    )
    assert [a.body for a in answers] == [b"a", b"b"]
    assert server.connections == 2 and server.eof == set()
    await transport.close()
    await eventually(lambda: server.eof == {0, 1}, "the server to see both connections end")


# -- interim answers, idle expiry, upgrades ---------------------------------------------------------


async def test_interim_1xx_answer_is_skipped(raw_server, make_transport) -> None:
    async def early_hints(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            await conn.send(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                + response(request.body)
            )

    server = raw_server(early_hints)
    answer = await post(make_transport(), server.url, b"final")
    assert (answer.status, answer.body) == (200, b"final")


async def test_connection_idle_too_long_is_closed(raw_server, make_transport, monkeypatch) -> None:
    monkeypatch.setattr(transport_module, "IDLE_SECONDS", 0.2)
    server = raw_server()
    transport = make_transport(per_host=2)
    await asyncio.gather(post(transport, server.url, b"a"), post(transport, server.url, b"b"))
    assert server.connections == 2
    # Sequential traffic keeps one connection busy for well past IDLE_SECONDS.
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        await post(transport, server.url, b"c")
        await asyncio.sleep(0.05)
    assert server.connections == 2
    await eventually(
        lambda: len(server.eof) == 1, "the long-idle connection to be closed", timeout=0.5
    )


async def test_upgrade_answer_logs_no_error(raw_server, make_transport, caplog) -> None:
    async def upgrade(conn: RawConnection) -> None:
        if await conn.read_request() is not None:
            await conn.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\nxx"
            )
            await conn.wait_eof()

    server = raw_server(upgrade)
    with contextlib.suppress(TransportError):
        answer = await post(make_transport(), server.url)
        assert answer.status == 101
    assert [r.getMessage() for r in caplog.records if r.levelno >= 40] == []


# -- hostile or odd targets (from the review of the transport) -----------------------------------


async def test_headers_longer_than_the_limit_are_refused(raw_server, make_transport) -> None:
    async def huge_header(conn: RawConnection) -> None:
        if await conn.read_request() is not None:
            await conn.send(
                b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (2 * transport_module.MAX_HEAD_BYTES)
            )
            await conn.wait_eof()

    server = raw_server(huge_header)
    message = await refused(make_transport(), server.url)
    assert message == "the answer's headers are longer than 64 KiB"


async def test_send_never_raises_for_hosts_that_cannot_be_resolved(ca_bundle_path: str) -> None:
    # A label over 63 characters makes getaddrinfo raise UnicodeError, not gaierror.
    settings = Settings(ca_bundle=ca_bundle_path, attempt_timeout=5)
    async with HttpSender(settings) as sender:
        result = await asyncio.wait_for(
            sender.send("https://" + "a" * 64 + ".example/hook", b"{}", {}), WAIT
        )
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None and result.error.startswith("could not resolve ")


async def test_non_ascii_path_is_percent_encoded(raw_server, make_transport) -> None:
    server = raw_server()
    await post(make_transport(), server.url.rstrip("/") + "/hoök?q=ä")
    [request] = server.requests
    assert request.line.split()[1].endswith("/ho%C3%B6k?q=%C3%A4")


async def test_a_closed_transport_refuses_new_requests(raw_server, make_transport) -> None:
    server = raw_server()
    transport = make_transport()
    await post(transport, server.url)
    await transport.close()
    assert await refused(transport, server.url) == "the sender is closed"
    assert server.connections == 1


# -- TLS session resumption ----------------------------------------------------------------------


def _tls_version(version: ssl.TLSVersion) -> Callable[[ssl.SSLContext], None]:
    def configure(context: ssl.SSLContext) -> None:
        context.minimum_version = context.maximum_version = version

    return configure


async def answer_then_close_but_the_last(conn: RawConnection, keep: int) -> None:
    """Answers and closes connections before `keep`; connection `keep` stays keep-alive."""
    if conn.index >= keep:
        await serve(conn)
        return
    if (request := await conn.read_request()) is not None:
        await conn.send(response(request.body, "200 OK", "Connection: close"))
        await conn.wait_eof()
        await conn.close()  # completes the client's TLS shutdown


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"]
)
async def test_tls_session_is_resumed_on_the_next_connection(
    raw_server, make_transport, version: ssl.TLSVersion
) -> None:
    # Python's server issues session tickets (TLS 1.3 and 1.2): every connection after the
    # first resumes the session of the one before instead of a full handshake.
    server = raw_server(
        lambda conn: answer_then_close_but_the_last(conn, 3), tls=_tls_version(version)
    )
    transport = make_transport()
    for i in range(4):
        assert (await post(transport, server.url, b"%d" % i)).body == b"%d" % i
    assert server.connections == 4
    assert server.resumed == [False, True, True, True]
    # ... and the client says so too, on the connection it keeps.
    [conn] = pooled(transport)
    assert conn.transport is not None
    assert conn.transport.get_extra_info("ssl_object").session_reused is True


async def test_a_refused_session_is_replaced_by_the_next_full_handshakes(
    raw_server, make_transport
) -> None:
    # A resumed connection keeps the session it resumed on offer (reading a new one costs a
    # copy of the session, certificate included). Once the receiver refuses it (here: new
    # ticket keys, as after a restart), the full handshake's session is offered next.
    server = raw_server(lambda conn: answer_then_close_but_the_last(conn, 9), handshake_delay=0.001)
    transport = make_transport()
    for i in range(5):
        if i == 3:
            server.new_ticket_keys()
        assert (await post(transport, server.url, b"%d" % i)).body == b"%d" % i
    assert server.resumed == [False, True, True, False, True]


async def test_the_peer_certificate_is_decoded_when_read(raw_server, make_transport) -> None:
    server = raw_server()  # keep-alive
    transport = make_transport()
    await post(transport, server.url, b"x")
    [conn] = pooled(transport)
    assert conn.transport is not None
    cert = conn.transport.get_extra_info("peercert")
    assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    assert dict(cert) == conn.transport.get_extra_info("ssl_object").getpeercert()
    binary = conn.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert isinstance(binary, bytes) and binary[:1] == b"\x30"  # DER: a SEQUENCE


async def test_a_server_without_tickets_gets_full_handshakes(raw_server, make_transport) -> None:
    def no_tickets(context: ssl.SSLContext) -> None:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.num_tickets = 0  # TLS 1.3: no resumption at all

    server = raw_server(lambda conn: answer_then_close_but_the_last(conn, 9), tls=no_tickets)
    transport = make_transport()
    for i in range(3):
        assert (await post(transport, server.url, b"%d" % i)).body == b"%d" % i
    assert server.connections == 3
    assert server.resumed == [False, False, False]


async def test_a_session_is_offered_only_to_its_own_target(raw_server, make_transport) -> None:
    # Two receivers (different ports) that share nothing: each is resumed with its own
    # session only; the other's would not be accepted, so it must not cost a full handshake.
    first = raw_server(lambda conn: answer_then_close_but_the_last(conn, 9))
    second = raw_server(lambda conn: answer_then_close_but_the_last(conn, 9))
    transport = make_transport()
    for i in range(3):
        await post(transport, first.url, b"a%d" % i)
        await post(transport, second.url, b"b%d" % i)
    assert first.resumed == [False, True, True]
    assert second.resumed == [False, True, True]


def test_tls_session_is_resumed_on_uvloop(raw_server, ca_bundle_path: str) -> None:
    # hookcast serve/worker run on uvloop, whose TLS layer is its own: the session offer
    # (a context variable read on the first handshake step) must reach it as well.
    uvloop = pytest.importorskip("uvloop")
    server = raw_server(lambda conn: answer_then_close_but_the_last(conn, 9))

    async def three_posts() -> None:
        transport = Http11Transport(
            make_ssl_context(ca_bundle_path), TargetGuard(list(LOOPBACK)), per_host=4, max_body=1024
        )
        try:
            for i in range(3):
                assert (await post(transport, server.url, b"%d" % i)).body == b"%d" % i
        finally:
            await close_fully(transport)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(three_posts())
    assert server.resumed == [False, True, True]


# -- connection set-up bounded per host ----------------------------------------------------------


@pytest.mark.parametrize("limit", [3, 12])
async def test_handshakes_per_host_are_bounded(raw_server, make_transport, limit: int) -> None:
    # A slow host (every handshake waits 0.1 s) and a burst of 12 requests, all allowed their
    # own connection: at most `limit` of them are being set up at any time.
    server = raw_server(handshake_delay=0.1)
    transport = make_transport(per_host=12, handshakes_per_host=limit)
    answers = await asyncio.wait_for(
        asyncio.gather(*(transport.post(server.url, {}, b"%d" % i) for i in range(12))), WAIT
    )
    assert [a.body for a in answers] == [b"%d" % i for i in range(12)]
    assert server.max_handshaking == limit  # the bound, and reached
    assert server.connections <= 12
