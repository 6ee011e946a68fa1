"""Requests bound as SuperOffice's REST service (ASP.NET) binds them, which its clients rely
on (§2):

- paths in any case (`/api/v1/webhook/default`), and with or without a trailing slash as the
  same route, answered in place (a redirect would name an absolute URL of Starlette's making,
  `http://` behind a TLS proxy);
- query parameter names in any case (`?WebhookId=`, `?webhookid=`);
- an optional tenant in front, as SuperOffice Online URLs carry it:
  `/Cust1234/api/v1/...` is `/api/v1/...`, and `auth.principal` answers 404 unless it names
  the key's own tenant.

An ASGI middleware rewrites each path segment that names a literal part of a route, and each
query name, to its spelling in the app's own OpenAPI document, before routing. Parameter
values are left as they are, unless one spells a literal segment, which changes only its
case (event names are lower-cased anyway). JSON property names are matched by the request
shapes themselves (`schemas.ApiIn`), which know which keys are field names.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote_plus

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

# Where the middleware leaves the tenant named in front of /api.
CONTEXT_KEY = "hookcast.context_identifier"


def context_identifier(request: Request) -> str | None:
    """The tenant a request's path named in front of /api, if it named one."""
    value: str | None = request.scope.get(CONTEXT_KEY)
    return value


class AspNetBinding:
    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self._app = app
        self._fastapi = fastapi
        self._names: tuple[dict[str, str], dict[str, str]] | None = None

    def _spellings(self) -> tuple[dict[str, str], dict[str, str]]:
        """The literal path segments and the query names, by their lower-case spelling."""
        if self._names is None:
            document: dict[str, Any] = self._fastapi.openapi().get("paths", {})
            # The document has every API route; /docs and /openapi.json are only app routes.
            paths = [*document, *(str(getattr(r, "path", "")) for r in self._fastapi.routes)]
            segments: dict[str, str] = {}
            for path in paths:
                for part in path.split("/"):
                    if part and not part.startswith("{"):
                        segments.setdefault(part.lower(), part)
            queries: dict[str, str] = {}
            for operations in document.values():
                for operation in operations.values():
                    for parameter in operation.get("parameters", ()):
                        if parameter.get("in") == "query":
                            queries.setdefault(parameter["name"].lower(), parameter["name"])
            self._names = segments, queries
        return self._names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, tenant = self.canonical_path(scope["path"])
            query = self.canonical_query(scope.get("query_string", b""))
            if path != scope["path"] or query != scope.get("query_string", b""):
                scope = {**scope, "path": path, "raw_path": path.encode(), "query_string": query}
            if tenant is not None:
                scope = {**scope, CONTEXT_KEY: tenant}
        await self._app(scope, receive, send)

    def canonical_path(self, path: str) -> tuple[str, str | None]:
        """The path as the routes spell it, and the tenant named in front of /api, if any."""
        if len(path) > 1 and path.endswith("/") and not path.endswith("//"):
            path = path[:-1]
        parts = path.split("/")
        tenant = None
        if len(parts) > 2 and parts[1] and parts[2].lower() == "api":
            tenant, parts = parts[1], ["", *parts[2:]]
        segments = self._spellings()[0]
        return "/".join(segments.get(part.lower(), _bounded(part)) for part in parts), tenant

    def canonical_query(self, query: bytes) -> bytes:
        if not query:
            return query
        names = self._spellings()[1]
        items = []
        for item in query.split(b"&"):
            name, equals, value = item.partition(b"=")
            spelled = names.get(unquote_plus(name.decode("latin-1")).lower())
            items.append(quote(spelled).encode() + equals + value if spelled else item)
        return b"&".join(items)


_HUGE = re.compile(r"-?[0-9]{20,}")


def _bounded(part: str) -> str:
    """A number of 20 digits or more as 20 nines: out of every id's range (a 400 that says
    so), where Python's int() would refuse one of thousands of digits (a 500)."""
    if not _HUGE.fullmatch(part):
        return part
    return ("-" if part.startswith("-") else "") + "9" * 20


__all__ = ["CONTEXT_KEY", "AspNetBinding", "context_identifier"]
