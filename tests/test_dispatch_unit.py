"""The unit tier of delivery: a real Hub (intake, dispatcher, retry policy, state machine) on an
in-memory SQLite database, posting through a `MockTransport` instead of the network. No
sockets are opened (a fixture makes any connect fail); the same flows against real HTTPS
receivers are in test_delivery.py.

Registering an Active webhook POSTs the test event first (§5), so every target here answers
that too; `Target` records only the deliveries.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from support.engine import CALLER, SECRET, TENANT, Engine, eventually

from hookcast import State, verify_signature
from hookcast.hub import Hub
from hookcast.net import Answer, MockTransport, Request, TransportError
from hookcast.net.sender import HttpSender
from hookcast.outcome import ErrorKind
from hookcast.registry import Registry
from hookcast.settings import Settings
from hookcast.store import queue

URL = "https://127.0.0.1/hook"  # an IP literal: registration's address check needs no DNS
WAIT = 5.0  # the bound on each wait in this file


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that reached for the network would fail here, not quietly pass."""

    def refuse(*args: object) -> None:
        raise AssertionError("a unit test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


class Target:
    """A receiver simulated by a MockTransport handler: answers the registration test event
    with 200, then each delivery attempt with the next scripted step (an Answer, or a
    TransportError to raise), then with `then`. Records the delivery requests."""

    def __init__(self, *steps: Answer | TransportError, then: Answer | None = None) -> None:
        self._steps = collections.deque(steps)
        self._then = then or Answer(200, "OK")
        self.requests: list[Request] = []
        self.arrived: list[float] = []  # time.monotonic() per delivery request

    def __call__(self, request: Request) -> Answer:
        if request.header("X-Hook-Test") is not None:
            return Answer(200, "OK", body=b"test received")
        self.requests.append(request)
        self.arrived.append(time.monotonic())
        step = self._steps.popleft() if self._steps else self._then
        if isinstance(step, TransportError):
            raise step
        return step

    async def received(self, count: int) -> list[Request]:
        await eventually(lambda: len(self.requests) >= count, WAIT, f"{count} deliveries")
        return self.requests


def unit_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite:///:memory:",
        "allow_targets": ["127.0.0.0/8"],
        "retry_delays": [0.01, 0.02],
        "cycles": 2,
        "cycle_delay": 0.05,
        "attempt_timeout": 1.0,
        "poll_interval": 0.05,
        "lease": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def hub_with(target: Target, **overrides: Any) -> AsyncIterator[Engine]:
    settings = unit_settings(**overrides)
    async with Hub(settings, transport=MockTransport(target)) as hub:
        yield Engine(hub, Registry(hub.db, settings, hub.sender, wake=hub.wake), settings)


async def usage_when(engine: Engine, webhook_id: int, *, calls: int) -> Any:
    usage = await engine.usage(webhook_id)
    return usage if usage.total_calls >= calls else None


async def attempts_of(engine: Engine, webhook_id: int, count: int) -> list[dict[str, Any]]:
    """The attempt log of a webhook, oldest first, once it holds `count` attempts."""

    async def read() -> list[dict[str, Any]] | None:
        rows = await engine.hub.db.read(queue.list_attempts, webhook_id, 100, 0)
        return rows[::-1] if len(rows) >= count else None

    result: list[dict[str, Any]] = await eventually(read, WAIT, f"{count} logged attempts")
    return result


async def test_a_2xx_delivers_once_signed_with_the_right_headers_and_body() -> None:
    target = Target()
    async with hub_with(target) as engine:
        hook = await engine.create(URL, ["contact.changed"], Headers={"X-Api-Version": "7"})
        await engine.hub.signal("contact.changed", 994863, tenant=TENANT, changes=["name"])
        [request] = await target.received(1)
        usage = await eventually(lambda: usage_when(engine, hook.id, calls=1), WAIT)
        assert (usage.total_calls, usage.total_errors) == (1, 0)
        assert len(target.requests) == 1  # delivered once, not retried
    assert request.url == URL
    body = orjson.loads(request.body)
    assert body["Event"] == "contact.changed" and body["PrimaryKey"] == 994863
    assert body["Changes"] == ["name"] and body["ContextIdentifier"] == TENANT
    assert body["EventId"] == request.header("X-SuperOffice-EventId")
    assert request.header("X-SuperOffice-Event") == "contact.changed"
    assert request.header("X-SuperOffice-Retry") == "0"
    assert request.header("X-Api-Version") == "7"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert request.header("User-Agent") == engine.settings.user_agent
    signature = request.header("X-SuperOffice-Signature")
    assert signature is not None and verify_signature(SECRET, request.body, signature)


async def test_a_500_then_a_200_retries_with_the_retry_header_counting_up() -> None:
    target = Target(Answer(500, "Internal Server Error", body=b"down"))
    async with hub_with(target) as engine:
        hook = await engine.create(URL, ["contact.changed"])
        await engine.hub.signal("contact.changed", 7, tenant=TENANT)
        first, second = await target.received(2)
        usage = await eventually(lambda: usage_when(engine, hook.id, calls=2), WAIT)
        failed, delivered = await attempts_of(engine, hook.id, 2)
    assert [r.header("X-SuperOffice-Retry") for r in (first, second)] == ["0", "1"]
    assert first.header("X-SuperOffice-EventId") == second.header("X-SuperOffice-EventId")
    assert first.body == second.body
    assert (usage.total_calls, usage.total_errors, usage.consecutive_errors) == (2, 1, 0)
    assert usage.last_error == "HTTP 500 Internal Server Error"
    assert (failed["ok"], failed["http_status"]) == (False, 500)
    assert (delivered["ok"], delivered["http_status"]) == (True, 200)


async def test_a_410_gives_up_at_once_and_disables_the_webhook() -> None:
    target = Target(then=Answer(410, "Gone", body=b"gone"))
    async with hub_with(target) as engine:
        hook = await engine.create(URL, ["contact.changed"])
        await engine.hub.signal("contact.changed", 7, tenant=TENANT)

        async def disabled() -> bool:
            return (await engine.registry.get(CALLER, hook.id)).state is State.TooManyErrors

        await eventually(disabled, WAIT, "the webhook to be disabled")
        usage = await engine.usage(hook.id)
        depth = await engine.hub.db.run(queue.queue_depth)
    assert len(target.requests) == 1  # no retry after a 410
    assert (usage.total_calls, usage.consecutive_errors) == (1, 1)
    assert usage.last_error == "HTTP 410 Gone"
    assert depth["given_up"] == 1


async def test_retry_after_replaces_the_fixed_retry_delay() -> None:
    # The fixed delay (60 s) would outlast every wait here; Retry-After: 0 asks for the
    # retry now, and 1 s (under the cycle delay) holds it back at least that long.
    target = Target(
        Answer(429, "Too Many Requests", headers=[("Retry-After", "0")]),
        Answer(503, "Service Unavailable", headers=[("Retry-After", "1")]),
    )
    async with hub_with(target, retry_delays=[60.0, 60.0], cycle_delay=120.0) as engine:
        hook = await engine.create(URL, ["contact.changed"])
        await engine.hub.signal("contact.changed", 7, tenant=TENANT)
        requests = await target.received(3)
        usage = await eventually(lambda: usage_when(engine, hook.id, calls=3), WAIT)
    assert [r.header("X-SuperOffice-Retry") for r in requests] == ["0", "1", "2"]
    assert target.arrived[2] - target.arrived[1] >= 1.0  # a lower bound only
    assert (usage.total_errors, usage.consecutive_errors) == (2, 0)


async def test_a_transport_error_is_a_failed_attempt_that_is_retried() -> None:
    target = Target(
        TransportError("connection refused"),
        TransportError("target refused: 127.0.0.1 is a loopback address", refused=True),
    )
    async with hub_with(target) as engine:
        hook = await engine.create(URL, ["contact.changed"])
        await engine.hub.signal("contact.changed", 7, tenant=TENANT)
        requests = await target.received(3)
        usage = await eventually(lambda: usage_when(engine, hook.id, calls=3), WAIT)
        attempts = await attempts_of(engine, hook.id, 3)
    assert [r.header("X-SuperOffice-Retry") for r in requests] == ["0", "1", "2"]
    assert [(a["ok"], a["http_status"], a["error"]) for a in attempts] == [
        (False, None, "connection refused"),
        (False, None, "target refused: 127.0.0.1 is a loopback address"),
        (True, 200, None),
    ]
    assert (usage.total_calls, usage.total_errors, usage.consecutive_errors) == (3, 2, 0)


# -- the sender on its own: which ErrorKind an attempt gets ----------------------------------------


def sender_for(handler: Any) -> HttpSender:
    return HttpSender(unit_settings(), transport=MockTransport(handler))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TransportError("connection refused"), ErrorKind.NETWORK),
        (TransportError("TLS handshake failed: wrong version number"), ErrorKind.NETWORK),
        (
            TransportError("target refused: 10.0.0.1 is a private address", refused=True),
            ErrorKind.REFUSED,
        ),
    ],
)
async def test_the_error_kind_comes_from_the_transport_error(
    error: TransportError, kind: ErrorKind
) -> None:
    def fail(request: Request) -> Answer:
        raise error

    async with sender_for(fail) as sender:
        result = await sender.send(URL, b"{}", {})
    assert (result.ok, result.status, result.error) == (False, None, error.message)
    assert result.kind is kind


async def test_a_handler_that_does_not_answer_in_time_is_a_timeout() -> None:
    async def hang(request: Request) -> Answer:
        await asyncio.sleep(WAIT * 2)
        return Answer(200)

    async with sender_for(hang) as sender:
        result = await asyncio.wait_for(sender.send(URL, b"{}", {}, timeout=0.05), WAIT)
    assert (result.ok, result.status, result.error) == (False, None, "timed out after 0.05 s")
    assert result.kind is ErrorKind.TIMEOUT


async def test_answers_become_outcomes() -> None:
    answers = collections.deque(
        [
            Answer(204, "No Content"),
            Answer(302, "Found", headers=[("Location", "https://elsewhere.example/")]),
            Answer(503, "Service Unavailable", headers=[("Retry-After", "7")], body=b"later"),
        ]
    )
    async with sender_for(lambda request: answers.popleft()) as sender:
        ok, moved, busy = [await sender.send(URL, b"{}", {}, excerpt=True) for _ in range(3)]
    assert (ok.ok, ok.status, ok.kind, ok.error) == (True, 204, None, None)
    assert (moved.ok, moved.kind) == (False, ErrorKind.STATUS)
    assert moved.error == "redirect not followed: 302 to https://elsewhere.example/"
    assert (busy.status, busy.retry_after, busy.error) == (503, 7.0, "HTTP 503 Service Unavailable")
    assert busy.answer_body == "later"


async def test_a_closed_mock_transport_refuses_like_the_real_one() -> None:
    transport = MockTransport(lambda request: Answer(200))
    assert (await transport.post(URL, {}, b"")).status == 200
    await transport.close()
    with pytest.raises(TransportError) as failed:
        await transport.post(URL, {}, b"")
    assert (failed.value.message, failed.value.refused) == ("the sender is closed", False)
