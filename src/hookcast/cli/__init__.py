"""The `hookcast` command line: one Typer app; each command group in a module of its own
(`serve`: serve, worker, workers; `events`: signal; `admin`: migrate, settings; `doctor`;
`keys`; `webhooks`; `crmscript`).

A new command is one line below: `app.command("name")(module.function)` for a command,
`app.add_typer(module.group_app, name="name")` for a group made with `common.command_group`.
Its module imports only typer and `.common` at the top (see common.py).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._version import __version__
from . import admin, doctor, events, listen, serve
from .common import USAGE, CliError, command_group
from .crmscript import crmscript_app
from .keys import keys_app
from .webhooks import webhooks_app

__all__ = ["app", "main"]

_DEBUG = "hookcast_debug"
# click's own exceptions (usage errors, exit, abort) pass through: click says them. Found from
# BadParameter's bases, as typer re-exports them from click or from its vendored copy of it.
_CLICKS: tuple[type[BaseException], ...] = (
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
    typer.Exit,
    typer.Abort,
)


class _Root(TyperGroup):
    """Says every error in one or two lines (tracebacks with --debug only)."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context; its base is click's (vendored)
        try:
            return super().invoke(ctx)
        except _CLICKS:
            raise
        except Exception as exc:
            if ctx.meta.get(_DEBUG) or os.environ.get("HOOKCAST_LOG_LEVEL", "").upper() == "DEBUG":
                raise
            error = exc if isinstance(exc, CliError) else _unexpected(exc)
            for line in error.lines():
                typer.echo(line, err=True)
            raise typer.Exit(error.code) from None


def _unexpected(exc: Exception) -> CliError:
    from ..settings import SettingsError

    if isinstance(exc, SettingsError):  # e.g. read by a library call, not settings_for
        return CliError(exc.message, exc.hint, USAGE)
    text = (str(exc).strip().splitlines() or [""])[0]
    return CliError(
        f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
        "This was not expected; run again with --debug for the traceback, and report it.",
    )


app = command_group(
    "hookcast: a self-hosted webhook broadcaster that speaks the SuperOffice Webhook API.\n\n"
    "Settings come from HOOKCAST_* environment variables and the TOML file HOOKCAST_CONFIG "
    "names; `hookcast settings` lists them with their defaults. Exit status: 0 done, "
    "1 failed, 2 wrong command line or settings.",
    cls=_Root,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show the traceback of an error (also: HOOKCAST_LOG_LEVEL=DEBUG)."
        ),
    ] = False,
) -> None:
    if version:
        typer.echo(f"hookcast {__version__}")
        raise typer.Exit()
    ctx.meta[_DEBUG] = debug


# The order of registration is the order `hookcast --help` lists them in.
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("migrate")(admin.migrate)
app.command("signal")(events.signal_event)
app.command("workers")(serve.workers)
app.command("doctor")(doctor.doctor)
app.command("settings")(admin.settings)
app.command("listen")(listen.listen)
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(crmscript_app, name="crmscript")


def main() -> None:
    import sys

    # typer validates every parsed option with pydantic (0.15 s to import): not for this one.
    if sys.argv[1:] == ["--version"]:
        print(f"hookcast {__version__}")
        return
    app()
