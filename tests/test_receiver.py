"""hookcast.receiver's core without a network: what a WebhookReceiver accepts and refuses,
the Delivery it parses, and the de-duplication store. The adapters against real
deliveries: test_receiver_adapters.py."""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from hookcast import HookcastError, standard_webhooks_secret, verify_signature
from hookcast.payload import build_body, build_headers
from hookcast.receiver import (
    DedupStore,
    DuplicateDelivery,
    MemoryDedupStore,
    PayloadInvalid,
    ReceiverError,
    SignatureInvalid,
    TimestampInvalid,
    WebhookReceiver,
)

SECRET = "Something Super Secret"
NOW = 1_700_000_000


def body(**changes: object) -> bytes:
    fields: dict = {
        "event_id": "e1",
        "timestamp": "2018-04-24T07:50:50.6812131Z",
        "changes": ["name"],
        "event": "contact.changed",
        "primary_key": 994863,
        "entity": "contact",
        "tenant": "Cust1234",
        "associate_id": 316,
        "webhook_name": "Tonys Contact Handler",
        "field_values": {"name": "Ada"},
        "properties": {"source": "crm"},
    }
    fields.update(changes)
    return build_body(**fields)


def headers(
    payload: bytes, secret: str = SECRET, *, at: int = NOW, msg_id: str = "msg_1", **kw: object
) -> dict[str, str]:
    return build_headers(
        event_header="contact.changed", event_id="e1", retry=1, body=payload, secret=secret,
        delivery_id=msg_id, timestamp=at, custom=None, user_agent="hookcast/test",
        standard_webhooks=True, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def receiver(**kw: object) -> WebhookReceiver:
    return WebhookReceiver(SECRET, clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def test_a_signed_delivery_is_parsed() -> None:
    payload = body()
    delivery = receiver().accept(payload, headers(payload))
    assert delivery.event == "contact.changed" and delivery.entity == "contact"
    assert delivery.primary_key == 994863 and delivery.changes == ["name"]
    assert delivery.timestamp == datetime(2018, 4, 24, 7, 50, 50, 681213, tzinfo=UTC)
    assert (delivery.context_identifier, delivery.changed_by_associate_id) == ("Cust1234", 316)
    assert delivery.webhook_name == "Tonys Contact Handler"
    assert delivery.field_values == {"name": "Ada"} and delivery.values is None
    assert delivery.properties == {"source": "crm"}
    assert (delivery.delivery_id, delivery.retry, delivery.test) == ("msg_1", 1, False)
    assert delivery.event_header == "contact.changed" and delivery.body == payload


def test_deleted_rows_state_events_and_test_events() -> None:
    deleted = body(event="sale.deleted", entity="sale", changes=[], values={"sale_id": 1},
                   field_values=None, properties=None)  # fmt: skip
    assert receiver().verify(deleted, headers(deleted)).values == {"sale_id": 1}
    state = body(event="webhook.stopped", entity=None, properties=None)
    assert receiver().verify(state, headers(state)).entity is None
    test = body(event="test", entity="test", primary_key=0, properties=None)
    assert receiver().verify(test, headers(test, test=True)).test


def test_header_names_in_any_case_and_superoffice_only() -> None:
    payload = body()
    upper = {k.upper(): v for k, v in headers(payload).items()}
    assert receiver().verify(payload, upper).delivery_id == "msg_1"
    # SuperOffice itself signs only X-SuperOffice-Signature: no webhook-id, EventId dedups.
    superoffice = {"X-SuperOffice-Signature": headers(payload)["X-SuperOffice-Signature"]}
    only = receiver(require=("superoffice",))
    assert only.accept(payload, superoffice).dedup_key == "e1"
    with pytest.raises(DuplicateDelivery):
        only.accept(payload, superoffice)
    with pytest.raises(SignatureInvalid, match="Standard Webhooks headers"):
        receiver().verify(payload, superoffice)


@pytest.mark.parametrize("name", ["X-SuperOffice-Signature", "webhook-signature"])
def test_a_wrong_or_missing_signature_is_refused(name: str) -> None:
    payload = body()
    sent = headers(payload)
    wrong = {**sent, name: sent[name][:-4] + "AAA="}
    with pytest.raises(SignatureInvalid, match="does not match"):
        receiver().verify(payload, wrong)
    missing = {k: v for k, v in sent.items() if k != name}
    with pytest.raises(SignatureInvalid):
        receiver().verify(payload, missing)
    with pytest.raises(SignatureInvalid):
        receiver().verify(payload + b" ", sent)  # the body changed
    with pytest.raises(SignatureInvalid):
        WebhookReceiver("another secret", clock=lambda: NOW).verify(payload, sent)


def test_a_signature_present_but_not_required_is_still_checked() -> None:
    payload = body()
    sent = headers(payload)
    sent["webhook-signature"] = "v1,AAAA"
    with pytest.raises(SignatureInvalid, match="webhook-signature"):
        receiver(require=("superoffice",)).verify(payload, sent)


@pytest.mark.parametrize(("at", "says"), [(NOW - 301, "old"), (NOW + 301, "in the future")])
def test_the_replay_window(at: int, says: str) -> None:
    payload = body()
    with pytest.raises(TimestampInvalid, match=says):
        receiver().verify(payload, headers(payload, at=at))
    assert receiver().verify(payload, headers(payload, at=NOW - 299))
    assert receiver(tolerance=600).verify(payload, headers(payload, at=at))


def test_a_malformed_timestamp_or_a_partial_set_is_refused() -> None:
    payload = body()
    sent = headers(payload)
    with pytest.raises(TimestampInvalid, match="not a number"):
        receiver().verify(payload, {**sent, "webhook-timestamp": "soon"})
    partial = {k: v for k, v in sent.items() if k != "webhook-id"}
    with pytest.raises(SignatureInvalid, match="must come together"):
        receiver(require=("superoffice",)).verify(payload, partial)


def test_whsec_secrets_and_rotation() -> None:
    whsec = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    payload = body()
    sent = headers(payload, whsec)
    assert WebhookReceiver(whsec, clock=lambda: NOW).verify(payload, sent)
    # The Standard Webhooks library accepts what this receiver accepts.
    fresh = headers(payload, whsec, at=int(time.time()))
    assert StandardWebhook(standard_webhooks_secret(whsec)).verify(payload, fresh)
    assert WebhookReceiver(whsec).verify(payload, fresh)
    rotating = WebhookReceiver(["the new secret", SECRET], clock=lambda: NOW)
    assert rotating.verify(body(), headers(body()))
    assert verify_signature(SECRET, payload, headers(payload)["X-SuperOffice-Signature"])


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"EventId": "e"}', "Changes"),
    ],
)
def test_a_signed_body_that_is_no_payload(payload: bytes, says: str) -> None:
    with pytest.raises(PayloadInvalid, match=says) as refused:
        receiver().verify(payload, headers(payload))
    assert refused.value.status_code == 400


def test_bad_payload_fields() -> None:
    for field, value in [("primary_key", "1"), ("changes", "name"), ("timestamp", "yesterday")]:
        payload = body(**{field: value})
        with pytest.raises(PayloadInvalid):
            receiver().verify(payload, headers(payload))


def test_duplicates_release_and_the_exception_types() -> None:
    rx = receiver()
    payload = body()
    first = rx.accept(payload, headers(payload))
    with pytest.raises(DuplicateDelivery) as dup:
        rx.accept(payload, headers(payload, at=NOW + 5))  # a later attempt, same webhook-id
    assert dup.value.delivery.delivery_id == first.delivery_id and dup.value.status_code == 409
    rx.release(first)
    with pytest.raises(RuntimeError), rx.receive(payload, headers(payload)):
        raise RuntimeError("the handler failed")
    with rx.receive(payload, headers(payload)) as delivery:  # released: accepted again
        assert delivery.delivery_id == "msg_1"
    assert rx.accept(payload, headers(payload, msg_id="msg_2")).delivery_id == "msg_2"
    no_dedup = receiver(deduplicate=False)
    no_dedup.accept(payload, headers(payload))
    no_dedup.accept(payload, headers(payload))
    for kind in (SignatureInvalid, TimestampInvalid, PayloadInvalid, DuplicateDelivery):
        assert issubclass(kind, ReceiverError) and issubclass(kind, HookcastError)
    assert SignatureInvalid.status_code == TimestampInvalid.status_code == 401


def test_bad_receiver_arguments() -> None:
    with pytest.raises(ValueError, match="Secret"):
        WebhookReceiver("")
    with pytest.raises(ValueError, match="unknown"):
        WebhookReceiver(SECRET, require=("hmac",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        WebhookReceiver(SECRET, require=())
    with pytest.raises(ValueError):
        MemoryDedupStore(max_entries=0)


def test_the_memory_store_is_bounded_in_count_and_age() -> None:
    now = [0.0]
    store = MemoryDedupStore(max_entries=3, ttl=10, clock=lambda: now[0])
    assert isinstance(store, DedupStore)
    assert all(store.claim(k) for k in "abcd")
    assert len(store) == 3 and store.claim("a")  # "a" was the oldest: dropped, new again
    assert not store.claim("d")
    now[0] = 11.0
    assert store.claim("d") and len(store) == 1  # the rest expired


def test_concurrent_claims_of_one_key() -> None:
    store = MemoryDedupStore()
    wins: list[bool] = []
    gate = threading.Barrier(8)

    def claim() -> None:
        gate.wait()
        wins.append(store.claim("msg"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(wins) == [False] * 7 + [True]


def test_importing_the_receiver_stays_light() -> None:
    """A receiver app imports hookcast.receiver, not hookcast's server stack."""
    import subprocess
    import sys

    code = (
        "import sys, hookcast.receiver\n"
        "heavy = {'sqlalchemy', 'pydantic', 'fastapi', 'flask', 'django', 'aiohttp', 'uvicorn'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_adapters_duplicate_status_and_release_on_a_failed_answer() -> None:
    """In-process: the option a real-delivery test does not reach (duplicate_status), and
    a Flask view answering 500 (not raising) releases the delivery too."""
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from flask import Flask

    from hookcast.receiver import Delivery
    from hookcast.receiver.fastapi import webhook_dependency
    from hookcast.receiver.flask import webhook_handler

    payload = body()
    sent = headers(payload, at=int(time.time()))
    api = FastAPI()
    strict = webhook_dependency(WebhookReceiver(SECRET), duplicate_status=409)

    @api.post("/hook")
    async def hook(delivery: Delivery = Depends(strict)) -> dict[str, int]:
        return {"pk": delivery.primary_key}

    client = TestClient(api)
    assert client.post("/hook", content=payload, headers=sent).json() == {"pk": 994863}
    again = client.post("/hook", content=payload, headers=sent)
    assert again.status_code == 409 and again.json()["detail"]["ErrorType"] == "DuplicateDelivery"

    app = Flask(__name__)
    answers = iter([("busy", 503), ("", 204)])

    @app.post("/hook")
    @webhook_handler(WebhookReceiver(SECRET), duplicate_status=409)
    def flask_hook(delivery: Delivery) -> tuple[str, int]:
        return next(answers)

    flask_client = app.test_client()
    statuses = [flask_client.post("/hook", data=payload, headers=sent).status_code for _ in "abc"]
    assert statuses == [503, 204, 409]  # the 503 released it: the retry was handled
