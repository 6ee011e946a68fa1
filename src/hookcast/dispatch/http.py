"""The `webhook` plugin's sender: one HTTPS POST per attempt.

`HttpSender.send` (deliveries, verification, Webhook/Test) goes over the lean keep-alive
transport in transport.py; `HttpSender.request` (CRMScript's HTTP class: any method, any
answer) over a pooled aiohttp client. Both apply the same target guard and TLS rules.
`send` never raises for network problems; every outcome is an `AttemptOutcome` whose
`error` is a short sentence fit for `LastError`, the delivery log and the API.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import perf_counter
from types import TracebackType

import aiohttp

from ..errors import TargetRefused
from ..guard import GuardedResolver, TargetGuard, guarded_socket_factory, make_ssl_context
from ..outcome import AttemptOutcome, ErrorKind
from ..settings import Settings
from .transport import Answer, Transport, TransportError

__all__ = ["HttpSender", "parse_retry_after"]

EXCERPT_BODY_BYTES = 4096


class HttpSender:
    """Posts deliveries over keep-alive connection pools; use inside one event loop."""

    def __init__(self, settings: Settings, *, limit: int = 100) -> None:
        self._settings = settings
        self._limit = limit
        self._max_bytes = settings.max_response_bytes
        self._default_timeout = aiohttp.ClientTimeout(total=settings.attempt_timeout)
        # Built now so a broken HOOKCAST_CA_BUNDLE fails at start-up, not on first delivery.
        self._ssl = make_ssl_context(settings.ca_bundle)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._transport = Transport(
            self._ssl,
            TargetGuard(settings.allow_targets),
            per_host=settings.max_connections_per_host,
            max_body=self._max_bytes,
        )

    def _open(self) -> aiohttp.ClientSession:
        # Lazily, because aiohttp binds the session and resolver to the running loop.
        guard = TargetGuard(self._settings.allow_targets)
        self._resolver = GuardedResolver(guard)
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._settings.max_connections_per_host,
            ssl=self._ssl,
            resolver=self._resolver,
            socket_factory=guarded_socket_factory(guard),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._default_timeout,
            # Never carry one receiver's cookies to another.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float | None = None,
        *,
        excerpt: bool = False,
    ) -> AttemptOutcome:
        """POST once. `excerpt`: also describe the answer (status line, headers, body start),
        which only Webhook/Test shows; deliveries skip that work."""
        seconds = self._settings.attempt_timeout if timeout is None else timeout
        started = perf_counter()
        try:
            async with asyncio.timeout(seconds):
                answer = await self._transport.post(url, headers, body)
        except TimeoutError:
            error, kind = f"timed out after {seconds:g} s", ErrorKind.TIMEOUT
        except TransportError as exc:
            refused = exc.message.startswith("target refused")
            error, kind = exc.message, ErrorKind.REFUSED if refused else ErrorKind.NETWORK
        else:
            return _answered(answer, (perf_counter() - started) * 1000.0, excerpt)
        return AttemptOutcome.failed(error, kind, (perf_counter() - started) * 1000.0)

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Any request (aiohttp's pool) with the same target guard and TLS rules as deliveries, for
        CRMScript's HTTP class: (status, response headers in wire order, body). Redirects are
        not followed. Raises ConnectionError with a short sentence when no answer arrived
        (DNS, connect, guard, TLS, timeout) or the body is longer than `max_bytes`."""
        session = self._session or self._open()
        error: str
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                content = await _read_limited(resp.content, max_bytes + 1)
                if len(content) <= max_bytes:
                    answer = [
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers
                    ]
                    return resp.status, answer, content
                error = f"the response body is longer than {max_bytes} bytes"
        except TimeoutError:
            error = f"timed out after {timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = describe_error(exc)
        raise ConnectionError(error)

    async def close(self) -> None:
        await self._transport.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    async def __aenter__(self) -> HttpSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    # Reading the body to its end is what lets aiohttp reuse the connection; a longer body
    # is cut off and its connection closed.
    first = await stream.read(limit)
    if not first or len(first) >= limit:
        return first
    chunks = [first]
    size = len(first)
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _excerpt(answer: Answer) -> str:
    head = [f"HTTP/{answer.version} {answer.status} {answer.reason}".rstrip()]
    head.extend(f"{k}: {v}" for k, v in answer.headers)
    return (
        "\r\n".join(head) + "\r\n\r\n" + answer.body[:EXCERPT_BODY_BYTES].decode("utf-8", "replace")
    )


def _answered(answer: Answer, latency_ms: float, with_excerpt: bool) -> AttemptOutcome:
    status = answer.status
    excerpt = _excerpt(answer) if with_excerpt else ""
    if 200 <= status < 300:
        return AttemptOutcome(ok=True, status=status, latency_ms=latency_ms, excerpt=excerpt)
    if 300 <= status < 400:
        location = answer.header("Location")
        where = f" to {location}" if location else " without a Location header"
        error = f"redirect not followed: {status}{where}"
    else:
        error = f"HTTP {status} {answer.reason}".rstrip()
    retry_after = None
    if status in (429, 503) and (value := answer.header("Retry-After")):
        retry_after = parse_retry_after(value)
    return AttemptOutcome(
        ok=False,
        status=status,
        error=error,
        kind=ErrorKind.STATUS,
        retry_after=retry_after,
        latency_ms=latency_ms,
        excerpt=excerpt,
        gone=status == 410,
    )


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date); None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe_error(exc: BaseException) -> str:
    """A short sentence for a failed attempt that got no HTTP answer."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"TLS certificate verification failed: {reason}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {_ssl_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, TargetRefused):
            return f"target refused: {cause.message}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"could not resolve {exc.host}: {cause.strerror or cause}"
        if cause.errno == errno.ECONNREFUSED:
            return "connection refused"
        return f"could not connect to {exc.host}:{exc.port}: {cause.strerror or cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the target closed the connection without answering"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP answer: {exc.message}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body could not be read: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _ssl_reason(exc: aiohttp.ClientSSLError) -> str:
    cause = exc.os_error
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return cause.reason.replace("_", " ").lower()
    return str(cause)
