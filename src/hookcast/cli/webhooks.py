"""`hookcast webhooks`: inspect registered webhooks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..store import queries
from .common import DbOption, console, open_database, settings_for

webhooks_app = typer.Typer(help="Inspect registered webhooks.", no_args_is_help=True)


@webhooks_app.command("list")
def webhooks_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's webhooks")] = None,
    db: DbOption = None,
) -> None:
    """Show registered webhooks as a table."""
    database = open_database(settings_for(db))
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
