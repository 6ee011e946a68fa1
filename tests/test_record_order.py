"""Per-record ordering and burst coalescing (issue 19, features 1 and 2) end to end: the real
Hub posts to real HTTPS receivers. The module runs on PostgreSQL too
(HOOKCAST_TEST_BACKEND=postgres), where several Hubs on one database race each other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
import trustme
from aiohttp import web
from support.databases import needs_postgres
from support.engine import TENANT, delivery_settings, eventually, running_engine
from support.receivers import Receiver, RecordedRequest

from hookcast.api.deliveries import DeliveryItemOut, item_fields
from hookcast.deliveries import DeliveryFilter, DeliveryLog
from hookcast.hub import Hub
from hookcast.intake import Signal
from hookcast.model import Principal
from hookcast.store import queue


def _deliveries(receiver: Receiver) -> list[RecordedRequest]:
    return [r for r in receiver.requests if r.header("X-Hook-Test") is None]


def _bodies(receiver: Receiver) -> list[dict]:
    return [orjson.loads(r.body) for r in _deliveries(receiver)]


def _seqs(receiver: Receiver, pk: int) -> list[int]:
    """The `seq` field values of record pk's deliveries, in the order they arrived."""
    return [b["FieldValues"]["seq"] for b in _bodies(receiver) if b["PrimaryKey"] == pk]


class FailingRecord(Receiver):
    """Answers 500 to deliveries of one PrimaryKey while `failing(attempts so far)` is true."""

    def __init__(self, cert: trustme.LeafCert, primary_key: int, failing: Callable[[int], bool]):
        super().__init__(cert)
        self.primary_key = primary_key
        self.failing = failing
        self.failed = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fail = request.headers.get("X-Hook-Test") is None and (
            orjson.loads(body)["PrimaryKey"] == self.primary_key and self.failing(self.failed)
        )
        response = await super()._handle(request)
        if fail:
            self.failed += 1
            response.set_status(500)
        return response


@pytest.fixture
def cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1", "localhost")


async def _quiet(engine) -> bool:
    """Nothing pending: every delivery was delivered or given up."""
    return (await engine.hub.db.run(queue.queue_depth))["pending"] == 0


# ----- per-record ordering -------------------------------------------------------------------


async def test_a_failing_record_holds_only_its_own_later_deliveries(
    tmp_path, ca_bundle_path, cert
) -> None:
    # Record 1's first delivery fails until record 2's three have all arrived (at least
    # twice): record 2 flows meanwhile, record 1's later ones wait for their first.
    def failing(failed: int) -> bool:
        return failed < 2 or len(_seqs(receiver, 2)) < 3

    receiver = FailingRecord(cert, 1, failing).start()
    try:
        async with running_engine(
            tmp_path, ca_bundle_path, retry_delays=[0.2, 0.4], cycle_delay=1.0
        ) as engine:
            await engine.create(receiver.url, ["contact.changed"], Ordering="PerRecord")
            for seq in (1, 2, 3):
                for pk in (1, 2):
                    await engine.hub.signal(
                        "contact.changed", pk, tenant=TENANT, field_values={"seq": seq}
                    )
            await eventually(lambda: len(_seqs(receiver, 1)) >= 5 and _seqs(receiver, 2), 20)
            await eventually(lambda: _quiet(engine), 10)
            await eventually(lambda: len(_seqs(receiver, 1)) >= receiver.failed + 3, 10)
            ones = _seqs(receiver, 1)
            assert receiver.failed >= 2
            # Every failed attempt was of the first event; the later ones came after it.
            assert ones == [1] * (receiver.failed + 1) + [2, 3], ones
            assert _seqs(receiver, 2) == [1, 2, 3]
            # Record 2 was not held by record 1: all of it arrived before record 1's second.
            order = [(b["PrimaryKey"], b["FieldValues"]["seq"]) for b in _bodies(receiver)]
            assert order.index((2, 3)) < order.index((1, 2)), order
    finally:
        receiver.stop()


async def test_a_given_up_delivery_releases_the_rest_of_its_record(
    tmp_path, ca_bundle_path, cert
) -> None:
    receiver = FailingRecord(cert, 1, lambda failed: failed < 3).start()  # one cycle of 3
    try:
        async with running_engine(tmp_path, ca_bundle_path, cycles=1) as engine:
            hook = await engine.create(receiver.url, ["contact.changed"], Ordering="PerRecord")
            for seq in (1, 2, 3):
                await engine.hub.signal(
                    "contact.changed", 1, tenant=TENANT, field_values={"seq": seq}
                )
            await eventually(lambda: len(_seqs(receiver, 1)) >= 5, 10)
            assert _seqs(receiver, 1) == [1, 1, 1, 2, 3]
            given_up = await DeliveryLog(engine.hub.db).search(
                DeliveryFilter(tenant=TENANT, webhook_id=hook.id, status="given_up"), 10
            )
            assert [r["uid"] for r in given_up[0]] == [
                _deliveries(receiver)[0].header("webhook-id")
            ]
    finally:
        receiver.stop()


async def test_redelivered_deliveries_of_a_record_go_in_signal_order(
    tmp_path, ca_bundle_path, receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"], Ordering="PerRecord")
        for seq in range(1, 6):
            await engine.hub.signal("contact.changed", 4, tenant=TENANT, field_values={"seq": seq})
        await eventually(lambda: len(_seqs(receiver, 4)) >= 5)
        await eventually(lambda: _quiet(engine))
        count = await DeliveryLog(engine.hub.db, wake=engine.hub.wake).redeliver(
            DeliveryFilter(tenant=TENANT, webhook_id=hook.id)
        )
        assert count.queued == 5
        await eventually(lambda: len(_seqs(receiver, 4)) >= 10)
        assert _seqs(receiver, 4) == [1, 2, 3, 4, 5] * 2


async def test_unordered_webhooks_keep_no_record(tmp_path, ca_bundle_path, receiver) -> None:
    """Off by default: no record key, handed straight to the dispatcher as before."""
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        await engine.create(receiver.url, ["contact.changed"])
        await engine.hub.signal("contact.changed", 4, tenant=TENANT)
        await eventually(lambda: _deliveries(receiver))
        rows = await engine.hub.db.read(
            lambda conn: conn.exec_driver_sql(
                "SELECT record, window_until, merged_events FROM deliveries"
            ).all()
        )
        assert [tuple(r) for r in rows] == [(None, None, None)]


# ----- burst coalescing ----------------------------------------------------------------------


async def test_a_burst_becomes_one_delivery_with_the_union_and_the_latest_values(
    tmp_path, ca_bundle_path, receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"], CoalesceMs=1500)
        ids = []
        for i, changes in enumerate((["name"], ["email", "name"], ["phone"])):
            ids.append(
                await engine.hub.signal(
                    "contact.changed",
                    7,
                    tenant=TENANT,
                    associate_id=10 + i,
                    changes={c: f"{c}{i}" for c in changes},
                    field_values={**{c: i for c in changes}, "seq": i},
                )
            )
        # Two more in one commit (signal_many): merged in the same transaction.
        batch = await engine.hub.signal_many(
            [
                Signal("contact.changed", 7, TENANT, 13, changes=["name"], field_values={"seq": 3}),
                Signal(
                    "contact.changed", 7, TENANT, 14, changes=["title"], field_values={"seq": 4}
                ),
            ]
        )
        ids += batch.ids
        [body] = await eventually(lambda: _bodies(receiver), 10)
        assert body["Changes"] == ["name", "email", "phone", "title"]
        assert body["FieldValues"] == {"seq": 4, "name": 1, "email": 1, "phone": 2}
        assert body["ChangedByAssociateId"] == 14
        await eventually(lambda: _quiet(engine))
        assert len(_deliveries(receiver)) == 1
        # The delivery log names the signals merged into it, in signal order.
        log = DeliveryLog(engine.hub.db)
        [item], _ = await log.search(DeliveryFilter(tenant=TENANT, webhook_id=hook.id), 10)
        assert item["merged_events"] == ids
        found = await log.delivery(Principal(TENANT, 316), item["id"])
        assert found["merged_events"] == ids and found["state"] == "delivered"
        wire = DeliveryItemOut(**item_fields(item), last_attempt=None).model_dump(by_alias=True)
        assert wire["MergedEvents"] == ids  # as GET /api/v1/Deliveries shows it


async def test_a_delete_ends_the_window_and_is_never_merged(
    tmp_path, ca_bundle_path, receiver
) -> None:
    """With ordering on too: the merged change arrives first, then the delete, long before
    the window would have ended; a change after the delete opens a new window."""
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        await engine.create(
            receiver.url,
            ["contact.changed", "contact.deleted"],
            CoalesceMs=60000,
            Ordering="PerRecord",
        )
        for name in ("a", "b"):
            await engine.hub.signal("contact.changed", 9, tenant=TENANT, changes=[name])
        await engine.hub.signal("contact.deleted", 9, tenant=TENANT, values={"contact_id": 9})
        # A 60 s window: only the delete can make these due within the wait.
        bodies = await eventually(lambda: len(_bodies(receiver)) >= 2 and _bodies(receiver), 10)
        assert [(b["Event"], b["Changes"]) for b in bodies] == [
            ("contact.changed", ["a", "b"]),
            ("contact.deleted", []),
        ]
        await engine.hub.signal("contact.changed", 9, tenant=TENANT, changes=["c"])
        await engine.hub.signal("contact.deleted", 9, tenant=TENANT, values={"contact_id": 9})
        bodies = await eventually(lambda: len(_bodies(receiver)) >= 4 and _bodies(receiver), 10)
        assert [(b["Event"], b["Changes"]) for b in bodies[2:]] == [
            ("contact.changed", ["c"]),
            ("contact.deleted", []),
        ]


async def test_no_merge_across_webhooks_tenants_records_or_events(
    tmp_path, ca_bundle_path, receiver_factory
) -> None:
    first, second, plain, other_tenant = (receiver_factory() for _ in range(4))
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        events = ["contact.created", "contact.changed"]
        await engine.create(first.url, events, CoalesceMs=1000)
        await engine.create(second.url, events, CoalesceMs=1000)
        await engine.create(plain.url, events)  # not coalescing: one delivery per signal
        other = Principal("Cust9999", 1)
        await engine.create(other_tenant.url, events, who=other, CoalesceMs=1000)
        for tenant in (TENANT, "Cust9999"):
            await engine.hub.signal("contact.created", 5, tenant=tenant, changes=[f"{tenant}-c"])
            for n in ("x", "y"):
                await engine.hub.signal(
                    "contact.changed", 5, tenant=tenant, changes=[f"{tenant}-{n}"]
                )
            await engine.hub.signal("contact.changed", 6, tenant=tenant, changes=["z"])
        await eventually(lambda: _quiet(engine), 10)
        await eventually(lambda: len(_deliveries(plain)) >= 4)

        def seen(receiver: Receiver) -> set[tuple[str, int, tuple[str, ...]]]:
            return {(b["Event"], b["PrimaryKey"], tuple(b["Changes"])) for b in _bodies(receiver)}

        for receiver, tenant in ((first, TENANT), (second, TENANT), (other_tenant, "Cust9999")):
            assert len(_deliveries(receiver)) == 3
            assert seen(receiver) == {
                ("contact.created", 5, (f"{tenant}-c",)),
                ("contact.changed", 5, (f"{tenant}-x", f"{tenant}-y")),
                ("contact.changed", 6, ("z",)),
            }
        assert len(_deliveries(plain)) == 4


@needs_postgres
async def test_two_intakes_and_a_claimer_lose_no_merge(tmp_path, ca_bundle_path, receiver) -> None:
    """Two intake-only Hubs signal one record at once while a third Hub claims with a short
    window: every signal's field arrives in exactly one delivery (a merge into a row a
    claimer leased meanwhile would lose it; a merge applied twice would repeat it)."""
    from support.databases import new_postgres_url

    from hookcast.store.database import Database

    url = new_postgres_url()
    Database(url).migrate()
    settings = delivery_settings(tmp_path, ca_bundle_path, database_url=url)
    async with running_engine(tmp_path, ca_bundle_path, database_url=url) as engine:
        await engine.create(receiver.url, ["contact.changed"], CoalesceMs=20)
        async with Hub(settings, deliver=False) as a, Hub(settings, deliver=False) as b:

            async def burst(hub: Hub, name: str) -> None:
                for i in range(60):
                    await hub.signal("contact.changed", 3, tenant=TENANT, changes=[f"{name}{i}"])
                    if i % 10 == 0:
                        await asyncio.sleep(0.02)  # some windows close and are claimed

            await asyncio.gather(burst(a, "a"), burst(b, "b"), burst(engine.hub, "c"))
        await eventually(lambda: _quiet(engine), 20)
        fields = [c for body in _bodies(receiver) for c in body["Changes"]]
        expected = {f"{n}{i}" for n in "abc" for i in range(60)}
        assert sorted(fields) == sorted(expected)
        assert len(_deliveries(receiver)) < len(expected)  # and some were merged
