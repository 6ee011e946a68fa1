"""Prometheus metrics served at /metrics: deliveries by outcome, attempt latency, queue
depth and webhooks by state (the last two read from the database when scraped)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .dispatch.policy import Attempted

registry = CollectorRegistry()
ATTEMPTS = Counter(
    "hookcast_attempts",
    "Delivery attempts by outcome (success or failure).",
    ["outcome"],
    registry=registry,
)
LATENCY = Histogram(
    "hookcast_attempt_latency_seconds",
    "Time from sending an attempt to its answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=registry,
)
SIGNALS = Counter("hookcast_events_signalled", "Events committed by signal().", registry=registry)


def record_attempts(results: Sequence[Attempted]) -> None:
    ok = sum(1 for r in results if r.outcome.ok)
    if ok:
        ATTEMPTS.labels("success").inc(ok)
    if len(results) - ok:
        ATTEMPTS.labels("failure").inc(len(results) - ok)
    for r in results:
        LATENCY.observe(r.outcome.latency_ms / 1000)


class StoreCollector(Collector):
    """Queue depth and webhooks by state, from a snapshot the app refreshes on scrape."""

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}
        self.states: dict[str, int] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("hookcast_deliveries", "Deliveries by status.", labels=["status"])
        for status, count in self.depth.items():
            depth.add_metric([status], count)
        states = GaugeMetricFamily("hookcast_webhooks", "Webhooks by state.", labels=["state"])
        for state, count in self.states.items():
            states.add_metric([state], count)
        return [depth, states]


store_snapshot = StoreCollector()
registry.register(store_snapshot)
