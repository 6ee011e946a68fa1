"""Issue 17, logs: one line per delivery attempt and per API request, in text and in JSON,
and uvicorn's own lines through the same formatter in a real `hookcast serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from api_support import Api, running_api
from support.engine import delivery_settings
from support.logcapture import captured_logs, parse_logfmt
from support.processes import HookcastProcess, create_key
from support.receivers import Receiver

from hookcast import logs
from hookcast.api.access import AccessLog
from hookcast.store import queries


def wait_until(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def _api_settings(tmp_path: Path, ca_bundle_path: str, **overrides: Any) -> dict[str, Any]:
    settings = delivery_settings(tmp_path, ca_bundle_path, **overrides)
    return {k: v for k, v in settings.model_dump().items() if k != "database_url"}


def _register(api: Api, url: str) -> int:
    answer = api.post(
        "/api/v1/Webhook",
        json={"Name": "h", "Events": ["contact.changed"], "TargetUrl": url, "Secret": "s3cret"},
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["WebhookId"])


def _deliveries(receiver: Receiver) -> list[Any]:
    return [r for r in receiver.requests if r.header("X-Hook-Test") is None]


# ----- the line format ----------------------------------------------------------------------


def _record(msg: object) -> logging.LogRecord:
    return logging.LogRecord("hookcast.attempts", logging.INFO, __file__, 1, msg, None, None)


def test_lines_are_logfmt_in_text_and_one_object_per_row_in_json() -> None:
    rows = [
        {"webhook": 3, "tenant": "Cust 1", "status": None, "latency_ms": 12.345, "x": 'a"b'},
        {"webhook": 4, "tenant": "Cust2", "status": 200, "latency_ms": 1.0, "x": "a=b"},
    ]
    record = _record(logs.Lines("attempt", rows))
    text = logs.TextFormatter().format(record).splitlines()
    assert len(text) == 2
    assert all(" INFO hookcast.attempts: attempt " in line for line in text)
    assert text[0].endswith('webhook=3 tenant="Cust 1" status=- latency_ms=12.3 x="a\\"b"')
    assert parse_logfmt(text[1].split(": attempt ", 1)[1]) == {
        "webhook": 4,
        "tenant": "Cust2",
        "status": 200,
        "latency_ms": 1.0,
        "x": "a=b",
    }
    objects = [orjson.loads(line) for line in logs.JsonFormatter().format(record).splitlines()]
    assert [o["webhook"] for o in objects] == [3, 4]
    assert objects[0]["tenant"] == "Cust 1" and objects[0]["status"] is None
    assert {o["logger"] for o in objects} == {"hookcast.attempts"}
    assert {o["message"] for o in objects} == {"attempt"}
    assert objects[0]["time"].endswith("Z") and objects[0]["level"] == "INFO"
    # a plain record: its message, and `extra` fields beside it
    plain = logging.LogRecord("hookcast", logging.WARNING, __file__, 1, "x %s", ("y",), None)
    plain.color_message = "\x1b[1mx\x1b[0m"  # uvicorn's: not a field
    plain.webhook = 7
    entry = orjson.loads(logs.JsonFormatter().format(plain))
    assert (entry["message"], entry["webhook"], "color_message" in entry) == ("x y", 7, False)


# ----- attempts and requests through the API ---------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_line_per_attempt_and_per_request(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, fmt: str
) -> None:
    with (
        captured_logs(logging.INFO) as captured,
        running_api(tmp_path, **_api_settings(tmp_path, ca_bundle_path)) as api,
    ):
        key_id = api.db.run_sync(lambda c: queries.list_keys(c, "Cust1234"))[0].id
        hook_id = _register(api, receiver.url)
        receiver.respond(statuses=(500,))  # the first attempt fails, its retry succeeds
        signalled = api.post("/api/v1/Webhook/contact.changed/994863", json={"name": "Ada"})
        assert signalled.status_code == 204, signalled.text
        wait_until(lambda: len(captured.lines(fmt, "hookcast.attempts")) >= 2, what="2 lines")
    failed, delivered = captured.lines(fmt, "hookcast.attempts")
    sent = _deliveries(receiver)
    assert len(sent) == 2
    body = orjson.loads(sent[-1].body)
    for line in (failed, delivered):
        assert line["message"] == "attempt"
        assert (line["webhook"], line["tenant"], line["event"]) == (
            hook_id,
            "Cust1234",
            "contact.changed",
        )
        assert line["event_id"] == body["EventId"]
        assert line["message_id"] == sent[0].header("webhook-id") == sent[1].header("webhook-id")
        assert line["delivery"] == failed["delivery"] and line["cycle"] == 0
        assert line["latency_ms"] > 0
    assert (failed["attempt"], failed["outcome"], failed["status"]) == (0, "failure", 500)
    assert (failed["error_kind"], failed["error"]) == ("status", "HTTP 500 Internal Server Error")
    assert (delivered["attempt"], delivered["outcome"], delivered["status"]) == (1, "success", 200)
    assert "error" not in delivered and "error_kind" not in delivered

    requests = captured.lines(fmt, "hookcast.access")
    by_path = {(r["method"], r["path"]): r for r in requests}
    created = by_path[("POST", "/api/v1/Webhook")]
    signal_line = by_path[("POST", "/api/v1/Webhook/contact.changed/994863")]
    assert (created["status"], created["key"], created["tenant"]) == (200, key_id, "Cust1234")
    assert (signal_line["status"], signal_line["key"]) == (204, key_id)
    assert all(r["latency_ms"] > 0 and r["client"] for r in requests)
    assert api.key_a not in captured.text(fmt)


def test_unauthenticated_and_refused_requests_are_logged_without_a_key(
    tmp_path: Path, ca_bundle_path: str
) -> None:
    with (
        captured_logs(logging.INFO) as captured,
        running_api(tmp_path, **_api_settings(tmp_path, ca_bundle_path)) as api,
    ):
        bad_key = "hc_" + "x" * 43
        assert (
            api.client.get(
                "/api/v1/Webhook", headers={"Authorization": f"Bearer {bad_key}"}
            ).status_code
            == 401
        )
        assert api.client.get("/no/such/path").status_code == 404
        too_big = api.post("/api/v1/Webhook", content=b"{" + b" " * (2 << 20) + b"}")
        assert too_big.status_code == 413
    lines = {(r["path"], r["status"]): r for r in captured.lines("json", "hookcast.access")}
    assert lines[("/api/v1/Webhook", 401)]["key"] is None
    assert lines[("/no/such/path", 404)]["tenant"] is None
    assert ("/api/v1/Webhook", 413) in lines
    assert bad_key not in captured.text("json") and bad_key not in captured.text("text")


async def test_requests_answered_in_one_turn_of_the_loop_share_one_record() -> None:
    """The access lines of requests answered together are one record (one handler call,
    one write), each its own line; a request answered later gets a record of its own."""
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/late":
            await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    access = AccessLog(app)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    async def request(path: str) -> None:
        scope = {"type": "http", "method": "POST", "path": path, "client": ("127.0.0.1", 9)}
        await access(scope, _no_body, _ignore)

    keep = Keep()
    with captured_logs(logging.INFO) as captured:
        logs.ACCESS.addHandler(keep)
        try:
            together = [asyncio.create_task(request(f"/r/{i}")) for i in range(5)]
            await asyncio.sleep(0)  # all five wait for the release
            release.set()
            await asyncio.gather(*together)
            await asyncio.sleep(0)  # the turn that writes their record
            await request("/late")
            await asyncio.sleep(0)
        finally:
            logs.ACCESS.removeHandler(keep)
    assert [[row["path"] for row in r.msg.rows] for r in records] == [  # type: ignore[attr-defined]
        [f"/r/{i}" for i in range(5)],
        ["/late"],
    ]
    lines = captured.lines("text", "hookcast.access")
    assert [(line["path"], line["status"]) for line in lines] == [
        *((f"/r/{i}", 204) for i in range(5)),
        ("/late", 204),
    ]


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _ignore(message: Any) -> None:
    pass


def test_attempt_and_access_lines_can_be_turned_off(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    settings = _api_settings(tmp_path, ca_bundle_path, log_attempts=False, log_access=False)
    with captured_logs(logging.INFO) as captured, running_api(tmp_path, **settings) as api:
        hook_id = _register(api, receiver.url)
        api.post("/api/v1/Webhook/contact.changed/1")
        wait_until(
            lambda: api.get(f"/api/v1/Webhook/{hook_id}/Deliveries").json()["Items"],
            what="the written outcome",
        )
    assert captured.lines("json", "hookcast.attempts") == []
    assert captured.lines("json", "hookcast.access") == []


def test_the_attempts_logger_level_turns_the_lines_off(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    attempts = logging.getLogger("hookcast.attempts")
    with captured_logs(logging.INFO) as captured:
        attempts.setLevel(logging.WARNING)
        try:
            with running_api(tmp_path, **_api_settings(tmp_path, ca_bundle_path)) as api:
                hook_id = _register(api, receiver.url)
                api.post("/api/v1/Webhook/contact.changed/1")
                wait_until(
                    lambda: api.get(f"/api/v1/Webhook/{hook_id}/Deliveries").json()["Items"],
                    what="the written outcome",
                )
        finally:
            attempts.setLevel(logging.NOTSET)
    assert captured.lines("text", "hookcast.attempts") == []
    assert captured.lines("text", "hookcast.access")  # the other lines are still there


# ----- a real `hookcast serve` ---------------------------------------------------------------


@pytest.mark.slow
def test_serve_writes_every_line_as_json(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, processes: dict[str, HookcastProcess]
) -> None:
    """uvicorn's own lines (start, stop) too, through hookcast's formatter; its access log is
    replaced by hookcast.access; deliveries have their attempt line."""
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_LOG_FORMAT": "json",
        "HOOKCAST_POLL_INTERVAL": "0.2",
    }
    key = create_key(db_url, tmp_path, "Cust1234", "tony")
    serve = processes["serve"] = HookcastProcess.serve(tmp_path, env, "serve")
    serve.wait_ready(key, deadline=60)
    auth = {"Authorization": f"Bearer {key}"}
    created = httpx.post(
        f"{serve.url}/api/v1/Webhook",
        headers=auth,
        json={"Name": "h", "Events": ["contact.changed"], "TargetUrl": receiver.url},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    assert (
        httpx.post(f"{serve.url}/api/v1/Webhook/contact.changed/5", headers=auth).status_code == 204
    )
    wait_until(lambda: _deliveries(receiver), what="the delivery")
    wait_until(lambda: '"hookcast.attempts"' in serve.log.read_text(), what="the attempt line")
    serve.stop_or_kill(signal.SIGTERM, 30)  # uvicorn exits by the signal once it has stopped
    entries = [orjson.loads(line) for line in serve.log.read_text().splitlines()]  # all JSON
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_logger.setdefault(entry["logger"], []).append(entry)
    messages = [e["message"] for e in by_logger["uvicorn.error"]]
    assert any(m.startswith("Started server process") for m in messages), messages
    assert "Application startup complete." in messages
    assert any(m.startswith("Finished server process") for m in messages), messages
    assert "uvicorn.access" not in by_logger
    access = {(e["method"], e["path"]): e for e in by_logger["hookcast.access"]}
    assert access[("POST", "/api/v1/Webhook/contact.changed/5")]["status"] == 204
    (attempt,) = by_logger["hookcast.attempts"]
    assert (attempt["event"], attempt["status"], attempt["outcome"]) == (
        "contact.changed",
        200,
        "success",
    )
    assert key not in serve.log.read_text()
