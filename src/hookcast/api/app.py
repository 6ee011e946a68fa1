"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .._version import __version__
from ..dispatch.http import HttpSender
from ..registry import Registry
from ..settings import Settings
from ..store.database import Database
from . import agents, errors, webhooks
from .limits import BodyLimit

DESCRIPTION = """hookcast delivers your application's events, signed, to every subscriber.
Its management API speaks the SuperOffice CRM Webhook API; the routes tagged *hookcast*
and the `/Usage`, `/Deliveries` and `/Redeliver` routes are hookcast's own additions."""


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = db or Database(settings.database_url)
        if db is None:
            database.migrate()
        sender = HttpSender(settings)
        app.state.db = database
        app.state.settings = settings
        app.state.registry = Registry(database, settings, sender)
        try:
            yield
        finally:
            await sender.close()
            if db is None:
                database.close()

    app = FastAPI(title="hookcast", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    app.include_router(webhooks.router)
    app.include_router(agents.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
