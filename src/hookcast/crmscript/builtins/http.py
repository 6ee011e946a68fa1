"""The sandboxed HTTP class (§11.9): requests go through the host transport, and only to
http/https URLs whose host is on the tenant's allow-list."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlencode, urlsplit

from ..errors import LimitExceeded
from ..runtime import Context
from ..transport import HttpTransportError
from .functions import hash_bytes
from .maps import CMap
from .registry import ctor, method, simple


class HttpClient:
    __slots__ = ("body", "error", "form", "headers", "options", "resp_headers", "status")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.form: list[tuple[str, str]] = []
        self.options: dict[str, str] = {}
        self.body: bytes | None = None
        self.error = ""
        self.status = ""
        self.resp_headers: list[tuple[str, str]] = []

    def _fail(self, message: str) -> bytearray:
        self.error = message or "request failed"
        return bytearray()

    def request(self, ctx: Context, method: str, url: str) -> bytearray:
        self.error = ""
        self.status = ""
        self.resp_headers = []
        if ctx.http_count >= ctx.limits.max_http_requests:
            raise LimitExceeded(f"more than {ctx.limits.max_http_requests} HTTP requests")
        ctx.http_count += 1
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            scheme = parts.scheme.lower()
        except ValueError:
            return self._fail("invalid URL")
        if scheme not in ("http", "https") or not host:
            return self._fail(f"URL scheme of '{url[:200]}' is not allowed (only http and https)")
        if host not in ctx.allow_hosts or ctx.http is None:
            return self._fail(f"host '{host}' is not on the tenant's allow-list")
        headers = list(self.headers)
        body = None
        opts = self.options
        raw = opts.get("parameters")
        if raw is not None:  # bytes by the hash functions' rule: utf8Encode()d text as is
            body = hash_bytes(raw[1:])
        elif (raw := opts.get("parametersUTF8")) is not None:
            body = raw[1:].encode("utf-8")
        elif self.body is not None:
            body = self.body
        if self.form:
            encoded = urlencode(self.form)
            if method in ("GET", "DELETE"):
                url = url + ("&" if parts.query else "?") + encoded
            elif body is None:
                body = encoded.encode("ascii")
                if not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        user = opts.get("username")
        if user is not None and opts.get("authenticationMethod", "basic").lower() != "none":
            token = base64.b64encode(f"{user}:{opts.get('password', '')}".encode()).decode("ascii")
            headers.append(("Authorization", "Basic " + token))
        timeout = ctx.limits.http_timeout
        try:
            t = float(opts.get("timeout", ""))
            if 0 < t < timeout:
                timeout = t
        except ValueError:
            pass
        remaining = ctx.deadline - time.perf_counter() - ctx.slept
        if remaining <= 0:
            ctx.check_time()
        timeout = max(0.001, min(timeout, remaining))
        max_bytes = ctx.limits.max_http_response
        try:
            resp = ctx.http.request(method, url, headers, body, timeout, max_bytes)
        except HttpTransportError as e:
            return self._fail(str(e.message))
        except Exception as e:  # a faulty transport never breaks the interpreter
            return self._fail(f"transport failure: {type(e).__name__}")
        ctx.check_time()
        data = bytes(resp.body or b"")
        if len(data) > max_bytes:
            return self._fail(f"response larger than {max_bytes} bytes")
        self.status = str(int(resp.status))
        self.resp_headers = [(str(k), str(v)) for k, v in (resp.headers or [])]
        return bytearray(data)


H = "HTTP"
ctor(H, "")(lambda: HttpClient())
simple(H, "addHeader", "String,String", "Void", lambda h, k, v: h.headers.append((k, v)))
simple(H, "setValue", "String,String", "Void", lambda h, k, v: h.form.append((k, v)))
simple(H, "setOption", "String,String", "Void", lambda h, k, v: h.options.__setitem__(k, v))
simple(H, "addBinaryData", "Byte[]", "Void", lambda h, b: setattr(h, "body", bytes(b)))
for _m, _verb in (
    ("get", "GET"),
    ("open", "GET"),
    ("post", "POST"),
    ("put", "PUT"),
    ("patch", "PATCH"),
    ("delete", "DELETE"),
):
    method(H, _m, "String", "Byte[]", ctx=True)(
        (lambda verb: lambda ctx, h, url: h.request(ctx, verb, url))(_verb)
    )
simple(H, "hasError", "", "Bool", lambda h: bool(h.error))
simple(H, "getErrorMessage", "", "String", lambda h: h.error)
simple(H, "getValue", "String", "String", lambda h, k: h.status if k == "statusCode" else "")


def _resp_header(h: HttpClient, name: str) -> str:
    n = name.lower()
    for k, v in h.resp_headers:
        if k.lower() == n:
            return v
    return ""


simple(H, "getResponseHeader", "String", "String", _resp_header)
simple(
    H, "getResponseHeaders", "", "Map", lambda h: CMap({k.lower(): v for k, v in h.resp_headers})
)
