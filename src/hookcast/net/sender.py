"""The `webhook` plugin's sender: one POST per attempt, and its `AttemptOutcome`.

`HttpSender.send` (deliveries, verification, Webhook/Test) posts through a `Transport`
(transport.py): the lean keep-alive client in http11.py unless another is given, e.g. a
`MockTransport` in unit tests. `HttpSender.script_http` (CRMScript's HTTP class: any method, any
answer) goes over the pooled aiohttp client in script_http.py. Both apply the same target
guard and TLS rules. `send` never raises for network problems; every outcome is an
`AttemptOutcome` whose `error` is a short sentence fit for `LastError`, the delivery log and
the API.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from socket import SOCK_STREAM, gaierror
from time import perf_counter
from types import TracebackType

from ..guard import TargetGuard, make_ssl_context
from ..outcome import AttemptOutcome, ErrorKind
from ..settings import Settings
from .excerpts import response_excerpt
from .http11 import Http11Transport
from .resolver import CachingResolver, ResolveError
from .script_http import ScriptHttpClient
from .transport import Answer, Transport, TransportError

__all__ = ["HttpSender", "parse_retry_after"]


class HttpSender:
    """Posts deliveries through one transport (keep-alive connection pools unless given
    another); use inside one event loop. The sender owns its transport and closes it."""

    def __init__(
        self, settings: Settings, *, limit: int = 100, transport: Transport | None = None
    ) -> None:
        self._settings = settings
        # Built now so a broken HOOKCAST_CA_BUNDLE fails at start-up, not on first delivery.
        self._ssl = make_ssl_context(settings.ca_bundle)
        self._resolver: CachingResolver | None = None
        if transport is None:
            self._resolver = CachingResolver(
                nameservers=settings.dns_nameservers,
                min_ttl=settings.dns_min_ttl,
                max_ttl=settings.dns_max_ttl,
                negative_ttl=settings.dns_negative_ttl,
                fallback_ttl=settings.dns_fallback_ttl,
                max_entries=settings.dns_cache_size,
            )
            transport = Http11Transport(
                self._ssl,
                TargetGuard(settings.allow_targets),
                per_host=settings.max_connections_per_host,
                max_body=settings.max_response_bytes,
                handshakes_per_host=settings.max_handshakes_per_host,
                resolver=self._resolver,
            )
        self._transport = transport
        self._script_http = ScriptHttpClient(settings, self._ssl, limit=limit)

    async def send(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float | None = None,
        *,
        excerpt: bool = False,
        request: str = "",
    ) -> AttemptOutcome:
        """POST once. `excerpt`: also describe the answer (status line, headers, body start,
        bounded: excerpts.py), as Webhook/Test shows it and the attempt log keeps it;
        `request`: the request as described for the log, carried in the outcome."""
        seconds = self._settings.attempt_timeout if timeout is None else timeout
        started = perf_counter()
        try:
            async with asyncio.timeout(seconds):
                answer = await self._transport.post(url, headers, body)
        except TimeoutError:
            error, kind = f"timed out after {seconds:g} s", ErrorKind.TIMEOUT
        except TransportError as exc:
            error, kind = exc.message, ErrorKind.REFUSED if exc.refused else ErrorKind.NETWORK
        else:
            return _answered(answer, (perf_counter() - started) * 1000.0, excerpt, request)
        latency_ms = (perf_counter() - started) * 1000.0
        return AttemptOutcome(
            ok=False, error=error, kind=kind, latency_ms=latency_ms, request=request
        )

    async def resolve(self, host: str) -> list[str]:
        """The addresses a target's name resolves to, as deliveries resolve it (through the
        DNS cache); ResolveError when it has none."""
        if self._resolver is not None:
            return [address for _, address in await self._resolver.resolve(host)]
        try:  # a transport of its own (tests): the system resolver
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=SOCK_STREAM)
        except gaierror as exc:
            raise ResolveError(str(exc.strerror)) from None
        return [str(sockaddr[0]) for *_, sockaddr in infos]

    @property
    def script_http(self) -> ScriptHttpClient:
        """CRMScript's HTTP client: any method, any answer, the same guard and TLS rules."""
        return self._script_http

    async def close(self) -> None:
        await self._transport.close()
        if self._resolver is not None:
            await self._resolver.close()
        await self._script_http.close()

    async def __aenter__(self) -> HttpSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _answered(
    answer: Answer, latency_ms: float, with_excerpt: bool, request: str = ""
) -> AttemptOutcome:
    status = answer.status
    excerpt = response_excerpt(answer) if with_excerpt else ""
    if 200 <= status < 300:
        return AttemptOutcome(
            ok=True, status=status, latency_ms=latency_ms, excerpt=excerpt, request=request
        )
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
        request=request,
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
