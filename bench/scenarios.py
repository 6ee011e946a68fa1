"""The scenarios of the benchmark. Each is `async def name(ctx) -> dict` and stops by itself:
every load loop is bounded in count and every wait has a deadline.

Sizes come from `ctx.size(full, quick)`, so `--quick` runs the same code on less data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.progress import Progress, TaskID

from hookcast import Hub
from hookcast.api.schemas import WebhookIn
from hookcast.model import Principal
from hookcast.net.sender import HttpSender
from hookcast.registry import Registry
from hookcast.settings import Settings

from .env import (
    ASSOCIATE,
    DEFAULT_POSTGRES_URL,
    SECRET,
    TENANT,
    HookcastConfig,
    HookcastProcess,
    Noise,
    PgActivity,
    PgDatabase,
    Receiver,
    Tls,
    cpu_of_named,
    create_key,
    db_url,
    foreign_load,
    free_port,
    insert_webhooks,
    pg_depth,
    pg_server,
    prepare_db,
    read_depth,
    read_status,
    signed_payload,
    wait_recorded,
)
from .stats import median, summary_ms

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Context:
    tls: Tls
    workdir: Path
    receiver: Receiver
    config: HookcastConfig
    progress: Progress
    quick: bool
    figures: dict[str, Any] = field(default_factory=dict)  # results of the scenarios run so far
    postgres_url: str = DEFAULT_POSTGRES_URL  # the server postgres_workers creates its databases on
    pg_analyze: bool = False  # postgres_workers: ANALYZE between queueing and draining
    wait_idle: float = 0.0  # --wait-idle: long scenarios also wait (briefly) between their parts
    _dbs: itertools.count = field(default_factory=itertools.count)

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def db_path(self, name: str) -> Path:
        return self.workdir / f"{next(self._dbs):02d}-{name}.db"

    def task(self, description: str, total: float | None) -> TaskID:
        return self.progress.add_task(description, total=total)

    def done(self, task: TaskID, note: str = "") -> None:
        t = self.progress.tasks[task]
        completed = t.total if t.total is not None else t.completed
        self.progress.update(
            task,
            completed=completed,
            description=t.description + (f" [dim]{note}[/]" if note else ""),
        )


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (default: this one), from /proc/<pid>/stat."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


# ----- shared pieces ---------------------------------------------------------------------------


def signal_kwargs() -> dict[str, Any]:
    """What every benchmark signal carries: the send time in FieldValues, so the receiver can
    compute signal-to-receipt latency."""
    return {
        "tenant": TENANT,
        "associate_id": ASSOCIATE,
        "changes": ["name"],
        "field_values": {"t": time.monotonic()},
    }


class Flow:
    """Closed-loop load: at most `window` signals outstanding (sent, not yet received).

    A poller reads the receiver's count every `interval` seconds and opens the gate;
    `producers` tasks each loop: wait for room, take the next number, send it."""

    def __init__(
        self,
        receiver: Receiver,
        *,
        total: int,
        window: int,
        progress: Progress,
        task: TaskID,
        interval: float = 0.02,
        per_send: int = 1,
    ) -> None:
        """`per_send`: how many deliveries one send makes (a batch request's events); the
        numbers given to `send` step by it."""
        self.receiver = receiver
        self.per_send = per_send
        self.total = total
        self.window = window
        self.progress = progress
        self.task = task
        self.interval = interval
        self.sent = 0
        self.received = 0
        self.errors = 0
        self.room = asyncio.Event()
        self.room.set()
        self.finished = asyncio.Event()

    async def poll(self, deadline: float) -> None:
        while True:
            counts = await self.receiver.count()
            self.received = counts["count"]
            self.progress.update(self.task, completed=self.received)
            if self.sent - self.received < self.window:
                self.room.set()
            if self.received >= self.total or time.monotonic() > deadline:
                self.finished.set()
                self.room.set()
                return
            await asyncio.sleep(self.interval)

    async def produce(self, send: Callable[[int], Awaitable[None]], deadline: float) -> None:
        while self.sent < self.total and time.monotonic() < deadline:
            if self.sent - self.received >= self.window:
                self.room.clear()
                await self.room.wait()
                if self.finished.is_set():
                    return
                continue
            number = self.sent
            self.sent += self.per_send
            try:
                await send(number)
            except Exception:
                self.errors += 1
                if self.errors > 100:
                    raise

    async def run(
        self, send: Callable[[int], Awaitable[None]], producers: int, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        poller = asyncio.create_task(self.poll(deadline))
        try:
            await asyncio.gather(*(self.produce(send, deadline) for _ in range(producers)))
            await poller
        finally:
            poller.cancel()


async def fixed_rate(
    send: Callable[[int], Awaitable[None]],
    rate_per_s: float,
    count: int,
    progress: Progress,
    task: TaskID,
) -> tuple[list[float], float]:
    """Open-loop load: signal number i at start + i/rate, whatever earlier signals are doing.
    Returns each signal()'s duration and the achieved rate."""
    durations: list[float] = []

    async def one(i: int) -> None:
        t = time.monotonic()
        await send(i)
        durations.append(time.monotonic() - t)

    tasks = []
    start = time.monotonic() + 0.02
    for i in range(count):
        delay = start + i / rate_per_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
        if i % 50 == 0:
            progress.update(task, completed=i)
    elapsed = time.monotonic() - start
    await asyncio.gather(*tasks)
    progress.update(task, completed=count)
    return durations, rate(count, elapsed)


async def queue_events(
    ctx: Context, db: Path | str, event: str, n: int, task: TaskID, *, producers: int
) -> float:
    """The application stores n events (one delivery each) through `Hub(deliver=False)`,
    `producers` tasks at a time; returns the seconds it took."""
    t0 = time.monotonic()
    async with Hub(ctx.config.settings(db), deliver=False) as app:
        counter = itertools.count()

        async def producer() -> None:
            while (i := next(counter)) < n:
                await app.signal(event, i, **signal_kwargs())
                if i % 500 == 0:
                    ctx.progress.update(task, completed=i)

        await asyncio.wait_for(asyncio.gather(*(producer() for _ in range(producers))), 300)
    return time.monotonic() - t0


async def register(
    hub: Hub,
    settings: Settings,
    name: str,
    events: list[str],
    url: str,
    options: dict[str, Any] | None = None,
) -> int:
    """Create a webhook the way the API does: validated, verified with a signed test POST.
    `options`: delivery options as the API takes them (--webhook-options)."""
    registry = Registry(hub.db, settings, hub.sender, wake=hub.wake)
    hook = await registry.create(
        Principal(TENANT, ASSOCIATE),
        WebhookIn.model_validate(
            {"Name": name, "Events": events, "TargetUrl": url, "Secret": SECRET, **(options or {})}
        ),
    )
    return hook.id


async def latencies_at(receiver: Receiver) -> dict[str, Any]:
    stats = await receiver.stats()
    return summary_ms(stats["latencies"])


# ----- 1. ceiling ------------------------------------------------------------------------------


async def ceiling(ctx: Context) -> dict[str, Any]:
    """A bare aiohttp client (keep-alive, uvloop, this process) posting the same signed
    payloads hookcast sends, to the same receiver, at 8, 16 and 32 requests in flight."""
    n = ctx.size(20_000, 6_000)
    tls = ssl.create_default_context(cafile=ctx.tls.ca_path)
    runs: dict[str, Any] = {}
    for concurrency in (8, 16, 32):
        task = ctx.task(f"ceiling: {concurrency} in flight", n)
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=tls)
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as session:

            async def post(body: bytes, headers: dict[str, str]) -> bool:
                async with session.post(ctx.receiver.url, data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status == 200

            runs[str(concurrency)] = await _post_run(ctx, task, n, concurrency, post)
    best = max(runs, key=lambda c: runs[c]["per_s"])
    # Not the ceiling: hookcast's own sender (HttpSender.send over net/http11.py) on
    # the same payloads at the best concurrency, to show what the transport costs next to it.
    sender_task = ctx.task(f"hookcast's sender: {best} in flight", n)
    async with HttpSender(ctx.config.settings(ctx.db_path("sender"))) as sender:

        async def send(body: bytes, headers: dict[str, str]) -> bool:
            return (await sender.send(ctx.receiver.url, body, headers)).ok

        sender_run = await _post_run(ctx, sender_task, n, int(best), send)
    return {
        "best_concurrency": int(best),
        "per_s": runs[best]["per_s"],
        "runs": runs,
        "hookcast_sender": {"concurrency": int(best), **sender_run},
    }


async def _post_run(
    ctx: Context,
    task: TaskID,
    n: int,
    concurrency: int,
    post: Callable[[bytes, dict[str, str]], Awaitable[bool]],
) -> dict[str, Any]:
    """`concurrency` workers post n signed payloads (after a warm-up that opens the
    connections); rate, errors and CPU per request of this process and of the receiver."""
    counter = itertools.count()
    errors = 0

    async def worker(limit: int) -> None:
        nonlocal errors
        while (i := next(counter)) < limit:
            if not await post(*_ceiling_payload(i)):
                errors += 1
            if i % 256 == 0:
                ctx.progress.update(task, completed=i)

    # Warm-up: open the connections (TLS handshakes) before the clock starts.
    await ctx.receiver.reset()
    await asyncio.gather(*(worker(concurrency * 4) for _ in range(concurrency)))
    await ctx.receiver.reset()
    counter, errors = itertools.count(), 0
    cpu0, recv_cpu0 = cpu_seconds(), cpu_seconds(ctx.receiver.pid)
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker(n) for _ in range(concurrency))), 120)
    elapsed = time.monotonic() - t0
    cpu, recv_cpu = cpu_seconds() - cpu0, cpu_seconds(ctx.receiver.pid) - recv_cpu0
    counts = await ctx.receiver.count()
    ctx.done(task, f"{rate(n, elapsed):,.0f}/s")
    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "per_s": round(rate(n, elapsed), 1),
        "errors": errors,
        "received": counts["count"],
        "bad_signatures": counts["bad"],
        "client_cpu_us_per_request": round(cpu / n * 1e6, 1),
        "receiver_cpu_us_per_request": round(recv_cpu / n * 1e6, 1),
    }


def _ceiling_payload(i: int) -> tuple[bytes, dict[str, str]]:
    return signed_payload("bench.ceiling", i, "ceiling", {"t": time.monotonic()})


# ----- 2. end to end ---------------------------------------------------------------------------

E2E_EVENT = "bench.changed"


async def e2e_python(ctx: Context) -> dict[str, Any]:
    """The application (this process) signals through `await hub.signal(...)` on a
    `Hub(deliver=False)`; `hookcast serve`, its own process on the same SQLite file, delivers
    (woken by the doorbell after every commit). Closed loop with a window of outstanding
    events, so that intake and delivery run together, as in production."""
    return await _e2e_python(ctx, embedded=False)


async def e2e_python_embedded(ctx: Context) -> dict[str, Any]:
    """e2e_python with the dispatcher inside the application: one `Hub(settings)`, one
    process, one event loop and one GIL for intake, delivery and the application."""
    return await _e2e_python(ctx, embedded=True)


async def _e2e_python(ctx: Context, *, embedded: bool) -> dict[str, Any]:
    n = ctx.size(30_000, 6_000)
    window = 2_000
    label = "embedded" if embedded else "serve"
    db_path = ctx.db_path(f"e2e-python-{label}")
    settings = ctx.config.settings(db_path)
    server: HookcastProcess | None = None
    async with contextlib.AsyncExitStack() as stack:
        hub = await stack.enter_async_context(Hub(settings, deliver=embedded))
        await register(
            hub, settings, "e2e", [E2E_EVENT], ctx.receiver.url, ctx.config.webhook_options
        )
        if not embedded:
            port = free_port()
            server = HookcastProcess(
                ["serve", "--port", str(port), "--db", f"sqlite:///{db_path}"],
                ctx.config.env(db_path),
                ctx.workdir / "serve-e2e-python.log",
            )
            await server.start()
            stack.push_async_callback(server.stop)
            await server.wait_http(f"http://127.0.0.1:{port}/health")
        # Warm-up: connections open, code paths hot.
        for i in range(32):
            await hub.signal(E2E_EVENT, i, **signal_kwargs())
        await ctx.receiver.wait_count(33, timeout=10)
        await wait_recorded(db_path, 32, timeout=10)
        await ctx.receiver.reset()

        task = ctx.task(f"e2e python API ({label}): deliveries", n)
        flow = Flow(ctx.receiver, total=n, window=window, progress=ctx.progress, task=task)

        async def send(i: int) -> None:
            await hub.signal(E2E_EVENT, 1000 + i, **signal_kwargs())

        pid = server.pid if server else None
        cpu0, app_cpu0, recv_cpu0 = cpu_seconds(pid), cpu_seconds(), cpu_seconds(ctx.receiver.pid)
        t0 = time.monotonic()
        await flow.run(send, producers=200, timeout=ctx.size(240, 45))
        stats = await ctx.receiver.stats()
        depth, recorded_at = await wait_recorded(db_path, n + 32, timeout=30)
        cpu, app_cpu = cpu_seconds(pid) - cpu0, cpu_seconds() - app_cpu0
        recv_cpu = cpu_seconds(ctx.receiver.pid) - recv_cpu0
    received = stats["count"]
    receipt_s = (stats["last_at"] or t0) - t0
    recorded_s = recorded_at - t0
    ctx.done(task, f"{rate(received, recorded_s):,.0f}/s")
    per = max(received, 1) / 1e6
    return {
        "mode": label,
        "deliveries": n,
        "received": received,
        "distinct": stats["distinct"],
        "bad_signatures": stats["bad"],
        "signal_errors": flow.errors,
        "seconds_to_last_receipt": round(receipt_s, 3),
        "seconds_to_all_recorded": round(recorded_s, 3),
        "per_s": round(rate(received, recorded_s), 1),
        "per_s_by_receipt": round(rate(received, receipt_s), 1),
        "depth_after": depth,
        "window": window,
        "producers": 200,
        "concurrency": settings.concurrency,
        "per_webhook_concurrency": settings.per_webhook_concurrency,
        # embedded: the one process (hookcast and the application's producers); serve: the
        # delivering process, with the application's (intake and producers) beside it.
        "hookcast_cpu_us_per_delivery": round(cpu / per, 1),
        "app_cpu_us_per_delivery": None if embedded else round(app_cpu / per, 1),
        "receiver_cpu_us_per_delivery": round(recv_cpu / per, 1),
        "latency_under_load": summary_ms(stats["latencies"]),
    }


async def e2e_rest(ctx: Context) -> dict[str, Any]:
    """`hookcast serve` in its own process; a load generator here posts to the REST signal
    endpoint, closed loop like e2e_python, in three phases on the same server: one event per
    request (`single`), batches of BATCH events to POST /api/v1/Webhook/Signal (`batch`),
    then open loop at 500 requests/s, one event each (`latency`: how long the 204 takes)."""
    n = ctx.size(20_000, 3_000)
    window = 2_000
    concurrency = 64
    db_path = ctx.db_path("e2e-rest")
    prepare_db(db_path, [("e2e-rest", [E2E_EVENT], ctx.receiver.url)])
    key = await create_key(db_path, ctx.workdir)
    port = free_port()
    server = HookcastProcess(
        ["serve", "--port", str(port), "--db", f"sqlite:///{db_path}"],
        ctx.config.env(db_path),
        ctx.workdir / "serve-rest.log",
    )
    await server.start()
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {"client_concurrency": concurrency, "window": window}
    try:
        await server.wait_http(base + "/api/v1/Webhook/default")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            status_errors: dict[int, int] = {}

            async def send(i: int, event: str = E2E_EVENT) -> None:
                async with http.post(
                    f"{base}/api/v1/Webhook/{event}/{i}",
                    data=b'{"name": "Ada"}',
                    headers=headers,
                ) as resp:
                    await resp.read()
                    if resp.status != 204:
                        status_errors[resp.status] = status_errors.get(resp.status, 0) + 1

            async def send_batch(i: int) -> None:
                body = [
                    {"EventName": E2E_EVENT, "PrimaryKey": k, "Data": {"name": "Ada"}}
                    for k in range(i, i + BATCH)
                ]
                async with http.post(
                    f"{base}/api/v1/Webhook/Signal", json=body, headers=headers
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        status_errors[resp.status] = status_errors.get(resp.status, 0) + 1

            for i in range(32):
                await send(i)
            await ctx.receiver.wait_count(32, timeout=10)
            recorded = 32
            await wait_recorded(db_path, recorded, timeout=10)
            for phase, sender, producers in (
                ("single", send, concurrency),
                ("batch", send_batch, 8),
            ):
                await ctx.receiver.reset()
                label = "one event per request" if phase == "single" else f"batches of {BATCH}"
                task = ctx.task(f"e2e REST, {label}", n)
                flow = Flow(
                    ctx.receiver,
                    total=n,
                    window=window,
                    progress=ctx.progress,
                    task=task,
                    per_send=1 if phase == "single" else BATCH,
                )
                offset = 1_000 + recorded
                cpu0, recv_cpu0 = cpu_seconds(server.pid), cpu_seconds(ctx.receiver.pid)
                gen_cpu0 = cpu_seconds()
                t0 = time.monotonic()
                await flow.run(
                    lambda i, sender=sender, offset=offset: sender(offset + i),
                    producers=producers,
                    timeout=ctx.size(240, 45),
                )
                stats = await ctx.receiver.stats(samples=False)
                recorded += n
                depth, recorded_at = await wait_recorded(db_path, recorded, timeout=30)
                cpu = cpu_seconds(server.pid) - cpu0
                recv_cpu = cpu_seconds(ctx.receiver.pid) - recv_cpu0
                gen_cpu = cpu_seconds() - gen_cpu0
                received = stats["count"]
                recorded_s = recorded_at - t0
                ctx.done(task, f"{rate(received, recorded_s):,.0f}/s")
                figures[phase] = {
                    "deliveries": n,
                    "received": received,
                    "distinct": stats["distinct"],
                    "bad_signatures": stats["bad"],
                    "signal_errors": flow.errors,
                    "seconds_to_all_recorded": round(recorded_s, 3),
                    "per_s": round(rate(received, recorded_s), 1),
                    "per_s_by_receipt": round(rate(received, (stats["last_at"] or t0) - t0), 1),
                    "depth_after": depth,
                    "hookcast_cpu_us_per_delivery": round(cpu / max(received, 1) * 1e6, 1),
                    "receiver_cpu_us_per_delivery": round(recv_cpu / max(received, 1) * 1e6, 1),
                    "load_generator_cpu_us_per_event": round(gen_cpu / max(received, 1) * 1e6, 1),
                }
            # Open loop: how long a signal request takes at a steady 500/s, with its delivery
            # (the event has a webhook) and without (an event nobody subscribed to).
            per_s, seconds = 500, ctx.size(20.0, 3.0)
            count = int(per_s * seconds)
            for phase, event in (("latency", E2E_EVENT), ("latency_no_delivery", "bench.nobody")):
                await ctx.receiver.reset()
                task = ctx.task(f"REST signal latency at {per_s}/s ({phase})", count)
                offset = 1_000 + recorded

                async def one(i: int, event: str = event, offset: int = offset) -> None:
                    await send(offset + i, event)

                durations, achieved = await fixed_rate(one, per_s, count, ctx.progress, task)
                received = count if event == E2E_EVENT else 0
                counts = await ctx.receiver.wait_count(received, timeout=30)
                recorded += received
                figures[phase] = {
                    "rate": per_s,
                    "signals": count,
                    "achieved_per_s": round(achieved, 1),
                    "received": counts["count"],
                    "signal_request": summary_ms(durations),
                }
                ctx.done(task, f"p99 {figures[phase]['signal_request']['p99_ms']} ms")
            figures["http_errors"] = status_errors
        rss = read_status(server.pid)
    finally:
        await server.stop()
    figures["hookcast_peak_rss_mib"] = round(rss.get("VmHWM", 0) / 1024, 1)
    # The headline figures, where the summary and older readers look for them.
    figures.update({k: figures["single"][k] for k in ("received", "per_s")})
    return figures


BATCH = 100  # events per request in e2e_rest's batch phase


# ----- 3. latency ------------------------------------------------------------------------------


async def latency(ctx: Context) -> dict[str, Any]:
    """Signal-to-receipt latency at fixed rates (open loop), Python API, one webhook."""
    plan = ctx.size([(50, 20.0), (500, 20.0)], [(50, 3.0), (500, 3.0)])
    db_path = ctx.db_path("latency")
    settings = ctx.config.settings(db_path)
    results: dict[str, Any] = {}
    async with Hub(settings) as hub:
        await register(
            hub, settings, "latency", [E2E_EVENT], ctx.receiver.url, ctx.config.webhook_options
        )
        for i in range(32):
            await hub.signal(E2E_EVENT, i, **signal_kwargs())
        await ctx.receiver.wait_count(33, timeout=10)
        await wait_recorded(db_path, 32, timeout=10)
        base = 100
        for per_s, seconds in plan:
            count = int(per_s * seconds)
            await ctx.receiver.reset()
            task = ctx.task(f"latency at {per_s}/s", count)

            async def send(i: int, base: int = base) -> None:
                await hub.signal(E2E_EVENT, base + i, **signal_kwargs())

            durations, achieved = await fixed_rate(send, per_s, count, ctx.progress, task)
            base += count
            counts = await ctx.receiver.wait_count(count, timeout=30)
            lat = await latencies_at(ctx.receiver)
            results[f"{per_s}/s"] = {
                "rate": per_s,
                "seconds": seconds,
                "signals": count,
                "achieved_per_s": round(achieved, 1),
                "received": counts["count"],
                "signal_to_receipt": lat,
                "signal_duration": summary_ms(durations),
            }
            ctx.done(task, f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
    return results


# ----- 4. fan-out and matching -----------------------------------------------------------------


async def fanout(ctx: Context) -> dict[str, Any]:
    """One event to 1,000 webhooks: signal() duration (enqueue) and time until the receiver
    has all 1,000 and until all outcomes are recorded."""
    hooks = 1_000
    rounds = ctx.size(10, 3)
    db_path = ctx.db_path("fanout")
    settings = ctx.config.settings(db_path)
    event = "bench.fanout"
    task = ctx.task(f"fan-out: 1 event to {hooks:,} webhooks", rounds)
    enqueue: list[float] = []
    delivered: list[float] = []
    recorded: list[float] = []
    async with Hub(settings) as hub:
        await hub.db.run(
            insert_webhooks, [(f"fan{k}", [event], ctx.receiver.url) for k in range(hooks)]
        )
        for r in range(rounds + 1):  # round 0 warms up (opens the connections)
            await ctx.receiver.reset()
            t0 = time.monotonic()
            await hub.signal(event, r, **signal_kwargs())
            t_enqueued = time.monotonic() - t0
            counts = await ctx.receiver.wait_count(hooks, timeout=60, interval=0.005)
            _depth, t_recorded = await wait_recorded(
                db_path, hooks * (r + 1), timeout=60, interval=0.005
            )
            if r == 0:
                continue
            enqueue.append(t_enqueued)
            delivered.append((counts["last_at"] or t0) - t0)
            recorded.append(t_recorded - t0)
            ctx.progress.update(task, completed=r)
    ctx.done(
        task,
        f"enqueue {median(enqueue) * 1000:.1f} ms, all delivered {median(delivered) * 1000:.0f} ms",
    )
    return {
        "webhooks": hooks,
        "rounds": rounds,
        "enqueue_ms": summary_ms(enqueue),
        "all_delivered_ms": summary_ms(delivered),
        "all_recorded_ms": summary_ms(recorded),
        "fanout_per_s": round(rate(hooks, median(delivered) or 0), 1),
    }


async def matching(ctx: Context) -> dict[str, Any]:
    """The cost of signal() with 10,000 webhooks over 1,000 event names registered, against
    1 webhook; the probe event matches exactly one webhook in both, so only matching differs.
    Delivery is off (Hub(deliver=False)): this measures intake alone. Both databases are set
    up first (and checkpointed, so the set-up's WAL is not paid for by the first signals),
    then the measurements alternate between them; medians of the repetitions are reported."""
    sequential = ctx.size(300, 100)
    burst = ctx.size(10_000, 2_000)
    reps = ctx.size(3, 2)
    url = ctx.receiver.url
    probe = "bench.e0"
    cases = {
        "1 webhook": [("m0", [probe], url)],
        "10,000 webhooks": [("m0", [probe], url)]
        + [(f"m{k}", [f"bench.e{1 + (k - 1) % 999}"], url) for k in range(1, 10_000)],
    }
    hubs: dict[str, Hub] = {}
    paths: dict[str, Path] = {}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in cases}
    task = ctx.task("signal cost, 1 vs 10,000 webhooks", reps * len(cases) * (sequential + burst))
    done = 0
    try:
        for label, specs in cases.items():
            paths[label] = ctx.db_path("matching")
            hubs[label] = await Hub(ctx.config.settings(paths[label]), deliver=False).start()
            await hubs[label].db.run(insert_webhooks, specs)
            for i in range(50):  # warm-up
                await hubs[label].signal(probe, i, **signal_kwargs())
            await asyncio.to_thread(checkpoint, paths[label])
        for _ in range(reps):
            for label, hub in hubs.items():
                durations = []
                for i in range(sequential):
                    t = time.perf_counter()
                    await hub.signal(probe, i, **signal_kwargs())
                    durations.append(time.perf_counter() - t)
                cpu0 = cpu_seconds()
                t0 = time.perf_counter()
                await _burst(hub, lambda i: probe, burst, concurrency=100)
                burst_s = time.perf_counter() - t0
                cpu = cpu_seconds() - cpu0
                runs[label].append(
                    {
                        "sequential": summary_ms(durations),
                        "burst_us_per_signal": burst_s / burst * 1e6,
                        "burst_cpu_us_per_signal": cpu / burst * 1e6,
                    }
                )
                done += sequential + burst
                ctx.progress.update(task, completed=done)
                await asyncio.to_thread(checkpoint, paths[label])
        # For comparison: events that match ~10 of the 10,000 webhooks each.
        names = [f"bench.e{1 + k % 999}" for k in range(burst)]
        t0 = time.perf_counter()
        await _burst(hubs["10,000 webhooks"], names.__getitem__, burst, concurrency=100)
        ten_matches = rate(burst, time.perf_counter() - t0)
    finally:
        for hub in hubs.values():
            await hub.close()
    out: dict[str, Any] = {
        "probe_matches": 1,
        "sequential_signals": sequential,
        "burst_signals": burst,
        "repetitions": reps,
    }
    for label, results in runs.items():
        p50 = median([r["sequential"]["p50_ms"] for r in results]) or 0.0
        cost = median([r["burst_us_per_signal"] for r in results]) or 0.0
        out[label] = {
            "webhooks": len(cases[label]),
            "sequential_p50_ms": round(p50, 3),
            "sequential_p99_ms": round(
                median([r["sequential"]["p99_ms"] for r in results]) or 0, 3
            ),
            "burst_us_per_signal": round(cost, 1),
            "burst_per_s": round(1e6 / cost, 1) if cost else 0.0,
            "burst_cpu_us_per_signal": round(
                median([r["burst_cpu_us_per_signal"] for r in results]) or 0, 1
            ),
            "runs": results,
        }
    out["10,000 webhooks"]["burst_10_matches_per_s"] = round(ten_matches, 1)
    one, many = out["1 webhook"], out["10,000 webhooks"]
    out["ratio_sequential_p50"] = round(many["sequential_p50_ms"] / one["sequential_p50_ms"], 3)
    out["ratio_burst_cost"] = round(many["burst_us_per_signal"] / one["burst_us_per_signal"], 3)
    ctx.done(
        task,
        f"ratio {out['ratio_sequential_p50']:.2f} alone, {out['ratio_burst_cost']:.2f} in a burst",
    )
    return out


def checkpoint(db_path: Path) -> None:
    """Move the WAL into the database file (from a separate connection, between measurements)."""
    import sqlite3

    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _burst(hub: Hub, name_of: Callable[[int], str], count: int, concurrency: int) -> None:
    counter = itertools.count()

    async def worker() -> None:
        while (i := next(counter)) < count:
            await hub.signal(name_of(i), 10_000 + i, **signal_kwargs())

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)


# ----- 5. backlog and memory -------------------------------------------------------------------


async def backlog(ctx: Context) -> dict[str, Any]:
    """`hookcast worker` in its own process. The receiver is stopped (SIGSTOP: connections
    queue in the kernel, nothing answers) while an application process (this one, through
    Hub(deliver=False)) queues the deliveries; then the receiver continues and the backlog
    drains. VmRSS/VmHWM of the worker are read from /proc throughout."""
    n = ctx.size(100_000, 5_000)
    event = "bench.backlog"
    db_path = ctx.db_path("backlog")
    prepare_db(db_path, [("backlog", [event], ctx.receiver.url)])
    # A generous attempt timeout: the attempts in flight while the receiver is stopped must
    # not fail (9 failures in a row would disable the webhook, §6) before it continues.
    timeout = ctx.size(120.0, 60.0)
    worker = HookcastProcess(
        ["worker", "--db", f"sqlite:///{db_path}"],
        ctx.config.env(db_path, attempt_timeout=timeout, lease=timeout + 60),
        ctx.workdir / "worker-backlog.log",
    )
    await ctx.receiver.reset()
    ctx.receiver.pause()
    paused = True
    try:
        await worker.start()
        await worker.wait_log("hookcast worker delivering")
        await asyncio.sleep(0.5)
        rss_idle = worker.rss.current_kib() if worker.rss else 0
        task_q = ctx.task(f"backlog: queue {n:,} (receiver stopped)", n)
        cpu_w0 = cpu_seconds(worker.pid)
        t0 = time.monotonic()
        queue_s = await queue_events(ctx, db_path, event, n, task_q, producers=500)
        ctx.done(task_q, f"{rate(n, queue_s):,.0f} events/s")
        await asyncio.sleep(ctx.size(3.0, 1.0))  # the queue sits; the worker holds it
        worker_cpu_down = cpu_seconds(worker.pid) - cpu_w0
        down_s = time.monotonic() - t0
        rss_queued = worker.rss.current_kib() if worker.rss else 0
        depth_queued, _ = await wait_recorded(db_path, 0, timeout=0)
        task_d = ctx.task(f"backlog: drain {n:,}", n)
        t_resume = time.monotonic()
        ctx.receiver.resume()
        paused = False
        counts = await ctx.receiver.wait_count(
            n,
            timeout=ctx.size(300, 60),
            interval=0.1,
            on_count=lambda c: ctx.progress.update(task_d, completed=c),
        )
        depth, recorded_at = await wait_recorded(db_path, n, timeout=60, interval=0.05)
        worker_cpu_drain = cpu_seconds(worker.pid) - cpu_w0 - worker_cpu_down
        rss_end = worker.rss.current_kib() if worker.rss else 0
    finally:
        if paused:
            ctx.receiver.resume()
        await worker.stop()
    drain_s = recorded_at - t_resume
    first = (counts["first_at"] or t_resume) - t_resume
    assert worker.rss is not None
    ctx.done(
        task_d,
        f"{rate(counts['count'], drain_s):,.0f}/s, peak RSS {worker.rss.hwm_kib / 1024:.0f} MiB",
    )
    return {
        "deliveries": n,
        "received": counts["count"],
        "distinct": counts["distinct"],
        "queue_seconds": round(queue_s, 3),
        "queue_events_per_s": round(rate(n, queue_s), 1),
        "depth_while_down": depth_queued,
        "depth_after": depth,
        "worker_cpu_s_while_down": round(worker_cpu_down, 2),
        "down_seconds": round(down_s, 2),
        "drain_seconds": round(drain_s, 3),
        "drain_per_s": round(rate(counts["count"], drain_s), 1),
        "first_receipt_after_resume_s": round(first, 3),
        "worker_cpu_us_per_delivery_drain": round(
            worker_cpu_drain / max(counts["count"], 1) * 1e6, 1
        ),
        "rss_idle_mib": round(rss_idle / 1024, 1),
        "rss_queued_mib": round(rss_queued / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "peak_rss_sampled_mib": round(worker.rss.peak_rss_kib / 1024, 1),
        "peak_rss_mib": round(worker.rss.hwm_kib / 1024, 1),  # VmHWM, the kernel's high-water mark
        "rss_samples_mib": [round(kib / 1024, 1) for _, kib in worker.rss.samples],
        "attempt_timeout_s": timeout,
        "lease_s": timeout + 60,
    }


# ----- 6. failure isolation --------------------------------------------------------------------


async def isolation(ctx: Context) -> dict[str, Any]:
    """A healthy webhook alone, then beside a webhook (same events) whose receiver holds every
    request until hookcast's attempt timeout: the healthy one's throughput (closed loop) and
    latency (fixed rate). Conditions alternate (alone, beside, alone, beside, ...) on fresh
    databases so that drift of the machine hits both alike; the medians are reported."""
    # 30,000 per round (3-4 s): shorter rounds gave ±20 % from round to round.
    n = ctx.size(30_000, 2_000)
    per_s, seconds = ctx.size((200, 10.0), (200, 2.0))
    reps = ctx.size(3, 1)
    # Longer than the measurement: the hanging webhook holds its slots all along. (With the
    # default 10 s, its first 9 timeouts would disable it, §6, and the healthy one is alone.)
    timeout = 60.0
    event = "bench.iso"
    hang = Receiver(ctx.tls, ctx.workdir, mode="hang", name="hang-receiver")
    await hang.start()
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "beside hanging": []}
    try:
        for rep in range(reps):
            for label in runs:
                runs[label].append(
                    await _isolation_run(
                        ctx,
                        hang,
                        label,
                        event,
                        n,
                        per_s,
                        seconds,
                        timeout,
                        f" #{rep + 1}" if reps > 1 else "",
                    )
                )
    finally:
        with contextlib.suppress(Exception):
            await hang.stop()
    out: dict[str, Any] = {
        "attempt_timeout_s": timeout,
        "lease_s": timeout * 2,
        "repetitions": reps,
    }
    for label, results in runs.items():
        out[label] = {
            "throughput_per_s": round(median([r["throughput_per_s"] for r in results]) or 0, 1),
            "latency": {
                k: (
                    round(median([r["latency"][k] for r in results]) or 0, 3)
                    if k != "count"
                    else sum(r["latency"][k] for r in results)
                )
                for k in results[0]["latency"]
            },
            "runs": results,
        }
    out["throughput_ratio"] = round(
        out["beside hanging"]["throughput_per_s"] / out["alone"]["throughput_per_s"], 3
    )
    return out


async def _isolation_run(
    ctx: Context,
    hang: Receiver,
    label: str,
    event: str,
    n: int,
    per_s: int,
    seconds: float,
    timeout: float,
    suffix: str,
) -> dict[str, Any]:
    db_path = ctx.db_path("isolation")
    specs = [("healthy", [event], ctx.receiver.url)]
    if label != "alone":
        specs.append(("hanging", [event], hang.url))
        await hang.set_mode("hang")
    hung_before = (await hang.count())["hung"]
    settings = ctx.config.settings(db_path, attempt_timeout=timeout, lease=timeout * 2)
    async with Hub(settings) as hub:
        try:
            await hub.db.run(insert_webhooks, specs)
            for i in range(32):
                await hub.signal(event, i, **signal_kwargs())
            await ctx.receiver.wait_count(32, timeout=10)
            await ctx.receiver.reset()
            task = ctx.task(f"isolation, {label}{suffix}: throughput", n)
            flow = Flow(ctx.receiver, total=n, window=2_000, progress=ctx.progress, task=task)

            async def send(i: int) -> None:
                await hub.signal(event, 1000 + i, **signal_kwargs())

            t0 = time.monotonic()
            await flow.run(send, producers=200, timeout=ctx.size(120, 30))
            stats = await ctx.receiver.count()
            thr = rate(stats["count"], (stats["last_at"] or t0) - t0)
            ctx.done(task, f"{thr:,.0f}/s")
            count = int(per_s * seconds)
            await ctx.receiver.reset()
            task = ctx.task(f"isolation, {label}{suffix}: latency at {per_s}/s", count)

            async def send_lat(i: int) -> None:
                await hub.signal(event, 100_000 + i, **signal_kwargs())

            await fixed_rate(send_lat, per_s, count, ctx.progress, task)
            counts = await ctx.receiver.wait_count(count, timeout=30)
            lat = await latencies_at(ctx.receiver)
            ctx.done(task, f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
            hung = (await hang.count())["hung"] - hung_before
        finally:
            if label != "alone":  # let the held requests go, so that the Hub closes at once
                with contextlib.suppress(Exception):
                    await asyncio.shield(hang.set_mode("ok"))
    return {
        "throughput_per_s": round(thr, 1),
        "received": stats["count"],
        "latency": lat,
        "latency_received": counts["count"],
        "hung_requests": hung,
    }


# ----- 7. PostgreSQL: 1, 2 and 4 workers ---------------------------------------------------------

WORKERS_EVENT = "bench.workers"


async def postgres_workers(ctx: Context) -> dict[str, Any]:
    """N `hookcast worker` processes (N = 1, 2, 4) on one PostgreSQL database drain a queue of
    deliveries to one Active webhook; beside them, one worker drains the same queue on SQLite
    the same way, and the e2e_python figure of this run (when it ran). Each drain gets a
    fresh database (`CREATE DATABASE hc_bench_<random>`, dropped afterwards).

    How: the application (this process, Hub(deliver=False)) queues the events first; then the
    receiver is stopped (SIGSTOP), the N workers start and claim their first deliveries, and
    once all N are up the receiver continues. Drain rate = deliveries ÷ time from then until
    every outcome is recorded. CPU of the workers, of the PostgreSQL server (every process
    named `postgres`, reaped backends included) and of the receiver is read from /proc, and
    pg_stat_activity is sampled (what the backends wait for).

    The configurations alternate (1, 2, 4, SQLite, then the reverse order, ...) for
    `repetitions` rounds; each figure is the median round's. With --pg-analyze an ANALYZE runs
    between queueing and draining (hookcast never runs one; fresh tables have no statistics)."""
    n = ctx.size(20_000, 3_000)
    reps = ctx.size(3, 1)
    counts = (1, 2, 4)
    try:
        server = await asyncio.to_thread(pg_server, ctx.postgres_url)
    except Exception as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {ctx.postgres_url}: {exc}") from None
    plan = [("postgresql", w) for w in counts] + [("sqlite", 1)]
    done: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in plan}
    for rep in range(reps):
        for backend, workers in plan if rep % 2 == 0 else plan[::-1]:
            await _wait_idle(ctx, 30.0)
            done[(backend, workers)].append(
                await _worker_drain(
                    ctx, backend, workers, n, analyze=ctx.pg_analyze, rep=rep + 1 if reps > 1 else 0
                )
            )
    runs = {str(w): _median_run(done[("postgresql", w)]) for w in counts}
    sqlite = _median_run(done[("sqlite", 1)])
    settings = Settings(**ctx.config.overrides())
    e2e = ctx.figures.get("e2e_python", {})
    base = runs[str(counts[0])]["drain_per_s"]
    return {
        "deliveries": n,
        "repetitions": reps,
        "analyzed": ctx.pg_analyze,
        "postgresql": runs,
        "sqlite_1_worker": sqlite,
        "sqlite_e2e_python_per_s": e2e.get("per_s"),
        "scaling": {
            k: round(r["drain_per_s"] / base, 3) if base else None for k, r in runs.items()
        },
        "postgresql_server": server,
        "settings": {
            "concurrency_per_worker": settings.concurrency,
            "per_webhook_concurrency_per_worker": settings.per_webhook_concurrency,
            "max_in_flight_to_the_webhook": {
                k: settings.per_webhook_concurrency * int(k) for k in runs
            },
            "batch_size": settings.batch_size,
            "max_connections_per_host": settings.max_connections_per_host,
            "attempt_timeout_s": runs[str(counts[0])]["attempt_timeout_s"],
            "lease_s": runs[str(counts[0])]["lease_s"],
            "db_pool_per_process": "SQLAlchemy pool_size 8 + max_overflow 8 (+1 LISTEN connection)",
        },
    }


async def _wait_idle(ctx: Context, at_most: float) -> None:
    """With --wait-idle: wait (at most `at_most` s) until other processes use < 10 % of the CPUs."""
    deadline = time.monotonic() + min(ctx.wait_idle, at_most)
    while ctx.wait_idle > 0 and time.monotonic() < deadline and await foreign_load(1.0) >= 10:
        pass


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median drain rate (the lower middle one for an even count), with
    every run's rate beside it."""
    ordered = sorted(runs, key=lambda r: r["drain_per_s"])
    pick = dict(ordered[(len(ordered) - 1) // 2])
    pick["drain_per_s_all"] = [r["drain_per_s"] for r in runs]
    pick["runs"] = [{k: v for k, v in r.items() if k != "depth_queued"} for r in runs]
    return pick


async def _worker_drain(
    ctx: Context, backend: str, workers: int, n: int, *, analyze: bool = False, rep: int = 0
) -> dict[str, Any]:
    """Queue `n` deliveries, then let `workers` worker processes drain them (see above).
    `analyze`: run ANALYZE after queueing (PostgreSQL), so the planner has statistics."""
    label = (
        f"{backend}{' ANALYZEd' if analyze else ''} {workers} worker{'s' if workers > 1 else ''}"
        + (f" #{rep}" if rep else "")
    )
    tag = f"{backend}-{workers}{'-analyzed' if analyze else ''}{f'-{rep}' if rep else ''}"
    timeout = 60.0  # attempts held while the receiver is stopped must not fail (see backlog)
    pg: PgDatabase | None = None
    if backend == "postgresql":
        pg = PgDatabase(ctx.postgres_url, f"w{workers}{'a' if analyze else ''}")  # random name
        await asyncio.to_thread(pg.create)
        db: Path | str = pg.url
        depth_of: Callable[[Any], dict[str, int]] = pg_depth
    else:
        db = ctx.db_path(f"workers-{tag}")
        depth_of = read_depth
    procs: list[HookcastProcess] = []
    paused = False
    try:
        await asyncio.to_thread(prepare_db, db, [("workers", [WORKERS_EVENT], ctx.receiver.url)])
        task_q = ctx.task(f"{label}: queue {n:,}", n)
        queue_s = await queue_events(ctx, db, WORKERS_EVENT, n, task_q, producers=200)
        ctx.done(task_q, f"{rate(n, queue_s):,.0f} events/s")
        depth_queued = await asyncio.to_thread(depth_of, db)
        if analyze and pg is not None:
            await asyncio.to_thread(pg.execute, "ANALYZE")

        await ctx.receiver.reset()
        ctx.receiver.pause()
        paused = True
        env = ctx.config.env(db, attempt_timeout=timeout, lease=timeout * 2)
        procs = [
            HookcastProcess(
                ["worker", "--db", db_url(db)], env, ctx.workdir / f"worker-{tag}-{k}.log"
            )
            for k in range(workers)
        ]
        t_start = time.monotonic()
        for proc in procs:
            await proc.start()
        await asyncio.gather(
            *(proc.wait_log("hookcast worker delivering", timeout=60) for proc in procs)
        )
        startup_s = time.monotonic() - t_start
        await asyncio.sleep(0.5)  # the first claims are made; their attempts wait for the receiver

        task_d = ctx.task(f"{label}: drain {n:,}", n)
        cpu_w0 = [cpu_seconds(proc.pid) for proc in procs]
        cpu_pg0, cpu_recv0, cpu_me0 = (
            cpu_of_named("postgres"),
            cpu_seconds(ctx.receiver.pid),
            cpu_seconds(),
        )
        noise = Noise(("postgres",)).start()
        activity = PgActivity(ctx.postgres_url, pg.name).start() if pg is not None else None
        t_resume = time.monotonic()
        ctx.receiver.resume()
        paused = False
        try:
            counts = await ctx.receiver.wait_count(
                n,
                timeout=ctx.size(300, 60),
                interval=0.1,
                on_count=lambda c: ctx.progress.update(task_d, completed=c),
            )
            depth, recorded_at = await wait_recorded(db, n, timeout=60, interval=0.05)
        finally:
            pg_activity = activity.stop() if activity is not None else None
        cpu_w = [cpu_seconds(proc.pid) - c0 for proc, c0 in zip(procs, cpu_w0, strict=True)]
        cpu_pg = cpu_of_named("postgres") - cpu_pg0
        cpu_recv, cpu_me = cpu_seconds(ctx.receiver.pid) - cpu_recv0, cpu_seconds() - cpu_me0
        foreign = noise.stop()
        rss = [read_status(proc.pid).get("VmHWM", 0) for proc in procs]
    finally:
        if paused:
            ctx.receiver.resume()
        await asyncio.gather(*(proc.stop() for proc in procs), return_exceptions=True)
        if pg is not None:
            await asyncio.to_thread(pg.drop)
    drain_s = recorded_at - t_resume
    received = counts["count"]
    per_s = rate(received, drain_s)
    cores = os.cpu_count() or 1
    ctx.done(task_d, f"{per_s:,.0f}/s")

    def pct(cpu: float) -> float:
        return round(cpu / (drain_s * cores) * 100, 1) if drain_s > 0 else 0.0

    return {
        "backend": backend,
        "workers": workers,
        "analyzed": analyze,
        "deliveries": n,
        "received": received,
        "distinct": counts["distinct"],
        "bad_signatures": counts["bad"],
        "queue_seconds": round(queue_s, 3),
        "queue_events_per_s": round(rate(n, queue_s), 1),
        "depth_queued": depth_queued,
        "depth_after": depth,
        "startup_seconds": round(startup_s, 2),
        "drain_seconds": round(drain_s, 3),
        "drain_per_s": round(per_s, 1),
        "first_receipt_after_resume_s": round((counts["first_at"] or t_resume) - t_resume, 3),
        "workers_cpu_s": round(sum(cpu_w), 2),
        "workers_cpu_s_each": [round(c, 2) for c in cpu_w],
        "postgres_cpu_s": round(cpu_pg, 2) if backend == "postgresql" else None,
        "receiver_cpu_s": round(cpu_recv, 2),
        "harness_cpu_s": round(cpu_me, 2),
        "workers_cpu_pct_of_machine": pct(sum(cpu_w)),
        "postgres_cpu_pct_of_machine": pct(cpu_pg) if backend == "postgresql" else None,
        "receiver_cpu_pct_of_machine": pct(cpu_recv),
        "workers_cpu_us_per_delivery": round(sum(cpu_w) / max(received, 1) * 1e6, 1),
        "postgres_cpu_us_per_delivery": round(cpu_pg / max(received, 1) * 1e6, 1)
        if backend == "postgresql"
        else None,
        "workers_peak_rss_mib": [round(kib / 1024, 1) for kib in rss],
        "foreign_cpu_pct_during_drain": foreign,
        "pg_backends_mean": pg_activity,  # mean number of backends per state/wait event
        "attempt_timeout_s": timeout,
        "lease_s": timeout * 2,
    }


# ----- 8. CRMScript handler ------------------------------------------------------------------------


async def crmscript(ctx: Context) -> dict[str, Any]:
    """Compile time and run time of a typical webhook handler in CRMScript
    (bench/crmscript_handler.py), and the same logic in plain Python. Runs in a thread (one
    thread: the event loop has nothing else to do meanwhile)."""
    task = ctx.task("CRMScript handler: compile and run", None)
    out = await asyncio.to_thread(
        _crmscript_measure, ctx.size(30, 10), ctx.size(5, 3), ctx.size(400, 60)
    )
    out.update(await _sandbox_measure(ctx.size(2000, 300)))
    ctx.done(
        task,
        f"run {out['run_us']:.1f} µs, plain Python {out['python_us']:.2f} µs, "
        f"ratio {out['ratio']:.1f}×; in the sandbox {out['sandbox_run_us']:.0f} µs a run, "
        f"{out['sandbox_runs_per_s']:.0f} runs/s with {out['sandbox_workers']} workers",
    )
    return out


async def _sandbox_measure(runs: int) -> dict[str, Any]:
    """The same handler from its text through the sandbox (issue 13), as a `crmscript`
    webhook runs it: one at a time (latency of a run) and from many tenants at once."""
    from hookcast.dispatch.plugins.crmscript import ScriptRunner
    from hookcast.settings import Settings

    from .crmscript_handler import EVENTS, SCRIPT, handler

    settings = Settings(database_url="sqlite://")
    runner = ScriptRunner(settings, None)
    per = time.perf_counter

    async def one(i: int, tenant: str) -> None:
        variables = EVENTS[i % len(EVENTS)]
        result = await runner.run(
            SCRIPT, includes={}, variables=variables, allow_hosts=(), tenant=tenant
        )
        assert result.success and result.output == handler(variables), result.error_line

    try:
        t = per()
        await one(0, "t0")  # starts a worker
        start_ms = (per() - t) * 1000
        latencies = []
        for i in range(runs):
            t = per()
            await one(i, "t0")
            latencies.append(per() - t)
        t = per()
        await asyncio.gather(*(one(i, f"t{i % 8}") for i in range(runs)))
        concurrent = per() - t
    finally:
        await runner.aclose()
    return {
        "sandbox_workers": settings.script_workers,
        "sandbox_first_run_ms": round(start_ms, 1),
        "sandbox_run_us": round((median(latencies) or 0) * 1e6, 1),
        "sandbox_run": summary_ms(latencies),
        "sandbox_runs_per_s": round(rate(runs, concurrent), 1),
    }


def _crmscript_measure(compiles: int, rounds: int, batches: int) -> dict[str, Any]:
    from hookcast.crmscript import compile_script, run_script

    from .crmscript_handler import EVENTS, SCRIPT, handler

    per = time.perf_counter
    # The first compile in this process (the parser may still have to be built), then fresh
    # texts (a unique comment defeats the cache), then the cached path.
    t = per()
    compile_script(f"// bench first {uuid.uuid4()}\n" + SCRIPT)
    first_compile = per() - t
    fresh = []
    for _ in range(compiles):
        text = f"// bench {uuid.uuid4()}\n" + SCRIPT
        t = per()
        compile_script(text)
        fresh.append(per() - t)
    compiled = compile_script(SCRIPT)
    # The fixed cost of a run (sandbox context, variables, output), for scale.
    tiny = compile_script('#setLanguageLevel 3;\nString event = getVariable("Event");')
    cached = []
    for _ in range(200):
        t = per()
        for _ in range(10):
            compile_script(SCRIPT)
        cached.append((per() - t) / 10)

    # Honest comparison: the script prints exactly what the Python function returns.
    steps = []
    for variables in EVENTS:
        result = run_script(compiled, variables=variables)
        assert result.success, result.error_line
        assert result.output == handler(variables), (result.output, handler(variables))
        steps.append(result.steps)

    # Alternating rounds (script precompiled, script from its text as hookcast's crmscript
    # webhooks run it, plain Python), each timed in batches: per-run time = batch / size.
    k_script, k_python = 10, 100
    events = EVENTS * (k_python // len(EVENTS))
    timings: dict[str, list[float]] = {"precompiled": [], "source": [], "tiny": [], "python": []}
    totals = dict.fromkeys(timings, 0.0)
    runs = dict.fromkeys(timings, 0)
    for _ in range(rounds):
        for kind in timings:
            for b in range(batches):
                if kind == "python":
                    t = per()
                    for variables in events:
                        handler(variables)
                    elapsed, k = per() - t, len(events)
                else:
                    target = {"precompiled": compiled, "source": SCRIPT, "tiny": tiny}[kind]
                    chunk = events[(b * k_script) % len(events) :][:k_script]
                    t = per()
                    for variables in chunk:
                        run_script(target, variables=variables)
                    elapsed, k = per() - t, len(chunk)
                timings[kind].append(elapsed / k)
                totals[kind] += elapsed
                runs[kind] += k
    run_us = (median(timings["precompiled"]) or 0) * 1e6
    source_us = (median(timings["source"]) or 0) * 1e6
    python_us = (median(timings["python"]) or 0) * 1e6
    return {
        "script_lines": len(SCRIPT.splitlines()),
        "events": len(EVENTS),
        "steps_per_run": steps,
        "outputs_equal": True,
        "first_compile_ms": round(first_compile * 1000, 3),
        "compile_ms": round((median(fresh) or 0) * 1000, 3),
        "compile": summary_ms(fresh),
        "cached_compile_us": round((median(cached) or 0) * 1e6, 2),
        "run_us": round(run_us, 2),
        "run_from_source_us": round(source_us, 2),
        "run_one_statement_us": round((median(timings["tiny"]) or 0) * 1e6, 2),
        "runs_per_s": round(rate(runs["precompiled"], totals["precompiled"]), 1),
        "runs_per_s_from_source": round(rate(runs["source"], totals["source"]), 1),
        "python_us": round(python_us, 3),
        "python_runs_per_s": round(rate(runs["python"], totals["python"]), 1),
        "ratio": round(run_us / python_us, 2) if python_us else None,
        "ratio_from_source": round(source_us / python_us, 2) if python_us else None,
        "runs_timed": runs,
        "rounds": rounds,
        "batch_sizes": {"script": k_script, "python": k_python},
    }


# ----- 9. realistic: many slow, failing and hanging receivers (issue 12) ----------------------


async def realistic(ctx: Context) -> dict[str, Any]:
    """200 HTTPS hosts on loopback addresses (fast, slow, failing, hanging), 400 webhooks, a
    burst and a steady phase delivered by one `hookcast worker` with its defaults, beside a
    bare client with the same per-host limit and timeout: bench/realistic.py."""
    from .realistic import run

    return await run(ctx)


async def outbox(ctx: Context) -> dict[str, Any]:
    """The transactional outbox's cost (issue 15): an application's transaction that inserts
    one row of its own, alone, against the same transaction with one `hookcast.sqlalchemy.
    signal` in it (one outbox row), and against the design not taken, matching inside the
    application's transaction (queue.insert_events: the webhook index, an event row and a
    delivery row). SQLite (with hookcast's sqlite_synchronous) and, when the server answers,
    PostgreSQL. Each transaction is committed on its own; the variants alternate per round;
    medians of the rounds. Then the dispatcher's side: moving the outbox rows written into
    events and deliveries (dispatch/outbox_drain.py), events/s."""
    count = ctx.size(500, 100)
    rounds = ctx.size(5, 3)
    out: dict[str, Any] = {"transactions_per_variant_and_round": count, "rounds": rounds}
    targets: list[tuple[str, str, Callable[[], None]]] = [
        ("sqlite", db_url(ctx.db_path("outbox")), lambda: None)
    ]
    try:
        pg = PgDatabase(ctx.postgres_url, "outbox").create()
        targets.append(("postgresql", pg.url, pg.drop))
    except Exception as exc:  # no server: SQLite alone
        out["postgresql"] = {"skipped": str(exc).splitlines()[0]}
    for label, url, cleanup in targets:
        try:
            out[label] = await asyncio.to_thread(_outbox_on, ctx, label, url, count, rounds)
            out[label]["drain_events_per_s"] = await _drain_rate(url)
        finally:
            cleanup()
    first = out["sqlite"]
    out["ratio"] = first["ratio_outbox"]
    return out


def _outbox_on(ctx: Context, label: str, url: str, count: int, rounds: int) -> dict[str, Any]:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event, insert

    from hookcast.sqlalchemy import signal
    from hookcast.store import queue
    from hookcast.store.database import normalize_url
    from hookcast.store.rows import NewEvent

    prepare_db(url, [("outbox", ["contact.changed"], ctx.receiver.url)])
    engine = create_engine(normalize_url(url))
    if label == "sqlite":
        synchronous = ctx.config.describe()["sqlite_synchronous"]

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _: Any) -> None:  # as an application on WAL would set them
            dbapi.execute("PRAGMA journal_mode=WAL")
            dbapi.execute(f"PRAGMA synchronous={synchronous}")

    metadata = MetaData()
    rows = Table(
        "bench_app_rows", metadata, Column("id", Integer, primary_key=True), Column("v", String(64))
    )
    metadata.create_all(engine)
    ids = itertools.count(1)

    def alone() -> None:
        with engine.begin() as conn:
            conn.execute(insert(rows).values(id=next(ids), v="x"))

    def with_outbox() -> None:
        with engine.begin() as conn:
            pk = next(ids)
            conn.execute(insert(rows).values(id=pk, v="x"))
            signal(conn, "contact.changed", pk, tenant=TENANT, changes=["v"])

    def matched_in_transaction() -> None:
        with engine.begin() as conn:
            pk = next(ids)
            conn.execute(insert(rows).values(id=pk, v="x"))
            event = NewEvent(
                TENANT, "contact.changed", pk, 0, "2024-01-01T00:00:00.0000000Z", ["v"]
            )
            queue.insert_events(conn, [event], time.time())

    variants = {"alone": alone, "outbox": with_outbox, "matched": matched_in_transaction}
    per: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for fn in variants.values():  # warm-up (and the outbox's first-call checks)
            for _ in range(20):
                fn()
        for _ in range(rounds):
            for name, fn in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(count):
                    fn()
                per[name].append((time.perf_counter() - t0) / count * 1e6)
                cpu[name].append((time.process_time() - c0) / count * 1e6)
    finally:
        engine.dispose()
    us = {name: round(median(values) or 0.0, 1) for name, values in per.items()}
    cpu_us = {name: round(median(values) or 0.0, 1) for name, values in cpu.items()}
    return {
        "us_per_transaction": us,
        # this process's CPU (the application's side: driver, SQLAlchemy, hookcast)
        "cpu_us_per_transaction": cpu_us,
        "ratio_outbox_cpu": round(cpu_us["outbox"] / cpu_us["alone"], 3),
        "ratio_outbox": round(us["outbox"] / us["alone"], 3),
        "ratio_matched_in_transaction": round(us["matched"] / us["alone"], 3),
        "outbox_us_per_signal": round(us["outbox"] - us["alone"], 1),
        "runs_us": per,
    }


async def _drain_rate(url: str) -> float:
    from hookcast.dispatch.outbox_drain import OutboxDrain
    from hookcast.store.database import Database

    db = Database(url)
    try:
        waiting = await db.read(lambda conn: len(event_outbox_ids(conn)))
        drain = OutboxDrain(db, on_commit=lambda handed, queued: None)
        t0 = time.perf_counter()
        moved = await drain.drain()
        assert moved == waiting, (moved, waiting)
        return rate(moved, time.perf_counter() - t0)
    finally:
        db.close()


def event_outbox_ids(conn: Any) -> list[int]:
    from hookcast.store.event_outbox import waiting

    return waiting(conn, 10**9)


SCENARIOS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "ceiling": ceiling,
    "e2e_python": e2e_python,
    "e2e_python_embedded": e2e_python_embedded,
    "e2e_rest": e2e_rest,
    "latency": latency,
    "fanout": fanout,
    "matching": matching,
    "backlog": backlog,
    "isolation": isolation,
    "postgres_workers": postgres_workers,
    "crmscript": crmscript,
    "realistic": realistic,
    "outbox": outbox,
}
