"""OpenTelemetry tracing of events and their deliveries (the `otel` extra); see
docs/observability.md.

With `HOOKCAST_TRACING` a trace runs from `signal()` (span `hookcast.signal`, a child of
the signalling code's current span or, over REST, of the request's `traceparent`) through
the commit that stored the event (`hookcast.intake.commit`) to every attempt of every
delivery (`hookcast.attempt`). Attempts run later, in another task or process, so the
signal's W3C traceparent is stored with the event (events.traceparent) and each attempt
takes its parent from there. With `HOOKCAST_PROPAGATE_TRACE` deliveries carry a
`traceparent` header: the attempt's span when tracing, else the signalling code's context as
it was at signal time.

Off (the default), a Hub has no Tracing (None) and nothing here is imported: the hot path
pays one `is None` check per signal, commit and attempt. Spans go to the global tracer
provider; when none is set, `install_provider` sets the SDK's with the exporter the
standard OTEL_* variables name (OTLP over http/protobuf by default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._version import __version__
from .errors import HookcastError
from .logs import redact

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from .outcome import AttemptOutcome
    from .settings import Settings
    from .store.rows import Claimed, NewEvent

__all__ = [
    "Tracing",
    "TracingUnavailable",
    "flush",
    "format_traceparent",
    "from_settings",
    "install_provider",
    "outgoing_traceparent",
    "parse_traceparent",
    "set_tracer_provider",
]

INSTALL = "pip install 'hookcast[otel]'"
# Version 00 of W3C Trace Context: version-trace_id-parent_id-flags, lower-case hex.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# The attempt span of the running attempt task: what its delivery's traceparent names.
_ATTEMPT: ContextVar[Span | None] = ContextVar("hookcast_attempt_span", default=None)
_provider: TracerProvider | None = None  # set_tracer_provider
_installed: TracerProvider | None = None  # install_provider


class TracingUnavailable(HookcastError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def set_tracer_provider(provider: TracerProvider | None) -> None:
    """Give hookcast's spans to `provider` instead of the global one (None: the global
    again). For applications, and tests, that keep hookcast's spans apart; it applies to
    hubs started afterwards."""
    global _provider
    _provider = provider


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(text: str | None) -> SpanContext | None:
    """The remote span context a stored traceparent names; None if none or malformed."""
    if not text or not (m := _TRACEPARENT.fullmatch(text)):
        return None
    from opentelemetry.trace import SpanContext, TraceFlags

    context = SpanContext(
        int(m.group(1), 16), int(m.group(2), 16), True, TraceFlags(int(m.group(3), 16))
    )
    return context if context.is_valid else None


def _parent(traceparent: str | None) -> Context:
    """The context a span made from a stored traceparent starts in: none stored, a root
    span (not a child of whatever context the task happens to carry)."""
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    remote = parse_traceparent(traceparent)
    return set_span_in_context(NonRecordingSpan(remote), Context()) if remote else Context()


class Tracing:
    """What a Hub does for traces; made by `from_settings` only when tracing or trace
    propagation is on. `tracer` is None with propagation alone: no spans, only the
    signalling code's traceparent carried from signal() to the deliveries' headers."""

    def __init__(self, tracer: Tracer | None, *, propagate: bool) -> None:
        self.tracer = tracer
        self.propagate = propagate

    # ----- signal and intake ------------------------------------------------------------------

    @staticmethod
    def current_traceparent() -> str | None:
        """The traceparent of the caller's current span; None when it has none."""
        from opentelemetry.trace import get_current_span

        context = get_current_span().get_span_context()
        return format_traceparent(context) if context.is_valid else None

    @contextmanager
    def signal(self, events: Sequence[NewEvent]) -> Iterator[str | None]:
        """Around signal() (one span for the events of one call, `signal_many`'s too):
        yields the traceparent to store with them (the signal span's, a child of the
        caller's current span; the caller's own without a tracer)."""
        if self.tracer is None:
            yield self.current_traceparent()
            return
        from opentelemetry.trace import SpanKind

        first = events[0]
        attributes: dict[str, Any] = {
            "hookcast.event": first.name,
            "hookcast.tenant": first.tenant,
            "hookcast.events": len(events),
        }
        if len(events) == 1:
            attributes["hookcast.primary_key"] = first.primary_key
        with self.tracer.start_as_current_span(
            "hookcast.signal", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            context = span.get_span_context()
            yield format_traceparent(context) if context.is_valid else None

    def committed(
        self, events: Sequence[NewEvent], ids: Sequence[int], started_ns: int, ended_ns: int
    ) -> None:
        """The transaction that stored these events (group commit: shared by them all), as
        a child span of each traced signal, timed as it ran."""
        if self.tracer is None:
            return
        for event, event_id in zip(events, ids, strict=True):
            if event.traceparent is None:
                continue
            span = self.tracer.start_span(
                "hookcast.intake.commit",
                context=_parent(event.traceparent),
                start_time=started_ns,
                attributes={"hookcast.event.id": event_id, "hookcast.batch.size": len(events)},
            )
            span.end(end_time=ended_ns)

    # ----- attempts -------------------------------------------------------------------------

    async def attempt(
        self, item: Claimed, deliver: Callable[[Claimed], Awaitable[AttemptOutcome]]
    ) -> AttemptOutcome:
        """`deliver(item)` inside a span that is a child of the signal's (`hookcast.attempt`);
        the span is current meanwhile, so the delivery's traceparent names it."""
        if self.tracer is None:
            return await deliver(item)
        from opentelemetry.trace import SpanKind, Status, StatusCode, use_span

        http = item.webhook_type == "webhook"
        attributes: dict[str, Any] = {
            "hookcast.webhook.id": item.webhook_id,
            "hookcast.webhook.type": item.webhook_type,
            "hookcast.tenant": item.tenant,
            "hookcast.event": item.event,
            "hookcast.event_id": item.event_uuid,
            "hookcast.message_id": item.uid,
            "hookcast.delivery.id": item.delivery_id,
            "hookcast.cycle": item.cycle,
            "hookcast.attempt": item.attempt,
        }
        if http:
            attributes["http.request.method"] = "POST"
            try:  # where it goes, not the whole URL: its path or query may hold a token
                parts = urlsplit(item.target_url)
                attributes["server.address"] = parts.hostname or ""
                attributes["server.port"] = parts.port or 443
            except ValueError:
                pass
        span = self.tracer.start_span(
            "hookcast.attempt",
            context=_parent(item.traceparent),
            kind=SpanKind.CLIENT if http else SpanKind.INTERNAL,
            attributes=attributes,
        )
        token = _ATTEMPT.set(span)
        try:
            with use_span(span, end_on_exit=False):
                outcome = await deliver(item)
        except BaseException:
            span.end()
            raise
        finally:
            _ATTEMPT.reset(token)
        if outcome.status is not None:
            span.set_attribute("http.response.status_code", outcome.status)
        span.set_attribute("hookcast.latency_ms", outcome.latency_ms)
        if not outcome.ok:
            span.set_attribute("error.type", str(outcome.kind or "plugin"))
            span.set_status(Status(StatusCode.ERROR, redact(outcome.error or "failed")))
        span.end()
        return outcome


def outgoing_traceparent(item: Claimed) -> str | None:
    """The traceparent a delivery carries (HOOKCAST_PROPAGATE_TRACE): its attempt span's
    when that is recorded (Tracing.attempt made it the task's), else the one stored at
    signal time."""
    span = _ATTEMPT.get()
    if span is not None and span.is_recording():
        return format_traceparent(span.get_span_context())
    return item.traceparent


def from_settings(settings: Settings) -> Tracing | None:
    """A Hub's Tracing: None when `tracing` and `propagate_trace` are both off."""
    if not (settings.tracing or settings.propagate_trace):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise TracingUnavailable(
            "HOOKCAST_TRACING and HOOKCAST_PROPAGATE_TRACE need OpenTelemetry; "
            f"install it with {INSTALL}, or turn them off."
        ) from None
    tracer = None
    if settings.tracing:
        provider = _provider or install_provider()
        tracer = trace.get_tracer("hookcast", __version__, tracer_provider=provider)
    return Tracing(tracer, propagate=settings.propagate_trace)


def install_provider() -> TracerProvider:
    """The global tracer provider; when nobody has set one (the application, a distro),
    the SDK's, set globally, with the exporter that OTEL_TRACES_EXPORTER names (otlp, the
    default, over OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL: http/protobuf by default, or grpc;
    console; none). Endpoint, headers, sampler, resource and batching come from the other
    standard OTEL_* variables, read by the SDK itself."""
    global _installed
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if _installed is not None or not isinstance(current, trace.ProxyTracerProvider):
        return current
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            "HOOKCAST_TRACING needs the OpenTelemetry SDK when the application sets no "
            f"tracer provider of its own; install it with {INSTALL}."
        ) from None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "hookcast"}))
    provider = TracerProvider(resource=resource)
    if (exporter := _exporter()) is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = provider
    return trace.get_tracer_provider()


def _exporter() -> Any:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingUnavailable(
            f"OTEL_TRACES_EXPORTER={name!r}: hookcast sets up otlp, console or none; for "
            "another exporter, set a tracer provider in the application before the Hub starts."
        )
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        else:
            raise TracingUnavailable(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf or grpc."
            )
    except ImportError:
        raise TracingUnavailable(
            f"The OTLP exporter for {protocol} is not installed; install it with {INSTALL}."
        ) from None
    return OTLPSpanExporter()


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans still batched, if hookcast set up the provider (at a Hub's close)."""
    if _installed is not None:
        _installed.force_flush(int(timeout_s * 1000))  # type: ignore[attr-defined]
