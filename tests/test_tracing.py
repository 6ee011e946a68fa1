"""Issue 17, tracing: spans from signal() through the intake commit to every attempt, the
trace context stored with the event for attempts made later or elsewhere, the W3C
traceparent a real HTTPS receiver gets, and OTLP export configured by OTEL_* variables."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from api_support import Api, running_api
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from support.engine import delivery_settings
from support.processes import HookcastProcess, create_key
from support.receivers import Receiver

from hookcast import tracing
from hookcast.hub import Hub
from hookcast.settings import Settings

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """hookcast's spans, kept in memory (its own provider: the global one stays unset)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.set_tracer_provider(None)
        provider.shutdown()


def wait_until(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


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


def _traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def test_a_rest_signal_traces_through_the_commit_to_every_attempt(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    settings = _api_settings(tmp_path, ca_bundle_path, tracing=True, propagate_trace=True)
    with running_api(tmp_path, **settings) as api:
        hook_id = _register(api, receiver.url)
        receiver.respond(statuses=(503,))  # the first attempt fails, its retry succeeds
        answer = api.post(
            "/api/v1/Webhook/contact.changed/994863",
            json={"name": "Ada"},
            headers={"traceparent": TRACEPARENT},
        )
        assert answer.status_code == 204, answer.text
        wait_until(lambda: len(_named(spans, "hookcast.attempt")) == 2, what="2 attempt spans")
    (signal_span,) = _named(spans, "hookcast.signal")
    (commit,) = _named(spans, "hookcast.intake.commit")
    failed, delivered = sorted(_named(spans, "hookcast.attempt"), key=lambda s: s.start_time or 0)
    # the caller's trace (its traceparent header) -> signal -> commit, attempts
    assert signal_span.context.trace_id == TRACE_ID
    assert signal_span.parent is not None and signal_span.parent.span_id == PARENT_ID
    assert signal_span.kind is SpanKind.PRODUCER
    assert signal_span.attributes["hookcast.event"] == "contact.changed"
    for child in (commit, failed, delivered):
        assert child.context.trace_id == TRACE_ID
        assert child.parent is not None
        assert child.parent.span_id == signal_span.context.span_id
    assert commit.attributes["hookcast.batch.size"] == 1
    # what the receiver got: each attempt names its own span as the parent
    sent = _deliveries(receiver)
    assert [r.header("traceparent") for r in sent] == [
        _traceparent(failed),
        _traceparent(delivered),
    ]
    body = orjson.loads(sent[-1].body)
    for span in (failed, delivered):
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["hookcast.webhook.id"] == hook_id
        assert span.attributes["hookcast.event_id"] == body["EventId"]
        assert span.attributes["hookcast.message_id"] == sent[0].header("webhook-id")
        assert span.attributes["server.address"] == "127.0.0.1"
    assert (failed.attributes["hookcast.attempt"], delivered.attributes["hookcast.attempt"]) == (
        0,
        1,
    )
    assert failed.attributes["http.response.status_code"] == 503
    assert failed.attributes["error.type"] == "status"
    assert failed.status.status_code is StatusCode.ERROR
    assert delivered.attributes["http.response.status_code"] == 200
    assert delivered.status.status_code is not StatusCode.ERROR


def test_a_signal_from_python_is_delivered_elsewhere_in_its_trace(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    """The signalling hub only stores (deliver=False); the API's dispatcher claims the
    delivery from the database: the trace context went with the event."""
    settings = _api_settings(tmp_path, ca_bundle_path, tracing=True, propagate_trace=True)
    with running_api(tmp_path, **settings) as api:
        _register(api, receiver.url)
        app_tracer = trace.get_tracer("app", tracer_provider=tracing._provider)

        async def signal_from_the_application() -> None:
            store_only = Settings(**{**settings, "database_url": api.settings.database_url})
            async with Hub(store_only, deliver=False) as hub:
                with app_tracer.start_as_current_span("app.save_contact"):
                    await hub.signal("contact.changed", 7, tenant="Cust1234", changes=["name"])

        asyncio.run(signal_from_the_application())
        wait_until(lambda: _named(spans, "hookcast.attempt"), what="the attempt span")
    (app_span,) = _named(spans, "app.save_contact")
    (signal_span,) = _named(spans, "hookcast.signal")
    (attempt,) = _named(spans, "hookcast.attempt")
    assert signal_span.parent is not None
    assert signal_span.parent.span_id == app_span.context.span_id
    assert attempt.context.trace_id == app_span.context.trace_id
    assert attempt.parent is not None and attempt.parent.span_id == signal_span.context.span_id
    assert _deliveries(receiver)[0].header("traceparent") == _traceparent(attempt)


def test_propagation_alone_sends_the_signalling_codes_traceparent(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    settings = _api_settings(tmp_path, ca_bundle_path, propagate_trace=True)
    with running_api(tmp_path, **settings) as api:
        hook = api.post(
            "/api/v1/Webhook",
            json={
                "Name": "h",
                "Events": ["contact.changed", "contact.created"],
                "TargetUrl": receiver.url,
            },
        )
        assert hook.status_code == 200, hook.text
        api.post("/api/v1/Webhook/contact.changed/1", headers={"traceparent": TRACEPARENT})
        api.post("/api/v1/Webhook/contact.created/2")  # no trace: no header
        sent = wait_until(lambda: len(_deliveries(receiver)) == 2 and _deliveries(receiver))
    by_event = {r.header("X-SuperOffice-Event"): r for r in sent}
    assert by_event["contact.changed"].header("traceparent") == TRACEPARENT
    assert by_event["contact.created"].header("traceparent") is None
    assert spans.get_finished_spans() == ()  # no tracing: no spans


def test_off_by_default_nothing_is_traced_or_stored(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    assert tracing.from_settings(Settings()) is None
    with running_api(tmp_path, **_api_settings(tmp_path, ca_bundle_path)) as api:
        assert api.client.app.state.hub.tracing is None  # type: ignore[attr-defined]
        _register(api, receiver.url)
        api.post("/api/v1/Webhook/contact.changed/1", headers={"traceparent": TRACEPARENT})
        (sent,) = wait_until(lambda: _deliveries(receiver))
        stored = api.db.run_sync(
            lambda c: (
                c.execute(text("SELECT traceparent FROM events WHERE name = 'contact.changed'"))
                .scalars()
                .all()
            )
        )
    assert sent.header("traceparent") is None
    assert stored == [None]
    assert spans.get_finished_spans() == ()


def test_custom_headers_keep_their_own_traceparent(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    settings = _api_settings(tmp_path, ca_bundle_path, propagate_trace=True)
    own = f"00-{'1' * 32}-{'2' * 16}-00"
    with running_api(tmp_path, **settings) as api:
        answer = api.post(
            "/api/v1/Webhook",
            json={
                "Name": "h",
                "Events": ["contact.changed"],
                "TargetUrl": receiver.url,
                "Headers": {"TraceParent": own},
            },
        )
        assert answer.status_code == 200, answer.text
        api.post("/api/v1/Webhook/contact.changed/1", headers={"traceparent": TRACEPARENT})
        (sent,) = wait_until(lambda: _deliveries(receiver))
    assert [v for k, v in sent.headers if k.lower() == "traceparent"] == [own]


def test_stored_traceparents_are_read_strictly() -> None:
    parsed = tracing.parse_traceparent(TRACEPARENT)
    assert parsed is not None and (parsed.trace_id, parsed.span_id) == (TRACE_ID, PARENT_ID)
    assert tracing.format_traceparent(parsed) == TRACEPARENT
    for bad in (
        None,
        "",
        "01-" + TRACEPARENT[3:],
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{'1' * 16}-01",
    ):
        assert tracing.parse_traceparent(bad) is None, bad


# ----- OTLP export configured by OTEL_* variables, from a real `hookcast serve` ---------------


class Collector:
    """An OTLP/HTTP trace collector on 127.0.0.1 (POST /v1/traces, protobuf): the spans'
    names, trace ids and parents as received."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "service": service.get("service.name"),
                        }
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Collector:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.mark.slow
def test_serve_exports_its_spans_over_otlp(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, processes: dict[str, HookcastProcess]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    with Collector() as collector:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("HOOKCAST_", "OTEL_"))},
            "HOOKCAST_DATABASE_URL": db_url,
            "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
            "HOOKCAST_CA_BUNDLE": ca_bundle_path,
            "HOOKCAST_TRACING": "true",
            "HOOKCAST_PROPAGATE_TRACE": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_SERVICE_NAME": "hookcast-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms between exports
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
        signalled = httpx.post(
            f"{serve.url}/api/v1/Webhook/contact.changed/5",
            headers={**auth, "traceparent": TRACEPARENT},
        )
        assert signalled.status_code == 204
        names = {"hookcast.signal", "hookcast.intake.commit", "hookcast.attempt"}
        wait_until(
            lambda: names <= {s["name"] for s in collector.spans}, timeout=20, what="the spans"
        )
        serve.stop_or_kill(signal.SIGTERM, 30)
    ours = {s["name"]: s for s in collector.spans if s["name"] in names}
    assert {s["trace_id"] for s in ours.values()} == {f"{TRACE_ID:032x}"}
    # The caller's span is the signal's parent, or (FastAPI's own request span between them,
    # with its telemetry) its grandparent.
    by_id = {s["span_id"]: s for s in collector.spans}
    parent = ours["hookcast.signal"]["parent"]
    while parent in by_id:
        parent = by_id[parent]["parent"]
    assert parent == f"{PARENT_ID:016x}"
    assert ours["hookcast.attempt"]["parent"] == ours["hookcast.signal"]["span_id"]
    assert ours["hookcast.intake.commit"]["parent"] == ours["hookcast.signal"]["span_id"]
    assert {s["service"] for s in ours.values()} == {"hookcast-test"}
    (sent,) = _deliveries(receiver)
    attempt = ours["hookcast.attempt"]
    assert sent.header("traceparent") == f"00-{attempt['trace_id']}-{attempt['span_id']}-01"
    # (sampled: the caller's flags, 01)


# ----- without OpenTelemetry --------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_hub_without_tracing_does_not_import_opentelemetry() -> None:
    result = _python(
        "import sys\n"
        "from hookcast.hub import Hub\n"
        "from hookcast.settings import Settings\n"
        "Hub(Settings(database_url='sqlite:///:memory:'))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tracing_without_the_extra_says_how_to_install_it() -> None:
    result = _python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "from hookcast.hub import Hub\n"
        "from hookcast.settings import Settings\n"
        "from hookcast.tracing import TracingUnavailable\n"
        "try:\n"
        "    Hub(Settings(database_url='sqlite:///:memory:', tracing=True))\n"
        "except TracingUnavailable as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'hookcast[otel]'" in result.stdout
