"""store.lanes: the database threads serve the urgent lane (a signal's commit) first."""

from __future__ import annotations

import threading

import pytest

from hookcast.store.lanes import Lanes


def test_urgent_work_goes_before_queued_work_and_shutdown_drains() -> None:
    lanes = Lanes(1, "test-lanes")
    busy, order = threading.Event(), []
    first = lanes.submit(busy.wait, 10)  # the transaction in progress
    later = [lanes.submit(order.append, name) for name in ("claim", "outcomes")]
    urgent = lanes.submit_urgent(order.append, "signal")
    busy.set()
    assert first.result(10) is True
    lanes.shutdown(wait=True)  # what was queued still runs
    assert order == ["signal", "claim", "outcomes"]
    assert all(f.done() for f in (*later, urgent))
    with pytest.raises(RuntimeError):
        lanes.submit(order.append, "too late")


def test_an_error_reaches_the_waiter() -> None:
    lanes = Lanes(2, "test-lanes")
    try:
        with pytest.raises(ZeroDivisionError):
            lanes.submit_urgent(lambda: 1 / 0).result(10)
        assert lanes.submit(sum, [1, 2]).result(10) == 3
    finally:
        lanes.shutdown()
