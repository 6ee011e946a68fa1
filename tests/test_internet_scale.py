"""Delivery to receivers that hang, fail and recover (issue 12), through a real Hub and real
HTTPS receivers: nothing starts after TooManyErrors, a hanging receiver runs one probe at a
time and cannot hold other tenants' deliveries back, a receiver that turns fast again gets
more in flight. Ordering and counts, never wall-clock times."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from support.engine import CALLER, running_engine
from support.engine import eventually as poll
from test_delivery import wait_deliveries

from hookcast.hub import Hub
from hookcast.model import Principal, State
from hookcast.registry import Registry
from hookcast.store.rows import PARKED

pytestmark = pytest.mark.slow  # real receivers that hang until attempts time out

OTHER = Principal(tenant="Cust9999", associate_id=7, name="eve")


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


async def peak_while(sample: Callable[[], int], until: Callable[[], bool], timeout: float) -> int:
    """The highest value `sample` gave, polled until `until` holds (bounded)."""
    peak, deadline = 0, time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out sampling"
        peak = max(peak, sample())
        await asyncio.sleep(0.002)
    return peak


def deliveries(receiver: Any) -> list[Any]:
    return [r for r in receiver.requests if r.header("X-Hook-Test") is None]


async def test_nothing_starts_after_too_many_errors(tmp_path, ca_bundle_path, receiver) -> None:
    async with running_engine(
        tmp_path, ca_bundle_path, max_consecutive_errors=3, per_webhook_concurrency=16
    ) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(status=500, delay=0.2)
        for pk in range(40):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)

        async def state() -> State:
            return (await engine.registry.get(engine_caller(), hook.id)).state

        deadline = time.monotonic() + 15
        while await state() is not State.TooManyErrors:
            assert time.monotonic() < deadline, "never disabled"
            await asyncio.sleep(0.02)
        seen_disabled = time.monotonic()  # the transition is committed by now
        dispatcher = engine.hub.dispatcher
        assert dispatcher is not None
        # held deliveries were let go and attempts in flight cancelled: nothing is left,
        # and the receiver has seen the last of the requests already on their way
        await eventually(lambda: dispatcher.in_flight == 0, what="no attempt in flight")
        await eventually(lambda: receiver.answered == len(receiver.requests), what="hang-ups")
        seen = len(deliveries(receiver))
        # none of them arrived after the transition was committed (on the receiver's clock,
        # which is this process's). Not its decision time (the webhook's Updated): a request
        # already on its way may arrive while the outcome transaction commits, on a loaded
        # machine tens of milliseconds later.
        assert max(r.at for r in deliveries(receiver)) < seen_disabled
        # and the ones the ledger held never reach the receiver
        await engine.hub.signal("contact.changed", 99, tenant="Cust1234", associate_id=5)
        usage = await engine.usage(hook.id)
        assert len(deliveries(receiver)) == seen
        # every request the receiver got is at most one attempt: no request was wasted on
        # the 37 other deliveries (4 to 16 in flight when it tripped, then nothing)
        assert usage.total_calls <= seen < 40


def engine_caller() -> Principal:
    return CALLER


async def test_a_hanging_receiver_runs_one_probe_and_delays_no_one_else(
    tmp_path, ca_bundle_path, receiver_factory
) -> None:
    hanging, healthy = receiver_factory(), receiver_factory()
    async with running_engine(
        tmp_path,
        ca_bundle_path,
        attempt_timeout=2.5,  # the other tenant's 20 arrive well within it, even when loaded
        retry_delays=[0.05, 0.05],
        max_consecutive_errors=100,
        per_webhook_concurrency=16,
    ) as engine:
        hooks = [  # one tenant's four webhooks on a receiver that answers nothing
            await engine.create(hanging.url, ["contact.changed"]) for _ in range(4)
        ]
        other = await engine.create(healthy.url, ["contact.changed"], who=OTHER)
        hanging.respond(delay=30)
        registered = hanging.answered  # the registration tests
        for pk in range(50):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        # the first attempts are in flight (the endpoint's initial limit, per webhook)
        await eventually(lambda: len(deliveries(hanging)) >= 4, what="attempts on the hanging one")
        for pk in range(20):
            await engine.hub.signal("contact.changed", pk, tenant="Cust9999", associate_id=7)
        # The other tenant's deliveries all arrive while the first hanging attempts are
        # still open: they waited for no timeout.
        await wait_deliveries(healthy, 20)
        assert hanging.answered == registered
        assert other.id
        # After the timeouts the endpoint is down to one probe per webhook: it never had
        # more than the initial limit per webhook open at once, and after the first
        # timeouts no more than one per webhook.
        initial = engine.settings.endpoint_initial_concurrency
        assert hanging.peak_open <= 4 * initial
        dispatcher = engine.hub.dispatcher
        assert dispatcher is not None
        first = 4 * initial
        await eventually(
            lambda: hanging.answered >= registered + first, timeout=15, what="the first timeouts"
        )
        before = len(deliveries(hanging))
        probing = await peak_while(
            lambda: sum(dispatcher.in_flight_for(h.id) for h in hooks),
            lambda: len(deliveries(hanging)) >= before + 8,
            timeout=15,
        )
        assert probing <= 4  # one probe per webhook while the endpoint answers nothing


async def test_a_receiver_that_turns_fast_gets_more(tmp_path, ca_bundle_path, receiver) -> None:
    async with running_engine(
        tmp_path,
        ca_bundle_path,
        attempt_timeout=0.5,
        retry_delays=[0.05, 0.05],
        cycle_delay=0.1,
        max_consecutive_errors=1000,
        per_webhook_concurrency=16,
    ) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=5)  # hangs: every attempt times out
        for pk in range(60):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        registered = receiver.answered
        await eventually(lambda: receiver.answered >= registered + 4, timeout=15, what="timeouts")
        dispatcher = engine.hub.dispatcher
        assert dispatcher is not None
        probes = len(deliveries(receiver))
        probing = await peak_while(
            lambda: dispatcher.in_flight_for(hook.id),
            lambda: len(deliveries(receiver)) >= probes + 3,
            timeout=15,
        )
        assert probing == 1  # one probe at a time
        # it turns fast: the window opens again, beyond the initial limit
        receiver.respond(delay=0.05)
        receiver.reset_peak()
        await eventually(
            lambda: receiver.peak_open > engine.settings.endpoint_initial_concurrency,
            timeout=15,
            what="more in flight",
        )


async def test_nothing_more_after_stopped_and_in_flight_cancelled(
    tmp_path, ca_bundle_path, receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path, attempt_timeout=5.0) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=5)
        for pk in range(30):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        await eventually(lambda: deliveries(receiver), what="attempts in flight")
        await engine.patch(hook.id, {"State": "Stopped"})
        dispatcher = engine.hub.dispatcher
        assert dispatcher is not None
        await eventually(lambda: dispatcher.in_flight == 0, what="no attempt in flight")
        await eventually(lambda: receiver.answered == len(receiver.requests), what="hang-ups")
        seen = len(deliveries(receiver))
        assert seen <= engine.settings.endpoint_initial_concurrency
        # the attempts in flight were cancelled, not run to their timeout: none is counted
        assert (await engine.usage(hook.id)).total_calls == 0
        await engine.hub.signal("contact.changed", 99, tenant="Cust1234", associate_id=5)
        assert len(deliveries(receiver)) == seen


async def test_stopped_through_another_process_stops_here_within_a_poll(
    tmp_path, ca_bundle_path, receiver
) -> None:
    # The API of another process (a second Hub on the same database, delivering nothing)
    # stops the webhook: this dispatcher hears nothing of it, and finds out from the
    # database within a poll interval; what it held never starts, what ran is cancelled.
    async with running_engine(tmp_path, ca_bundle_path, attempt_timeout=30.0) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=30)  # outlasts every wait below: only a cancel ends them
        for pk in range(30):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        await eventually(lambda: deliveries(receiver), what="attempts in flight")
        dispatcher = engine.hub.dispatcher
        assert dispatcher is not None
        assert dispatcher.in_flight_for(hook.id) > 0
        async with Hub(engine.settings, deliver=False) as other:
            api = Registry(other.db, engine.settings, other.sender, wake=other.wake)
            await api.patch(CALLER, hook.id, {"State": "Stopped"}, "application/json")
        await eventually(lambda: dispatcher.in_flight == 0, what="no attempt in flight")
        await eventually(lambda: receiver.answered == len(receiver.requests), what="hang-ups")
        seen = len(deliveries(receiver))
        assert seen <= engine.settings.endpoint_initial_concurrency
        assert (await engine.usage(hook.id)).total_calls == 0


def _pending(webhook_id: int, due_before: float | None) -> Callable[[Any], int]:
    def count(conn: Any) -> int:
        sql = "SELECT count(*) FROM deliveries WHERE webhook_id = :w AND status = 0"
        params: dict[str, Any] = {"w": webhook_id}
        if due_before is not None:
            sql += " AND next_at <= :t"
            params["t"] = due_before
        return int(conn.execute(text(sql), params).scalar_one())

    return count


async def test_a_stuck_webhooks_backlog_is_parked_and_due_again_once_it_moves(
    tmp_path, ca_bundle_path, receiver
) -> None:
    # A hanging receiver's backlog is the oldest due work: left due, every claim would step
    # over all of it. Once the webhook is stuck (saturated, nothing ended for a poll
    # interval) its due deliveries are parked for a lease; the first attempt of it to end
    # makes them due again, long before that lease.
    async with running_engine(
        tmp_path,
        ca_bundle_path,
        attempt_timeout=3.0,
        lease=120.0,
        max_consecutive_errors=100,
        retry_delays=[0.05],
    ) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=30)
        for pk in range(300):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        db = engine.hub.db
        assert await db.read(_pending(hook.id, None)) == 300

        async def nothing_due() -> bool:
            return await db.read(_pending(hook.id, time.time())) == 0

        await poll(nothing_due, timeout=10, what="its due backlog parked")
        # new deliveries of it are stored parked right away (signal returns once committed)
        for pk in range(300, 350):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        assert await nothing_due()
        receiver.respond(delay=0)  # the hanging attempts time out: the webhook moves again

        async def all_delivered() -> bool:
            return await db.read(_pending(hook.id, None)) == 0

        await poll(all_delivered, timeout=30, what="the backlog delivered")
        delivered = {json.loads(r.body)["PrimaryKey"] for r in deliveries(receiver)}
        assert delivered == set(range(350))


async def test_a_parked_backlog_comes_back_by_itself_when_its_time_is_up(
    tmp_path, ca_bundle_path, receiver
) -> None:
    # Parked rows carry their park time; whoever parked them, they are due again then. Here
    # no attempt of the webhook ends before the check (nothing unparks them but that sweep):
    # the rows of the first park come back and, the webhook being still stuck, are parked
    # again, later.
    async with running_engine(
        tmp_path, ca_bundle_path, attempt_timeout=8.0, lease=1.0, max_consecutive_errors=100
    ) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=8)
        for pk in range(100):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        db = engine.hub.db

        def park_times(conn: Any) -> set[float]:
            sql = "SELECT next_at FROM deliveries WHERE webhook_id = :w AND next_at >= :p"
            rows = conn.execute(text(sql), {"w": hook.id, "p": PARKED})
            return {round(r[0] - PARKED, 3) for r in rows}

        first = await poll(lambda: db.read(park_times), timeout=5, what="its backlog parked")

        async def parked_again_later() -> bool:
            times = await db.read(park_times)
            return bool(times) and min(times) > max(first)

        await poll(parked_again_later, timeout=5, what="the first park time passed")
