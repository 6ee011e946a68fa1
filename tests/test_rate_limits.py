"""MaxPerSecond and MaxInFlight end to end (issue 19): real HTTPS receivers record when each
delivery arrived, and the rate and concurrency they saw stay within the limits (and the
documented tolerance, docs/delivery-options.md), while every delivery arrives and none is
failed by a limit. In one process on the test database, and across two `hookcast worker`
processes on PostgreSQL, which split the limits between them."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.databases import needs_postgres, new_postgres_url
from support.engine import CALLER, TENANT, delivery_settings, eventually, running_engine
from support.processes import HookcastProcess, tail
from support.receivers import Receiver, RecordedRequest

from hookcast.api.schemas import WebhookIn
from hookcast.dispatch.ratelimit import burst_of
from hookcast.hub import Hub
from hookcast.intake import Signal
from hookcast.registry import Registry
from hookcast.store import queue
from hookcast.store.schema import workers

pytestmark = pytest.mark.slow  # seconds of paced deliveries

EVENT = "contact.changed"
# Network time varies between requests: one sent just before a window may arrive in it.
# Allowed for as this many seconds' worth of the rate (and one request at least).
JITTER = 0.1


def deliveries(receiver: Receiver, path: str | None = None) -> list[RecordedRequest]:
    return [
        r
        for r in receiver.requests
        if r.header("X-Hook-Test") is None and (path is None or r.path == path)
    ]


def peak_per_second(arrivals: list[float]) -> int:
    """The most requests the receiver saw in any one-second window."""
    times = sorted(arrivals)
    peak, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def allowed(rate: float, dispatchers: int = 1) -> float:
    """Rate + the dispatchers' bursts (each holds its share's burst) + the jitter."""
    return rate + dispatchers * burst_of(rate / dispatchers) + max(1.0, rate * JITTER)


async def all_delivered(hub: Hub, count: int) -> bool:
    """Every outcome written: `count` deliveries delivered, none pending."""
    depth = await hub.db.read(queue.queue_depth)
    return depth["delivered"] == count and depth["pending"] == 0


async def signal_burst(hub: Hub, count: int) -> None:
    await hub.signal_many(
        [Signal(EVENT, pk, tenant=TENANT, associate_id=5) for pk in range(1, count + 1)]
    )


async def test_max_per_second_paces_a_burst_and_fails_nothing(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    rate, count = 20.0, 60
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        hook = await engine.create(receiver.url, [EVENT], MaxPerSecond=rate)
        await signal_burst(engine.hub, count)
        got = await eventually(
            lambda: len(got := deliveries(receiver)) >= count and got, timeout=30, what="all"
        )
        await eventually(lambda: all_delivered(engine.hub, count), what="every outcome")
        usage = await engine.usage(hook.id)
    peak = peak_per_second([r.at for r in got])
    span = max(r.at for r in got) - min(r.at for r in got)
    print(f"MaxPerSecond {rate}: {count} in {span:.2f} s, at most {peak} in a second")
    assert len(got) == count
    assert peak <= allowed(rate), f"{peak} requests in one second at MaxPerSecond {rate}"
    # Held for tokens, not attempted: one attempt each, none failed, nothing left queued.
    assert (usage.total_calls, usage.total_errors) == (count, 0)


async def test_max_in_flight_caps_what_a_slow_receiver_holds(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path, per_webhook_concurrency=16) as engine:
        hook = await engine.create(receiver.url, [EVENT], MaxInFlight=2)
        receiver.respond(delay=0.2)
        receiver.reset_peak()
        await signal_burst(engine.hub, 12)
        await eventually(lambda: all_delivered(engine.hub, 12), timeout=30, what="all")
        usage = await engine.usage(hook.id)
    assert len(deliveries(receiver)) == 12
    assert receiver.peak_open == 2  # never more; and the limit is used
    assert (usage.total_calls, usage.total_errors) == (12, 0)


async def test_an_unlimited_webhook_beside_a_limited_one_is_not_slowed(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        await engine.create(receiver.url_for("/limited"), [EVENT], MaxPerSecond=2)
        await engine.create(receiver.url_for("/free"), [EVENT])
        await signal_burst(engine.hub, 10)
        await eventually(
            lambda: len(deliveries(receiver, "/free")) == 10, timeout=10, what="the free ones"
        )
        limited = deliveries(receiver, "/limited")
        # At 2 a second (a burst of 1) the third limited one comes a second after the first:
        # every unlimited one arrived before it.
        assert len(limited) <= 2, [r.at for r in limited]
        await eventually(
            lambda: len(deliveries(receiver, "/limited")) == 10, timeout=20, what="the limited"
        )


async def test_retries_go_through_the_limit(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        hook = await engine.create(receiver.url, [EVENT], MaxPerSecond=10, MaxInFlight=1)
        receiver.respond(statuses=(500, 503))
        await signal_burst(engine.hub, 5)

        await eventually(lambda: all_delivered(engine.hub, 5), timeout=20, what="all")
        usage = await engine.usage(hook.id)
    assert (usage.total_calls, usage.total_errors) == (7, 2)
    assert peak_per_second([r.at for r in deliveries(receiver)]) <= allowed(10)


# ----- two worker processes on PostgreSQL ----------------------------------------------------------


@needs_postgres
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
async def test_two_workers_share_the_limits(
    tmp_path: Path,
    ca_bundle_path: str,
    receiver_factory: Any,
    processes: dict[str, HookcastProcess],
) -> None:
    """One webhook at MaxPerSecond 10 and one at MaxInFlight 3 on a slow receiver, both
    delivered by two `hookcast worker` processes: each takes its share of both limits."""
    rate, in_flight, count = 10.0, 3, 60
    receiver, slow = receiver_factory(), receiver_factory()
    url = new_postgres_url()
    settings = delivery_settings(tmp_path, ca_bundle_path, database_url=url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_LEASE": "8",
        "HOOKCAST_POLL_INTERVAL": "0.5",
    }
    async with Hub(settings, deliver=False) as hub:  # signals and registers; delivers nothing
        registry = Registry(hub.db, settings, hub.sender, wake=hub.wake, halt=hub.halt)
        hook, narrow = [
            await registry.create(
                CALLER,
                WebhookIn.model_validate(
                    {"Name": "limited", "Events": [EVENT], "TargetUrl": target, **limit}
                ),
            )
            for target, limit in (
                (receiver.url, {"MaxPerSecond": rate}),
                (slow.url, {"MaxInFlight": in_flight}),
            )
        ]
        slow.respond(delay=0.25)
        slow.reset_peak()
        names = ("worker-1", "worker-2")
        for name in names:
            processes[name] = HookcastProcess(
                tmp_path,
                {**env, "HOOKCAST_USER_AGENT": f"hookcast-rate/{name}"},
                name,
                ["worker", "--db", url],
            )

        def rows(conn: Any) -> list[Any]:
            return list(conn.execute(select(workers.c.id, workers.c.heartbeat_at)))

        # Both dispatchers know of each other: each heartbeat (which reads the live ones)
        # came after both were listed.
        both_at = 0.0

        async def sharing() -> bool:
            nonlocal both_at
            for process in processes.values():
                process.check_alive()
            listed = await hub.db.read(rows)
            if len(listed) < 2:
                return False
            both_at = both_at or time.time()
            return all(at > both_at for _, at in listed)

        await eventually(sharing, timeout=40, what="two workers that know of each other")
        await signal_burst(hub, count)
        got = await eventually(
            lambda: len(got := deliveries(receiver)) >= count and got, timeout=60, what="all"
        )

        await eventually(lambda: all_delivered(hub, 2 * count), timeout=30, what="all outcomes")
        usage = await registry.usage(CALLER, hook.id)
        narrow_usage = await registry.usage(CALLER, narrow.id)
    for process in processes.values():
        assert "Traceback" not in process.log.read_text(errors="replace"), tail(process.log)
    by_worker = Counter(r.header("User-Agent") for r in got)
    peak = peak_per_second([r.at for r in got])
    span = max(r.at for r in got) - min(r.at for r in got)
    print(
        f"two workers at MaxPerSecond {rate}: {dict(by_worker)}; {count} in {span:.2f} s, at most {peak} in a second"
    )
    assert len(got) == count
    assert len(by_worker) == 2, by_worker  # both delivered: the limit was shared, not idle
    assert peak <= allowed(rate, dispatchers=2), f"{peak} in one second"
    assert usage.total_errors == narrow_usage.total_errors == 0
    # MaxInFlight 3: two for one worker, one for the other; the slow receiver never held more.
    slow_by_worker = Counter(r.header("User-Agent") for r in deliveries(slow))
    print(f"MaxInFlight {in_flight}: {dict(slow_by_worker)}, at most {slow.peak_open} at once")
    assert len(deliveries(slow)) == count and len(slow_by_worker) == 2
    assert slow.peak_open <= in_flight
