"""What the command modules share: the console, the --db option, settings and the database."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console

from ..settings import Settings
from ..store.database import Database


def console() -> Console:
    # Created per call so the terminal width (COLUMNS) is read when the command runs.
    return Console()


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy database URL [default: HOOKCAST_DATABASE_URL or sqlite:///./hookcast.db]",
    ),
]


def settings_for(db: str | None, **overrides: object) -> Settings:
    """Settings from the environment, with the options given on the command line."""
    values = {k: v for k, v in {"database_url": db, **overrides}.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


def open_database(settings: Settings) -> Database:
    """The database of `settings`, migrated to the current schema."""
    database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    database.migrate()
    return database


def run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` on uvloop when it is installed, else on asyncio's loop."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        asyncio.run(coro)
    else:
        uvloop.run(coro)
