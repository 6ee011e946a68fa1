"""`hookcast signal`: store an event for a running serve or worker to deliver."""

from __future__ import annotations

from typing import Annotated

import typer

from ..model import MAX_ASSOCIATE_ID
from .common import USAGE, CliError, DbOption, console, open_database, settings_for


def signal_event(
    event: Annotated[
        str, typer.Argument(help="The event name, e.g. contact.changed.", show_default=False)
    ],
    primary_key: Annotated[
        int, typer.Argument(help="The record's id (0 when unused).", show_default=False)
    ],
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier).")],
    associate_id: Annotated[
        int, typer.Option("--associate-id", min=0, max=MAX_ASSOCIATE_ID, help="Who caused it.")
    ] = 0,
    data: Annotated[
        str | None, typer.Option(help='Changed fields as a JSON object, e.g. \'{"name": "Ada"}\'.')
    ] = None,
    db: DbOption = None,
) -> None:
    """Signal an event: store it with its deliveries; a running serve or worker delivers it."""
    import asyncio

    from ..errors import ValidationError
    from ..hub import Hub
    from ..jsontext import loads

    try:
        changes = loads(data, "--data") if data else None
    except ValidationError as exc:
        raise CliError(exc.message, code=USAGE) from None
    if changes is not None and not isinstance(changes, dict):
        raise CliError(
            f"--data={data!r} is not a JSON object",
            'Give the changed fields as an object, e.g. --data \'{"name": "Ada"}\'.',
            USAGE,
        )
    settings = settings_for(db)
    database = open_database(settings)  # an existing one: a typo in --db creates nothing

    async def run() -> int:
        async with Hub(settings, db=database, deliver=False) as hub:
            return await hub.signal(
                event, primary_key, tenant=tenant, associate_id=associate_id, changes=changes
            )

    try:
        event_id = asyncio.run(run())
    except ValidationError as exc:
        raise CliError(exc.message, code=USAGE) from None
    finally:
        database.close()
    console().print(f"Stored event {event_id} ({event.lower()} {primary_key}) for tenant {tenant}.")
