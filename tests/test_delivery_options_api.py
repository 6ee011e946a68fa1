"""hookcast's delivery options (docs/delivery-options.md) as the API writes and reads them:
off by default, null is off, absent from a PUT or SaveWebhook keeps them (SuperOffice's
clients do not know them), bad values are a 400 that changes nothing; and the record key
that keyed webhooks' deliveries carry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from api_support import Api, assert_every_write_refuses, running_api, stopped_hook
from sqlalchemy import select

from hookcast.model import NO_OPTIONS, DeliveryOptions, Ordering, State
from hookcast.store import queries, queue
from hookcast.store.rows import NewEvent
from hookcast.store.schema import deliveries

W = "/api/v1/Webhook"
NAMES = ("Ordering", "CoalesceMs", "AutoRecover", "MaxPerSecond", "MaxInFlight")
OFF = {"Ordering": "None", "CoalesceMs": 0, "AutoRecover": False, "MaxPerSecond": None,
       "MaxInFlight": None}  # fmt: skip
ON = {"Ordering": "PerRecord", "CoalesceMs": 250, "AutoRecover": True, "MaxPerSecond": 2.5,
      "MaxInFlight": 4}  # fmt: skip


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path) as api:
        yield api


def options(hook: dict[str, Any]) -> dict[str, Any]:
    return {k: hook[k] for k in NAMES}


def test_off_by_default_and_round_trip_through_every_write_route(api: Api) -> None:
    plain = api.post(W, json=stopped_hook()).json()
    assert options(plain) == OFF
    created = api.post(W, json=stopped_hook(**ON)).json()
    assert options(created) == ON
    hook_id = created["WebhookId"]
    assert options(api.get(f"{W}/{hook_id}").json()) == ON
    # a SuperOffice client's PUT and SaveWebhook (camelCase, without the fields) keep them
    put = api.put(f"{W}/{hook_id}", json=stopped_hook(Name="renamed")).json()
    assert (put["Name"], options(put)) == ("renamed", ON)
    saved = api.post("/api/v1/Agents/Webhook/SaveWebhook", json={
        "webhookId": hook_id, **{k[0].lower() + k[1:]: v for k, v in stopped_hook().items()}
    }).json()  # fmt: skip
    assert options(saved) == ON
    # what a client got, sent back whole, keeps them too
    got = api.get(f"{W}/{hook_id}").json()
    assert options(api.put(f"{W}/{hook_id}", json=got).json()) == ON
    # names in any case, the integer for Ordering; null is off
    put = api.put(f"{W}/{hook_id}", json=stopped_hook(
        ordering=0, coalesceMs=None, AUTORECOVER=None, maxPerSecond=None, MaxInFlight=None
    )).json()  # fmt: skip
    assert options(put) == OFF
    # JSON Patch and Merge Patch
    patched = api.patch(f"{W}/{hook_id}", json=[
        {"op": "replace", "path": "/ordering", "value": "perrecord"},
        {"op": "replace", "path": "/MaxInFlight", "value": 2},
    ]).json()  # fmt: skip
    assert (patched["Ordering"], patched["MaxInFlight"]) == ("PerRecord", 2)
    merged = api.patch(f"{W}/{hook_id}", json={"MaxPerSecond": 10, "MaxInFlight": None}).json()
    assert options(merged) == {**OFF, "Ordering": "PerRecord", "MaxPerSecond": 10.0}
    # the default carrier shows them off
    assert options(api.get(f"{W}/default").json()) == {
        "Ordering": None, "CoalesceMs": None, "AutoRecover": None, "MaxPerSecond": None,
        "MaxInFlight": None,
    }  # fmt: skip


def test_the_openapi_document_describes_them(api: Api) -> None:
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    carrier = next(s for name, s in schemas.items() if name.startswith("WebhookIn"))
    for name in NAMES:
        assert "hookcast" in carrier["properties"][name]["description"], name


BAD = [
    ({"Ordering": "Sorted"}, "Ordering"),
    ({"Ordering": 2}, "Ordering"),
    ({"Ordering": True}, "Ordering"),
    ({"CoalesceMs": -1}, "CoalesceMs"),
    ({"CoalesceMs": 60_001}, "CoalesceMs"),
    ({"CoalesceMs": "100"}, "CoalesceMs"),
    ({"AutoRecover": "yes"}, "AutoRecover"),
    ({"MaxPerSecond": 0}, "MaxPerSecond"),
    ({"MaxPerSecond": 100_001}, "MaxPerSecond"),
    ({"MaxPerSecond": "10"}, "MaxPerSecond"),
    ({"MaxInFlight": 0}, "MaxInFlight"),
    ({"MaxInFlight": 1.5}, "MaxInFlight"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f"{b[1]}{i}" for i, b in enumerate(BAD)])
def test_bad_values_are_400_naming_the_field_and_change_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    assert_every_write_refuses(api, ON, change, field)


def test_ordering_parses_names_in_any_case_and_integers() -> None:
    assert Ordering.parse("perRecord") is Ordering.PerRecord
    assert Ordering.parse(" none ") is Ordering.NONE
    assert Ordering.parse(1) is Ordering.PerRecord
    for bad in ("2", 2, True, None, 1.0):
        with pytest.raises(ValueError):
            Ordering.parse(bad)
    assert not NO_OPTIONS.keyed
    assert DeliveryOptions(ordering=Ordering.PerRecord).keyed
    assert DeliveryOptions(coalesce_ms=1).keyed
    assert not DeliveryOptions(auto_recover=True, max_per_second=1, max_in_flight=1).keyed


def test_record_of_names_the_entity_and_primary_key() -> None:
    assert queue.record_of("contact.changed", 994863) == "contact:994863"
    assert queue.record_of("sale.x.deleted", 1) == "sale.x:1"
    assert queue.record_of("ping", 7) == "ping:7"


def test_only_keyed_webhooks_deliveries_carry_the_record(api: Api) -> None:
    def write(conn: Any) -> list[tuple[int, str | None]]:
        now = time.time()
        ids = {}
        for name, extra in (
            ("plain", {}),
            ("ordered", {"ordering": Ordering.PerRecord}),
            ("coalesced", {"coalesce_ms": 100}),
            ("limited", {"max_per_second": 5.0, "max_in_flight": 2, "auto_recover": True}),
        ):
            fields = {
                "name": name, "events": ["contact.changed"], "target_url": "https://x.example",
                "secret": None, "state": State.Active, "type": "webhook", "headers": None,
                "properties": None, "error_emails": [], "error_associates": [],
                "description": None, "notify_via": 0, "notify_when": 2,
                **_off(), **extra,
            }  # fmt: skip
            ids[queries.insert_webhook(conn, "Cust1234", 5, now, fields)] = name
        event = NewEvent("Cust1234", "contact.changed", 994863, 5, "2026-12-07T00:00:00", ["name"])
        queue.insert_events(conn, [event], now)
        rows = conn.execute(select(deliveries.c.webhook_id, deliveries.c.record)).all()
        return sorted((ids[w], r) for w, r in rows)

    assert api.db.run_sync(write) == [
        ("coalesced", "contact:994863"),
        ("limited", None),
        ("ordered", "contact:994863"),
        ("plain", None),
    ]


def _off() -> dict[str, Any]:
    return {
        "ordering": Ordering.NONE,
        "coalesce_ms": 0,
        "auto_recover": False,
        "max_per_second": None,
        "max_in_flight": None,
    }
