"""`hookcast listen`: a local HTTPS receiver for development, as Stripe's and Svix's CLIs
have one. It serves on loopback with a certificate of the dev CA (devca.py), prints every
delivery, optionally forwards it to a plain-HTTP app and relays that app's answer, and with
`--register` subscribes itself through a hookcast server's API for as long as it runs.

The webhook it registers is deleted when it stops (SIGINT/SIGTERM), unless `--keep`: its
URL names a port that is gone once the listener is, and a webhook left pointing there would
fail until hookcast sets it to TooManyErrors.
"""

from __future__ import annotations

import secrets as tokens
from pathlib import Path
from typing import Annotated

import typer

from .common import console, run_async

__all__ = ["listen"]


def listen(
    register: Annotated[
        list[str] | None,
        typer.Option(
            "--register",
            metavar="EVENT",
            help="Register this listener as a webhook for EVENT through the API (repeat it, "
            "or separate events with commas); deleted on exit unless --keep.",
        ),
    ] = None,
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward",
            help="Relay each delivery to this URL (e.g. http://localhost:5000/hook) "
            "and answer with its answer.",
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="HOOKCAST_LISTEN_SECRET",
            help="The webhook's Secret: each delivery's signatures are checked and shown as "
            "verified or not (never refused). With --register and no --secret, one is made up.",
        ),
    ] = None,
    url: Annotated[
        str, typer.Option(envvar="HOOKCAST_URL", help="The hookcast server, for --register.")
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(envvar="HOOKCAST_API_KEY", help="An API key of that server, for --register."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the registered webhook on exit.")
    ] = False,
    port: Annotated[
        int, typer.Option(help="Port on 127.0.0.1 [default: a free one]", show_default=False)
    ] = 0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="HOOKCAST_DEV_CA_DIR",
            help="Where the dev CA and certificate are kept [default: "
            "$XDG_DATA_HOME/hookcast/dev-ca, i.e. ~/.local/share/hookcast/dev-ca]",
        ),
    ] = None,
) -> None:
    """Receive webhooks on https://127.0.0.1 for local development and print each one.

    The certificate comes from a local CA created on first use and reused after; a
    `hookcast serve --dev` on this machine trusts it (and allows loopback targets).
    """
    from ..devca import ensure_dev_ca
    from ..devlisten import Listener

    events = [e.strip() for item in register or [] for e in item.split(",") if e.strip()]
    if register is not None and not events:
        raise typer.BadParameter("name at least one event", param_hint="--register")
    if events and not key:
        raise typer.BadParameter(
            "--register needs an API key of the server (--key or HOOKCAST_API_KEY)",
            param_hint="--key",
        )
    if forward is not None and not forward.startswith(("http://", "https://")):
        raise typer.BadParameter("give an http:// or https:// URL", param_hint="--forward")
    if events and not secret:
        secret = tokens.token_urlsafe(24)
    ca = ensure_dev_ca(state_dir)
    listener = Listener(console(), secret, forward)
    code = 0

    async def run() -> None:
        nonlocal code
        code = await listener.run(ca.cert, ca.key, ca.ca_cert, port, url, key, events, keep)

    run_async(run())
    if code:
        raise typer.Exit(code)
