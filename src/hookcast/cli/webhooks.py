"""`hookcast webhooks`: inspect registered webhooks."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, JsonOption, command_group, open_database, print_rows, settings_for

webhooks_app = command_group("Inspect registered webhooks.")


@webhooks_app.command("list")
def webhooks_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's webhooks.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show registered webhooks (without their Secrets)."""
    from ..store import queries

    database = open_database(settings_for(db))
    try:
        hooks = database.run_sync(
            lambda conn: (
                queries.list_webhooks(conn, tenant) if tenant else queries.list_all_webhooks(conn)
            ),
            write=False,
        )
    finally:
        database.close()
    rows = [
        {
            "id": h.id,
            "tenant": h.tenant,
            "name": h.name,
            "state": h.state.name,
            "type": h.type,
            "events": list(h.events),
            "target": h.target_url,
        }
        for h in hooks
    ]
    print_rows(
        rows,
        {
            "id": lambda r: str(r["id"]),
            "tenant": lambda r: r["tenant"],
            "name": lambda r: r["name"],
            "state": lambda r: r["state"],
            "type": lambda r: r["type"],
            "events": lambda r: ", ".join(r["events"]),
            "target": lambda r: r["target"],
        },
        as_json,
    )
