"""`hookcast serve`, `hookcast worker` and `hookcast workers`: the processes that run the
API and deliver, and what they report about themselves."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .. import logs
from ..keys import create_key
from ..store import queries, queue
from .common import DbOption, console, open_database, run_async, settings_for


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")] = None,
    db: DbOption = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            envvar="HOOKCAST_DEV",
            help="Local development: trust the dev CA of `hookcast listen` and allow loopback "
            "targets. Never on a server others can reach.",
        ),
    ] = False,
) -> None:
    """Run the management API and the delivery dispatcher in one process.

    On first start with an empty database, creates an API key for tenant `Default`
    (associate 1) and prints it once.
    """
    import uvicorn

    from ..api.app import create_app
    from ..api.connections import guarded_protocol, limits_for
    from ..oslimits import raise_open_files_limit

    settings = settings_for(db, host=host, port=port)
    logs.configure(settings.log_format, settings.log_level)
    logs.protect(*logs.SERVER_LOGGERS)  # uvicorn logs exceptions that escape the app
    if dev:
        from .listen import enable_dev_mode

        settings = enable_dev_mode(settings)
    database = open_database(settings)
    if database.run_sync(queries.count_keys) == 0:
        _, key = create_key(
            database,
            tenant="Default",
            associate_id=1,
            name="admin",
            full_name="Default administrator",
        )
        console().print(
            "[bold]First start:[/] created an API key for tenant [bold]Default[/]. "
            "It is shown only this once:"
        )
        print(key, flush=True)
    app_ = create_app(settings, db=database)
    # Before listening: every open connection holds a file descriptor.
    nofile = raise_open_files_limit()
    limits = limits_for(settings, nofile[1] if nofile else None)
    try:
        uvicorn.run(
            app_,
            host=settings.host,
            port=settings.port,
            loop="auto",
            http=guarded_protocol(limits),  # deadlines for slow clients, a connection cap
            timeout_graceful_shutdown=int(settings.attempt_timeout) + 2,
            log_level="info",
            access_log=False,
        )
    finally:
        database.close()


def worker(
    db: DbOption = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Attempts in flight [default: 64]")
    ] = None,
) -> None:
    """Run only the delivery dispatcher (no API), until SIGINT or SIGTERM.

    Stopping finishes the attempts in flight (up to the attempt timeout) and hands the rest
    back to the queue.
    """
    import asyncio
    import signal as signals

    from ..hub import Hub

    settings = settings_for(db, concurrency=concurrency)
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Hub(settings, kind="worker"):
            console().print(f"hookcast worker delivering from {settings.database_url}")
            await stop.wait()

    run_async(run())


def workers(db: DbOption = None) -> None:
    """Show the running dispatchers (serve and worker processes) and their last heartbeat."""
    import time

    database = open_database(settings_for(db))
    try:
        rows = database.run_sync(queue.list_workers)
    finally:
        database.close()
    table = Table(
        "id", "kind", "host", "pid", "up (s)", "last heartbeat (s ago)", "in flight", "attempts"
    )
    now = time.time()
    for w in rows:
        table.add_row(
            w["id"][:8],
            w["kind"],
            w["hostname"],
            str(w["pid"]),
            f"{now - w['started_at']:.0f}",
            f"{now - w['heartbeat_at']:.1f}",
            str(w["in_flight"]),
            str(w["attempts"]),
        )
    console().print(table)
