"""MaxPerSecond and MaxInFlight alone (dispatch/ratelimit.py, and the slot ledger's use of
them): the token bucket, the shares of the live dispatchers, held deliveries waiting for a
token, caps and hand-overs. No clock: the times are passed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookcast.dispatch.adaptive import AdaptiveLimits
from hookcast.dispatch.ratelimit import Share, TokenBucket, burst_of, hold_limit
from hookcast.dispatch.slots import Admit, SlotLedger
from hookcast.model import DeliveryOptions
from hookcast.outcome import AttemptOutcome, ErrorKind

LEASE = 40.0
OK = AttemptOutcome(ok=True, status=200)
TIMEOUT = AttemptOutcome(ok=False, error="timed out", kind=ErrorKind.TIMEOUT)
OFF = DeliveryOptions()


@dataclass(frozen=True, slots=True)
class Item:
    delivery_id: int
    webhook_id: int
    options: DeliveryOptions = OFF

    @property
    def endpoint(self) -> str:
        return f"https://w{self.webhook_id}.example:443"

    @property
    def tenant(self) -> str:
        return "T"


def ledger(**kw: object) -> SlotLedger[Item]:
    values: dict[str, object] = dict(concurrency=64, per_webhook=16, batch_size=10, lease=LEASE)
    values.update(kw)
    return SlotLedger(**values)  # type: ignore[arg-type]


# ----- the bucket ----------------------------------------------------------------------------------


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(10.0, now=0.0)  # burst: a tenth of a second's worth, at least 1
    assert bucket.burst == 1.0
    assert bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.ready_at(0.0) == pytest.approx(0.1)
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    # Saved up for a long idle time: never more than the burst.
    assert bucket.available(100.0) == 1


def test_a_fast_bucket_saves_a_tenth_of_a_second() -> None:
    bucket = TokenBucket(1000.0, now=0.0)
    assert bucket.burst == burst_of(1000.0) == 100.0
    assert sum(bucket.take(0.0) for _ in range(150)) == 100
    assert bucket.available(0.01) == 10


def test_a_slow_bucket_waits_seconds() -> None:
    bucket = TokenBucket(0.5, now=0.0)
    assert bucket.take(0.0)
    assert bucket.ready_at(0.0) == pytest.approx(2.0)
    assert not bucket.take(1.99) and bucket.take(2.0)


def test_retuning_keeps_the_tokens_up_to_the_new_burst() -> None:
    bucket = TokenBucket(100.0, now=0.0)  # 10 saved
    bucket.retune(20.0, 0.0)
    assert bucket.available(0.0) == 2
    bucket.retune(200.0, 0.0)
    assert bucket.available(0.0) == 2 and bucket.available(0.05) == 12


@given(
    rate=st.floats(0.2, 2000.0),
    times=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=300),
)
def test_no_window_sees_more_than_rate_plus_burst(rate: float, times: list[float]) -> None:
    """Whatever asks for tokens when: the tokens taken in any window of t seconds are at
    most burst + rate * t."""
    bucket = TokenBucket(rate, now=0.0)
    taken = [t for t in sorted(times) if bucket.take(t)]
    for i, start in enumerate(taken):
        for j in range(i, len(taken)):
            span = taken[j] - start
            assert j - i + 1 <= bucket.burst + rate * span + 1e-6


# ----- shares ------------------------------------------------------------------------------------


@given(limit=st.integers(1, 200), count=st.integers(1, 20))
def test_in_flight_shares_add_up_to_the_limit(limit: int, count: int) -> None:
    shares = [Share(i, count).in_flight(limit) for i in range(count)]
    assert sum(shares) == limit
    assert max(shares) - min(shares) <= 1


def test_rate_shares_and_hold_limits() -> None:
    assert Share(1, 4).rate(10.0) == 2.5
    assert hold_limit(2.5, 40.0) == 25  # what its tokens start in a quarter of a lease
    assert hold_limit(0.01, 40.0) == 1
    with pytest.raises(ValueError):
        Share(2, 2)


# ----- the ledger: MaxInFlight ---------------------------------------------------------------------


def test_max_in_flight_caps_a_webhook_below_per_webhook() -> None:
    slots = ledger(per_webhook=8)
    slots.set_share(Share(0, 2), 0.0)  # another dispatcher is live: this one's share is 2
    four = DeliveryOptions(max_in_flight=4)
    got = [slots.admit(Item(i, 7, four), 0.0) for i in range(4)]
    assert got == [Admit.START, Admit.START, Admit.HOLD, Admit.HOLD]
    assert slots.cap(7) == 2
    assert 7 in slots.saturated()  # 2 running, 2 held
    # More goes back at once: the other dispatcher's share may take it.
    assert slots.admit(Item(4, 7, four), 0.0) is Admit.RELEASE
    handover = slots.handover(0, LEASE)
    assert handover is not None and handover.take(7, four) is False
    assert slots.finished(0, OK, 1.0).start == [Item(2, 7, four)]
    fresh = slots.handover(0, LEASE)
    assert fresh is not None and [fresh.take(8, four) for _ in range(5)] == [True] * 4 + [False]


def test_a_dispatcher_alone_holds_a_max_in_flight_backlog_as_any_other() -> None:
    # Nobody else could take what it handed back: it would come back through another claim.
    slots = ledger(per_webhook=8, batch_size=10)
    two = DeliveryOptions(max_in_flight=2)
    got = [slots.admit(Item(i, 7, two), 0.0) for i in range(15)]
    assert got == [Admit.START] * 2 + [Admit.HOLD] * 12 + [Admit.RELEASE]  # cap + a batch
    assert slots.cap(7) == 2 and 7 in slots.saturated()
    fresh = slots.handover(0, LEASE)
    assert fresh is not None and [fresh.take(8, two) for _ in range(15)].count(True) == 2 + 12


def test_the_adaptive_limit_still_shrinks_a_failing_endpoint_below_max_in_flight() -> None:
    slots = ledger(per_webhook=8, limits=AdaptiveLimits(initial=8, ceiling=8))
    six = DeliveryOptions(max_in_flight=6)
    for i in range(6):
        slots.admit(Item(i, 7, six), 0.0)
    assert slots.cap(7) == 6
    slots.finished(0, TIMEOUT, 1.0)
    slots.written([7])
    assert slots.cap(7) == 1  # one probe, as without the option


def test_in_flight_is_shared_between_the_live_dispatchers() -> None:
    three = DeliveryOptions(max_in_flight=3)
    first, second = ledger(), ledger()
    first.set_share(Share(0, 2), 0.0)
    second.set_share(Share(1, 2), 0.0)
    first.admit(Item(1, 7, three), 0.0)
    second.admit(Item(2, 7, three), 0.0)
    assert (first.cap(7), second.cap(7)) == (2, 1)


def test_a_dispatcher_without_a_share_hands_deliveries_back_and_claims_none() -> None:
    one = DeliveryOptions(max_in_flight=1)
    slots = ledger()
    slots.set_share(Share(1, 2), 0.0)
    assert slots.admit(Item(1, 7, one), 0.0) is Admit.RELEASE
    assert slots.running == slots.held == 0
    assert 7 in slots.saturated()  # known now: claims skip it
    handover = slots.handover(0, LEASE)
    assert handover is not None and handover.take(7, one) is False
    fresh = slots.handover(0, LEASE)
    assert fresh is not None and fresh.take(8, one) is False  # unknown, same options
    # The other dispatcher is gone: the whole limit is this one's.
    assert slots.set_share(Share(0, 1), 0.0)
    assert 7 not in slots.saturated()
    assert slots.admit(Item(2, 7, one), 0.0) is Admit.START


def test_options_turned_off_lift_the_limits() -> None:
    slots = ledger(per_webhook=4)
    slots.admit(Item(1, 7, DeliveryOptions(max_in_flight=1)), 0.0)
    assert slots.admit(Item(2, 7), 0.0) is Admit.START
    assert slots.cap(7) == 4 and not slots.rate_limited


# ----- the ledger: MaxPerSecond --------------------------------------------------------------------


FIVE = DeliveryOptions(max_per_second=5.0)  # burst 1, a token every 0.2 s


def test_a_delivery_without_a_token_is_held_and_starts_when_its_token_is_there() -> None:
    slots = ledger()
    assert slots.admit(Item(1, 7, FIVE), 0.0) is Admit.START
    assert slots.admit(Item(2, 7, FIVE), 0.0) is Admit.HOLD
    assert slots.admit(Item(3, 7, FIVE), 0.0) is Admit.HOLD
    assert slots.next_token(0.0) == pytest.approx(0.2)
    assert slots.token_starts(0.1) == ([], False)
    assert slots.token_starts(0.2) == ([Item(2, 7, FIVE)], False)
    # An ended attempt starts nothing without a token.
    assert slots.finished(1, OK, 0.25).start == []
    assert slots.next_token(0.25) == pytest.approx(0.4)
    assert slots.token_starts(0.4)[0] == [Item(3, 7, FIVE)]
    assert slots.next_token(0.4) is None  # nothing held


def test_held_for_a_token_up_to_a_quarter_lease_then_claims_skip_and_more_goes_back() -> None:
    slots = ledger(batch_size=100)
    hold = hold_limit(5.0, LEASE)  # 50
    got = [slots.admit(Item(i, 7, FIVE), 0.0) for i in range(hold + 3)]
    assert got == [Admit.START] + [Admit.HOLD] * hold + [Admit.RELEASE] * 2
    assert 7 in slots.saturated()
    assert slots.stuck(slots.saturated(), 100.0, 1.0) == []  # waits for tokens, not hung
    starts, unsaturated = slots.token_starts(0.2)
    assert len(starts) == 1 and unsaturated  # below its hold limit again: claim it
    handover = slots.handover(0, LEASE, now=0.2)
    assert handover is not None
    assert [handover.take(7, FIVE) for _ in range(2)] == [True, False]  # held: one more


def test_the_global_slots_and_the_cap_bound_token_starts() -> None:
    slots = ledger(concurrency=2)
    both = DeliveryOptions(max_per_second=1000.0, max_in_flight=3)
    assert [slots.admit(Item(i, 7, both), 0.0) for i in range(4)] == [Admit.START] * 2 + [
        Admit.HOLD
    ] * 2
    assert slots.next_token(0.0) is None  # every slot busy: asked again when one is free
    assert slots.finished(0, OK, 0.0).start == [Item(2, 7, both)]
    assert slots.next_token(0.0) is None  # both slots busy again
    assert slots.finished(1, OK, 0.0).start == [Item(3, 7, both)]  # (it has tokens)
    assert slots.running_for(7) == 2


def test_a_slot_freed_while_the_next_has_no_token_goes_to_another_webhook() -> None:
    slots = ledger(concurrency=1)
    assert slots.admit(Item(1, 7, FIVE), 0.0) is Admit.START
    assert slots.admit(Item(2, 8), 0.0) is Admit.HOLD  # waits for any slot
    assert slots.admit(Item(3, 7, FIVE), 0.0) is Admit.HOLD
    assert slots.finished(1, OK, 0.1).start == [Item(2, 8)]
    assert slots.next_token(0.1) is None  # the slot is busy
    slots.finished(2, OK, 0.15)
    assert slots.next_token(0.15) == pytest.approx(0.2)
    assert slots.token_starts(0.2)[0] == [Item(3, 7, FIVE)]


@pytest.mark.parametrize(("dispatchers", "held"), [(1, 16 + 10), (2, 16)])
def test_with_both_limits_the_handover_holds_what_admit_keeps(dispatchers: int, held: int) -> None:
    # A rate limit on top of MaxInFlight must not let the intake hand over more than admit()
    # keeps held (alone: a cap and a batch; beside others: one round), only for it to be
    # written back to the queue at once.
    slots = ledger(per_webhook=16, batch_size=10)
    slots.set_share(Share(0, dispatchers), 0.0)
    both = DeliveryOptions(max_per_second=100_000.0, max_in_flight=10_000 * dispatchers)
    fresh = slots.handover(0, LEASE, now=0.0)
    assert fresh is not None
    taken = [fresh.take(7, both) for _ in range(100)]
    assert taken.count(True) == 16 + held
    got = [slots.admit(Item(i, 7, both), 0.0) for i in range(16 + held)]
    assert got == [Admit.START] * 16 + [Admit.HOLD] * held
    known = slots.handover(0, LEASE, now=0.0)
    assert known is not None and known.take(7, both) is False
    assert slots.admit(Item(99, 7, both), 0.0) is Admit.RELEASE


def test_a_new_rate_limited_webhook_is_handed_over_its_burst_then_held() -> None:
    slots = ledger()
    handover = slots.handover(0, LEASE, now=0.0)
    assert handover is not None
    fast = DeliveryOptions(max_per_second=50.0)  # burst 5, holds 500
    taken = [handover.take(9, fast) for _ in range(600)]
    assert taken.count(True) == 5 + hold_limit(50.0, LEASE)
    assert all(taken[:505]) and not any(taken[505:])


def test_rate_shares_follow_the_live_dispatchers() -> None:
    slots = ledger()
    ten = DeliveryOptions(max_per_second=10.0)
    slots.admit(Item(1, 7, ten), 0.0)
    slots.set_share(Share(0, 2), 0.0)
    slots.admit(Item(2, 7, ten), 0.0)
    assert slots.next_token(0.0) == pytest.approx(0.2)  # 5 a second here


def test_webhooks_without_limits_never_touch_a_bucket() -> None:
    slots = ledger()
    for i in range(20):
        slots.admit(Item(i, i % 3), 0.0)
    assert not slots.rate_limited and slots.next_token(0.0) is None
    assert slots.token_starts(0.0) == ([], False)
