"""Registration checks (§5) and the test event (§4), one real receiver per outcome."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from support.receivers import Receiver

from hookcast import verification
from hookcast.errors import TargetRefused, VerificationFailed
from hookcast.net.sender import HttpSender
from hookcast.settings import Settings

SECRET = "hook-secret-Ø"
LOOPBACK = "127.0.0.0/8"


def make_settings(ca_bundle_path: str, *, allow: str = LOOPBACK, timeout: float = 5.0) -> Settings:
    return Settings(
        ca_bundle=ca_bundle_path,
        allow_targets=allow,
        attempt_timeout=timeout,
        user_agent="hookcast/test",
    )


@pytest.fixture
def settings(ca_bundle_path: str) -> Settings:
    return make_settings(ca_bundle_path)


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[HttpSender]:
    async with HttpSender(settings) as http:
        yield http


def target_args(url: str, settings: Settings, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        url=url,
        secret=SECRET,
        name="My hook",
        headers={"X-Api-Key": "k1"},
        properties={"color": "blue"},
        tenant="Cust1234",
        associate_id=5,
        settings=settings,
    )
    args.update(overrides)
    return args


async def failure(sender: HttpSender, url: str, settings: Settings) -> str:
    with pytest.raises(VerificationFailed) as failed:
        await verification.verify_target(sender, **target_args(url, settings))
    message = failed.value.message
    assert message.startswith("TargetUrl verification failed: ")
    return message


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- success -------------------------------------------------------------------------------------


async def test_success_sends_the_signed_test_event(
    sender: HttpSender, settings: Settings, receiver: Receiver
) -> None:
    await verification.verify_target(sender, **target_args(receiver.url, settings))

    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    body = request.body
    match = re.fullmatch(
        rb'\{"EventId":"([0-9a-f-]{36})","Timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z)",'
        rb'"Changes":\[\],"Event":"test","PrimaryKey":0,"Entity":"test",'
        rb'"ContextIdentifier":"Cust1234","ChangedByAssociateId":5,"WebhookName":"My hook",'
        rb'"color":"blue"\}',
        body,
    )
    assert match, body
    event_id = match[1].decode()
    assert uuid.UUID(event_id).version == 4
    sent_at = datetime.strptime(match[2].decode()[:26], "%Y-%m-%dT%H:%M:%S.%f")
    assert abs(sent_at.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(seconds=30)

    headers = request.headers
    webhook_id = request.header("webhook-id") or ""
    stamp = request.header("webhook-timestamp") or ""
    assert abs(int(stamp) - time.time()) < 30
    key = SECRET.encode("utf-8")
    superoffice_sig = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
    standard_sig = base64.b64encode(
        hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    # On the wire: Host and Content-Length, then the contract's headers in its order, then
    # the webhook's own; nothing else (no Accept-Encoding: answers are never decompressed).
    assert headers == [
        ("Host", f"127.0.0.1:{receiver.port}"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json; charset=utf-8"),
        ("User-Agent", "hookcast/test"),
        ("X-SuperOffice-Event", "test"),
        ("X-SuperOffice-EventId", event_id),
        ("X-SuperOffice-Retry", "0"),
        ("X-SuperOffice-Signature", superoffice_sig),
        ("webhook-id", webhook_id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", f"v1,{standard_sig}"),
        ("X-Hook-Test", "true"),
        ("X-Api-Key", "k1"),
    ]
    assert webhook_id and webhook_id != event_id
    # A receiver using the Standard Webhooks library accepts the delivery.
    receiving = Webhook("whsec_" + base64.b64encode(SECRET.encode("utf-8")).decode())
    assert receiving.verify(body, dict(headers))["EventId"] == event_id


async def test_test_endpoint_reports_the_answer(
    sender: HttpSender, settings: Settings, receiver_factory: Any
) -> None:
    target = receiver_factory(body=b"hello there", headers={"X-Receiver": "yes"})
    result = await verification.test_target(sender, **target_args(target.url, settings))
    assert result.success
    assert result.message.startswith("HTTP/1.1 200 OK\r\n")
    assert "\r\nX-Receiver: yes\r\n" in result.message
    assert result.message.endswith("\r\n\r\nhello there")
    assert target.requests[0].header("X-Hook-Test") == "true"


async def test_test_endpoint_reports_the_error(sender: HttpSender, settings: Settings) -> None:
    url = f"https://127.0.0.1:{closed_port()}/hook"
    result = await verification.test_target(sender, **target_args(url, settings))
    assert (result.success, result.message) == (False, "connection refused")


# -- failures, one per check ---------------------------------------------------------------------


async def test_http_url_fails_without_traffic(
    sender: HttpSender, settings: Settings, receiver: Receiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/hook"
    assert await failure(sender, url, settings) == (
        "TargetUrl verification failed: TargetUrl must use https, not http"
    )
    result = await verification.test_target(sender, **target_args(url, settings))
    assert (result.success, result.message) == (False, "TargetUrl must use https, not http")
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        ("untrusted", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("wrong_host", "mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
async def test_bad_certificates_fail(
    sender: HttpSender, settings: Settings, receiver_factory: Any, cert: str, reason: str
) -> None:
    target = receiver_factory(cert)
    message = await failure(sender, target.url, settings)
    assert message.startswith(
        "TargetUrl verification failed: TLS certificate verification failed: "
    )
    assert reason in message
    assert target.requests == []


async def test_error_status_fails_with_what_the_target_said(
    sender: HttpSender, settings: Settings, receiver_factory: Any
) -> None:
    target = receiver_factory(status=500, body=b"database down " + b"x" * 500)
    message = await failure(sender, target.url, settings)
    assert message == (
        "TargetUrl verification failed: the target answered HTTP 500 Internal Server Error: "
        "database down " + "x" * 186
    )


async def test_timeout_fails(ca_bundle_path: str, receiver_factory: Any) -> None:
    settings = make_settings(ca_bundle_path, timeout=0.5)
    target = receiver_factory(delay=60)  # released when the receiver stops
    async with HttpSender(settings) as sender:
        message = await failure(sender, target.url, settings)
        # The timeout ended the check, not an answer: the receiver still holds the request.
        assert len(target.requests) == 1 and target.answered == 0
    assert message == "TargetUrl verification failed: timed out after 0.5 s"


async def test_refused_connection_fails(sender: HttpSender, settings: Settings) -> None:
    message = await failure(sender, f"https://127.0.0.1:{closed_port()}/hook", settings)
    assert message == "TargetUrl verification failed: connection refused"


async def test_redirect_is_not_followed(
    sender: HttpSender, settings: Settings, receiver_factory: Any
) -> None:
    elsewhere = receiver_factory()
    target = receiver_factory(status=302, location=elsewhere.url)
    message = await failure(sender, target.url, settings)
    assert message == (
        f"TargetUrl verification failed: redirect not followed: 302 to {elsewhere.url}"
    )
    assert len(target.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback"),
        ("localhost", "a loopback"),
        ("10.0.0.5", "a private"),
    ],
)
async def test_guarded_addresses_are_refused_without_allow_list(
    ca_bundle_path: str, receiver: Receiver, host: str, kind: str
) -> None:
    settings = make_settings(ca_bundle_path, allow="")
    url = receiver.url_for("/hook", host=host)
    address = "127.0.0.1" if host == "localhost" else host
    async with HttpSender(settings) as sender:
        with pytest.raises(TargetRefused) as refused:
            await verification.verify_target(sender, **target_args(url, settings))
    assert refused.value.message == (
        f"TargetUrl verification failed: {address} is {kind} address; "
        "add it to HOOKCAST_ALLOW_TARGETS to allow it"
    )
    assert receiver.requests == []
