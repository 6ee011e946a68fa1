"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import console
from .._version import __version__
from ..deliveries import DeliveryLog
from ..hub import Hub
from ..keys import KeyCache
from ..registry import Registry
from ..scripts import Scripts
from ..settings import Settings
from ..store.database import Database
from . import agents, binding, crmscript, deliveries, docs, errors, signals, webhooks
from . import metrics as metrics_route
from .access import AccessLog
from .limits import RequestLimits

DESCRIPTION = """hookcast delivers your application's events, signed, to every subscriber.
Its management API speaks the SuperOffice CRM Webhook API; the routes tagged *hookcast*
and the `/Usage`, `/Deliveries` and `/Redeliver` routes are hookcast's own additions."""


class HookcastAPI(FastAPI):
    """FastAPI with hookcast's request middleware (`front`) in front of FastAPI's own
    per-request layers instead of inside them: its telemetry check, body limit and
    Starlette's error middleware cost more per request than the signal route's own work
    (issue 18's profile: about a tenth of `serve`'s CPU per signal), and a signal that
    `FastSignal` answers never enters them. Other requests go on through `framework`."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.front is not None:
            scope["app"] = self
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of a request: its middleware, then the routes."""
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, deliver: bool = True
) -> HookcastAPI:
    """The API with its Hub; `deliver=False` leaves delivery to `hookcast worker`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(settings, db=db, deliver=deliver, kind="serve")
        await hub.start()
        app.state.hub = hub
        app.state.db = hub.db
        app.state.settings = settings
        app.state.keys = KeyCache(hub.db)
        app.state.registry = Registry(
            hub.db, settings, hub.sender, wake=hub.wake, halt=hub.halt, scripts=hub.scripts
        )
        app.state.scripts = Scripts(hub.db, settings, hub.sender, hub.scripts)
        app.state.delivery_log = DeliveryLog(hub.db, wake=hub.wake)
        try:
            yield
        finally:
            app.state.scripts.close()
            await hub.close()

    app = HookcastAPI(
        title="hookcast",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by docs.install
        redoc_url=None,
    )
    errors.install(app)
    docs.install(app)
    app.include_router(signals.router)
    app.include_router(webhooks.router)
    app.include_router(deliveries.router)
    app.include_router(agents.router)
    app.include_router(crmscript.router)
    app.include_router(metrics_route.router)
    console.install(app)
    app.router.redirect_slashes = False  # binding.py answers either spelling in place
    # A route's unexpected error is answered inside, before Starlette's last-resort handler
    # (which answers in plain text and raises again); the outer one answers the front's.
    app.add_middleware(errors.CatchUnexpected)
    checked = RequestLimits(signals.FastSignal(app.framework), max_bytes=settings.max_body_bytes)
    app.front = AccessLog(
        errors.CatchUnexpected(binding.AspNetBinding(checked, fastapi=app)),
        log=settings.log_access,
        trace=settings.tracing or settings.propagate_trace,
    )
    return app
