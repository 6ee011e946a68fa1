"""`hookcast keys`: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..keys import create_key
from ..model import MAX_ASSOCIATE_ID, format_date
from ..rights import DEFAULT_ROLE, Role
from ..store import queries
from .common import DbOption, console, open_database, settings_for

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier), e.g. Cust1234")],
    associate_id: Annotated[
        int,
        typer.Option(
            "--associate-id", min=0, max=MAX_ASSOCIATE_ID, help="The associate the key acts as"
        ),
    ],
    name: Annotated[
        str, typer.Option(help="The associate's name, shown as RegisteredAssociate")
    ] = "",
    full_name: Annotated[str, typer.Option("--full-name", help="The associate's full name")] = "",
    role: Annotated[
        Role,
        typer.Option(
            case_sensitive=False,
            help="What the key may do: admin (everything), manage (webhooks and scripts), "
            "signal (only signal events), read (read without Secrets)",
        ),
    ] = DEFAULT_ROLE,
    db: DbOption = None,
) -> None:
    """Create an API key; the key itself is printed alone on the last line, once."""
    database = open_database(settings_for(db))
    try:
        record, key = create_key(
            database,
            tenant=tenant,
            associate_id=associate_id,
            name=name,
            full_name=full_name,
            role=role,
        )
    finally:
        database.close()
    console().print(
        f"Created key {record.id} ({record.prefix}…) for tenant {tenant}, "
        f"associate {associate_id}, role {record.role.value}. Store it now; it cannot be shown again."
    )
    print(key, flush=True)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None,
    db: DbOption = None,
) -> None:
    """List API keys (their prefixes; the keys themselves are not stored)."""
    database = open_database(settings_for(db))
    try:
        rows = database.run_sync(queries.list_keys, tenant)
    finally:
        database.close()
    table = Table("id", "prefix", "tenant", "associate", "role", "name", "created", "revoked")
    for k in rows:
        table.add_row(
            str(k.id),
            k.prefix + "…",
            k.tenant,
            str(k.associate_id),
            k.role.value,
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

    database = open_database(settings_for(db))
    try:
        revoked = database.run_sync(queries.revoke_key, key_id, time.time())
    finally:
        database.close()
    if not revoked:
        console().print(f"[red]No active key {key_id}.[/]")
        raise typer.Exit(1)
    console().print(f"Revoked key {key_id}.")
