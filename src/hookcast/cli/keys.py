"""`hookcast keys`: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from ..model import MAX_ASSOCIATE_ID, format_date
from ..rights import DEFAULT_ROLE, Role
from .common import (
    CliError,
    DbOption,
    JsonOption,
    command_group,
    console,
    open_database,
    print_rows,
    settings_for,
)

keys_app = command_group("Create, list and revoke API keys.")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant (ContextIdentifier), e.g. Cust1234.")],
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
    from ..keys import create_key

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
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys (their prefixes; the keys themselves are not stored)."""
    from ..store import queries

    database = open_database(settings_for(db))
    try:
        keys = database.run_sync(queries.list_keys, tenant, write=False)
    finally:
        database.close()
    rows = [
        {
            "id": k.id,
            "prefix": k.prefix,
            "tenant": k.tenant,
            "associate_id": k.associate_id,
            "role": k.role.value,
            "name": k.name,
            "created": format_date(k.created),
            "revoked": format_date(k.revoked) if k.revoked else None,
        }
        for k in keys
    ]
    print_rows(
        rows,
        {
            "id": lambda r: str(r["id"]),
            "prefix": lambda r: r["prefix"] + "…",
            "tenant": lambda r: r["tenant"],
            "associate": lambda r: str(r["associate_id"]),
            "role": lambda r: r["role"],
            "name": lambda r: r["name"],
            "created": lambda r: r["created"],
            "revoked": lambda r: r["revoked"] or "",
        },
        as_json,
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id, from `hookcast keys list`.")],
    db: DbOption = None,
) -> None:
    """Revoke an API key; requests with it get 401 from now on."""
    import time

    from ..store import queries

    database = open_database(settings_for(db))
    try:
        revoked = database.run_sync(queries.revoke_key, key_id, time.time())
    finally:
        database.close()
    if not revoked:
        raise CliError(
            f"there is no active key {key_id}", "`hookcast keys list` shows the keys and their ids."
        )
    console().print(f"Revoked key {key_id}.")
