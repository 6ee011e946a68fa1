"""The `realistic` scenario (issue 12): many receivers on the internet, most answering in
30–400 ms, some failing, a few never answering — and hookcast beside a bare client.

Hosts: `hosts` HTTPS receivers on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...),
one trustme certificate whose SANs are all those addresses, served by two `python -m
bench.hosts` processes (half of the hosts each). Classes, assigned to hosts by a seeded
shuffle: 70 % fast (200 after 30–80 ms), 20 % slow (200 after 150–400 ms), 8 % failing (500
after 30–80 ms), 2 % hanging (never answer). Two webhooks per host (which webhook on which
host: seeded), each subscribed to its own event `bench.rt<webhook>`, inserted Active into the
database the way the other bulk set-ups are (no verification POST).

Load (seeded): a burst of `burst` events, each for a webhook drawn uniformly (one delivery
each), signalled by the application — this process, `Hub(deliver=False)`, 200 producer
tasks — while ONE `hookcast worker` process with its default settings delivers (woken by
the doorbell). When every healthy delivery of the burst arrived, a steady phase: `rate`
events/s for `seconds` s, open loop.

Beside it, in the same run: hookcast again on the same burst without the hanging hosts
(right after it); a bare aiohttp client posting the burst's payloads (built and signed with
hookcast's own build_body / build_headers) to the same hosts with hookcast's default per-host
connection limit and attempt timeout, no durability, no retries, at a few concurrencies (the
best is the ceiling); hookcast's own sender doing the same (not the ceiling); and the bound a
perfect sender with that per-host limit would reach. The first worker keeps running through
all that, so that its failing and hanging webhooks can reach TooManyErrors with the default
delays; then their states and the requests after the transition are read. Each sender has
its own tag in the URLs, and the receivers count per tag.

Headline: healthy-host deliveries/s = healthy deliveries of the burst ÷ time from the first
signal (bare client: the first post) until the last of them arrived at its receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import json
import math
import random
import sqlite3
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from hookcast import Hub, Settings
from hookcast.model import State
from hookcast.net.sender import HttpSender

from .env import (
    ASSOCIATE,
    REPO,
    SECRET,
    TENANT,
    HookcastConfig,
    HookcastProcess,
    Noise,
    Tls,
    prepare_db,
    python_env,
    read_depth,
    signed_payload,
    stop_process,
    wait_recorded,
)
from .hosts import CLASSES, HEALTHY
from .stats import median, summary_ms

if TYPE_CHECKING:
    from .scenarios import Context


async def _wait_idle(ctx: Context, at_most: float) -> None:
    """With --wait-idle: before each part, wait (at most `at_most` s) for a quieter machine."""
    from .scenarios import _wait_idle as wait

    await wait(ctx, ctx.size(at_most, 0.0))


SEED = 12
# Share of the hosts in each class (the rest are fast).
SHARES = {"slow": 0.20, "failing": 0.08, "hanging": 0.02}
FIRST_ADDRESS = ipaddress.IPv4Address("127.0.0.2")
PRODUCERS = 200


def event_name(webhook: int) -> str:
    return f"bench.rt{webhook}"


# ----- the plan: hosts, webhooks and the load, all from one seed ------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    seed: int
    hosts: list[dict[str, Any]]  # {"index", "address", "class"}
    webhook_host: list[int]  # webhook index -> host index
    burst: list[int]  # webhook index of each delivery of the burst, in signal order
    steady: list[int]  # the same for the steady phase

    @classmethod
    def make(cls, seed: int, hosts: int, per_host: int, burst: int, steady: int) -> Plan:
        rng = random.Random(seed)
        counts = {name: max(1, round(hosts * share)) for name, share in SHARES.items()}
        labels = ["fast"] * (hosts - sum(counts.values()))
        for name, n in counts.items():
            labels += [name] * n
        rng.shuffle(labels)
        host_list = [
            {"index": i, "address": str(FIRST_ADDRESS + i), "class": labels[i]}
            for i in range(hosts)
        ]
        webhook_host = [w // per_host for w in range(hosts * per_host)]
        rng.shuffle(webhook_host)
        n = len(webhook_host)
        return cls(
            seed,
            host_list,
            webhook_host,
            [rng.randrange(n) for _ in range(burst)],
            [rng.randrange(n) for _ in range(steady)],
        )

    def cls(self, webhook: int) -> str:
        return str(self.hosts[self.webhook_host[webhook]]["class"])

    def healthy(self, webhook: int) -> bool:
        return self.cls(webhook) in HEALTHY

    def classes(self) -> dict[str, int]:
        return dict(Counter(h["class"] for h in self.hosts))


# ----- the receivers: two `python -m bench.hosts` processes ------------------------------------


class Hosts:
    """The receiver processes (hosts split between them by index parity) and a client for
    their control ports; counts are merged over the processes."""

    def __init__(self, plan: Plan, tls: Tls, workdir: Path, processes: int = 2) -> None:
        self.plan = plan
        self.tls = tls
        self.workdir = workdir
        self.processes = processes
        self.procs: list[asyncio.subprocess.Process] = []
        self.control: list[int] = []
        self.port_of_host: dict[int, int] = {}
        self._http: aiohttp.ClientSession | None = None

    def url(self, webhook: int, run: str) -> str:
        """Where webhook `webhook` delivers when sender `run` sends (counted per run)."""
        host = self.plan.webhook_host[webhook]
        address = self.plan.hosts[host]["address"]
        return f"https://{address}:{self.port_of_host[host]}/h/{host}/{webhook}/{run}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def start(self) -> Hosts:
        for k in range(self.processes):
            mine = [h for h in self.plan.hosts if h["index"] % self.processes == k]
            plan_path = self.workdir / f"hosts-{k}.json"
            plan_path.write_text(json.dumps({"seed": self.plan.seed, "hosts": mine}))
            log = open(self.workdir / f"hosts-{k}.log", "ab")  # noqa: SIM115 - for the child
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.hosts",
                "--plan",
                str(plan_path),
                "--cert",
                self.tls.cert_path,
                "--key",
                self.tls.key_path,
                "--secret",
                SECRET,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=python_env(),
                cwd=str(REPO),
            )
            log.close()
            self.procs.append(proc)
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            while True:
                line = await asyncio.wait_for(
                    proc.stdout.readline(), max(0.1, deadline - time.monotonic())
                )
                if not line:
                    raise RuntimeError(
                        f"hosts process {k} exited; see {self.workdir}/hosts-{k}.log"
                    )
                if line.startswith(b"READY "):
                    info = json.loads(line[6:])
                    self.control.append(info["control_port"])
                    for h in mine:
                        self.port_of_host[h["index"]] = info["port"]
                    break
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def _all(self, method: str, path: str, run: str = "") -> list[dict[str, Any]]:
        assert self._http is not None
        http = self._http

        async def one(port: int) -> dict[str, Any]:
            url = f"http://127.0.0.1:{port}{path}"
            async with http.request(method, url, params={"run": run}) as r:
                r.raise_for_status()
                return dict(await r.json(content_type=None))

        return list(await asyncio.gather(*(one(p) for p in self.control)))

    @staticmethod
    def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
        phases: dict[str, dict[str, Any]] = {}
        for part in parts:
            for name, p in part["phases"].items():
                m = phases.setdefault(name, {"healthy": 0, "first_at": None, "last_at": None})
                m["healthy"] += p["healthy"]
                for key, pick in (("first_at", min), ("last_at", max)):
                    if p[key] is not None:
                        m[key] = p[key] if m[key] is None else pick(m[key], p[key])
        opened: Counter[str] = Counter()
        for part in parts:
            opened.update(part["open"])
        return {
            "phases": phases,
            "open": dict(opened),
            "open_total": sum(part["open_total"] for part in parts),
            "bad": sum(part["bad"] for part in parts),
            "duplicates": sum(part["duplicates"] for part in parts),
        }

    async def counts(self, run: str) -> dict[str, Any]:
        return self._merge(await self._all("GET", "/_count", run))

    async def stats(self, run: str) -> dict[str, Any]:
        parts = await self._all("GET", "/_stats", run)
        out = self._merge(parts)
        out["hosts"] = sorted((h for p in parts for h in p["hosts"]), key=lambda h: h["index"])
        out["arrivals"] = {int(w): t for p in parts for w, t in p["arrivals"].items()}
        latencies: dict[str, list[float]] = {}
        for p in parts:
            for name, values in p["latencies"].items():
                latencies.setdefault(name, []).extend(values)
        out["latencies"] = latencies
        out["peak_open_each_process"] = [p["peak_open"] for p in parts]
        out["unknown"] = sum(p["unknown"] for p in parts)
        return out

    async def release(self, run: str) -> None:
        """Answer the run's held requests (hanging hosts) now."""
        await self._all("POST", "/_release", run)

    def cpu(self) -> float:
        from .scenarios import cpu_seconds

        return sum(cpu_seconds(pid) for pid in self.pids)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.gather(*(stop_process(p) for p in self.procs), return_exceptions=True)
        self.procs = []


class Watch:
    """Polls the receivers every `interval` s (open requests by class: what is in flight as
    the receivers see it) and, given a database, the worker's heartbeat row
    (`workers.in_flight`, written every 5 s) every 0.5 s; keeps the peaks, the latest counts
    and a series thinned to one sample per second."""

    def __init__(
        self, hosts: Hosts, run: str, db_path: Path | None = None, interval: float = 0.1
    ) -> None:
        self.hosts = hosts
        self.run = run
        self.db_path = db_path
        self.interval = interval
        self.latest: dict[str, Any] = {"phases": {}, "open": {}, "open_total": 0}
        self.peak_total = 0
        self.peak: Counter[str] = Counter()
        self.peak_heartbeat = 0
        self.heartbeat = 0
        self.series: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Watch:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    def _read_heartbeat(self) -> int:
        assert self.db_path is not None
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT max(in_flight) FROM workers").fetchone()
        finally:
            conn.close()
        return int(row[0] or 0)

    async def _run(self) -> None:
        last_kept = -1.0
        last_heartbeat = 0.0
        while True:
            try:
                counts = await self.hosts.counts(self.run)
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(self.interval)
                continue
            self.latest = counts
            self.peak_total = max(self.peak_total, counts["open_total"])
            for cls, n in counts["open"].items():
                self.peak[cls] = max(self.peak[cls], n)
            now = time.monotonic()
            if self.db_path is not None and now - last_heartbeat >= 0.5:
                last_heartbeat = now
                with contextlib.suppress(sqlite3.Error):
                    self.heartbeat = await asyncio.to_thread(self._read_heartbeat)
                    self.peak_heartbeat = max(self.peak_heartbeat, self.heartbeat)
            if now - last_kept >= 1.0:
                last_kept = now
                self.series.append(
                    {
                        "t": round(now - self._t0, 1),
                        "open": counts["open_total"],
                        "open_hanging": counts["open"].get("hanging", 0),
                        "open_healthy": sum(counts["open"].get(c, 0) for c in HEALTHY),
                        "heartbeat_in_flight": self.heartbeat if self.db_path else None,
                        "healthy_received": sum(p["healthy"] for p in counts["phases"].values()),
                    }
                )
            await asyncio.sleep(self.interval)

    async def wait_phase(
        self, phase: str, n: int, timeout: float, on_count: Any = None
    ) -> dict[str, Any]:
        """Until `n` healthy deliveries of `phase` arrived (or `timeout` passed); the last
        merged counts."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.latest["phases"].get(phase, {}).get("healthy", 0)
            if on_count is not None:
                on_count(got)
            if got >= n or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.interval)
        return await self.hosts.counts(self.run)  # fresh: last_at of the very last arrival

    def peaks(self) -> dict[str, Any]:
        return {
            "open_at_receivers": self.peak_total,
            "open_by_class": dict(self.peak),
            "worker_heartbeat_in_flight": self.peak_heartbeat if self.db_path else None,
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# ----- the scenario ---------------------------------------------------------------------------


async def run(ctx: Context) -> dict[str, Any]:
    n_hosts = 200
    per_host = 2
    burst = ctx.size(20_000, 4_000)
    rate_per_s, seconds = ctx.size((200, 10.0), (100, 3.0))
    # Beyond ~1,000 the bare client only opens more connections at once: at 4,096 in flight
    # its TLS handshakes (up to 32 per host, 6,400 at once) took longer than the 10 s timeout
    # and it delivered 72/s.
    bare_concurrency = ctx.size((256, 512, 1024), (1024,))
    plan = Plan.make(SEED, n_hosts, per_host, burst, int(rate_per_s * seconds))
    defaults = Settings()
    tls = Tls.create(ctx.workdir, tuple(h["address"] for h in plan.hosts), prefix="realistic-")
    config = dataclasses.replace(ctx.config, tls=tls)
    settings = config.settings(ctx.workdir / "unused.db")
    out: dict[str, Any] = {
        "seed": SEED,
        "hosts": n_hosts,
        "hosts_by_class": plan.classes(),
        "class_delays_ms": {
            c: [round(lo * 1000), round(hi * 1000), status]
            for c, (lo, hi, status) in CLASSES.items()
        },
        "receiver_processes": 2,
        "webhooks": len(plan.webhook_host),
        "webhooks_by_class": dict(Counter(plan.cls(w) for w in range(len(plan.webhook_host)))),
        "burst": burst,
        "burst_healthy": sum(1 for w in plan.burst if plan.healthy(w)),
        "steady": {"rate_per_s": rate_per_s, "seconds": seconds, "signals": len(plan.steady)},
        "hookcast_settings": _delivery_settings(settings, defaults),
    }
    hosts = await Hosts(plan, tls, ctx.workdir).start()
    main = HookcastRun(ctx, plan, hosts, config, "with hanging", "a", skip_hanging=False)
    alone = HookcastRun(ctx, plan, hosts, config, "without hanging", "w", skip_hanging=True)
    try:
        # hookcast with every host, burst then steady phase. Its worker keeps running (it
        # has nothing left but the failing and hanging webhooks' retries and probes) while
        # the other parts run, until those webhooks leave Active or the wait below ends.
        await main.start()
        out["hookcast"] = await main.measure(steady=True)
        await main.watch.stop()
        # Right after it, so that the two are as close in time as they can be: the same burst
        # without the hanging hosts' webhooks (the same healthy deliveries).
        await alone.start()
        out["hookcast_without_hanging"] = await alone.measure(steady=False)
        await alone.stop()
        runs = {}
        for c in bare_concurrency:
            runs[str(c)] = await _bare_run(
                ctx,
                plan,
                hosts,
                tls,
                concurrency=c,
                per_host=settings.max_connections_per_host,
                timeout=settings.attempt_timeout,
            )
        best = max(runs, key=lambda c: runs[c]["per_s"])
        out["bare"] = {"runs": runs, "best_concurrency": int(best), "per_s": runs[best]["per_s"]}
        out["hookcast_transport"] = await _transport_run(
            ctx, plan, hosts, config, concurrency=max(bare_concurrency)
        )
        # On a shared machine one burst of a few seconds can be hit by other work, so when
        # the bursts are short (≤ 30 s each) two more rounds of "with / without" (burst only,
        # fresh database and worker each) are run and the medians reported.
        rounds: dict[str, list[float]] = {
            "with hanging": [out["hookcast"]["per_s"]],
            "without hanging": [out["hookcast_without_hanging"]["per_s"]],
        }
        spent = (
            out["hookcast"]["seconds_to_last_healthy_receipt"]
            + out["hookcast_without_hanging"]["seconds_to_last_healthy_receipt"]
        )
        for k in range(2, 4 if not ctx.quick and spent <= 60 else 2):
            for label, tag, skip in (("with hanging", "a", False), ("without hanging", "w", True)):
                extra = HookcastRun(
                    ctx, plan, hosts, config, f"{label} #{k}", f"{tag}{k}", skip_hanging=skip
                )
                try:
                    await extra.start()
                    rounds[label].append((await extra.measure(steady=False))["per_s"])
                finally:
                    await extra.stop()
        out["hookcast"].update(await main.finish(wait=ctx.size(150.0, 3.0)))
    finally:
        await alone.stop()
        await main.stop()
        await hosts.stop()
    out["hookcast"]["worker_peak_rss_mib"] = main.peak_rss_mib
    out["hookcast_without_hanging"]["worker_peak_rss_mib"] = alone.peak_rss_mib
    out["perfect_sender"] = perfect_sender(plan, settings.max_connections_per_host)
    out["rounds"] = rounds
    hookcast_per_s = round(median(rounds["with hanging"]) or 0, 1)
    without = round(median(rounds["without hanging"]) or 0, 1)
    ceiling = out["bare"]["per_s"]
    out["per_s"] = hookcast_per_s
    out["without_hanging_per_s"] = without
    out["ceiling_per_s"] = ceiling
    out["ratio"] = round(hookcast_per_s / ceiling, 3) if ceiling else None
    # Each round's two runs follow each other, so their ratio cancels the machine's drift;
    # the median of those is the figure, the ratio of the medians is beside it.
    pairs = [
        a / b for a, b in zip(rounds["with hanging"], rounds["without hanging"], strict=True) if b
    ]
    out["hanging_ratio_each_round"] = [round(x, 3) for x in pairs]
    out["hanging_ratio"] = round(median(pairs) or 0, 3)
    out["hanging_ratio_of_medians"] = round(hookcast_per_s / without, 3) if without else None
    return out


def _delivery_settings(settings: Settings, defaults: Settings) -> dict[str, Any]:
    """The worker's delivery settings (whatever this version of hookcast has), and which of
    them are not hookcast's defaults."""
    skip = ("smtp_", "mail_", "log_", "database_url", "host", "port", "max_body_bytes")
    values = {
        name: getattr(settings, name)
        for name in type(settings).model_fields
        if not name.startswith(skip)
    }
    out: dict[str, Any] = {
        k: [x if isinstance(x, int | float) else str(x) for x in v] if isinstance(v, list) else v
        for k, v in values.items()
    }
    out["not_default"] = sorted(k for k in values if values[k] != getattr(defaults, k))
    return out


def perfect_sender(plan: Plan, limit: int) -> dict[str, Any]:
    """The most a sender with `limit` connections per host could do on this burst: every host
    kept at `limit` requests in flight, each taking its class's mean delay, no cost of its
    own. Its rate is capped twice: by the sum over healthy hosts of limit ÷ mean delay (all
    hosts busy at once), and by the burst's size — the healthy deliveries ÷ the time the
    busiest host needs for its share (ceil(n ÷ limit) rounds of its mean delay)."""
    per_host = Counter(plan.webhook_host[w] for w in plan.burst if plan.healthy(w))
    mean = {c: (lo + hi) / 2 for c, (lo, hi, _) in CLASSES.items()}
    rate_cap = sum(limit / mean[h["class"]] for h in plan.hosts if h["class"] in HEALTHY)
    makespan = max(math.ceil(n / limit) * mean[plan.hosts[h]["class"]] for h, n in per_host.items())
    total = sum(per_host.values())
    return {
        "per_host_limit": limit,
        "all_hosts_busy_per_s": round(rate_cap, 1),
        "busiest_host_seconds": round(makespan, 3),
        "burst_per_s": round(total / makespan, 1),
        "per_s": round(min(rate_cap, total / makespan), 1),
    }


class HookcastRun:
    """One `hookcast worker` process on a fresh database with the plan's webhooks (without
    the hanging hosts' when `skip_hanging`), its deliveries counted under run tag `tag`."""

    def __init__(
        self,
        ctx: Context,
        plan: Plan,
        hosts: Hosts,
        config: HookcastConfig,
        label: str,
        tag: str,
        *,
        skip_hanging: bool,
    ) -> None:
        self.ctx, self.plan, self.hosts, self.config = ctx, plan, hosts, config
        self.label, self.tag = label, tag
        self.webhooks = [
            w
            for w in range(len(plan.webhook_host))
            if not (skip_hanging and plan.cls(w) == "hanging")
        ]
        included = set(self.webhooks)
        self.burst = [w for w in plan.burst if w in included]
        self.steady = [w for w in plan.steady if w in included]
        self.expected = sum(1 for w in self.burst if plan.healthy(w))  # healthy, burst
        self.expected_all = self.expected  # healthy, burst and steady phase
        self.db_path = ctx.db_path(f"realistic-{tag}")  # no "#" in a URL or file: URI
        self.worker: HookcastProcess | None = None
        self.watch = Watch(hosts, tag, self.db_path)
        self.webhook_of_id: dict[int, int] = {}
        self.burst_started = 0.0
        self.peak_rss_mib: float | None = None

    async def start(self) -> None:
        await _wait_idle(self.ctx, 20.0)
        specs = [(f"rt{w}", [event_name(w)], self.hosts.url(w, self.tag)) for w in self.webhooks]
        ids = await asyncio.to_thread(prepare_db, self.db_path, specs)
        self.webhook_of_id = dict(zip(ids, self.webhooks, strict=True))
        self.worker = HookcastProcess(
            ["worker", "--db", f"sqlite:///{self.db_path}"],
            self.config.env(self.db_path),
            self.ctx.workdir / f"worker-realistic-{self.tag}.log",
        )
        await self.worker.start()
        await self.worker.wait_log("hookcast worker delivering", timeout=30)

    async def measure(self, *, steady: bool) -> dict[str, Any]:
        """The burst (and the steady phase): throughput, CPU, latency, in flight."""
        from .scenarios import cpu_seconds, fixed_rate, rate

        ctx, hosts, worker = self.ctx, self.hosts, self.worker
        assert worker is not None
        self.watch.start()
        task = ctx.task(
            f"realistic, hookcast {self.label}: healthy of {len(self.burst):,}", self.expected
        )
        noise = Noise().start()
        cpu_w0, cpu_r0, cpu_me0 = cpu_seconds(worker.pid), hosts.cpu(), cpu_seconds()
        figures: dict[str, Any] = {
            "label": self.label,
            "webhooks": len(self.webhooks),
            "burst": len(self.burst),
        }
        async with Hub(self.config.settings(self.db_path), deliver=False) as app:
            counter = itertools.count()
            signal_errors = 0

            async def producer() -> None:
                nonlocal signal_errors
                while (i := next(counter)) < len(self.burst):
                    try:
                        await self._signal(app, self.burst[i], i, "b")
                    except Exception:
                        signal_errors += 1
                        if signal_errors > 100:
                            raise

            signalled_at: list[float] = []

            async def signal_burst() -> None:
                producers = (producer() for _ in range(PRODUCERS))
                await asyncio.wait_for(asyncio.gather(*producers), ctx.size(120, 30))
                signalled_at.append(time.monotonic())

            t0 = self.burst_started = time.monotonic()
            signalling = asyncio.ensure_future(signal_burst())
            counts = await self.watch.wait_phase(
                "b",
                self.expected,
                timeout=ctx.size(300, 35),
                on_count=lambda c: ctx.progress.update(task, completed=c),
            )
            await asyncio.wait_for(signalling, 5)  # done by now: every delivery arrived
            received = counts["phases"].get("b", {}).get("healthy", 0)
            elapsed = (counts["phases"].get("b", {}).get("last_at") or t0) - t0
            cpu_worker = cpu_seconds(worker.pid) - cpu_w0
            cpu_recv, cpu_me = hosts.cpu() - cpu_r0, cpu_seconds() - cpu_me0
            foreign = noise.stop()
            per_s = rate(received, elapsed)
            ctx.done(task, f"{per_s:,.0f}/s")
            depth, recorded_at = await wait_recorded(
                self.db_path, self.expected, timeout=30, interval=0.05
            )
            attempts = await asyncio.to_thread(_count_attempts, self.db_path)
            figures.update(
                {
                    "healthy_expected": self.expected,
                    "healthy_received": received,
                    "seconds_to_last_healthy_receipt": round(elapsed, 3),
                    "per_s": round(per_s, 1),
                    "per_s_by_recorded": round(rate(received, recorded_at - t0), 1),
                    "seconds_to_signal_burst": round(signalled_at[0] - t0, 3),
                    "signal_errors": signal_errors,
                    "attempts_during_burst": attempts,
                    "depth_at_burst_end": depth,
                    "worker_cpu_s": round(cpu_worker, 2),
                    "worker_cpu_us_per_delivery": round(cpu_worker / max(received, 1) * 1e6, 1),
                    "worker_cpu_us_per_attempt": round(cpu_worker / max(attempts, 1) * 1e6, 1),
                    "worker_cpu_pct_of_a_core": _pct(cpu_worker, elapsed),
                    "receivers_cpu_s": round(cpu_recv, 2),
                    "receivers_cpu_us_per_delivery": round(cpu_recv / max(received, 1) * 1e6, 1),
                    "receivers_cpu_pct_of_a_core_each": _pct(cpu_recv / hosts.processes, elapsed),
                    "app_cpu_s": round(cpu_me, 2),
                    "foreign_cpu_pct": foreign,
                    "in_flight_peak_burst": self.watch.peaks(),
                    "burst_latency": summary_ms(
                        (await hosts.stats(self.tag))["latencies"].get("b", [])
                    ),
                }
            )
            if steady:
                figures["steady"] = await self._steady(app, fixed_rate)
                self.expected_all += figures["steady"]["healthy_expected"]
        await wait_recorded(self.db_path, self.expected_all, timeout=ctx.size(30, 10))
        figures["exactly_once"] = await self._exactly_once()
        figures["in_flight_peak"] = self.watch.peaks()
        figures["in_flight_series"] = self.watch.series
        return figures

    async def _signal(self, app: Hub, webhook: int, pk: int, phase: str) -> None:
        await app.signal(
            event_name(webhook),
            pk,
            tenant=TENANT,
            associate_id=ASSOCIATE,
            changes=["name"],
            field_values={"t": time.monotonic(), "ph": phase},
        )

    async def _steady(self, app: Hub, fixed_rate: Any) -> dict[str, Any]:
        """Open loop: one signal every 1/rate s; the healthy deliveries' signal→receipt latency."""
        items = self.steady
        expected = sum(1 for w in items if self.plan.healthy(w))
        seconds = self.ctx.size(10.0, 3.0)
        per_s = len(self.plan.steady) / seconds
        task = self.ctx.task(
            f"realistic, hookcast: steady {per_s:.0f}/s for {seconds:.0f} s", len(items)
        )

        async def send(i: int) -> None:
            await self._signal(app, items[i], 1_000_000 + i, "s")

        durations, achieved = await fixed_rate(send, per_s, len(items), self.ctx.progress, task)
        counts = await self.watch.wait_phase("s", expected, timeout=30)
        lat = summary_ms((await self.hosts.stats(self.tag))["latencies"].get("s", []))
        self.ctx.done(task, f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
        return {
            "signals": len(items),
            "achieved_per_s": round(achieved, 1),
            "healthy_expected": expected,
            "healthy_received": counts["phases"].get("s", {}).get("healthy", 0),
            "latency": lat,
            "signal_duration": summary_ms(durations),
        }

    async def _exactly_once(self) -> dict[str, Any]:
        """Every healthy delivery (burst and steady phase) received once, with a good
        signature: the healthy hosts' requests = the deliveries expected = `delivered` rows,
        no duplicate."""
        stats = await self.hosts.stats(self.tag)
        data = await asyncio.to_thread(_read_webhooks, self.db_path)
        healthy_ids = {i for i, w in self.webhook_of_id.items() if self.plan.healthy(w)}
        delivered = sum(
            n for i, status, n in data["deliveries"] if i in healthy_ids and status == 1
        )
        healthy_hosts = [h for h in stats["hosts"] if h["class"] in HEALTHY]
        received = sum(h["received"] for h in healthy_hosts)
        duplicates = sum(h["duplicates"] for h in healthy_hosts)
        return {
            "expected": self.expected_all,
            "received": received,
            "duplicates": duplicates,
            "delivered_in_db": delivered,
            "bad_signatures": stats["bad"],
            "ok": received == self.expected_all == delivered
            and duplicates == 0
            and stats["bad"] == 0,
        }

    async def finish(self, wait: float) -> dict[str, Any]:
        """Wait (at most `wait` s) until the failing and hanging webhooks left Active; then
        their states, attempts, and the requests their hosts got after the transition."""
        deadline = time.monotonic() + wait
        task = self.ctx.task("realistic, hookcast: failing and hanging webhooks leave Active", None)
        while True:
            data = await asyncio.to_thread(_read_webhooks, self.db_path)
            active = [
                i
                for i, state, *_ in data["hooks"]
                if state == State.Active and not self.plan.healthy(self.webhook_of_id[i])
            ]
            if not active or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        self.ctx.done(task, f"{len(active)} still Active")
        stats = await self.hosts.stats(self.tag)
        return {
            "webhook_states": _states(self.plan, self.webhook_of_id, data, stats),
            "states_read_s_after_burst_start": round(time.monotonic() - self.burst_started, 1),
            "depth_after": await asyncio.to_thread(read_depth, self.db_path),
        }

    async def stop(self) -> None:
        await self.watch.stop()
        with contextlib.suppress(Exception):
            await self.hosts.release(self.tag)  # held requests go: the worker stops at once
        if self.worker is not None:
            await self.worker.stop()
            if self.worker.rss is not None:
                self.peak_rss_mib = round(self.worker.rss.hwm_kib / 1024, 1)
            self.worker = None


def _pct(cpu: float, seconds: float) -> float | None:
    return round(cpu / seconds * 100, 1) if seconds > 0 else None


def _count_attempts(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM attempts").fetchone()[0])
    finally:
        conn.close()


def _read_webhooks(db_path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        hooks = conn.execute(
            "SELECT id, state, updated_at, total_calls, total_errors, consecutive_errors"
            " FROM webhooks"
        ).fetchall()
        attempts = dict(
            conn.execute("SELECT webhook_id, count(*) FROM attempts GROUP BY webhook_id").fetchall()
        )
        deliveries = conn.execute(
            "SELECT webhook_id, status, count(*) FROM deliveries GROUP BY webhook_id, status"
        ).fetchall()
    finally:
        conn.close()
    return {"hooks": hooks, "attempts": attempts, "deliveries": deliveries}


def _states(
    plan: Plan, webhook_of_id: dict[int, int], data: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """Per class: the webhooks' states, attempts recorded, counters; for failing and hanging
    webhooks the requests their hosts received, and those that arrived after the webhook
    went to TooManyErrors (webhooks.updated_at is written in that transaction; the receivers
    keep each request's arrival on the same wall clock) and by how much."""
    by_class: dict[str, dict[str, Any]] = {}
    spans: dict[str, list[float]] = {}
    for i, state, updated_at, calls, errors, consecutive in data["hooks"]:
        w = webhook_of_id[i]
        cls = plan.cls(w)
        c = by_class.setdefault(
            cls,
            {
                "webhooks": 0,
                "states": Counter(),
                "attempts_recorded": 0,
                "total_calls": 0,
                "total_errors": 0,
            },
        )
        c["webhooks"] += 1
        c["states"][State(state).name] += 1
        c["attempts_recorded"] += data["attempts"].get(i, 0)
        c["total_calls"] += calls
        c["total_errors"] += errors
        if cls in HEALTHY:
            continue
        arrivals = stats["arrivals"].get(w, [])
        c["requests_received"] = c.get("requests_received", 0) + len(arrivals)
        if state != State.TooManyErrors:
            c.setdefault("consecutive_errors_of_the_active", []).append(consecutive)
            continue
        late = [t - updated_at for t in arrivals if t > updated_at]
        c["requests_after_transition"] = c.get("requests_after_transition", 0) + len(late)
        c["webhooks_with_requests_after_transition"] = c.get(
            "webhooks_with_requests_after_transition", 0
        ) + bool(late)
        if late:
            c["latest_request_after_transition_ms"] = max(
                c.get("latest_request_after_transition_ms", 0.0), round(max(late) * 1000, 1)
            )
        if arrivals:
            spans.setdefault(cls, []).append(updated_at - min(arrivals))
    for cls, c in by_class.items():
        c["states"] = dict(c["states"])
        if cls not in HEALTHY:
            c.setdefault("requests_after_transition", 0)
            c.setdefault("webhooks_with_requests_after_transition", 0)
        if cls in spans:
            # how long the webhooks took to go to TooManyErrors from their first request
            c["transition_s_after_first_request_min_max"] = [
                round(min(spans[cls]), 1),
                round(max(spans[cls]), 1),
            ]
    status_names = {0: "pending", 1: "delivered", 2: "given_up"}
    deliveries: dict[str, Counter[str]] = {}
    for i, status, n in data["deliveries"]:
        cls = plan.cls(webhook_of_id[i])
        deliveries.setdefault(cls, Counter())[status_names.get(status, str(status))] += n
    return {
        "by_class": by_class,
        "deliveries_by_class": {k: dict(v) for k, v in deliveries.items()},
        "unknown_paths": stats["unknown"],
    }


async def _bare_run(
    ctx: Context,
    plan: Plan,
    hosts: Hosts,
    tls: Tls,
    *,
    concurrency: int,
    per_host: int,
    timeout: float,
) -> dict[str, Any]:
    """The bare client, the ceiling: one aiohttp session with `per_host` connections per host
    and a total timeout of `timeout` s per request; no retries, nothing stored."""
    sslctx = ssl.create_default_context(cafile=tls.ca_path)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_host, ssl=sslctx)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as session:

        async def post(url: str, body: bytes, headers: dict[str, str]) -> str:
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    return str(r.status)
            except TimeoutError:
                return "timeout"
            except (aiohttp.ClientError, OSError) as exc:
                return type(exc).__name__

        return await _baseline(
            ctx,
            plan,
            hosts,
            f"c{concurrency}",
            f"bare client {concurrency} in flight",
            concurrency,
            post,
        )


async def _transport_run(
    ctx: Context, plan: Plan, hosts: Hosts, config: HookcastConfig, *, concurrency: int
) -> dict[str, Any]:
    """Not the ceiling: hookcast's own sender (HttpSender.send over net/http11.py, its
    per-host pools and attempt timeout) posting the same payloads the same way."""
    settings = config.settings(ctx.workdir / "unused.db")
    async with HttpSender(settings) as sender:

        async def post(url: str, body: bytes, headers: dict[str, str]) -> str:
            outcome = await sender.send(url, body, headers)
            if outcome.status is not None:
                return str(outcome.status)
            return str(outcome.kind.name if outcome.kind is not None else "error").lower()

        return await _baseline(
            ctx, plan, hosts, "t", f"hookcast's sender {concurrency} in flight", concurrency, post
        )


async def _baseline(
    ctx: Context,
    plan: Plan,
    hosts: Hosts,
    tag: str,
    label: str,
    concurrency: int,
    post: Callable[[str, bytes, dict[str, str]], Awaitable[str]],
) -> dict[str, Any]:
    """`concurrency` tasks post the burst's payloads in order, each built and signed when it
    is sent, until every healthy one arrived; what is still in flight then (held by the
    hanging hosts) is cancelled."""
    from .scenarios import cpu_seconds, rate

    items = plan.burst
    expected = sum(1 for w in items if plan.healthy(w))
    await _wait_idle(ctx, 20.0)
    watch = Watch(hosts, tag).start()
    # Connections given up on in the middle of a TLS record make uvloop report "Fatal error
    # on SSL protocol" to the loop's exception handler: counted, not printed.
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop_errors: Counter[str] = Counter()
    loop.set_exception_handler(
        lambda _, context: loop_errors.update([str(context.get("message", "?"))[:60]])
    )
    statuses: Counter[str] = Counter()
    counter = itertools.count()
    task = ctx.task(f"realistic, {label}: healthy", expected)

    async def worker() -> None:
        while (i := next(counter)) < len(items):
            w = items[i]
            body, headers = _payload(w, i)
            statuses[await post(hosts.url(w, tag), body, headers)] += 1

    workers: list[asyncio.Task[None]] = []
    try:
        noise = Noise().start()
        cpu0, cpu_r0 = cpu_seconds(), hosts.cpu()
        t0 = time.monotonic()
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        counts = await watch.wait_phase(
            "c",
            expected,
            timeout=ctx.size(120, 20),
            on_count=lambda c: ctx.progress.update(task, completed=c),
        )
        cpu, cpu_recv = cpu_seconds() - cpu0, hosts.cpu() - cpu_r0
        foreign = noise.stop()
    finally:
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await watch.stop()
        with contextlib.suppress(Exception):
            await hosts.release(tag)
        await asyncio.sleep(0.1)  # the cancelled connections' last callbacks
        loop.set_exception_handler(previous_handler)
    stats = await hosts.stats(tag)
    phase = counts["phases"].get("c", {})
    received = phase.get("healthy", 0)
    elapsed = (phase.get("last_at") or t0) - t0
    per_s = rate(received, elapsed)
    ctx.done(task, f"{per_s:,.0f}/s")
    healthy_hosts = [h for h in stats["hosts"] if h["class"] in HEALTHY]
    return {
        "concurrency": concurrency,
        "healthy_expected": expected,
        "healthy_received": received,
        "seconds_to_last_healthy_receipt": round(elapsed, 3),
        "per_s": round(per_s, 1),
        "posts_started": min(next(counter), len(items)),
        "answers": dict(statuses),
        "duplicates": sum(h["duplicates"] for h in healthy_hosts),
        "bad_signatures": stats["bad"],
        "client_cpu_s": round(cpu, 2),
        "client_cpu_us_per_delivery": round(cpu / max(received, 1) * 1e6, 1),
        "client_cpu_pct_of_a_core": _pct(cpu, elapsed),
        "receivers_cpu_s": round(cpu_recv, 2),
        "receivers_cpu_us_per_delivery": round(cpu_recv / max(received, 1) * 1e6, 1),
        "receivers_cpu_pct_of_a_core_each": _pct(cpu_recv / hosts.processes, elapsed),
        "in_flight_peak": watch.peaks(),
        "loop_errors": dict(loop_errors),
        "foreign_cpu_pct": foreign,
    }


def _payload(webhook: int, i: int) -> tuple[bytes, dict[str, str]]:
    """The delivery hookcast would send for burst event i."""
    fields = {"t": time.monotonic(), "ph": "c"}
    return signed_payload(event_name(webhook), i, f"rt{webhook}", fields)
