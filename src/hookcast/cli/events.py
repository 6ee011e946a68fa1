"""`hookcast signal`: store an event for a running serve or worker to deliver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..model import MAX_ASSOCIATE_ID
from .common import USAGE, CliError, DbOption, console, open_database, settings_for

BATCH = 1000  # events per transaction with --file, as POST /api/v1/Webhook/Signal takes


def signal_event(
    event: Annotated[
        str | None,
        typer.Argument(help="The event name, e.g. contact.changed.", show_default=False),
    ] = None,
    primary_key: Annotated[
        int | None, typer.Argument(help="The record's id (0 when unused).", show_default=False)
    ] = None,
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier).")] = "",
    associate_id: Annotated[
        int, typer.Option("--associate-id", min=0, max=MAX_ASSOCIATE_ID, help="Who caused it.")
    ] = 0,
    data: Annotated[
        str | None, typer.Option(help='Changed fields as a JSON object, e.g. \'{"name": "Ada"}\'.')
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="JSON lines, one event each: {EventName, PrimaryKey, Data} as "
            "POST /api/v1/Webhook/Signal takes them ('-' reads standard input). Every line is "
            f"checked before any is stored; stored {BATCH} to a transaction.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Run the same command again (e.g. after a crash) without signalling twice: "
            "with --file, batch i is stored under KEY:i.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Signal an event, or every event of a file: store them with their deliveries; a
    running serve or worker delivers them."""
    import asyncio

    from ..errors import HookcastError, ValidationError
    from ..hub import Hub
    from ..intake import Signal
    from ..jsontext import loads

    def fail(message: str) -> NoReturn:
        raise CliError(message, code=USAGE)

    if not tenant:
        fail("--tenant is required: the tenant (ContextIdentifier) the events belong to.")
    if file is not None:
        if event is not None or primary_key is not None or data is not None:
            fail("Give either an event and its primary key, or --file, not both.")
        signals = _read_signals(file, tenant, associate_id)
    else:
        if event is None or primary_key is None:
            fail("Give the event name and the primary key, or --file with JSON lines.")
        try:
            changes = loads(data, "--data") if data else None
        except ValidationError as exc:
            fail(exc.message)
        if changes is not None and not isinstance(changes, dict):
            raise CliError(
                f"--data={data!r} is not a JSON object",
                'Give the changed fields as an object, e.g. --data \'{"name": "Ada"}\'.',
                USAGE,
            )
        signals = [Signal(event, primary_key, tenant, associate_id, changes)]

    settings = settings_for(db)
    database = open_database(settings)  # an existing one: a typo in --db creates nothing

    async def run() -> list[int]:
        ids: list[int] = []
        async with Hub(settings, db=database, deliver=False) as hub:
            for number, at in enumerate(range(0, len(signals), BATCH)):
                key = None
                if idempotency_key is not None:
                    key = f"{idempotency_key}:{number}" if file is not None else idempotency_key
                answer = await hub.signal_many(signals[at : at + BATCH], idempotency_key=key)
                ids.extend(answer.ids)
        return ids

    try:
        ids = asyncio.run(run())
    except HookcastError as exc:
        fail(exc.message)
    finally:
        database.close()
    if file is None:
        console().print(
            f"Stored event {ids[0]} ({signals[0].event.lower()} {primary_key}) for tenant {tenant}."
        )
    else:
        console().print(f"Stored {len(ids)} events from {file} for tenant {tenant}.")


def _read_signals(file: Path, tenant: str, associate_id: int) -> list[Any]:
    """The events of a JSON-lines file, all checked first: a bad line is an error naming it
    (and up to nine more), and nothing is stored."""
    import sys

    from pydantic import ValidationError as ShapeError
    from rich.markup import escape

    from ..api.schemas import SignalEventBody
    from ..errors import HookcastError
    from ..intake import Signal, new_event, read_event_data
    from ..jsontext import loads

    text = sys.stdin.read() if str(file) == "-" else _read_text(file)
    signals, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = SignalEventBody.model_validate(loads(line, f"line {number}"))
            parts = read_event_data(item.event_name, item.data)
            signal = Signal(
                item.event_name,
                item.primary_key,
                tenant,
                associate_id,
                parts.changes,
                parts.values,
                parts.field_values,
            )
            new_event(**signal._asdict())  # the checks signal_many makes, for every line first
        except HookcastError as exc:
            problems.append(f"line {number}: {exc.message}")
        except ShapeError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            problems.append(f"line {number}: {where}: {first['msg']}")
        else:
            signals.append(signal)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        console().print("[red]" + escape("\n".join(problems[:10]) + more) + "[/]")
        console().print("[red]Nothing was stored.[/]")
        raise typer.Exit(2)
    return signals


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--file={str(file)!r} cannot be read: {exc}", code=USAGE) from None
