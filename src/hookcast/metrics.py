"""Prometheus metrics served at /metrics (docs/observability.md lists them all).

Counted as things happen: attempts by outcome and failures by error kind, attempt latency,
signal-to-delivery latency, signals; attempts and signals by tenant under a bounded set of
labels (`TopTenants`). Read when scraped: deliveries by status and pending deliveries by
when they are due (from the database), webhooks by state, and what this process's
dispatcher holds (`StoreCollector`, filled by api/metrics.py).

The attempt metrics are updated once per written batch of outcomes (`record_attempts`,
after its commit), so a scrape never counts an outcome that a failed commit then drops.
"""

from __future__ import annotations

import heapq
import math
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .dispatch.policy import Attempted

__all__ = ["TopTenants", "record_attempts", "registry", "signalled", "tenants"]

OTHER = "other"


class TopTenants:
    """Label values for per-tenant series, bounded: at most `limit` tenants by name, every
    other tenant as "other".

    `label(tenant, n)` counts `n` for the tenant and answers its label. While fewer than
    `limit` tenants are labelled, a new one is at once. `rerank()` (when scraped, at most
    once per `interval`) makes the labelled set the `limit` tenants counted most lately
    (counts halve at every rerank, so yesterday's busiest tenant gives way) and answers the
    tenants that lost their label, whose series are then removed. A tenant's series counts
    only while it is labelled and "other" only the rest, so every series only grows. The
    counts kept for ranking are bounded too (`capacity`: the busier half is kept when full).
    A tenant named "other" shares the series of the rest."""

    def __init__(self, limit: int = 20, *, capacity: int = 10_000, interval: float = 60.0) -> None:
        self.limit = limit
        self.capacity = max(capacity, 2 * limit)
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._labelled: set[str] = set()
        self._ranked_at = float("-inf")
        self._lock = threading.Lock()  # hubs on other threads' loops share the metrics

    @property
    def labelled(self) -> frozenset[str]:
        return frozenset(self._labelled)

    def label(self, tenant: str, n: int = 1) -> str:
        with self._lock:
            counts = self._counts
            counts[tenant] = counts.get(tenant, 0) + n
            if len(counts) > self.capacity:
                kept = heapq.nlargest(self.capacity // 2, counts.items(), key=itemgetter(1))
                self._counts = dict(kept)
            if tenant in self._labelled:
                return tenant
            if len(self._labelled) < self.limit:
                self._labelled.add(tenant)
                return tenant
            return OTHER

    def rerank(self, now: float, *, force: bool = False) -> list[str]:
        """Relabel (see the class); answers the tenants that lost their label."""
        with self._lock:
            if not force and now - self._ranked_at < self.interval:
                return []
            self._ranked_at = now
            top = heapq.nlargest(self.limit, self._counts.items(), key=itemgetter(1))
            labelled = {tenant for tenant, count in top if count > 0}
            dropped = sorted(self._labelled - labelled)
            self._labelled = labelled
            self._counts = {t: c // 2 for t, c in self._counts.items() if c // 2 > 0}
            return dropped


class BatchHistogram(Collector):
    """A Prometheus histogram observed a batch at a time: one lock and a bisection per
    value, where prometheus_client's Histogram takes a lock per value and bucket (the hot
    path observes two values per attempt)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = [*sorted(buckets), math.inf]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, values: Iterable[float]) -> None:
        bounds, counts = self._bounds, self._counts
        with self._lock:
            for value in values:
                counts[bisect_left(bounds, value)] += 1
                self._sum += value

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip(self._bounds, counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
        return [
            HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)
        ]


registry = CollectorRegistry()
tenants = TopTenants()

ATTEMPTS = Counter(
    "hookcast_attempts",
    "Delivery attempts by outcome (success or failure).",
    ["outcome"],
    registry=registry,
)
FAILURES = Counter(
    "hookcast_attempt_failures",
    "Failed delivery attempts by error kind (status, timeout, network, refused, script, plugin).",
    ["kind"],
    registry=registry,
)
LATENCY = BatchHistogram(
    "hookcast_attempt_latency_seconds",
    "Time from sending an attempt to its answer.",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_LATENCY = BatchHistogram(
    "hookcast_delivery_latency_seconds",
    "Time from signal() storing an event to a successful answer to its delivery, "
    "retries included (clocks of the signalling and the delivering process).",
    (
        *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        *(60, 120, 300, 600, 1800, 3600, 7200),
    ),
)
registry.register(LATENCY)
registry.register(DELIVERY_LATENCY)
SIGNALS = Counter("hookcast_events_signalled", "Events committed by signal().", registry=registry)
TENANT_SIGNALS = Counter(
    "hookcast_tenant_events_signalled",
    "Events committed by signal(), by tenant (the busiest tenants by name, the rest as other).",
    ["tenant"],
    registry=registry,
)
TENANT_ATTEMPTS = Counter(
    "hookcast_tenant_attempts",
    "Delivery attempts by tenant (the busiest tenants by name, the rest as other) and outcome.",
    ["tenant", "outcome"],
    registry=registry,
)
_OUTCOMES = ("success", "failure")


def signalled(names: Sequence[str]) -> None:
    """Events were committed by signal() in this process: their tenants, one per event."""
    SIGNALS.inc(len(names))
    for tenant, n in Tally(names).items():
        TENANT_SIGNALS.labels(tenants.label(tenant, n)).inc(n)


def record_attempts(results: Sequence[Attempted]) -> None:
    """A written batch of attempts (after its commit)."""
    latencies, delivered, succeeded, failed, kinds = [], [], [], [], []
    for claimed, outcome, at in results:
        seconds = outcome.latency_ms / 1000
        latencies.append(seconds)
        if outcome.ok:
            succeeded.append(claimed.tenant)
            if claimed.signalled_at:
                delivered.append(max(0.0, at + seconds - claimed.signalled_at))
        else:
            failed.append(claimed.tenant)
            kinds.append(outcome.kind or "plugin")
    LATENCY.observe(latencies)
    if delivered:
        DELIVERY_LATENCY.observe(delivered)
    for outcome_name, names in (("success", succeeded), ("failure", failed)):
        if names:
            ATTEMPTS.labels(outcome_name).inc(len(names))
            for tenant, n in Tally(names).items():
                TENANT_ATTEMPTS.labels(tenants.label(tenant, n), outcome_name).inc(n)
    for kind, n in Tally(kinds).items():
        FAILURES.labels(str(kind)).inc(n)


def rerank_tenants(now: float, *, force: bool = False) -> None:
    """Relabel tenants (TopTenants.rerank) and remove the series of those that lost theirs."""
    for tenant in tenants.rerank(now, force=force):
        for metric, labels in (
            (TENANT_SIGNALS, [(tenant,)]),
            (TENANT_ATTEMPTS, [(tenant, o) for o in _OUTCOMES]),
        ):
            for values in labels:
                try:
                    metric.remove(*values)
                except KeyError:
                    pass  # never counted under that label


class StoreCollector(Collector):
    """Deliveries by status and pending ones by when they are due, webhooks by state, and
    what this process's dispatcher holds: a snapshot the /metrics route refreshes."""

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}
        self.queued: dict[str, int] = {}
        self.states: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = []
        for name, documentation, label, values in (
            ("hookcast_deliveries", "Deliveries by status.", "status", self.depth),
            (
                "hookcast_deliveries_queued",
                "Pending deliveries by when they are due: due (now), scheduled (later: a "
                "retry's wait, or leased to an attempt in flight), parked (a stuck webhook's "
                "backlog).",
                "state",
                self.queued,
            ),
            ("hookcast_webhooks", "Webhooks by state.", "state", self.states),
            (
                "hookcast_deliveries_in_flight",
                "This process's deliveries: running (an attempt in flight), held (leased, "
                "waiting for a slot of its webhook or receiver), writing (attempted, outcome "
                "not yet committed).",
                "state",
                self.in_flight,
            ),
        ):
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for value, count in values.items():
                family.add_metric([value], count)
            families.append(family)
        return families


store_snapshot = StoreCollector()
registry.register(store_snapshot)
