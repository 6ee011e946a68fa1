"""`hookcast serve`, `hookcast worker` and `hookcast workers`: the processes that run the
API and deliver, and what they report about themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    USAGE,
    CliError,
    DbOption,
    JsonOption,
    console,
    open_database,
    print_rows,
    run_async,
    settings_for,
)

if TYPE_CHECKING:
    from ..settings import Settings

# What `--help` shows; tests/test_cli_help.py checks them against Settings' defaults.
HostOption = Annotated[
    str | None,
    typer.Option(
        envvar="HOOKCAST_HOST",
        show_envvar=True,
        help="The address to listen on. [default: 127.0.0.1]",
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        envvar="HOOKCAST_PORT", show_envvar=True, help="The port to listen on. [default: 8000]"
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        envvar="HOOKCAST_CONCURRENCY",
        show_envvar=True,
        help="Delivery attempts in flight in this process. [default: 1024]",
    ),
]

DevOption = Annotated[
    bool,
    typer.Option(
        "--dev",
        envvar="HOOKCAST_DEV",
        show_envvar=True,
        help="Local development: trust the dev CA of `hookcast listen` and allow loopback "
        "targets. Never on a server others can reach.",
    ),
]


def _dev_mode(settings: Settings, dev: bool) -> Settings:
    if not dev:
        return settings
    from ..devlisten import enable_dev_mode

    return enable_dev_mode(settings)


def _preflight(settings: Settings) -> None:
    """What would otherwise fail later with a traceback: a CA bundle that cannot be read."""
    from .doctor import check_ca_bundle

    check = check_ca_bundle(settings)
    if not check.ok:
        raise CliError(check.detail, check.fix, USAGE)


def _port_must_be_free(settings: Settings) -> None:
    """Before the database and the first key: uvicorn would say a taken port only after
    starting the application, among its other lines, with exit status 3."""
    import socket

    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(
            f"--host={settings.host!r} (HOOKCAST_HOST) is not an address to listen on: {exc}",
            "Give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0.",
            USAGE,
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise CliError(
                f"cannot listen on {settings.host}:{settings.port} (--host, --port or "
                f"HOOKCAST_HOST, HOOKCAST_PORT): {exc.strerror or exc}",
                "Stop what listens there, or choose another port with --port.",
            ) from None


def serve(
    host: HostOption = None,
    port: PortOption = None,
    db: DbOption = None,
    dev: DevOption = False,
) -> None:
    """Run the management API and the delivery dispatcher in one process.

    On first start with an empty database, creates an API key for tenant `Default`
    (associate 1) and prints it once.
    """
    import uvicorn

    from .. import logs
    from ..api.app import create_app
    from ..api.connections import guarded_protocol, limits_for
    from ..keys import create_key
    from ..oslimits import raise_open_files_limit
    from ..store import queries

    settings = settings_for(db, host=host, port=port)
    logs.configure(settings.log_format, settings.log_level)
    logs.protect(*logs.SERVER_LOGGERS)  # uvicorn logs exceptions that escape the app
    settings = _dev_mode(settings, dev)
    _preflight(settings)
    _port_must_be_free(settings)
    database = open_database(settings, create=True)
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
    db: DbOption = None, concurrency: ConcurrencyOption = None, dev: DevOption = False
) -> None:
    """Run only the delivery dispatcher (no API), until SIGINT or SIGTERM.

    Stopping finishes the attempts in flight (up to the attempt timeout) and hands the rest
    back to the queue. With `--dev` it delivers to what `serve --dev` registers.
    """
    import asyncio
    import signal as signals

    from .. import logs
    from ..hub import Hub
    from ..settings import mask_url

    settings = settings_for(db, concurrency=concurrency)
    logs.configure(settings.log_format, settings.log_level)
    settings = _dev_mode(settings, dev)
    _preflight(settings)
    database = open_database(settings, create=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Hub(settings, db=database, kind="worker"):
            console().print(f"hookcast worker delivering from {mask_url(settings.database_url)}")
            await stop.wait()

    try:
        run_async(run())
    finally:
        database.close()


def workers(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the running dispatchers (serve and worker processes) and their last heartbeat."""
    import time

    from ..store import queue

    database = open_database(settings_for(db))
    try:
        rows = database.run_sync(queue.list_workers, write=False)
    finally:
        database.close()
    now = time.time()
    print_rows(
        [dict(w) for w in rows],
        {
            "id": lambda w: w["id"][:8],
            "kind": lambda w: w["kind"],
            "host": lambda w: w["hostname"],
            "pid": lambda w: str(w["pid"]),
            "up (s)": lambda w: f"{now - w['started_at']:.0f}",
            "last heartbeat (s ago)": lambda w: f"{now - w['heartbeat_at']:.1f}",
            "in flight": lambda w: str(w["in_flight"]),
            "attempts": lambda w: str(w["attempts"]),
        },
        as_json,
    )
