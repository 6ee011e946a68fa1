"""Many HTTPS receiver hosts in one process, for the `realistic` scenario.

    python -m bench.hosts --plan hosts.json --cert leaf.pem --key leaf.key --secret S
                          [--control-port 0] [--hang-seconds 600]

`--plan` is a JSON file: {"seed": int, "hosts": [{"index": i, "address": "127.0.0.x",
"class": "fast"|"slow"|"failing"|"hanging"}, ...]}. Every host listens on its own loopback
address, all of them on one port (chosen on start) with one TLS certificate that covers
every address; one aiohttp application serves them all. Deliveries go to
`https://<address>:<port>/h/<host index>/<webhook index>/<run>`: `run` is a tag the harness
gives each sender (a hookcast worker, the bare client at one concurrency), and everything
below is counted per run, so that a worker still running beside the next measurement does
not mix into it.

Per class (CLASSES): `fast` answers 200 after 30–80 ms, `slow` 200 after 150–400 ms,
`failing` 500 after 30–80 ms, `hanging` never answers (the request is held until its run is
released through the control port, the process stops, or `--hang-seconds` pass; then 503).
Each request's delay is drawn from the host's own random generator, seeded with the plan's
seed and the host's index, so a host gives the same sequence of delays in every run.

Every request is checked first: its X-SuperOffice-Signature must be
base64(HMAC-SHA256(secret, body)), else it is answered 401 and counted as bad. Per host the
receiver counts requests with a good signature and duplicates (a `webhook-id` the host has
seen before, in any run; X-SuperOffice-EventId when there is none). Per request it reads
`FieldValues.t` (the sender's `time.monotonic()` at signal time) and `FieldValues.ph` (a
phase label the harness chooses); for the healthy classes (fast, slow) it keeps per phase
the count, the first and last arrival (monotonic) and the signal→receipt latencies; for
failing and hanging hosts it keeps every request's arrival (wall clock, `time.time()`,
comparable with the database's times) per webhook. Requests being answered right now
("open", by class) are counted with their peak: with handler cancellation on, a request
whose client gave up (closed the connection) stops counting at once.

A plain-HTTP control port on 127.0.0.1 (`?run=TAG` selects the run):
    GET  /_count?run=    per phase the healthy counts and last arrival, open requests (cheap)
    GET  /_stats?run=    everything: per host counts, latencies per phase, failing/hanging arrivals
    POST /_release?run=  answer the run's held requests (503) now
    POST /_reset         release every held request and forget everything counted

On start it prints one line `READY {"port": ..., "control_port": ..., "pid": ...}`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import json
import os
import random
import resource
import signal
import socket
import ssl
import time
from typing import Any

import orjson
from aiohttp import web

from .receiver import receiver_arguments, run_receiver

# class: (least delay s, most delay s, status); hanging: held, never answered in time.
CLASSES: dict[str, tuple[float, float, int]] = {
    "fast": (0.030, 0.080, 200),
    "slow": (0.150, 0.400, 200),
    "failing": (0.030, 0.080, 500),
    "hanging": (0.0, 0.0, 503),
}
HEALTHY = ("fast", "slow")


class Host:
    __slots__ = ("address", "cls", "index", "lo", "rng", "span", "status")

    def __init__(self, index: int, address: str, cls: str, seed: int) -> None:
        self.index = index
        self.address = address
        self.cls = cls
        lo, hi, status = CLASSES[cls]
        self.lo, self.span, self.status = lo, hi - lo, status
        self.rng = random.Random(f"{seed}/{index}")


class Phase:
    __slots__ = ("count", "first_at", "last_at", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.latencies: list[float] = []


class Run:
    """What one sender (a run tag in the URL) did: counted apart from the other runs, so a
    worker that keeps running beside the next measurement does not mix into it."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self.open = dict.fromkeys(CLASSES, 0)
        self.peak_open = dict.fromkeys(CLASSES, 0)
        self.peak_open_total = 0
        self.bad = 0
        self.received: dict[int, int] = {}  # host -> requests with a good signature
        self.duplicates: dict[int, int] = {}  # host -> requests whose id the host had seen
        self.arrivals: dict[int, list[float]] = {}  # failing/hanging: webhook -> wall times
        self.release = asyncio.Event()

    def counts(self) -> dict[str, Any]:
        return {
            "phases": {
                name: {"healthy": p.count, "first_at": p.first_at, "last_at": p.last_at}
                for name, p in self.phases.items()
            },
            "open": dict(self.open),
            "open_total": sum(self.open.values()),
            "bad": self.bad,
            "duplicates": sum(self.duplicates.values()),
        }


class State:
    def __init__(self, secret: str, hosts: list[Host], hang_seconds: float) -> None:
        self.key = secret.encode()
        self.hosts = {h.index: h for h in hosts}
        self.hang_seconds = hang_seconds
        self.reset()

    def reset(self) -> None:
        for run in getattr(self, "runs", {}).values():
            run.release.set()
        self.runs: dict[str, Run] = {}
        self.ids: dict[int, set[str]] = {i: set() for i in self.hosts}  # per host, all runs
        self.unknown = 0

    def run(self, name: str) -> Run:
        run = self.runs.get(name)
        if run is None:
            run = self.runs[name] = Run()
        return run


def make_apps(state: State) -> tuple[web.Application, web.Application]:
    monotonic = time.monotonic
    wall = time.time
    digest = hmac.digest
    compare = hmac.compare_digest
    b64 = base64.b64encode
    loads = orjson.loads
    sha256 = hashlib.sha256
    sleep = asyncio.sleep
    hosts = state.hosts

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        info = request.match_info
        try:
            host = hosts[int(info["host"])]
            webhook = int(info["webhook"])
        except (KeyError, ValueError):
            state.unknown += 1
            return web.Response(status=404, text="no such host")
        run = state.run(info["run"])
        expected = b64(digest(state.key, body, sha256))
        given = headers.get("X-SuperOffice-Signature", "").encode()
        if not compare(expected, given):
            run.bad += 1
            return web.Response(status=401, text="bad signature")
        now = monotonic()
        index = host.index
        run.received[index] = run.received.get(index, 0) + 1
        key = headers.get("webhook-id") or headers.get("X-SuperOffice-EventId") or ""
        seen = state.ids[index]
        if key in seen:
            run.duplicates[index] = run.duplicates.get(index, 0) + 1
        else:
            seen.add(key)
        cls = host.cls
        if cls in HEALTHY:
            values = loads(body).get("FieldValues") or {}
            name = values.get("ph", "")
            phase = run.phases.get(name)
            if phase is None:
                phase = run.phases[name] = Phase()
            phase.count += 1
            if phase.first_at is None:
                phase.first_at = now
            phase.last_at = now
            if isinstance(t := values.get("t"), float):
                phase.latencies.append(now - t)
        else:
            run.arrivals.setdefault(webhook, []).append(wall())
        opened = run.open
        opened[cls] += 1
        if opened[cls] > run.peak_open[cls]:
            run.peak_open[cls] = opened[cls]
        total = sum(opened.values())
        if total > run.peak_open_total:
            run.peak_open_total = total
        try:
            if cls == "hanging":
                try:
                    await asyncio.wait_for(run.release.wait(), state.hang_seconds)
                except TimeoutError:
                    pass
                return web.Response(status=503, text="released")
            await sleep(host.lo + host.rng.random() * host.span)
            return web.Response(status=host.status, text="ok" if host.status == 200 else "error")
        finally:
            opened[cls] -= 1

    def answer(data: Any) -> web.Response:
        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        return answer(state.run(request.query.get("run", "")).counts())

    async def stats(request: web.Request) -> web.Response:
        run = state.run(request.query.get("run", ""))
        data = run.counts()
        data["peak_open"] = run.peak_open
        data["peak_open_total"] = run.peak_open_total
        data["unknown"] = state.unknown
        data["latencies"] = {name: p.latencies for name, p in run.phases.items()}
        data["hosts"] = [
            {
                "index": i,
                "address": h.address,
                "class": h.cls,
                "received": run.received.get(i, 0),
                "duplicates": run.duplicates.get(i, 0),
            }
            for i, h in state.hosts.items()
        ]
        data["arrivals"] = {str(w): times for w, times in run.arrivals.items()}
        return answer(data)

    async def release(request: web.Request) -> web.Response:
        run = state.run(request.query.get("run", ""))
        run.release.set()
        run.release = asyncio.Event()
        return answer(run.counts())

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return answer({})

    hooks = web.Application(client_max_size=2 * 1024 * 1024)
    hooks.router.add_post("/h/{host}/{webhook}/{run}", hook)
    ctl = web.Application()
    ctl.router.add_get("/_count", count)
    ctl.router.add_get("/_stats", stats)
    ctl.router.add_post("/_release", release)
    ctl.router.add_post("/_reset", reset)
    return hooks, ctl


def bind_all(addresses: list[str], attempts: int = 50) -> list[socket.socket]:
    """One listening socket per address, all on the same port (the first address picks a free
    one; on a clash further on, everything is closed and tried again with another)."""
    for _ in range(attempts):
        socks: list[socket.socket] = []
        try:
            port = 0
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                port = sock.getsockname()[1]
                sock.listen(1024)
                sock.setblocking(False)
            return socks
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError("no port free on every address")


def raise_nofile() -> None:
    """Many hosts × many connections each: the soft limit of open files up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(args: argparse.Namespace) -> None:
    raise_nofile()
    with open(args.plan) as f:
        plan = json.load(f)
    hosts = [Host(h["index"], h["address"], h["class"], plan["seed"]) for h in plan["hosts"]]
    state = State(args.secret, hosts, args.hang_seconds)
    hooks, ctl = make_apps(state)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    # No access log; handler cancellation on, so that a request whose client gave up (an
    # attempt timeout) no longer counts as open.
    hooks_runner = web.AppRunner(
        hooks, access_log=None, handle_signals=False, handler_cancellation=True
    )
    ctl_runner = web.AppRunner(ctl, access_log=None, handle_signals=False)
    await hooks_runner.setup()
    await ctl_runner.setup()
    socks = bind_all([h.address for h in hosts])
    for sock in socks:
        await web.SockSite(hooks_runner, sock, ssl_context=tls, backlog=1024).start()
    ctl_site = web.TCPSite(ctl_runner, "127.0.0.1", args.control_port)
    await ctl_site.start()
    port = socks[0].getsockname()[1]
    control_port = ctl_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        "READY "
        + json.dumps(
            {"port": port, "control_port": control_port, "pid": os.getpid(), "hosts": len(hosts)}
        ),
        flush=True,
    )
    await stop.wait()
    state.reset()  # held requests go
    await hooks_runner.cleanup()
    await ctl_runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hosts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--plan", required=True, help="JSON file: the seed and the hosts")
    receiver_arguments(parser, hang="longest a hanging host holds a request")
    run_receiver(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
