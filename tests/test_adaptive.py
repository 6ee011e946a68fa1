"""Per-endpoint adaptive concurrency (dispatch/adaptive.py) alone, and in the slot ledger:
a fast endpoint gets more, one that times out runs a single probe while its other
deliveries wait, a webhook that stops being Active is dropped at once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hookcast.dispatch.adaptive import AdaptiveLimits
from hookcast.dispatch.slots import Admit, SlotLedger
from hookcast.model import NO_OPTIONS, DeliveryOptions
from hookcast.outcome import AttemptOutcome, ErrorKind

OK = AttemptOutcome(ok=True, status=200)
TIMEOUT = AttemptOutcome.failed("timed out", ErrorKind.TIMEOUT)
REFUSED = AttemptOutcome.failed("connection refused", ErrorKind.NETWORK)
HTTP_500 = AttemptOutcome(ok=False, status=500, error="HTTP 500", kind=ErrorKind.STATUS)
E = "https://receiver.example:443"


def test_slow_start_then_additive_increase_up_to_the_ceiling() -> None:
    limits = AdaptiveLimits(initial=4, ceiling=16)
    assert limits.limit(E) == 4
    for _ in range(5):
        limits.record(E, OK)
    assert limits.limit(E) == 9  # +1 per success until the first failure
    for _ in range(100):
        limits.record(E, OK)
    assert limits.limit(E) == 16  # never above the ceiling
    limits.record(E, HTTP_500)
    assert limits.limit(E) == 8  # an answer that is not 2xx halves it
    for _ in range(8):
        limits.record(E, OK)
    assert limits.limit(E) == 8  # after a failure: about one more per round trip
    for _ in range(9):
        limits.record(E, OK)
    assert limits.limit(E) == 9


@pytest.mark.parametrize("failure", [TIMEOUT, REFUSED], ids=["timeout", "network"])
def test_a_timeout_or_network_error_leaves_one_probe(failure: AttemptOutcome) -> None:
    limits = AdaptiveLimits(initial=4, ceiling=16)
    limits.record(E, OK)
    limits.record(E, failure)
    assert (limits.limit(E), limits.healthy(E)) == (1, False)
    limits.record(E, failure)
    assert limits.limit(E) == 1  # never below one: the probe
    limits.record(E, OK)
    assert (limits.limit(E), limits.healthy(E)) == (2, True)  # the probe answered: 1 + 1/1


def test_endpoints_are_separate_and_the_oldest_is_forgotten() -> None:
    limits = AdaptiveLimits(initial=2, ceiling=8, remembered=2)
    limits.record("a", TIMEOUT)
    limits.record("b", OK)
    assert (limits.limit("a"), limits.limit("b")) == (1, 3)
    limits.record("c", OK)  # "a" is forgotten: back to the initial limit
    assert (limits.limit("a"), limits.limit("c")) == (2, 3)
    with pytest.raises(ValueError):
        AdaptiveLimits(initial=0, ceiling=4)


@dataclass(frozen=True, slots=True)
class Item:
    delivery_id: int
    webhook_id: int
    endpoint: str = E
    tenant: str = "T"
    options: DeliveryOptions = NO_OPTIONS


def ledger(per_webhook: int = 8) -> SlotLedger[Item]:
    return SlotLedger(
        concurrency=100,
        per_webhook=per_webhook,
        batch_size=10,
        lease=30.0,
        limits=AdaptiveLimits(initial=2, ceiling=per_webhook),
    )


def test_the_ledger_runs_what_the_endpoint_allows() -> None:
    slots = ledger()
    admitted = [slots.admit(Item(i, 7), 0.0) for i in range(1, 7)]
    assert admitted == [Admit.START] * 2 + [Admit.HOLD] * 4  # initial limit 2
    # a success grows the limit to 3: the ended attempt's slot and one more start
    starts, _ = slots.finished(1, OK)
    assert [i.delivery_id for i in starts] == [3, 4]
    # a timeout: one probe at a time; the ended attempt frees nothing for the others
    # (and, being a failure, nothing of that webhook starts until its outcome is written)
    starts, _ = slots.finished(2, TIMEOUT)
    assert starts == [] and slots.cap(7) == 0
    assert slots.written([7]) == [] and slots.cap(7) == 1  # 3 and 4 still run
    assert slots.finished(3, TIMEOUT).start == []
    assert slots.finished(4, TIMEOUT).start == []
    assert [i.delivery_id for i in slots.written([7, 7])] == [5]  # the probe
    assert slots.held_for(7) == 1 and slots.running_for(7) == 1
    # the probe answers: the endpoint is back, the held delivery starts
    assert [i.delivery_id for i in slots.finished(5, OK).start] == [6]
    # webhooks on one endpoint share its limit
    assert slots.cap(8) == slots.per_webhook  # not seen yet
    slots.admit(Item(10, 8), 1.0)
    assert slots.cap(8) == slots.cap(7)


def test_a_webhook_no_longer_active_is_dropped_at_once() -> None:
    slots = ledger()
    for i in range(1, 6):
        slots.admit(Item(i, 7), 0.0)
    slots.admit(Item(9, 8, "https://other.example:443"), 0.0)
    held, running = slots.drop_webhook(7)
    assert (sorted(held), sorted(running)) == ([3, 4, 5], [1, 2])
    assert (slots.running, slots.held, slots.running_for(7)) == (1, 0, 0)
    # an attempt that ends after its webhook was dropped (it was being cancelled) frees
    # nothing twice and starts nothing of that webhook
    assert slots.finished(1, OK) == ([], False)
    assert slots.finished(9, OK) == ([], False)
    assert slots.running == 0
