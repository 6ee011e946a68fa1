"""`hookcast listen`: a local HTTPS receiver for development, as Stripe's and Svix's CLIs
have one. It serves on loopback with a certificate of the dev CA (devca.py), prints every
delivery, optionally forwards it to a plain-HTTP app and relays that app's answer, and with
`--register` subscribes itself through a hookcast server's API for as long as it runs.

The webhook it registers is deleted when it stops (SIGINT/SIGTERM), unless `--keep`: its
URL names a port that is gone once the listener is, and a webhook left pointing there would
fail until hookcast sets it to TooManyErrors.
"""

from __future__ import annotations

import asyncio
import secrets as tokens
import signal as signals
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.json import JSON
from rich.text import Text

from .common import console, run_async

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["listen"]

# Hop-by-hop and length headers are the forwarding client's own business.
_NOT_FORWARDED = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"}
)
# The app's body arrives decoded (aiohttp undoes gzip), so its encoding is not relayed.
_NOT_RELAYED = frozenset(
    {
        "content-length",
        "content-encoding",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "date",
        "server",
    }
)
FORWARD_TIMEOUT = 30.0  # above hookcast's default attempt timeout, which bounds the answer anyway


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
    listener = _Listener(console(), secret, forward)
    code = 0

    async def run() -> None:
        nonlocal code
        code = await listener.run(ca.cert, ca.key, ca.ca_cert, port, url, key, events, keep)

    run_async(run())
    if code:
        raise typer.Exit(code)


class _Listener:
    def __init__(self, out: Console, secret: str | None, forward: str | None) -> None:
        from ..receiver import WebhookReceiver

        self.out = out
        self.secret = secret
        self.forward = forward
        # Shows, never refuses: a signature present is checked, none is required but the
        # SuperOffice one (hookcast can be set to send only that one).
        self.receiver: WebhookReceiver | None = None
        if secret:
            self.receiver = WebhookReceiver(secret, require=["superoffice"], deduplicate=False)
        self.count = 0

    async def run(
        self,
        certfile: Path,
        keyfile: Path,
        ca_file: Path,
        port: int,
        url: str,
        key: str | None,
        events: list[str],
        keep: bool,
    ) -> int:
        import aiohttp
        from aiohttp import web

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
        await site.start()
        bound = runner.addresses[0][1]
        target = f"https://127.0.0.1:{bound}/"
        self.out.print(f"hookcast listen on [bold]{target}[/]")
        self.out.print(
            f"  certificate from the dev CA {ca_file} (trusted by `hookcast serve --dev`)"
        )
        if self.forward:
            self.out.print(f"  forwarding to {self.forward}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGINT, signals.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
        webhook_id: int | None = None
        async with aiohttp.ClientSession(timeout=timeout) as self.session:
            try:
                if events:
                    assert key is not None and self.secret is not None
                    webhook_id = await self._register(url, key, events, target)
                    if webhook_id is None:
                        return 1
                self.out.print("Ready. Ctrl-C to stop.")
                await stop.wait()
            finally:
                if webhook_id is not None and not keep:
                    assert key is not None
                    await self._unregister(url, key, webhook_id)
                elif webhook_id is not None:
                    self.out.print(f"Webhook {webhook_id} kept (--keep).")
                await runner.cleanup()
        return 0

    # -- the API -------------------------------------------------------------------------------

    async def _register(self, url: str, key: str, events: list[str], target: str) -> int | None:
        import aiohttp

        carrier = {
            "Name": f"hookcast listen ({target})",
            "Events": events,
            "TargetUrl": target,
            "Secret": self.secret,
            "State": "Active",
            "Type": "webhook",
            "Description": "registered by `hookcast listen` for local development",
        }
        try:
            async with self.session.post(
                f"{url.rstrip('/')}/api/v1/Webhook",
                json=carrier,
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                answer: Any = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.out.print(Text(f"Could not register at {url}: {exc}", style="bold red"))
            return None
        if status != 200:
            message = answer.get("ErrorMessage") if isinstance(answer, dict) else answer
            self.out.print(Text(f"Registration refused ({status}): {message}", style="bold red"))
            if status == 400:
                self.out.print(
                    "Is the server a `hookcast serve --dev`? Only that trusts this listener's "
                    "CA and allows loopback targets."
                )
            return None
        webhook_id = int(answer["WebhookId"])
        self.out.print(
            f"Registered webhook {webhook_id} for {', '.join(events)} at {url} "
            f"(deleted on exit unless --keep)."
        )
        self.out.print(Text(f"  Secret: {self.secret}"))
        self.out.print(Text(f"  StandardWebhooksSecret: {answer.get('StandardWebhooksSecret')}"))
        return webhook_id

    async def _unregister(self, url: str, key: str, webhook_id: int) -> None:
        import aiohttp

        try:
            async with self.session.delete(
                f"{url.rstrip('/')}/api/v1/Webhook/{webhook_id}",
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.out.print(Text(f"Could not delete webhook {webhook_id}: {exc}", style="red"))
            return
        if status in (204, 404):
            self.out.print(f"Deleted webhook {webhook_id}.")
        else:
            self.out.print(Text(f"Deleting webhook {webhook_id} answered {status}", style="red"))

    # -- one delivery ------------------------------------------------------------------------------

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        self.count += 1
        self._show(request, body)
        if not self.forward:
            return web.json_response({"received": True})
        started = time.monotonic()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            async with self.session.request(
                request.method, self.forward, data=body, headers=headers, allow_redirects=False
            ) as answer:
                content = await answer.read()
                relayed = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_RELAYED}
                status, reason = answer.status, answer.reason
        except Exception as exc:  # the app is down or broke the connection: tell both sides
            message = f"hookcast listen could not forward to {self.forward}: {exc!r}"
            self.out.print(Text(f"  → {message}", style="bold red"))
            return web.Response(status=502, text=message)
        elapsed = (time.monotonic() - started) * 1000
        style = "green" if 200 <= status < 300 else "red"
        self.out.print(
            Text(f"  → {self.forward}: {status} {reason} ({elapsed:.0f} ms)", style=style)
        )
        return web.Response(status=status, body=content, headers=relayed)

    def _show(self, request: Any, body: bytes) -> None:
        from ..receiver import ReceiverError

        h = request.headers
        when = datetime.now().strftime("%H:%M:%S")
        event = h.get("X-SuperOffice-Event", "(no X-SuperOffice-Event)")
        title = Text(f"{when} #{self.count} {request.method} {request.path_qs}  ", style="bold")
        title.append(event, style="bold cyan")
        if h.get("X-Hook-Test") == "true":
            title.append("  (test event)", style="yellow")
        self.out.print(title)
        self.out.print(
            Text(
                f"  EventId {h.get('X-SuperOffice-EventId', '-')}  webhook-id "
                f"{h.get('webhook-id', '-')}  retry {h.get('X-SuperOffice-Retry', '-')}"
            )
        )
        if self.receiver is None:
            self.out.print(Text("  signature: not checked (no --secret)", style="yellow"))
        else:
            try:
                self.receiver.verify(body, h)
            except ReceiverError as exc:
                self.out.print(Text(f"  signature: NOT verified: {exc.message}", style="bold red"))
            else:
                schemes = [n for n in ("X-SuperOffice-Signature", "webhook-signature") if n in h]
                self.out.print(Text(f"  signature: verified ({', '.join(schemes)})", style="green"))
        text = body.decode("utf-8", errors="replace")
        try:
            self.out.print(JSON(text, indent=2))
        except ValueError:
            self.out.print(Text(text))


def enable_dev_mode(settings: Settings) -> Settings:
    """What `hookcast serve --dev` runs with: the dev CA trusted and loopback targets
    allowed, said loudly in the log (it must never go unnoticed on a real server)."""
    import logging

    from ..devca import DEV_ALLOW_TARGETS, dev_settings, ensure_dev_ca

    ca = ensure_dev_ca()
    dev = dev_settings(settings, ca)
    logging.getLogger("hookcast").warning(
        "DEVELOPMENT MODE (--dev): trusting the local dev CA %s and allowing loopback "
        "targets (%s). Never use --dev on a server that others can reach.",
        ca.ca_cert,
        ", ".join(DEV_ALLOW_TARGETS),
    )
    return dev
