"""Issue 17, metrics: latency histograms (attempt, signal to delivery), queued and in-flight
deliveries by state, counters by tenant under bounded labels, on /metrics after real
deliveries."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, running_api
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from support.engine import delivery_settings
from support.receivers import Receiver

from hookcast import metrics
from hookcast.metrics import OTHER, BatchHistogram, TopTenants


def wait_until(check: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: Api) -> Samples:
    answer = api.client.get("/metrics")
    assert answer.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def fresh_tenants(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tenant labels as a new process has them (the metrics are per process, and other tests
    in this one have counted their own tenants)."""
    monkeypatch.setattr(metrics, "tenants", TopTenants())
    yield


def test_metrics_after_real_deliveries(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, fresh_tenants: None
) -> None:
    settings = delivery_settings(tmp_path, ca_bundle_path, retry_delays=[30.0])
    with running_api(
        tmp_path, **{k: v for k, v in settings.model_dump().items() if k != "database_url"}
    ) as api:
        answer = api.post(
            "/api/v1/Webhook",
            json={"Name": "h", "Events": ["contact.changed"], "TargetUrl": receiver.url},
        )
        assert answer.status_code == 200, answer.text
        hook_id = answer.json()["WebhookId"]
        before = scrape(api)
        signalled = time.monotonic()
        for pk in (1, 2):
            assert api.post(f"/api/v1/Webhook/contact.changed/{pk}").status_code == 204
        wait_until(
            lambda: len(api.get(f"/api/v1/Webhook/{hook_id}/Deliveries").json()["Items"]) == 2,
            what="2 written outcomes",
        )
        took = time.monotonic() - signalled
        receiver.respond(status=500)  # the next one fails, and waits 30 s for its retry
        assert api.post("/api/v1/Webhook/contact.changed/3").status_code == 204
        wait_until(
            lambda: len(api.get(f"/api/v1/Webhook/{hook_id}/Deliveries").json()["Items"]) == 3,
            what="the failed outcome",
        )
        after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hookcast_attempts_total", outcome="success") == 2
    assert delta("hookcast_attempts_total", outcome="failure") == 1
    assert delta("hookcast_attempt_failures_total", kind="status") == 1
    # attempt latency: every attempt, each well under the attempt timeout
    assert delta("hookcast_attempt_latency_seconds_count") == 3
    assert 0 < delta("hookcast_attempt_latency_seconds_sum") < 3 * 2.0
    assert delta("hookcast_attempt_latency_seconds_bucket", le="+Inf") == 3
    # signal to delivery: the two delivered, each within what the test waited
    assert delta("hookcast_delivery_latency_seconds_count") == 2
    assert 0 < delta("hookcast_delivery_latency_seconds_sum") <= 2 * took + 0.1
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in after.items()
        if name == "hookcast_delivery_latency_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (math.inf, value(after, "hookcast_delivery_latency_seconds_count"))
    # by tenant: this app's tenant has its own label
    assert delta("hookcast_tenant_events_signalled_total", tenant="Cust1234") == 3
    assert delta("hookcast_tenant_attempts_total", tenant="Cust1234", outcome="success") == 2
    assert delta("hookcast_tenant_attempts_total", tenant="Cust1234", outcome="failure") == 1
    # queued by state: the failed delivery waits for its retry; nothing is due or parked
    assert value(after, "hookcast_deliveries_queued", state="scheduled") == 1
    assert value(after, "hookcast_deliveries_queued", state="due") == 0
    assert value(after, "hookcast_deliveries_queued", state="parked") == 0
    assert value(after, "hookcast_deliveries", status="delivered") == 2
    # this process's dispatcher: nothing in flight once the outcomes are written
    for state in ("running", "held", "writing"):
        assert ("hookcast_deliveries_in_flight", (("state", state),)) in after
        assert value(after, "hookcast_deliveries_in_flight", state=state) == 0


def test_in_flight_shows_an_attempt_waiting_on_its_receiver(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    settings = delivery_settings(tmp_path, ca_bundle_path, attempt_timeout=30.0, lease=60.0)
    with running_api(
        tmp_path, **{k: v for k, v in settings.model_dump().items() if k != "database_url"}
    ) as api:
        answer = api.post(
            "/api/v1/Webhook",
            json={"Name": "h", "Events": ["contact.changed"], "TargetUrl": receiver.url},
        )
        assert answer.status_code == 200, answer.text
        receiver.respond(delay=30.0)  # holds the answer until the receiver stops
        assert api.post("/api/v1/Webhook/contact.changed/1").status_code == 204
        wait_until(lambda: len(receiver.requests) == 2, what="the delivery to arrive")
        samples = scrape(api)
        assert value(samples, "hookcast_deliveries_in_flight", state="running") == 1
        assert value(samples, "hookcast_deliveries_queued", state="scheduled") == 1  # leased
        receiver.respond(delay=0.0)
        receiver.stop()  # ends the held answer: the API can shut down


# ----- the parts -----------------------------------------------------------------------------


def test_top_tenants_bounds_the_labels_and_follows_the_busiest() -> None:
    top = TopTenants(limit=2, interval=60.0)
    assert [top.label(t) for t in ("a", "b", "b", "c")] == ["a", "b", "b", OTHER]  # first come
    for _ in range(10):
        top.label("c")
    assert top.label("d") == OTHER
    assert top.rerank(now=100.0) == ["a"]  # c has 11, b 2, a 1: a loses its label
    assert top.labelled == {"b", "c"}
    assert top.label("c") == "c" and top.label("a") == OTHER
    assert top.rerank(now=120.0) == []  # at most once per interval
    # counts halve at every rerank: a tenant gone quiet gives way
    for _ in range(40):
        top.label("d")
    assert top.rerank(now=200.0) == ["b"]
    assert top.labelled == {"c", "d"}


def test_top_tenants_keeps_bounded_counts() -> None:
    top = TopTenants(limit=3, capacity=100)
    for i in range(1000):
        top.label(f"t{i}")
    assert len(top._counts) <= 100
    assert len(top.labelled) == 3


def test_tenant_series_of_a_tenant_that_lost_its_label_are_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "tenants", TopTenants(limit=1))
    metrics.signalled(["quiet-tenant"])
    metrics.signalled(["busy-tenant"] * 5)  # counted as other: the one label is taken
    metrics.rerank_tenants(time.time(), force=True)
    exposed = {
        sample.labels.get("tenant")
        for family in metrics.registry.collect()
        if family.name == "hookcast_tenant_events_signalled"
        for sample in family.samples
    }
    assert "quiet-tenant" not in exposed
    assert metrics.tenants.label("busy-tenant") == "busy-tenant"


def test_batch_histogram_matches_prometheus_clients() -> None:
    buckets = (0.01, 0.1, 1.0, 10.0)
    values = [0.0, 0.01, 0.011, 0.5, 1.0, 3.0, 10.0, 99.0, 0.1]
    ours = BatchHistogram("h", "doc", buckets)
    ours.observe(values[:4])
    ours.observe(values[4:])
    theirs = Histogram("h", "doc", buckets=buckets, registry=CollectorRegistry())
    for v in values:
        theirs.observe(v)

    def samples(family_list: Any) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for f in family_list
            for s in f.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours.collect()) == samples(theirs.collect())
