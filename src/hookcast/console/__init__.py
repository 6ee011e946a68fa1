"""The web console at /console: webhooks, deliveries, search and replay, notifications,
CRMScript scripts and the HTTP allow-list, for people. Server-rendered templates with htmx
(vendored in static/, with its licence): no build step, no CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .views import PREFIX, router

__all__ = ["install"]


def install(app: FastAPI) -> None:
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=str(files("hookcast.console") / "static")),
        name="console-static",
    )
    app.include_router(router)
