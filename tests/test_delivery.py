"""Delivery (§3, §6) end to end: the real Hub posts to real HTTPS receivers on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from support.engine import (
    CALLER,
    SECRET,
    TENANT,
    Engine,
    delivery_settings,
    eventually,
    running_engine,
)

from hookcast import State, ValidationError, verify_signature
from hookcast.dispatch.plugins import load_plugins
from hookcast.dispatch.worker import Dispatcher
from hookcast.hub import Hub
from hookcast.model import Principal
from hookcast.registry import Registry
from hookcast.store import queue
from hookcast.store.database import Database
from hookcast.store.rows import DELIVERED, NewEvent

OCCURRED = datetime(2018, 4, 24, 7, 50, 50, 681213, tzinfo=UTC)


def deliveries_of(receiver):
    """The requests a receiver got, without the registration test POST."""
    return [r for r in receiver.requests if r.header("X-Hook-Test") is None]


async def wait_deliveries(receiver, count: int, timeout: float = 10.0):
    return await eventually(
        lambda: len(deliveries_of(receiver)) >= count and deliveries_of(receiver),
        timeout,
        f"{count} deliveries",
    )


@pytest.fixture
async def engine(tmp_path, ca_bundle_path):
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        yield engine


async def test_exact_body_headers_and_both_signatures(engine, receiver) -> None:
    hook = await engine.create(
        receiver.url,
        ["contact.changed"],
        Headers={"X-Api-Version": "7"},
        Properties={"region": "EMEA", "tier": 2},
    )
    await engine.hub.signal(
        "contact.changed",
        994863,
        tenant=TENANT,
        associate_id=316,
        changes={"name": "Ada", "department": "R&D"},
        occurred_at=OCCURRED,
    )
    [request] = await wait_deliveries(receiver, 1)
    event_id = request.header("X-SuperOffice-EventId")
    expected = (
        '{"EventId":"%s","Timestamp":"2018-04-24T07:50:50.6812130Z","Changes":["name","department"],'
        '"Event":"contact.changed","PrimaryKey":994863,"Entity":"contact","ContextIdentifier":"Cust1234",'
        '"ChangedByAssociateId":316,"WebhookName":"Tonys Contact Handler","region":"EMEA","tier":2}'
    ) % event_id
    assert request.body == expected.encode()
    assert request.method == "POST" and request.path == "/hook"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert request.header("User-Agent") == engine.settings.user_agent
    assert request.header("X-SuperOffice-Event") == "contact.changed"
    assert request.header("X-SuperOffice-Retry") == "0"
    assert request.header("X-Api-Version") == "7"
    # X-SuperOffice-Signature, computed the way a receiver does.
    mac = hmac.new(SECRET.encode(), request.body, hashlib.sha256).digest()
    assert request.header("X-SuperOffice-Signature") == base64.b64encode(mac).decode()
    assert verify_signature(SECRET, request.body, request.header("X-SuperOffice-Signature"))
    # Standard Webhooks, verified with the `standardwebhooks` package from PyPI.
    verifier = StandardWebhook("whsec_" + base64.b64encode(SECRET.encode()).decode())
    headers = {k: v for k, v in request.headers}
    assert verifier.verify(request.body, headers) == orjson.loads(request.body)
    usage = await eventually(lambda: _usage_when(engine, hook.id, calls=1))
    assert (usage.total_calls, usage.total_errors) == (1, 0)  # the test POST is not counted


async def test_delete_event_carries_values_and_field_values(engine, receiver) -> None:
    await engine.create(receiver.url, ["sale.deleted"], Secret=None)
    await engine.hub.signal(
        "sale.deleted",
        994863,
        tenant=TENANT,
        associate_id=316,
        values={"sale_id": 994863, "contact_id": 43},
        field_values={"amount": 12.5},
        occurred_at=OCCURRED,
    )
    [request] = await wait_deliveries(receiver, 1)
    body = orjson.loads(request.body)
    assert list(body) == [
        "EventId",
        "Timestamp",
        "Changes",
        "Values",  # right after Changes, as in SuperOffice's delete payloads (§3)
        "Event",
        "PrimaryKey",
        "Entity",
        "ContextIdentifier",
        "ChangedByAssociateId",
        "WebhookName",
        "FieldValues",
    ]
    assert body["Values"] == {"sale_id": 994863, "contact_id": 43}
    assert body["FieldValues"] == {"amount": 12.5} and body["Changes"] == []
    assert request.header("X-SuperOffice-Signature") is None  # no Secret, no signature
    assert request.header("webhook-signature") is None


async def test_only_subscribed_active_webhooks_of_the_tenant_get_the_event(
    engine, receiver_factory
) -> None:
    subscribed, other_event, stopped, other_tenant = (receiver_factory() for _ in range(4))
    await engine.create(subscribed.url, ["contact.created", "contact.changed"])
    await engine.create(other_event.url, ["sale.created"])
    await engine.create(stopped.url, ["contact.created"], State="Stopped")
    await engine.create(other_tenant.url, ["contact.created"], who=Principal("Cust9999", 1))
    await engine.hub.signal("Contact.Created", 1, tenant=TENANT)
    await engine.hub.signal("sale.created", 2, tenant="Cust9999")
    await wait_deliveries(subscribed, 1)
    assert orjson.loads(deliveries_of(subscribed)[0].body)["Event"] == "contact.created"
    # Everything committed has been attempted once the queue is empty.
    await eventually(lambda: _queue_empty(engine))
    assert deliveries_of(other_event) == [] and deliveries_of(stopped) == []
    assert deliveries_of(other_tenant) == []


async def _queue_empty(engine) -> bool:
    return (await engine.hub.db.run(queue.queue_depth))["pending"] == 0


async def test_retries_within_a_cycle_keep_the_event_id(engine, receiver) -> None:
    hook = await engine.create(receiver.url, ["contact.changed"])
    receiver.respond(statuses=(500, 503), body=b"busy")
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    requests = await wait_deliveries(receiver, 3)
    assert [r.header("X-SuperOffice-Retry") for r in requests] == ["0", "1", "2"]
    assert len({r.header("X-SuperOffice-EventId") for r in requests}) == 1
    assert len({r.header("webhook-id") for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the same body, signed the same way
    # The configured delays separate the attempts (lower bounds only).
    assert requests[1].at - requests[0].at >= 0.05
    assert requests[2].at - requests[1].at >= 0.1
    await eventually(lambda: _queue_empty(engine))
    usage = await eventually(lambda: _usage_when(engine, hook.id, calls=3))
    assert (usage.total_errors, usage.consecutive_errors) == (2, 0)
    assert usage.last_error and "503" in usage.last_error and usage.last_success_at


async def _usage_when(engine, webhook_id: int, *, calls: int):
    usage = await engine.usage(webhook_id)
    return usage if usage.total_calls >= calls else None


async def test_new_event_id_per_cycle_then_too_many_errors(engine, receiver_factory) -> None:
    failing = receiver_factory()
    watcher = receiver_factory()
    hook = await engine.create(failing.url, ["contact.changed"])
    failing.respond(status=500, body=b"down")
    await engine.create(watcher.url, [f"webhook{hook.id}.errors"])
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    requests = await wait_deliveries(failing, 9)
    ids = [r.header("X-SuperOffice-EventId") for r in requests]
    assert [r.header("X-SuperOffice-Retry") for r in requests] == ["0", "1", "2"] * 3
    assert len(set(ids)) == 3 and all(ids[i] == ids[i // 3 * 3] for i in range(9))
    assert len({r.header("webhook-id") for r in requests}) == 1  # one delivery throughout
    assert all(
        b - a >= 0.2
        for a, b in ((requests[2].at, requests[3].at), (requests[5].at, requests[6].at))
    )
    current = await eventually(lambda: _state_is(engine, hook.id, State.TooManyErrors))
    usage = await engine.usage(current.id)
    assert (usage.total_calls, usage.total_errors, usage.consecutive_errors) == (9, 9, 9)
    assert "HTTP 500" in usage.last_error
    [state_event] = await wait_deliveries(watcher, 1)
    body = orjson.loads(state_event.body)
    assert state_event.header("X-SuperOffice-Event") == f"webhook{hook.id}.errors"
    assert body["Event"] == "webhook.errors" and "Entity" not in body
    assert body["PrimaryKey"] == hook.id and body["Changes"] == []
    assert body["FieldValues"]["state"] == 3 and body["FieldValues"]["events"] == [
        "contact.changed"
    ]
    assert set(body["FieldValues"]) == {
        "events",
        "registered",
        "registered_associate_id",
        "state",
        "updated",
        "updated_associate_id",
    }
    depth = await engine.hub.db.run(queue.queue_depth)
    assert depth["given_up"] >= 1
    await engine.hub.signal("contact.changed", 8, tenant=TENANT)
    await eventually(lambda: _queue_empty(engine))
    assert len(deliveries_of(failing)) == 9  # disabled: no more attempts


async def _state_is(engine, webhook_id: int, state: State):
    hook = await engine.registry.get(CALLER, webhook_id)
    return hook if hook.state is state else None


async def test_410_disables_at_once(engine, receiver) -> None:
    hook = await engine.create(receiver.url, ["contact.changed"])
    receiver.respond(status=410, body=b"gone")
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    await eventually(lambda: _state_is(engine, hook.id, State.TooManyErrors))
    assert len(deliveries_of(receiver)) == 1
    assert (await engine.usage(hook.id)).consecutive_errors == 1


async def test_an_answer_holding_a_nul_is_logged_and_its_delivery_done(engine, receiver) -> None:
    """PostgreSQL's text cannot hold NUL: a receiver answering one made the outcome batch
    holding it fail on every retry, so the delivery was sent again at each lease's end. The
    answer is logged with U+FFFD in its place (on SQLite alike) and the delivery is done."""
    hook = await engine.create(receiver.url, ["contact.changed"])
    receiver.respond(body=b"accepted\x00then more")
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    await wait_deliveries(receiver, 1)
    usage = await eventually(lambda: _usage_when(engine, hook.id, calls=1))
    assert (usage.total_calls, usage.total_errors) == (1, 0)

    def logged(conn):
        return conn.exec_driver_sql(
            "SELECT a.ok, a.response_excerpt, d.status FROM attempts a"
            " JOIN deliveries d ON d.id = a.delivery_id"
        ).all()

    [(ok, excerpt, status)] = await engine.hub.db.read(logged)
    assert (ok, status) == (1, DELIVERED)
    assert excerpt.endswith("accepted\ufffdthen more"), excerpt
    assert len(deliveries_of(receiver)) == 1  # not sent again


async def test_retry_after_delays_the_next_attempt(engine, receiver) -> None:
    await engine.create(receiver.url, ["contact.changed"])
    receiver.respond(statuses=(429,), headers={"Retry-After": "1"})
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    first, second = await wait_deliveries(receiver, 2)
    # Retry-After asked 1 s but the cycle delay (0.2 s) caps it; the fixed delay is 0.05 s.
    assert second.at - first.at >= 0.2


async def test_state_events_and_redeliver_after_reactivation(engine, receiver_factory) -> None:
    target = receiver_factory()
    watcher = receiver_factory()
    hook = await engine.create(target.url, ["contact.changed"])
    await engine.create(
        watcher.url,
        [f"webhook{hook.id}.started", f"webhook{hook.id}.stopped", f"webhook{hook.id}.errors"],
    )
    await engine.patch(hook.id, {"State": "Stopped"})
    await engine.patch(hook.id, {"State": "Active"})
    target.respond(status=410)
    await engine.hub.signal("contact.changed", 1, tenant=TENANT)
    await eventually(lambda: _state_is(engine, hook.id, State.TooManyErrors))
    await engine.hub.signal("contact.changed", 2, tenant=TENANT)  # not matched while disabled
    events = await wait_deliveries(watcher, 3)
    assert [r.header("X-SuperOffice-Event") for r in events] == [
        f"webhook{hook.id}.stopped",
        f"webhook{hook.id}.started",
        f"webhook{hook.id}.errors",
    ]
    assert [orjson.loads(r.body)["FieldValues"]["state"] for r in events] == [2, 1, 3]
    # Redeliver needs an Active webhook.
    with pytest.raises(Exception, match="Active"):
        await engine.registry.redeliver(CALLER, hook.id)
    target.respond(status=200)
    reactivated = await engine.patch(
        hook.id, [{"op": "replace", "path": "state", "value": "Active"}]
    )
    assert reactivated.state is State.Active
    assert (await engine.usage(hook.id)).consecutive_errors == 0
    assert await engine.registry.redeliver(CALLER, hook.id) == 1
    redelivered = await wait_deliveries(target, 2)
    body = orjson.loads(redelivered[-1].body)
    assert body["PrimaryKey"] == 1
    assert redelivered[-1].header("webhook-id") == redelivered[0].header("webhook-id")
    assert redelivered[-1].header("X-SuperOffice-EventId") != redelivered[0].header(
        "X-SuperOffice-EventId"
    )
    await wait_deliveries(watcher, 4)
    assert deliveries_of(watcher)[3].header("X-SuperOffice-Event") == f"webhook{hook.id}.started"


async def test_stopping_gives_up_pending_deliveries_and_delete_drops_them(engine, receiver) -> None:
    hook = await engine.create(receiver.url, ["contact.changed"])
    receiver.respond(status=500)
    await engine.hub.signal("contact.changed", 1, tenant=TENANT)
    await wait_deliveries(receiver, 1)
    await engine.patch(hook.id, {"State": "Stopped"})
    await eventually(lambda: _queue_empty(engine))
    attempts = len(deliveries_of(receiver))
    depth = await engine.hub.db.run(queue.queue_depth)
    assert depth["given_up"] == 1 and attempts <= 3
    await engine.registry.delete(CALLER, hook.id)
    assert (await engine.hub.db.run(queue.queue_depth))["given_up"] == 0


async def test_a_slow_receiver_does_not_hold_up_a_healthy_one(
    tmp_path, ca_bundle_path, receiver_factory
) -> None:
    async with running_engine(
        tmp_path, ca_bundle_path, per_webhook_concurrency=2, concurrency=8, attempt_timeout=5.0
    ) as engine:
        slow, healthy = receiver_factory(), receiver_factory()
        await engine.create(slow.url, ["contact.changed"])
        await engine.create(healthy.url, ["contact.changed"])
        slow.respond(delay=5.0)
        for pk in range(30):
            await engine.hub.signal("contact.changed", pk, tenant=TENANT)
        await wait_deliveries(healthy, 30)
        # While all 30 reached the healthy receiver, the slow one held at most its 2 slots.
        assert len(deliveries_of(slow)) <= 2
        slow.stop()  # releases the held requests, so shutting down need not wait for them


async def test_drain_attempts_everything_due_writes_the_outcomes_then_returns(
    tmp_path, ca_bundle_path, receiver_factory
) -> None:
    # Burst mode: no polling for the outcome, drain() returns when delivery is done. Small
    # caps, so that it goes through held deliveries and more than one claim and write.
    settings = delivery_settings(
        tmp_path,
        ca_bundle_path,
        concurrency=3,
        per_webhook_concurrency=2,
        batch_size=4,
        retry_delays=[60.0],
        max_consecutive_errors=50,
    )
    async with Hub(settings, deliver=False) as hub:  # intake only: every delivery is queued
        engine = Engine(hub, Registry(hub.db, settings, hub.sender, wake=hub.wake), settings)
        ok, failing = receiver_factory(), receiver_factory()
        await engine.create(ok.url, ["contact.changed"])
        await engine.create(failing.url, ["contact.changed"])
        failing.respond(status=500)
        for pk in range(10):
            await hub.signal("contact.changed", pk, tenant=TENANT)
        dispatcher = Dispatcher(hub.db, settings, load_plugins(settings, hub.sender, hub.db))
        try:
            assert await dispatcher.drain() == 20
            assert dispatcher.in_flight == 0
            assert len(deliveries_of(ok)) == len(deliveries_of(failing)) == 10
            # Every outcome is written; the failed ones are retried in a minute, not now.
            depth = await hub.db.run(queue.queue_depth)
            assert depth == {"pending": 10, "delivered": 10, "given_up": 0}
            assert await dispatcher.drain() == 0  # nothing due
        finally:
            await dispatcher.stop()


async def test_signal_validation(engine) -> None:
    for bad in (
        dict(event="contact changed", primary_key=1),
        dict(event="", primary_key=1),
        dict(event="contact.changed", primary_key=-1),
        dict(event="contact.changed", primary_key="1"),
    ):
        with pytest.raises(ValidationError):
            await engine.hub.signal(bad["event"], bad["primary_key"], tenant=TENANT)
    with pytest.raises(ValidationError, match="deleted"):
        await engine.hub.signal("contact.changed", 1, tenant=TENANT, values={"id": 1})
    with pytest.raises(ValidationError, match="tenant"):
        await engine.hub.signal("contact.changed", 1, tenant="")
    with pytest.raises(ValidationError, match="timezone"):
        await engine.hub.signal(
            "contact.changed", 1, tenant=TENANT, occurred_at=datetime(2020, 1, 1)
        )


async def test_many_signals_share_commits_and_all_arrive(engine, receiver) -> None:
    import asyncio

    await engine.create(receiver.url, ["contact.changed"])
    await asyncio.gather(
        *(engine.hub.signal("contact.changed", pk, tenant=TENANT) for pk in range(200))
    )
    requests = await wait_deliveries(receiver, 200, timeout=30)
    keys = Counter(orjson.loads(r.body)["PrimaryKey"] for r in requests)
    assert set(keys) == set(range(200))


async def test_retention_prunes_finished_deliveries_and_their_events(engine, receiver) -> None:
    import time

    await engine.create(receiver.url, ["contact.changed"])
    await engine.hub.signal("contact.changed", 1, tenant=TENANT)
    await wait_deliveries(receiver, 1)
    await eventually(lambda: _delivered(engine))
    assert await engine.hub.db.run(queue.prune, time.time() - 3600) == 0  # younger than the cut-off
    assert await engine.hub.db.run(queue.prune, time.time() + 1) == 1
    depth = await engine.hub.db.run(queue.queue_depth)
    assert depth == {"pending": 0, "delivered": 0, "given_up": 0}


async def _delivered(engine) -> bool:
    return (await engine.hub.db.run(queue.queue_depth))["delivered"] == 1


async def test_work_queued_unannounced_is_found_while_deliveries_keep_flowing(
    engine, receiver
) -> None:
    # Another process may store deliveries without waking us (another user's, one that
    # cannot ring). The poll must find them even while our own attempts keep finishing,
    # which wake the dispatcher all the time but say nothing about the queue.
    await engine.create(receiver.url, ["contact.changed"])
    silent = Database(engine.settings.database_url)  # the same database, no wake-ups
    silent.doorbell = None
    streaming = True

    async def stream() -> None:
        key = 0
        while streaming:
            key += 1
            await engine.hub.signal("contact.changed", key, tenant=TENANT)
            await asyncio.sleep(0.01)

    producer = asyncio.create_task(stream())
    try:
        await wait_deliveries(receiver, 5)
        event = NewEvent(
            tenant=TENANT,
            name="contact.changed",
            primary_key=424242,
            associate_id=0,
            occurred_at="2018-04-24T07:50:50.6812130Z",
            changes=[],
            change_values=None,
            row_values=None,
            field_values=None,
        )
        await asyncio.to_thread(silent.run_sync, queue.insert_events, [event], time.time())
        # Found by a poll (0.2 s) while the stream still runs, not only once it stops.
        await eventually(
            lambda: any(
                orjson.loads(r.body)["PrimaryKey"] == 424242 for r in deliveries_of(receiver)
            ),
            2.0,
            "the silent delivery",
        )
        assert not producer.done()
    finally:
        streaming = False
        await producer
        silent.close()
