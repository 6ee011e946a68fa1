"""Verified registration (§4, §5) through the API, against real HTTPS receivers on loopback
with trustme certificates: every outcome, and nothing stored when verification fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket

import orjson
import pytest
from api_support import Api, running_api
from test_api import assert_error

SECRET = "Something Super Secret"


@pytest.fixture
def api(tmp_path, ca_bundle_path):
    with running_api(
        tmp_path, ca_bundle=ca_bundle_path, allow_targets=["127.0.0.0/8"], attempt_timeout=0.5
    ) as api:
        yield api


def active_hook(url: str, **overrides) -> dict:
    return {
        "Name": "Tonys Contact Handler",
        "Events": ["contact.created", "contact.changed"],
        "TargetUrl": url,
        "Secret": SECRET,
        "State": "Active",
        "Type": "webhook",
        **overrides,
    }


def test_registration_posts_a_signed_test_event(api: Api, receiver) -> None:
    response = api.post(
        "/api/v1/Webhook", json=active_hook(receiver.url, Headers={"X-Custom": "yes"})
    )
    assert response.status_code == 200, response.text
    assert response.json()["State"] == "Active"
    [request] = receiver.requests
    body = orjson.loads(request.body)
    assert list(body) == [
        "EventId",
        "Timestamp",
        "Changes",
        "Event",
        "PrimaryKey",
        "Entity",
        "ContextIdentifier",
        "ChangedByAssociateId",
        "WebhookName",
    ]
    assert (body["Event"], body["Entity"], body["PrimaryKey"], body["Changes"]) == (
        "test",
        "test",
        0,
        [],
    )
    assert (body["ContextIdentifier"], body["ChangedByAssociateId"]) == ("Cust1234", 5)
    assert body["WebhookName"] == "Tonys Contact Handler"
    assert request.header("X-Hook-Test") == "true"
    assert request.header("X-SuperOffice-Event") == "test"
    assert request.header("X-SuperOffice-EventId") == body["EventId"]
    assert request.header("X-Custom") == "yes"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), request.body, hashlib.sha256).digest()
    ).decode()
    assert request.header("X-SuperOffice-Signature") == expected
    msg_id, stamp = request.header("webhook-id"), request.header("webhook-timestamp")
    signed = f"{msg_id}.{stamp}.".encode() + request.body
    v1 = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    assert request.header("webhook-signature") == f"v1,{v1}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


OUTCOMES = {
    "http url": (None, {}, lambda r: r.url.replace("https://", "http://"), "https"),
    "untrusted CA": ("untrusted", {}, None, "certificate"),
    "expired certificate": ("expired", {}, None, "expired"),
    "wrong host name": ("wrong_host", {}, None, "certificate"),
    "500 answer": ("valid", {"status": 500, "body": b"database is down"}, None, "500"),
    "timeout": ("valid", {"delay": 3}, None, "0.5 s"),
    "redirect": (
        "valid",
        {"status": 302, "location": "https://127.0.0.1:1/elsewhere"},
        None,
        "redirect",
    ),
    "refused": (None, {}, lambda r: f"https://127.0.0.1:{_closed_port()}/hook", "refused"),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_failed_verification_is_400_and_stores_nothing(
    api: Api, receiver_factory, outcome: str
) -> None:
    cert, behaviour, url_of, fragment = OUTCOMES[outcome]
    receiver = receiver_factory(cert or "valid", **behaviour)
    url = url_of(receiver) if url_of else receiver.url
    response = api.post("/api/v1/Webhook", json=active_hook(url))
    assert response.status_code == 400, response.text
    assert response.json()["ErrorType"] in (
        "ValidationError",
        "VerificationFailed",
        "TargetRefused",
    )
    message = response.json()["ErrorMessage"]
    assert fragment.lower() in message.lower(), message
    assert api.get("/api/v1/Webhook").json() == []
    if outcome == "redirect":
        assert len(receiver.requests) == 1  # the redirect was not followed


def test_private_address_refused_without_allow_list(tmp_path, ca_bundle_path, receiver) -> None:
    with running_api(tmp_path, ca_bundle=ca_bundle_path, attempt_timeout=0.5) as api:
        for url in (receiver.url, receiver.url_for("/hook", host="localhost")):
            response = api.post("/api/v1/Webhook", json=active_hook(url))
            assert_error(response, 400, "TargetRefused", "HOOKCAST_ALLOW_TARGETS")
        assert receiver.requests == []
        assert api.get("/api/v1/Webhook").json() == []


def test_stopped_webhook_is_stored_without_a_test_post(api: Api, receiver) -> None:
    response = api.post("/api/v1/Webhook", json=active_hook(receiver.url, State="Stopped"))
    assert response.status_code == 200
    assert receiver.requests == []


def test_update_verifies_again_when_the_target_changes_or_it_becomes_active(
    api: Api, receiver_factory
) -> None:
    good = receiver_factory()
    hook = api.post("/api/v1/Webhook", json=active_hook(good.url)).json()
    url = f"/api/v1/Webhook/{hook['WebhookId']}"
    assert len(good.requests) == 1
    # Renaming alone does not send a test POST.
    assert api.patch(url, json={"Name": "renamed"}).status_code == 200
    assert len(good.requests) == 1
    broken = receiver_factory(status=500)
    assert_error(api.patch(url, json={"TargetUrl": broken.url}), 400, "VerificationFailed", "500")
    assert api.get(url).json()["TargetUrl"] == good.url
    assert api.patch(url, json={"Secret": "new secret"}).status_code == 200
    assert len(good.requests) == 2
    assert api.patch(url, json={"State": "Stopped"}).json()["State"] == "Stopped"
    good.respond(status=503)
    assert_error(api.patch(url, json={"State": "Active"}), 400, "VerificationFailed", "503")
    assert api.get(url).json()["State"] == "Stopped"
    good.respond(status=204)
    assert api.patch(url, json={"State": "active"}).json()["State"] == "Active"


def test_test_endpoint_reports_without_storing(api: Api, receiver_factory) -> None:
    ok = receiver_factory(body=b"hello from the receiver")
    response = api.post("/api/v1/Webhook/Test", json=active_hook(ok.url))
    assert response.status_code == 200
    result = response.json()
    assert result["Success"] is True
    assert "200" in result["Message"] and "hello from the receiver" in result["Message"]
    failing = receiver_factory(status=500, body=b"kaput")
    result = api.post("/api/v1/Agents/Webhook/TestWebhook", json=active_hook(failing.url)).json()
    assert (
        result["Success"] is False and "500" in result["Message"] and "kaput" in result["Message"]
    )
    assert api.get("/api/v1/Webhook").json() == []
    assert ok.requests[0].header("X-Hook-Test") == "true"


def test_crmscript_type_needs_an_existing_script(api: Api) -> None:
    response = api.post("/api/v1/Webhook", json=active_hook("my_handler", Type="CRMScript"))
    assert_error(response, 400, "VerificationFailed", "my_handler")
    assert api.get("/api/v1/Webhook").json() == []
