"""The `hookcast` command line: one Typer app; each command group in a module of its own
(`serve`: serve, worker, workers; `events`: signal; `keys`; `webhooks`; `crmscript`)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from . import events, listen, serve
from .common import console
from .crmscript import crmscript_app
from .keys import keys_app
from .webhooks import webhooks_app

__all__ = ["app", "main"]

app = typer.Typer(
    help="hookcast: a self-hosted webhook broadcaster that speaks the SuperOffice Webhook API.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(crmscript_app, name="crmscript")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console().print(f"hookcast {__version__}")
        raise typer.Exit()


# The order of registration is the order `hookcast --help` lists them in.
app.command()(serve.serve)
app.command()(serve.worker)
app.command("signal")(events.signal_event)
app.command()(serve.workers)
app.command()(listen.listen)


def main() -> None:
    app()
