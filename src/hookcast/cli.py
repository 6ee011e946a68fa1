"""The `hookcast` command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import logs
from ._version import __version__
from .cli_crmscript import crmscript_app
from .keys import create_key
from .model import format_date
from .settings import Settings
from .store import queries, queue
from .store.database import Database

app = typer.Typer(
    help="hookcast: a self-hosted webhook broadcaster that speaks the SuperOffice Webhook API.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Inspect registered webhooks.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(crmscript_app, name="crmscript")


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


def _settings(db: str | None, **overrides: object) -> Settings:
    values = {k: v for k, v in {"database_url": db, **overrides}.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


def _database(settings: Settings) -> Database:
    database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    database.migrate()
    return database


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console().print(f"hookcast {__version__}")
        raise typer.Exit()


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")] = None,
    db: DbOption = None,
) -> None:
    """Run the management API and the delivery dispatcher in one process.

    On first start with an empty database, creates an API key for tenant `Default`
    (associate 1) and prints it once.
    """
    import uvicorn

    from .api.app import create_app

    settings = _settings(db, host=host, port=port)
    logs.configure(settings.log_format, settings.log_level)
    database = _database(settings)
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
    try:
        uvicorn.run(
            app_,
            host=settings.host,
            port=settings.port,
            loop="auto",
            http="auto",
            timeout_graceful_shutdown=int(settings.attempt_timeout) + 2,
            log_level="info",
            access_log=False,
        )
    finally:
        database.close()


@app.command()
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

    from .hub import Hub

    settings = _settings(db, concurrency=concurrency)
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Hub(settings, kind="worker"):
            console().print(f"hookcast worker delivering from {settings.database_url}")
            await stop.wait()

    _run_async(run())


@app.command("signal")
def signal_event(
    event: Annotated[str, typer.Argument(help="The event name, e.g. contact.changed")],
    primary_key: Annotated[int, typer.Argument(help="The record's id (0 when unused)")],
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier)")],
    associate_id: Annotated[int, typer.Option("--associate-id", help="Who caused it")] = 0,
    data: Annotated[
        str | None, typer.Option(help='Changed fields as a JSON object, e.g. \'{"name": "Ada"}\'')
    ] = None,
    db: DbOption = None,
) -> None:
    """Signal an event: store it with its deliveries; a running serve or worker delivers it."""
    import asyncio
    import json

    from .errors import ValidationError
    from .hub import Hub

    try:
        changes = json.loads(data) if data else None
    except json.JSONDecodeError as exc:
        console().print(f"[red]--data is not JSON: {exc}[/]")
        raise typer.Exit(2) from None
    if changes is not None and not isinstance(changes, dict):
        console().print("[red]--data must be a JSON object of field names and values[/]")
        raise typer.Exit(2)

    async def run() -> int:
        async with Hub(_settings(db), deliver=False) as hub:
            return await hub.signal(
                event, primary_key, tenant=tenant, associate_id=associate_id, changes=changes
            )

    try:
        event_id = asyncio.run(run())
    except ValidationError as exc:
        console().print(f"[red]{exc.message}[/]")
        raise typer.Exit(2) from None
    console().print(f"Stored event {event_id} ({event.lower()} {primary_key}) for tenant {tenant}.")


def _run_async(coro: Any) -> None:
    import asyncio

    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        asyncio.run(coro)
    else:
        uvloop.run(coro)


@app.command()
def workers(db: DbOption = None) -> None:
    """Show the running dispatchers (serve and worker processes) and their last heartbeat."""
    import time

    database = _database(_settings(db))
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


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier), e.g. Cust1234")],
    associate_id: Annotated[
        int, typer.Option("--associate-id", help="The associate the key acts as")
    ],
    name: Annotated[
        str, typer.Option(help="The associate's name, shown as RegisteredAssociate")
    ] = "",
    full_name: Annotated[str, typer.Option("--full-name", help="The associate's full name")] = "",
    db: DbOption = None,
) -> None:
    """Create an API key; the key itself is printed alone on the last line, once."""
    database = _database(_settings(db))
    try:
        record, key = create_key(
            database, tenant=tenant, associate_id=associate_id, name=name, full_name=full_name
        )
    finally:
        database.close()
    console().print(
        f"Created key {record.id} ({record.prefix}…) for tenant {tenant}, "
        f"associate {associate_id}. Store it now; it cannot be shown again."
    )
    print(key, flush=True)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None,
    db: DbOption = None,
) -> None:
    """List API keys (their prefixes; the keys themselves are not stored)."""
    database = _database(_settings(db))
    try:
        rows = database.run_sync(queries.list_keys, tenant)
    finally:
        database.close()
    table = Table("id", "prefix", "tenant", "associate", "name", "created", "revoked")
    for k in rows:
        table.add_row(
            str(k.id),
            k.prefix + "…",
            k.tenant,
            str(k.associate_id),
            k.name,
            format_date(k.created),
            format_date(k.revoked) if k.revoked else "",
        )
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id, from `hookcast keys list`")],
    db: DbOption = None,
) -> None:
    """Revoke an API key; requests with it get 401 from now on."""
    import time

    database = _database(_settings(db))
    try:
        revoked = database.run_sync(queries.revoke_key, key_id, time.time())
    finally:
        database.close()
    if not revoked:
        console().print(f"[red]No active key {key_id}.[/]")
        raise typer.Exit(1)
    console().print(f"Revoked key {key_id}.")


@webhooks_app.command("list")
def webhooks_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's webhooks")] = None,
    db: DbOption = None,
) -> None:
    """Show registered webhooks as a table."""
    database = _database(_settings(db))
    try:
        hooks = database.run_sync(
            lambda conn: (
                queries.list_webhooks(conn, tenant) if tenant else queries.list_all_webhooks(conn)
            )
        )
    finally:
        database.close()
    table = Table("id", "tenant", "name", "state", "type", "events", "target")
    for h in hooks:
        table.add_row(
            str(h.id), h.tenant, h.name, h.state.name, h.type, ", ".join(h.events), h.target_url
        )
    console().print(table)


def main() -> None:
    app()
