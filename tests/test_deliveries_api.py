"""GET /api/v1/Deliveries (search, cursor paging), GET /api/v1/Deliveries/{id} (attempts with
request and response excerpts) and POST /api/v1/Deliveries/Redeliver (replay what a search
matches), against a real HTTPS receiver; tenant isolation and rights; a replay of thousands
in one request while the server keeps answering."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_support import Api, running_api
from sqlalchemy import insert, select
from support.engine import delivery_settings
from support.server import ServerThread
from test_api import assert_error

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.net.excerpts import BODY_BYTES
from hookcast.rights import Role
from hookcast.store import search as search_store
from hookcast.store.rows import GIVEN_UP
from hookcast.store.schema import deliveries, events, webhooks

SECRET = "s3cret-never-shown"


def wait_until(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def settings_for(tmp_path, ca_bundle_path):
    settings = delivery_settings(tmp_path, ca_bundle_path)
    return {k: v for k, v in settings.model_dump().items() if k != "database_url"}


@pytest.fixture
def api(tmp_path, ca_bundle_path):
    with running_api(tmp_path, **settings_for(tmp_path, ca_bundle_path)) as api:
        yield api


def register(api: Api, url: str, events: list[str], key: str | None = None, **fields) -> int:
    response = api.post(
        "/api/v1/Webhook",
        key,
        json={"Name": "handler", "Events": events, "TargetUrl": url, "Secret": SECRET, **fields},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["WebhookId"])


def search(api: Api, key: str | None = None, **params) -> dict:
    response = api.get("/api/v1/Deliveries", key, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def signal(api: Api, event: str, pk: int, key: str | None = None) -> None:
    response = api.post(f"/api/v1/Webhook/{event}/{pk}", key, json={"name": "Ada"})
    assert response.status_code == 204, response.text


def test_search_filters_paging_and_excerpts(api: Api, receiver_factory) -> None:
    receiver = receiver_factory()
    receiver.behaviour = receiver.behaviour.__class__(
        body=b"x" * (BODY_BYTES + 100), headers={"X-Receiver": "yes"}
    )
    hook = register(
        api, receiver.url, ["contact.changed", "sale.created"], Headers={"X-Token": "t0ken"}
    )
    other = register(api, receiver.url, ["sale.created"])
    for pk in range(1, 6):
        signal(api, "contact.changed", pk)
    signal(api, "sale.created", 77)
    wait_until(
        lambda: len(search(api, status="delivered")["Items"]) == 7, what="7 deliveries delivered"
    )

    everything = search(api)["Items"]
    assert [i["DeliveryId"] for i in everything] == sorted(
        (i["DeliveryId"] for i in everything), reverse=True
    )
    assert {i["Event"] for i in everything} == {"contact.changed", "sale.created"}
    assert len(search(api, event="contact.changed")["Items"]) == 5
    assert [i["PrimaryKey"] for i in search(api, primaryKey=3)["Items"]] == [3]
    assert {i["WebhookId"] for i in search(api, webhookId=other)["Items"]} == {other}
    assert search(api, status="given_up")["Items"] == []
    assert search(api, status="failing")["Items"] == []
    one = everything[2]
    assert [i["DeliveryId"] for i in search(api, eventId=one["EventId"])["Items"]] == [
        one["DeliveryId"]
    ]
    by_uid = search(api, webhookMessageId=one["WebhookMessageId"])["Items"]
    assert [i["DeliveryId"] for i in by_uid] == [one["DeliveryId"]]
    now = datetime.now(UTC)
    assert len(search(api, since=(now - timedelta(minutes=5)).isoformat())["Items"]) == 7
    assert search(api, until=(now - timedelta(minutes=5)).isoformat())["Items"] == []
    assert one["LastAttempt"]["Outcome"] == "success" and one["LastAttempt"]["HttpStatus"] == 200

    # The console's 24-hour chart counts them in the last hours (two, across an hour's end).
    since = (int(time.time()) // 3600 - 23) * 3600.0
    hourly = api.db.run_sync(search_store.hourly_outcomes, [hook, other], since, 24)
    assert [sum(n) for n in zip(*hourly[hook], strict=True)] == [6, 0]
    assert [sum(n) for n in zip(*hourly[other], strict=True)] == [1, 0]
    assert hourly[hook][:-2] == [(0, 0)] * 22

    # Cursor paging: every delivery exactly once, newest first.
    seen, cursor, pages = [], None, 0
    while True:
        page = search(api, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [i["DeliveryId"] for i in page["Items"]]
        pages += 1
        cursor = page["NextCursor"]
        if cursor is None:
            break
    assert seen == [i["DeliveryId"] for i in everything] and pages == 3

    # One delivery: what was sent and what came back, bounded; the Secret never.
    mine = search(api, webhookId=hook, primaryKey=1)["Items"][0]
    detail = api.get(f"/api/v1/Deliveries/{mine['DeliveryId']}").json()
    [attempt] = detail["AttemptLog"]
    request, response = attempt["Request"], attempt["Response"]
    assert request.startswith("POST /hook HTTP/1.1\r\n")
    assert "X-SuperOffice-Signature: " in request and "webhook-signature: v1," in request
    assert "X-Token: (hidden)" in request and "t0ken" not in request
    assert SECRET not in request
    assert '"PrimaryKey":1' in request.replace(" ", "")
    sent = next(r for r in receiver.requests if r.header("webhook-id") == mine["WebhookMessageId"])
    assert request.endswith(sent.body.decode())
    assert response.startswith("HTTP/1.1 200 OK\r\n") and "X-Receiver: yes" in response
    body = response.partition("\r\n\r\n")[2]
    assert body.startswith("x" * BODY_BYTES) and "x" * (BODY_BYTES + 1) not in body
    assert f"[body cut: {BODY_BYTES + 100} bytes in all]" in body


def test_bad_filters_are_400s(api: Api) -> None:
    for params in (
        {"status": "lost"},
        {"limit": 0},
        {"limit": 501},
        {"cursor": "abc"},
        {"since": "yesterday"},
        {"primaryKey": -1},
    ):
        response = api.get("/api/v1/Deliveries", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["Error"] is True


def test_tenant_isolation_and_rights(api: Api, receiver) -> None:
    register(api, receiver.url, ["contact.changed"])
    signal(api, "contact.changed", 1)
    wait_until(lambda: search(api, status="delivered")["Items"], what="a delivery")
    [mine] = search(api)["Items"]

    assert search(api, api.key_b)["Items"] == []
    assert search(api, api.key_b, webhookMessageId=mine["WebhookMessageId"])["Items"] == []
    assert_error(api.get(f"/api/v1/Deliveries/{mine['DeliveryId']}", api.key_b), 404, "NotFound")
    answer = api.post("/api/v1/Deliveries/Redeliver", api.key_b).json()
    assert answer == {"Matched": 0, "Queued": 0, "DryRun": False}
    assert search(api, status="delivered")["Items"][0]["EventId"] == mine["EventId"]

    _, reader = create_key(api.db, tenant="Cust1234", associate_id=9, role=Role.read)
    assert search(api, reader)["Items"][0]["DeliveryId"] == mine["DeliveryId"]
    assert_error(api.post("/api/v1/Deliveries/Redeliver", reader), 403, "Forbidden")
    _, signaller = create_key(api.db, tenant="Cust1234", associate_id=9, role=Role.signal)
    assert_error(api.get("/api/v1/Deliveries", signaller), 403, "Forbidden")
    assert_error(api.client.get("/api/v1/Deliveries"), 401, "Unauthorized")


def test_replay_one_and_dry_run(api: Api, receiver) -> None:
    register(api, receiver.url, ["contact.changed"])
    for pk in (1, 2):
        signal(api, "contact.changed", pk)
    wait_until(lambda: len(search(api, status="delivered")["Items"]) == 2, what="2 delivered")
    first = search(api, primaryKey=1)["Items"][0]

    dry = api.post("/api/v1/Deliveries/Redeliver", params={"primaryKey": 1, "dryRun": "true"})
    assert dry.json() == {"Matched": 1, "Queued": 1, "DryRun": True}
    assert search(api, primaryKey=1)["Items"][0]["EventId"] == first["EventId"]  # unchanged

    before = len(receiver.requests)
    answer = api.post(
        "/api/v1/Deliveries/Redeliver", params={"webhookMessageId": first["WebhookMessageId"]}
    )
    assert answer.json() == {"Matched": 1, "Queued": 1, "DryRun": False}
    wait_until(lambda: len(receiver.requests) == before + 1, what="the replayed delivery")
    again = receiver.requests[-1]
    assert again.header("webhook-id") == first["WebhookMessageId"]  # the same delivery
    assert again.header("X-SuperOffice-EventId") != first["EventId"]  # a fresh cycle
    wait_until(
        lambda: search(api, primaryKey=1, status="delivered")["Items"], what="delivered again"
    )


def _seed_given_up(db, webhook_id: int, tenant: str, count: int) -> None:
    """`count` given-up deliveries of one webhook, written straight to the store (what an
    outage of the receiver leaves behind, without waiting through its retries)."""
    now = time.time()

    def write(conn) -> None:
        first = (conn.execute(select(events.c.id).order_by(events.c.id.desc())).first() or [0])[0]
        conn.execute(
            insert(events),
            [
                {
                    "id": first + i + 1,
                    "tenant": tenant,
                    "name": "contact.changed",
                    "primary_key": 1000 + i,
                    "associate_id": 5,
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "changes": '["name"]',
                    "created_at": now,
                }
                for i in range(count)
            ],
        )
        conn.execute(
            insert(deliveries),
            [
                {
                    "event_id": first + i + 1,
                    "webhook_id": webhook_id,
                    "uid": str(uuid.uuid4()),
                    "status": GIVEN_UP,
                    "cycle": 3,
                    "attempt": 2,
                    "event_uuid": str(uuid.uuid4()),
                    "next_at": now,
                    "created_at": now,
                    "finished_at": now,
                }
                for i in range(count)
            ],
        )

    db.run_sync(write)


def test_replay_of_thousands_in_one_request_while_serving(tmp_path, ca_bundle_path, receiver):
    count = 3000
    settings = delivery_settings(tmp_path, ca_bundle_path)
    from hookcast.store.database import Database

    db = Database(settings.database_url)
    _, key = create_key(db, tenant="Cust1234", associate_id=5, name="tony")
    _, other_key = create_key(db, tenant="Cust9999", associate_id=7, name="eve")
    try:
        with ServerThread(create_app(settings, db=db)) as server:
            auth = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
                created = client.post(
                    "/api/v1/Webhook",
                    json={
                        "Name": "h",
                        "Events": ["contact.changed"],
                        "TargetUrl": receiver.url,
                        "Secret": SECRET,
                    },
                )
                assert created.status_code == 200, created.text
                hook = created.json()["WebhookId"]
                _seed_given_up(db, hook, "Cust1234", count)
                # Another tenant's given-up deliveries are not touched.
                other = db.run_sync(
                    lambda conn: conn.execute(
                        insert(webhooks).values(
                            tenant="Cust9999",
                            name="x",
                            events='["contact.changed"]',
                            target_url="https://127.0.0.1:9/x",
                            state=1,
                            type="webhook",
                            registered_at=0,
                            registered_associate_id=7,
                            updated_at=0,
                            updated_associate_id=7,
                        )
                    ).inserted_primary_key[0]
                )
                _seed_given_up(db, other, "Cust9999", 5)

                served: list[int] = []
                stop = threading.Event()

                def other_requests() -> None:
                    with httpx.Client(base_url=server.url, timeout=60) as c2:
                        while not stop.is_set() and len(served) < 2000:
                            r = c2.get(
                                "/api/v1/Webhook", headers={"Authorization": f"Bearer {other_key}"}
                            )
                            served.append(r.status_code)

                side = threading.Thread(target=other_requests)
                side.start()
                try:
                    wait_until(lambda: served, what="the other client's first answer")
                    answer = client.post(
                        "/api/v1/Deliveries/Redeliver", params={"status": "given_up"}
                    )
                    n_during = len(served)
                finally:
                    stop.set()
                    side.join(timeout=60)
                assert answer.json() == {"Matched": count, "Queued": count, "DryRun": False}
                assert served and set(served) == {200} and n_during >= 1

                wait_until(
                    lambda: len({r.header("webhook-id") for r in receiver.requests}) >= count,
                    timeout=120,
                    what=f"{count} replayed deliveries received",
                )
                page = client.get("/api/v1/Deliveries", params={"status": "given_up"}).json()
                assert page["Items"] == []
                others = httpx.get(
                    f"{server.url}/api/v1/Deliveries",
                    params={"status": "given_up"},
                    headers={"Authorization": f"Bearer {other_key}"},
                ).json()
                assert len(others["Items"]) == 5
    finally:
        db.close()


def test_failing_status_and_the_failed_answer_excerpt(tmp_path, ca_bundle_path, receiver) -> None:
    settings = settings_for(tmp_path, ca_bundle_path)
    settings["retry_delays"] = [60.0]  # the second attempt far off: the delivery stays failing
    with running_api(tmp_path, **settings) as api:
        register(api, receiver.url, ["contact.changed"])
        receiver.respond(status=503, body=b"down for maintenance")
        signal(api, "contact.changed", 5)
        [failing] = wait_until(lambda: search(api, status="failing")["Items"], what="a failure")
        assert search(api, status="pending")["Items"] == []
        assert failing["LastAttempt"]["HttpStatus"] == 503
        [attempt] = api.get(f"/api/v1/Deliveries/{failing['DeliveryId']}").json()["AttemptLog"]
        assert attempt["Response"].startswith("HTTP/1.1 503 Service Unavailable\r\n")
        assert attempt["Response"].endswith("\r\n\r\ndown for maintenance")
        assert attempt["Error"] == "HTTP 503 Service Unavailable"
        # A pending delivery is queued already: a replay leaves it alone.
        answer = api.post("/api/v1/Deliveries/Redeliver", params={"status": "failing"}).json()
        assert answer == {"Matched": 1, "Queued": 0, "DryRun": False}


def test_excerpts_go_with_their_delivery_when_pruned(api: Api, receiver) -> None:
    from hookcast.store import queue
    from hookcast.store.schema import attempts

    register(api, receiver.url, ["contact.changed"])
    signal(api, "contact.changed", 1)
    [done] = wait_until(lambda: search(api, status="delivered")["Items"], what="a delivery")
    count = "SELECT count(*) FROM attempts WHERE request_excerpt IS NOT NULL"

    def excerpts(conn) -> int:
        return conn.exec_driver_sql(count).scalar_one()

    assert api.db.run_sync(excerpts) == 1
    api.db.run_sync(queue.prune, time.time() + 1)  # as the retention setting's pruning does
    assert api.db.run_sync(excerpts) == 0
    assert api.db.run_sync(lambda conn: conn.execute(select(attempts.c.id)).all()) == []
    assert_error(api.get(f"/api/v1/Deliveries/{done['DeliveryId']}"), 404, "NotFound")
