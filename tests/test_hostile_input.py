"""No 500 on any input (issue 13, item 4): JSON the store or a receiver could not take
faithfully (integers beyond 64 bits, lone surrogates, deep nesting, NaN, Infinity, 1e400)
and TargetUrl hosts that are not DNS names (empty labels, long labels and names, bad IDNA)
are a 400 with the §8 body on every route that takes them, REST and Agents; they change
nothing (no event stored or delivered, the webhook as it was), and the same keep-alive
connection then serves the next request. An unexpected exception in a handler is a 500 with
the §8 body and one log line, and leaves the connection open too.

All of it against a real uvicorn server (tests/support/server.py), one keep-alive
connection per client, with a real HTTPS receiver behind the webhook."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from support.engine import delivery_settings
from support.receivers import Receiver
from support.server import ServerThread
from test_api import assert_error

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.store.database import Database

# JSON text for a value, as a client could send it (none of it is what Python's json module
# would write, so the bodies are built as text).
BAD_VALUES = {
    "integer beyond 64 bits": ("123456789012345678901234567890", "64-bit"),
    "integer just past int64": ("9223372036854775808", "64-bit"),
    "integer just below int64": ("-9223372036854775809", "64-bit"),
    "lone high surrogate": ('"a\\ud800b"', "surrogate"),
    "lone low surrogate": ('"\\uDC00"', "surrogate"),
    "lone surrogate in a key": ('{"\\ud800": 1}', "surrogate"),
    "nesting 300 deep": ("[" * 300 + "]" * 300, "nested"),
    "nesting 256 deep": ('{"a":' * 256 + "1" + "}" * 256, "nested"),
    "nesting 70 deep": ("[" * 70 + "]" * 70, "nested"),
    "NaN": ("NaN", "NaN"),
    "Infinity": ("Infinity", "Infinity"),
    "-Infinity": ("-Infinity", "Infinity"),
    "1e400": ("1e400", "too large"),
    "-1e400": ("-1e400", "too large"),
}

BAD_HOSTS = {
    "empty label": ("https://a..b/", "empty label"),
    "leading dot": ("https://.hooks.example.com/x", "empty label"),
    "label of 64": (f"https://{'a' * 64}.example.com/", "63"),
    "name of 254": (f"https://{('a' * 62 + '.') * 4}b.com/", "253"),
    "bad A-label": ("https://xn--zz.example.com/", "IDNA"),
    "percent in host": ("https://%61.example.com/", "IDNA"),
}


JSON_TYPE = {"Content-Type": "application/json"}


@dataclass
class Live:
    url: str
    key: str
    receiver: Receiver
    hook: dict[str, Any]
    app: Any

    def client(self) -> httpx.Client:
        """One keep-alive connection: every request of a test reuses it."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.key}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=10,
        )


def local_port(response: httpx.Response) -> int:
    """The client side port of the connection that carried `response`."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory, ca_bundle_path, _leaf_certs) -> Iterator[Live]:
    config = delivery_settings(tmp_path_factory.mktemp("hostile"), ca_bundle_path)
    db = Database(config.database_url)
    _, key = create_key(db, tenant="Cust1234", associate_id=5, name="hostile")
    app = create_app(config, db=db)

    @app.get("/api/v1/hostile-test/boom", include_in_schema=False)
    async def boom() -> None:  # a handler with a bug: any unexpected exception
        raise RuntimeError("a bug in a handler")

    receiver = Receiver(_leaf_certs["valid"]).start()
    try:
        with ServerThread(app) as server:
            carrier = {
                "Name": "hostile",
                "Events": ["contact.changed"],
                "TargetUrl": receiver.url,
                "Secret": "Something Super Secret",
                "Headers": {"X-Tenant": "one"},
            }
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as setup:
                created = setup.post(f"{server.url}/api/v1/Webhook", json=carrier)
            assert created.status_code == 200, created.text
            yield Live(server.url, key, receiver, created.json(), app)
    finally:
        receiver.stop()
        db.close()


def _carrier(live: Live, **fields: Any) -> bytes:
    hook = live.hook
    body = {k: hook[k] for k in ("Name", "Events", "TargetUrl", "Secret", "State", "Headers")}
    return orjson.dumps({**body, **fields})


def _with_value(template: bytes, value: str) -> bytes:
    return template.replace(b'"@VALUE@"', value.encode())


@dataclass
class Sent:
    """A request that must be refused, and how to send it."""

    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


def _webhook_sends(live: Live, body: bytes, patch: bytes, what: str) -> dict[str, Sent]:
    hook_id = live.hook["WebhookId"]
    return {
        f"POST {what}": Sent("POST", "/api/v1/Webhook", body),
        f"PUT {what}": Sent("PUT", f"/api/v1/Webhook/{hook_id}", body),
        f"PATCH (merge) {what}": Sent(
            "PATCH", f"/api/v1/Webhook/{hook_id}", patch, "application/merge-patch+json"
        ),
        f"SaveWebhook create {what}": Sent("POST", "/api/v1/Agents/Webhook/SaveWebhook", body),
        f"SaveWebhook update {what}": Sent(
            "POST",
            "/api/v1/Agents/Webhook/SaveWebhook",
            body.replace(b"{", b'{"WebhookId":%d,' % hook_id, 1),
        ),
    }


def _refused(client: httpx.Client, sent: Sent, fragment: str) -> httpx.Response:
    response = client.request(
        sent.method, sent.path, content=sent.body, headers={"Content-Type": sent.content_type}
    )
    assert_error(response, 400, "ValidationError", fragment)
    assert response.headers.get("connection", "").lower() != "close"
    return response


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_json_the_store_cannot_take_is_refused_on_every_webhook_route(live: Live, case) -> None:
    value, fragment = BAD_VALUES[case]
    template = _carrier(live, Headers={"X-A": "@VALUE@"})
    patch = b'{"Headers": {"X-A": "@VALUE@"}}'
    sends = _webhook_sends(live, _with_value(template, value), _with_value(patch, value), case)
    hook_id = live.hook["WebhookId"]
    with live.client() as client:
        before = client.get("/api/v1/Webhook")
        assert before.status_code == 200
        for sent in sends.values():
            refused = _refused(client, sent, fragment)
            after = client.get("/api/v1/Webhook")
            # nothing created nor changed, on the same connection
            assert after.json() == before.json(), sent
            assert local_port(refused) == local_port(after) == local_port(before), sent
        assert client.get(f"/api/v1/Webhook/{hook_id}").json()["Headers"] == {"X-Tenant": "one"}


@pytest.mark.parametrize("case", list(BAD_HOSTS))
def test_target_url_hosts_that_are_not_dns_names_are_refused(live: Live, case) -> None:
    url, fragment = BAD_HOSTS[case]
    body = _carrier(live, TargetUrl=url)  # Active: a bad host must not reach verification
    patch = orjson.dumps({"TargetUrl": url})
    sends = _webhook_sends(live, body, patch, case)
    hook_id = live.hook["WebhookId"]
    sends["PATCH (JSON Patch)"] = Sent(
        "PATCH",
        f"/api/v1/Webhook/{hook_id}",
        orjson.dumps([{"op": "replace", "path": "/TargetUrl", "value": url}]),
        "application/json-patch+json",
    )
    tests_before = _test_posts(live.receiver)
    with live.client() as client:
        for path in ("/api/v1/Agents/Webhook/TestWebhook", "/api/v1/Webhook/Test"):
            # the test routes answer a failed test as {"Success": false} (§2), sending nothing
            tested = client.post(path, content=body, headers=JSON_TYPE)
            assert tested.status_code == 200, tested.text
            assert tested.json()["Success"] is False
            assert fragment.lower() in tested.json()["Message"].lower()
        before = client.get("/api/v1/Webhook")
        for sent in sends.values():
            refused = _refused(client, sent, fragment)
            assert "TargetUrl" in refused.json()["ErrorMessage"]
            after = client.get("/api/v1/Webhook")
            assert after.json() == before.json(), sent
            assert local_port(refused) == local_port(after) == local_port(before), sent
    assert _test_posts(live.receiver) == tests_before  # no verification nor test POST


def _test_posts(receiver: Receiver) -> int:
    return sum(1 for r in receiver.requests if r.header("X-Hook-Test") is not None)


_next_key = iter(range(1000, 10**6))


@pytest.mark.parametrize("route", ["REST", "Agents"])
@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_signal_data_the_store_cannot_take_is_refused(live: Live, case, route) -> None:
    """Nothing is stored or delivered for the refused signal; the next signal, on the same
    connection, is delivered, and it is the only new delivery."""
    value, fragment = BAD_VALUES[case]
    bad_key, good_key = next(_next_key), next(_next_key)
    if route == "REST":
        bad = Sent("POST", f"/api/v1/Webhook/contact.changed/{bad_key}", b'{"name": "@VALUE@"}')
        good = Sent("POST", f"/api/v1/Webhook/contact.changed/{good_key}", b'{"name": "Ada"}')
    else:
        agents = b'{"EventName": "contact.changed", "PrimaryKey": %d, "Data": {"name": "@VALUE@"}}'
        bad = Sent("POST", "/api/v1/Agents/Webhook/SignalEvent", agents % bad_key)
        good = Sent("POST", "/api/v1/Agents/Webhook/SignalEvent", agents % good_key)
        good.body = good.body.replace(b'"@VALUE@"', b'"Ada"')
    bad.body = _with_value(bad.body, value)
    hook_id = live.hook["WebhookId"]
    with live.client() as client:
        before = client.get(f"/api/v1/Webhook/{hook_id}/Usage")
        refused = _refused(client, bad, fragment)
        signalled = client.post(good.path, content=good.body, headers=JSON_TYPE)
        assert signalled.status_code == 204, signalled.text
        assert local_port(before) == local_port(refused) == local_port(signalled)
    deadline = time.monotonic() + 10
    while good_key not in _delivered_keys(live.receiver):
        assert time.monotonic() < deadline, "the good signal was not delivered"
        time.sleep(0.02)
    assert bad_key not in _delivered_keys(live.receiver)


def _delivered_keys(receiver: Receiver) -> set[int]:
    return {
        orjson.loads(r.body)["PrimaryKey"]
        for r in receiver.requests
        if r.header("X-Hook-Test") is None and r.body
    }


def test_an_unexpected_exception_is_a_500_with_one_log_line_and_the_connection_stays(
    live: Live, caplog
) -> None:
    caplog.set_level(logging.INFO)
    with live.client() as client:
        first = client.get("/api/v1/Webhook")
        caplog.clear()
        failed = client.get("/api/v1/hostile-test/boom")
        assert_error(failed, 500, "InternalError", "log")
        then = client.get("/api/v1/Webhook")
        assert then.status_code == 200
        assert local_port(first) == local_port(failed) == local_port(then)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "/api/v1/hostile-test/boom" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "a bug in a handler" in str(errors[0].exc_info[1])


def test_a_burst_of_500s_and_400s_breaks_no_good_request(live: Live) -> None:
    """The issue's burst: bad requests among good ones on a few keep-alive connections;
    every good request is answered, each client on the one connection it opened."""
    bad = [
        Sent("GET", "/api/v1/hostile-test/boom", b""),
        Sent("POST", "/api/v1/Webhook/contact.changed/1", b'{"a": "\\ud800"}'),
        Sent(
            "PUT",
            f"/api/v1/Webhook/{live.hook['WebhookId']}",
            _carrier(live, TargetUrl="https://a..b/"),
        ),
    ]
    failures: list[str] = []
    ports: list[set[int]] = []

    def run(worker: int) -> None:
        seen: set[int] = set()
        try:
            with live.client() as client:
                for i in range(30):
                    sent = bad[(i + worker) % len(bad)]
                    answer = client.request(
                        sent.method, sent.path, content=sent.body or None, headers=JSON_TYPE
                    )
                    if answer.status_code not in (400, 500):
                        failures.append(f"bad request answered {answer.status_code}")
                    good = client.get("/api/v1/Webhook/default")
                    if good.status_code != 200:
                        failures.append(f"good request answered {good.status_code}")
                    seen |= {local_port(answer), local_port(good)}
        except httpx.HTTPError as exc:
            failures.append(f"connection failed: {exc!r}")
        ports.append(seen)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:5]
    assert [len(p) for p in ports] == [1, 1, 1]
