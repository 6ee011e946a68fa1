"""Paths bound as SuperOffice's REST service (ASP.NET) binds them, which its clients rely
on: in any case (`/api/v1/webhook/default`), and with or without a trailing slash as the
same route, answered in place (a redirect would name an absolute URL of Starlette's making,
`http://` behind a TLS proxy).

An ASGI middleware rewrites each path segment that names a literal part of a route (from
the app's own OpenAPI paths) to that part's spelling, and drops one trailing slash, before
routing. Parameter values are left as they are, unless one spells a literal segment, which
changes only its case (event names are lower-cased anyway).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class AspNetPaths:
    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self._app = app
        self._fastapi = fastapi
        self._segments: dict[str, str] | None = None

    def _literal_segments(self) -> dict[str, str]:
        if self._segments is None:
            # The document has every API route; /docs and /openapi.json are only app routes.
            paths = [*self._fastapi.openapi().get("paths", {})]
            paths += [str(getattr(route, "path", "")) for route in self._fastapi.routes]
            found: dict[str, str] = {}
            for path in paths:
                for part in path.split("/"):
                    if part and not part.startswith("{"):
                        found.setdefault(part.lower(), part)
            self._segments = found
        return self._segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            canonical = self.canonical(path)
            if canonical != path:
                scope = {**scope, "path": canonical, "raw_path": canonical.encode()}
        await self._app(scope, receive, send)

    def canonical(self, path: str) -> str:
        if len(path) > 1 and path.endswith("/") and not path.endswith("//"):
            path = path[:-1]
        segments = self._literal_segments()
        return "/".join(segments.get(part.lower(), part) for part in path.split("/"))


def install(app: FastAPI) -> None:
    app.router.redirect_slashes = False
    app.add_middleware(AspNetPaths, fastapi=app)


__all__ = ["AspNetPaths", "install"]
