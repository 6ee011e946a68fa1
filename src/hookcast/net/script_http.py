"""CRMScript's HTTP class: any method, any answer, over a pooled aiohttp client with the same
target guard and TLS rules as deliveries.

`ScriptHttpClient` makes the requests on the event loop, for the sandbox worker a script runs
in (dispatch/plugins/crmscript.py proxies them). The interpreter checks the tenant's
allow-list of hosts before it asks; the guard here checks every address.

Why aiohttp and not the lean transport (http11.py): scripts send any method with any body
and read any answer; that is a general client's job, and it is not the hot path.
"""

from __future__ import annotations

import errno
import ssl

import aiohttp

from ..errors import TargetRefused
from ..guard import GuardedResolver, TargetGuard, guarded_socket_factory
from ..settings import Settings

__all__ = ["ScriptHttpClient", "describe_error"]


class ScriptHttpClient:
    """A pooled aiohttp client bound to the guard and TLS context; use inside one event loop."""

    def __init__(self, settings: Settings, ssl_context: ssl.SSLContext, *, limit: int) -> None:
        self._settings = settings
        self._ssl = ssl_context
        self._limit = limit
        self._default_timeout = aiohttp.ClientTimeout(total=settings.attempt_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

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

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, response headers in wire order, body). Redirects are not followed.
        Raises ConnectionError with a short sentence when no answer arrived (DNS, connect,
        guard, TLS, timeout) or the body is longer than `max_bytes`."""
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
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


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


def describe_error(exc: BaseException) -> str:
    """A short sentence for a failed request that got no HTTP answer."""
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
