"""The delivery side through the API and the CLI: REST and RPC signals, the delivery log,
Usage, LastError, /metrics, the ErrorsEmail over a real SMTP server, signal_sync."""

from __future__ import annotations

import socket
import time

import orjson
import pytest
from aiosmtpd.controller import Controller
from api_support import Api, running_api
from support.engine import delivery_settings
from test_api import assert_error
from typer.testing import CliRunner

from hookcast.cli import app as cli
from hookcast.hub import Hub


def wait_until(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def deliveries_of(receiver):
    return [r for r in receiver.requests if r.header("X-Hook-Test") is None]


class Mailbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


@pytest.fixture
def api(tmp_path, ca_bundle_path, smtp):
    settings = delivery_settings(
        tmp_path,
        ca_bundle_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp[0],
        smtp_from="hookcast@example.com",
    )
    with running_api(
        tmp_path, **{k: v for k, v in settings.model_dump().items() if k not in ("database_url",)}
    ) as api:
        yield api


def register(api: Api, url: str, events: list[str], **fields) -> dict:
    response = api.post(
        "/api/v1/Webhook",
        json={"Name": "handler", "Events": events, "TargetUrl": url, "Secret": "s3cret", **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_rest_and_rpc_signals_are_delivered(api: Api, receiver) -> None:
    register(api, receiver.url, ["contact.changed", "sale.created"])
    response = api.post(
        "/api/v1/Webhook/Contact.Changed/994863", json={"name": "Ada", "department": "R&D"}
    )
    assert response.status_code == 204 and response.content == b""
    assert api.post("/api/v1/Webhook/sale.created/5").status_code == 204
    rpc = api.post(
        "/api/v1/Agents/Webhook/SignalEvent",
        json={"EventName": "contact.changed", "PrimaryKey": 6, "Data": {"name": "Bo"}},
    )
    assert rpc.status_code == 204
    requests = wait_until(lambda: len(deliveries_of(receiver)) >= 3 and deliveries_of(receiver))
    bodies = sorted((orjson.loads(r.body) for r in requests), key=lambda b: b["PrimaryKey"])
    assert [(b["Event"], b["PrimaryKey"], b["Changes"]) for b in bodies] == [
        ("sale.created", 5, []),
        ("contact.changed", 6, ["name"]),
        ("contact.changed", 994863, ["name", "department"]),
    ]
    assert all(
        b["ContextIdentifier"] == "Cust1234" and b["ChangedByAssociateId"] == 5 for b in bodies
    )


def test_bad_signals_are_4xx(api: Api) -> None:
    assert_error(
        api.post("/api/v1/Webhook/contact..changed/1"), 400, "ValidationError", "malformed"
    )
    assert_error(api.post("/api/v1/Webhook/contact.changed/1", json=[1, 2]), 400, "ValidationError")
    # PrimaryKey is 0 .. 2^53-1 on every route (§3)
    for key in (-1, 2**53):
        assert_error(api.post(f"/api/v1/Webhook/contact.deleted/{key}"), 400, "ValidationError")
        assert_error(
            api.post(
                "/api/v1/Agents/Webhook/SignalEvent", json={"EventName": "a", "PrimaryKey": key}
            ),
            400,
            "ValidationError",
            "PrimaryKey",
        )
    assert_error(api.client.post("/api/v1/Webhook/contact.changed/1"), 401, "Unauthorized")
    assert_error(
        api.post("/api/v1/Agents/Webhook/SignalEvent", json={"EventName": "x y", "PrimaryKey": 1}),
        400,
        "ValidationError",
    )
    structured = [
        ({"Changes": "name"}, "Changes must be"),
        ({"FieldValues": [1]}, "FieldValues must be"),
        ({"Values": {"id": 1}}, "only for *.deleted"),
    ]
    for body, says in structured:
        assert_error(
            api.post("/api/v1/Webhook/contact.changed/1", json=body), 400, "ValidationError", says
        )


def test_primary_key_range_in_the_python_api(tmp_path) -> None:
    from hookcast.intake import new_event

    assert new_event("a.b", 2**53 - 1, tenant="T").primary_key == 2**53 - 1
    for key in (-1, 2**53, True, 1.0):
        with pytest.raises(ValueError, match="PrimaryKey must be an integer from 0 to"):
            new_event("a.b", key, tenant="T")  # type: ignore[arg-type]
    for associate in (-1, 2**31, True):
        with pytest.raises(ValueError, match="associate_id must be an integer from 0 to"):
            new_event("a.b", 1, tenant="T", associate_id=associate)


SIGNALS = [
    # (event, body, Changes, Values, FieldValues) -- §3 "Event data"
    ("contact.changed", None, [], None, None),
    ("contact.changed", {"name": "Ada", "n": 2}, ["name", "n"], None, {"name": "Ada", "n": 2}),
    ("sale.deleted", {"sale_id": 7, "contact_id": 43}, [], {"sale_id": 7, "contact_id": 43}, None),
    (
        "contact.changed",
        {"changes": {"name": "Ada"}, "FIELDVALUES": {"name": "Ada", "city": "Oslo"}},
        ["name"],
        None,
        {"name": "Ada", "city": "Oslo"},
    ),
    ("contact.changed", {"Changes": ["name"]}, ["name"], None, None),
    ("sale.deleted", {"Values": {"sale_id": 8}}, [], {"sale_id": 8}, None),
]


@pytest.mark.parametrize("route", ["rest", "agents"])
def test_event_data_from_every_signal_route(api: Api, receiver, route: str) -> None:
    register(api, receiver.url, ["contact.changed", "sale.deleted"])
    for key, (event, body, *_) in enumerate(SIGNALS, start=1):
        if route == "rest":
            response = api.post(f"/api/v1/webhook/{event}/{key}/", json=body)
        else:  # camelCase, as SuperOffice's own client sends it
            response = api.post(
                "/api/v1/agents/webhook/signalEvent",
                json={"eventName": event, "primaryKey": key, "data": body},
            )
        assert response.status_code == 204, response.text
    got = wait_until(
        lambda: len(deliveries_of(receiver)) >= len(SIGNALS) and deliveries_of(receiver)
    )
    bodies = {b["PrimaryKey"]: b for b in (orjson.loads(r.body) for r in got)}
    for key, (event, _, changes, values, field_values) in enumerate(SIGNALS, start=1):
        body = bodies[key]
        assert (body["Event"], body["Changes"]) == (event, changes)
        assert (body.get("Values"), body.get("FieldValues")) == (values, field_values), key
        order = list(body)
        if values is not None:  # Values right after Changes
            assert order[order.index("Changes") + 1] == "Values"


def test_delivery_log_usage_last_error_and_metrics(api: Api, receiver) -> None:
    hook = register(api, receiver.url, ["contact.changed"])
    receiver.respond(statuses=(500,), body=b"oops")
    api.post("/api/v1/Webhook/contact.changed/1")
    wait_until(
        lambda: api.get(f"/api/v1/Webhook/{hook['WebhookId']}/Usage").json()["TotalCalls"] >= 2
    )
    page = api.get(f"/api/v1/Webhook/{hook['WebhookId']}/Deliveries", params={"limit": 10}).json()
    assert page["Total"] == 2 and page["Limit"] == 10 and page["Offset"] == 0
    newest, oldest = page["Items"]
    assert (oldest["Outcome"], oldest["HttpStatus"], oldest["Attempt"]) == ("failure", 500, 0)
    assert "500" in oldest["Error"]
    assert (newest["Outcome"], newest["HttpStatus"], newest["Attempt"], newest["Error"]) == (
        "success",
        200,
        1,
        None,
    )
    assert newest["EventId"] == oldest["EventId"] and newest["Event"] == "contact.changed"
    assert newest["Status"] == "delivered" and newest["LatencyMs"] > 0
    second = api.get(
        f"/api/v1/Webhook/{hook['WebhookId']}/Deliveries", params={"limit": 1, "offset": 1}
    ).json()
    assert [i["AttemptId"] for i in second["Items"]] == [oldest["AttemptId"]]
    assert api.get(f"/api/v1/Webhook/{hook['WebhookId']}/LastError").json() == oldest["Error"]
    usage = api.get(f"/api/v1/Webhook/{hook['WebhookId']}/Usage").json()
    assert (usage["TotalCalls"], usage["TotalErrors"], usage["ConsecutiveErrors"]) == (2, 1, 0)
    # the webhook itself carries the same read-only counters (§1)
    hook_now = api.get(f"/api/v1/Webhook/{hook['WebhookId']}").json()
    assert (hook_now["TotalCalls"], hook_now["TotalErrors"], hook_now["LastError"]) == (
        2,
        1,
        oldest["Error"],
    )
    metrics = api.client.get("/metrics").text
    assert 'hookcast_attempts_total{outcome="success"}' in metrics
    assert 'hookcast_deliveries{status="delivered"} 1.0' in metrics
    assert 'hookcast_webhooks{state="Active"} 1.0' in metrics
    assert "hookcast_attempt_latency_seconds_bucket" in metrics
    assert_error(api.get("/api/v1/Webhook/999/Deliveries"), 404, "NotFound")
    assert_error(api.post("/api/v1/Webhook/999/Redeliver"), 404, "NotFound")
    assert_error(
        api.post(f"/api/v1/Webhook/{hook['WebhookId']}/Redeliver", api.key_b), 404, "NotFound"
    )


def test_errors_email_is_sent_once_on_too_many_errors(api: Api, receiver, smtp) -> None:
    _, mailbox = smtp
    hook = register(api, receiver.url, ["contact.changed"], ErrorsEmail="ops@example.com")
    receiver.respond(status=500, body=b"broken")
    api.post("/api/v1/Webhook/contact.changed/1")
    api.post("/api/v1/Webhook/contact.changed/2")
    wait_until(
        lambda: api.get(f"/api/v1/Webhook/{hook['WebhookId']}").json()["State"] == "TooManyErrors"
    )
    [envelope] = wait_until(lambda: mailbox.envelopes, what="the ErrorsEmail")
    assert envelope.rcpt_tos == ["ops@example.com"] and envelope.mail_from == "hookcast@example.com"
    text = envelope.content.decode()
    usage = api.get(f"/api/v1/Webhook/{hook['WebhookId']}/Usage").json()
    last_event_id = max(
        (i for i in api.get(f"/api/v1/Webhook/{hook['WebhookId']}/Deliveries").json()["Items"]),
        key=lambda i: i["AttemptId"],
    )["EventId"]
    assert "handler" in text and f"WebhookId:           {hook['WebhookId']}" in text
    assert last_event_id in text and "HTTP 500" in text and usage["LastError"] in text
    assert "s3cret" not in text
    receiver.respond(status=200)
    assert (
        api.patch(f"/api/v1/Webhook/{hook['WebhookId']}", json={"State": "Active"}).status_code
        == 200
    )
    redelivered = api.post(f"/api/v1/Webhook/{hook['WebhookId']}/Redeliver").json()["Queued"]
    assert redelivered >= 1
    wait_until(
        lambda: (
            {
                orjson.loads(r.body)["PrimaryKey"]
                for r in deliveries_of(receiver)
                if r.header("X-SuperOffice-Retry") == "0"
            }
            >= {1}
        )
    )
    assert len(mailbox.envelopes) == 1


def test_signal_sync_from_blocking_code(tmp_path, ca_bundle_path, receiver) -> None:
    settings = delivery_settings(tmp_path, ca_bundle_path)
    with running_api(
        tmp_path, **{k: v for k, v in settings.model_dump().items() if k != "database_url"}
    ) as api:
        register(api, receiver.url, ["contact.created"])
        hub = Hub.start_in_thread(api.settings, deliver=False)
        try:
            event_id = hub.signal_sync("contact.created", 42, tenant="Cust1234", associate_id=9)
            assert event_id >= 1
        finally:
            hub.close_sync()
        # Another process's hub stored it; the serving hub's poll picks it up.
        [request] = wait_until(lambda: deliveries_of(receiver))
        assert orjson.loads(request.body)["PrimaryKey"] == 42


def test_cli_signal_is_delivered_by_the_running_server(tmp_path, ca_bundle_path, receiver) -> None:
    settings = delivery_settings(tmp_path, ca_bundle_path)
    with running_api(
        tmp_path, **{k: v for k, v in settings.model_dump().items() if k != "database_url"}
    ) as api:
        register(api, receiver.url, ["contact.changed"])
        result = CliRunner().invoke(
            cli,
            [
                "signal",
                "contact.changed",
                "77",
                "--tenant",
                "Cust1234",
                "--data",
                '{"name": "Ada"}',
                "--db",
                api.settings.database_url,
            ],
        )
        assert result.exit_code == 0, result.output
        [request] = wait_until(lambda: deliveries_of(receiver))
        assert orjson.loads(request.body)["Changes"] == ["name"]
        bad = CliRunner().invoke(
            cli,
            [
                "signal",
                "contact.changed",
                "1",
                "--tenant",
                "T",
                "--data",
                "[1]",
                "--db",
                api.settings.database_url,
            ],
        )
        assert bad.exit_code == 2
