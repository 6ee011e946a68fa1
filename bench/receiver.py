"""The benchmark's webhook receiver: a separate process, aiohttp.web on uvloop, TLS.

    python -m bench.receiver --cert leaf.pem --key leaf.key --secret S [--port 0]
                             [--control-port 0] [--mode ok|hang] [--hang-seconds 600]

Every POST to the TLS port (any path) is checked: its X-SuperOffice-Signature must be
base64(HMAC-SHA256(secret, body)); a good one is answered 200 (mode `ok`) or held until
released or `--hang-seconds` pass (mode `hang`); a bad one is answered 401 and counted.
When the body has `FieldValues.t` (a `time.monotonic()` taken by the sender just before it
signalled; CLOCK_MONOTONIC is one clock for all processes of a Linux machine), the receiver
keeps `now - t` as a signal-to-receipt latency sample.

A second, plain-HTTP port on 127.0.0.1 controls it:
    GET  /_count    {"count", "distinct", "bad", "hung", "first_at", "last_at"}  (cheap, for polling)
    GET  /_stats    the same plus "latencies" (seconds), "events" (count per X-SuperOffice-Event)
    POST /_reset    forget everything counted so far
    POST /_control  {"mode": "ok"|"hang"}; leaving `hang` answers every held request with 200

On start it prints one line `READY {"port": ..., "control_port": ..., "pid": ...}` and then
serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import Coroutine
from typing import Any, NoReturn

import orjson
from aiohttp import web


class State:
    def __init__(self, secret: str, mode: str, hang_seconds: float) -> None:
        self.key = secret.encode()
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.release = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.bad = 0
        self.hung = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.ids: set[str] = set()
        self.latencies: list[float] = []
        self.events: dict[str, int] = {}

    def counts(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "distinct": len(self.ids),
            "bad": self.bad,
            "hung": self.hung,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "mode": self.mode,
        }


def make_apps(state: State) -> tuple[web.Application, web.Application]:
    monotonic = time.monotonic
    digest = hmac.digest
    compare = hmac.compare_digest
    b64 = base64.b64encode
    loads = orjson.loads
    sha256 = hashlib.sha256

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        expected = b64(digest(state.key, body, sha256))
        given = headers.get("X-SuperOffice-Signature", "").encode()
        if not compare(expected, given):
            state.bad += 1
            return web.Response(status=401, text="bad signature")
        if state.mode == "hang":
            state.hung += 1
            try:
                await asyncio.wait_for(state.release.wait(), state.hang_seconds)
            except TimeoutError:
                pass
            return web.Response(text="ok")
        now = monotonic()
        state.count += 1
        if state.first_at is None:
            state.first_at = now
        state.last_at = now
        delivery = headers.get("webhook-id")
        if delivery is not None:
            state.ids.add(delivery)
        event = headers.get("X-SuperOffice-Event", "")
        state.events[event] = state.events.get(event, 0) + 1
        if b'"FieldValues"' in body:
            values = loads(body).get("FieldValues")
            if isinstance(values, dict) and isinstance(t := values.get("t"), float):
                state.latencies.append(now - t)
        return web.Response(text="ok")

    async def count(_: web.Request) -> web.Response:
        return web.json_response(state.counts())

    async def stats(request: web.Request) -> web.Response:
        data = state.counts()
        data["events"] = state.events
        if request.query.get("samples", "1") != "0":
            data["latencies"] = state.latencies
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.counts())

    async def control(request: web.Request) -> web.Response:
        mode = (await request.json()).get("mode")
        if mode not in ("ok", "hang"):
            return web.json_response({"error": "mode must be ok or hang"}, status=400)
        if mode == "hang" and state.mode != "hang":
            state.release = asyncio.Event()
        if mode == "ok":
            state.release.set()
        state.mode = mode
        return web.json_response(state.counts())

    hooks = web.Application(client_max_size=2 * 1024 * 1024)
    hooks.router.add_post("/{tail:.*}", hook)
    ctl = web.Application()
    ctl.router.add_get("/_count", count)
    ctl.router.add_get("/_stats", stats)
    ctl.router.add_post("/_reset", reset)
    ctl.router.add_post("/_control", control)
    return hooks, ctl


async def serve(args: argparse.Namespace) -> None:
    state = State(args.secret, args.mode, args.hang_seconds)
    hooks, ctl = make_apps(state)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    # No access log, no handler cancellation: the receiver must cost as little as it can.
    hooks_runner = web.AppRunner(hooks, access_log=None, handle_signals=False)
    ctl_runner = web.AppRunner(ctl, access_log=None, handle_signals=False)
    await hooks_runner.setup()
    await ctl_runner.setup()
    hook_site = web.TCPSite(hooks_runner, args.host, args.port, ssl_context=tls, backlog=1024)
    ctl_site = web.TCPSite(ctl_runner, "127.0.0.1", args.control_port)
    await hook_site.start()
    await ctl_site.start()
    port = hook_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    control_port = ctl_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        "READY " + json.dumps({"port": port, "control_port": control_port, "pid": os.getpid()}),
        flush=True,
    )
    await stop.wait()
    state.release.set()
    await hooks_runner.cleanup()
    await ctl_runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.receiver", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TLS port for deliveries (0: any free)")
    receiver_arguments(parser, hang="longest a request is held in mode hang")
    parser.add_argument("--mode", choices=("ok", "hang"), default="ok")
    run_receiver(serve(parser.parse_args(argv)))


def receiver_arguments(parser: argparse.ArgumentParser, *, hang: str) -> None:
    """The options every bench receiver takes (this one and bench.hosts)."""
    parser.add_argument(
        "--control-port", type=int, default=0, help="plain HTTP control port (0: any free)"
    )
    parser.add_argument("--cert", required=True, help="PEM certificate chain of the leaf")
    parser.add_argument("--key", required=True, help="PEM private key of the leaf")
    parser.add_argument("--secret", required=True, help="the webhooks' Secret, to check signatures")
    parser.add_argument("--hang-seconds", type=float, default=600.0, help=hang)


def run_receiver(main: Coroutine[Any, Any, None]) -> NoReturn:
    """Run a receiver's main coroutine on uvloop (as the clients run), then exit."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the project's dependencies
        asyncio.run(main)
    else:
        uvloop.run(main)
    sys.exit(0)


if __name__ == "__main__":
    main()
