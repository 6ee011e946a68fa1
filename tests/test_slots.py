"""The slot ledger (dispatch/slots.py) alone: explicit examples of each rule, then properties
over any sequence of claims, hand-overs, ended attempts and stale holds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hookcast.dispatch.slots import Admit, Finished, SlotLedger
from hookcast.model import NO_OPTIONS, DeliveryOptions
from hookcast.outcome import AttemptOutcome, ErrorKind

LEASE = 30.0
OK = AttemptOutcome(ok=True, status=200)
HTTP_500 = AttemptOutcome(ok=False, status=500, error="HTTP 500", kind=ErrorKind.STATUS)


@dataclass(frozen=True, slots=True)
class Item:
    delivery_id: int
    webhook_id: int

    @property
    def endpoint(self) -> str:
        return f"https://w{self.webhook_id}.example:443"

    @property
    def tenant(self) -> str:
        return "T" if self.webhook_id < 100 else "U"

    @property
    def options(self) -> DeliveryOptions:
        return NO_OPTIONS


def ledger(
    concurrency: int = 8, per_webhook: int = 2, batch_size: int = 3, lease: float = LEASE
) -> SlotLedger[Item]:
    return SlotLedger(
        concurrency=concurrency, per_webhook=per_webhook, batch_size=batch_size, lease=lease
    )


def admit_all(slots: SlotLedger[Item], items: list[Item], now: float = 0.0) -> list[Admit]:
    return [slots.admit(item, now) for item in items]


# ----- examples ----------------------------------------------------------------------------------


def test_a_webhook_runs_up_to_its_cap_and_holds_the_rest() -> None:
    slots = ledger(per_webhook=2)
    got = admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7), Item(4, 8)])
    assert got == [Admit.START, Admit.START, Admit.HOLD, Admit.START]
    assert (slots.running, slots.running_for(7), slots.held_for(7)) == (3, 2, 1)


def test_a_delivery_already_ours_is_skipped() -> None:
    slots = ledger(per_webhook=1)
    admit_all(slots, [Item(1, 7), Item(2, 7)])
    # Its lease ran out while it ran (1) or waited (2): a claim returns it again.
    assert admit_all(slots, [Item(1, 7), Item(2, 7)]) == [Admit.SKIP, Admit.SKIP]
    assert (slots.running, slots.held) == (1, 1)


def test_a_held_delivery_starts_in_place_of_an_attempt_of_its_own_webhook() -> None:
    slots = ledger(per_webhook=1)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 8)])
    # Webhook 8's attempt ends: its slot is free, webhook 7's held one does not take it.
    assert slots.finished(3) == Finished([], False)
    assert slots.held_for(7) == 1
    # (1 running and 1 held were all webhook 7 may have: saturated until now.)
    assert slots.finished(1) == Finished([Item(2, 7)], True)
    assert (slots.running_for(7), slots.held_for(7)) == (1, 0)
    assert slots.finished(2) == Finished([], False)
    assert slots.running == 0


def test_held_deliveries_start_oldest_first() -> None:
    slots = ledger(per_webhook=1)
    admit_all(slots, [Item(1, 7), Item(5, 7), Item(3, 7), Item(4, 7)])
    started = []
    running = 1
    while True:
        starts, _ = slots.finished(running)
        start = starts[0] if starts else None
        if start is None:
            break
        started.append(start.delivery_id)
        running = start.delivery_id
    assert started == [5, 3, 4]


def test_never_more_than_the_global_cap_the_next_free_slot_goes_to_a_waiting_one() -> None:
    slots = ledger(concurrency=2, per_webhook=2)
    # A claim and the intake's hand-over were decided on the same free slots: three arrive.
    got = admit_all(slots, [Item(1, 7), Item(2, 8), Item(3, 9)])
    assert got == [Admit.START, Admit.START, Admit.HOLD]
    assert slots.running == 2
    # Webhook 9 runs nothing, so the next slot that comes free, of any webhook, is its.
    assert slots.finished(1) == Finished([Item(3, 9)], False)
    assert (slots.running, slots.running_for(9), slots.held) == (2, 1, 0)


def test_waiting_webhooks_take_free_slots_in_turn() -> None:
    slots = ledger(concurrency=2, per_webhook=2)
    admit_all(slots, [Item(1, 1), Item(2, 1), Item(3, 8), Item(4, 8), Item(5, 9)])
    assert slots.finished(1).start == [Item(3, 8)]
    assert slots.finished(2).start == [Item(5, 9)]  # webhook 8 had its turn
    assert slots.finished(3).start == [Item(4, 8)]
    assert slots.finished(4) == Finished([], False)


def test_a_waiting_webhook_that_reaches_its_cap_waits_for_its_own_attempts() -> None:
    slots = ledger(concurrency=2, per_webhook=1)
    admit_all(slots, [Item(1, 1), Item(2, 2), Item(3, 8), Item(4, 8)])
    assert slots.finished(1).start == [Item(3, 8)]  # webhook 8 now runs all it may
    assert slots.finished(2) == Finished([], False)  # so its next one does not take this
    assert slots.finished(3).start == [Item(4, 8)]


def test_after_a_failure_a_webhook_starts_nothing_until_its_outcome_is_written() -> None:
    # Writing a failure may disable the webhook (TooManyErrors), so until it is written
    # nothing more of that webhook starts: its held ones stay held, a claim's are held and
    # claims skip it; other webhooks run as before.
    slots = ledger(per_webhook=2)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7), Item(4, 7)])
    assert slots.finished(1, HTTP_500) == Finished([], False)
    assert slots.admit(Item(5, 7), 0.0) is Admit.HOLD
    assert 7 in slots.saturated()
    assert slots.finished(2, OK) == Finished([], False)  # a success does not lift it
    assert (slots.running_for(7), slots.held_for(7)) == (0, 3)
    assert slots.admit(Item(6, 8), 0.0) is Admit.START
    # Written, and still Active: its held ones start up to its cap.
    assert slots.written([7]) == [Item(3, 7), Item(4, 7)]
    assert (slots.running_for(7), slots.held_for(7)) == (2, 1)


def test_each_failure_must_be_written_and_a_drop_forgets_them() -> None:
    slots = ledger(per_webhook=2)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7)])
    slots.finished(1, HTTP_500)
    slots.finished(2, HTTP_500)
    assert slots.written([7]) == []  # one of the two: still held
    assert slots.written([7]) == [Item(3, 7)]
    slots.finished(3, HTTP_500)
    slots.admit(Item(4, 7), 0.0)
    # Its write disabled it: dropped (held ones forgotten), then the write is reported.
    assert slots.drop_webhook(7) == ([4], [])
    assert slots.written([7]) == []
    assert slots.admit(Item(5, 7), 0.0) is Admit.START  # e.g. made Active again later


def test_stuck_means_saturated_and_nothing_ended_for_a_while() -> None:
    slots = ledger(per_webhook=1)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 8), Item(4, 8)], now=10.0)
    assert sorted(slots.saturated()) == [7, 8]
    assert slots.stuck(slots.saturated(), 10.5, after=1.0) == []  # not for long enough
    slots.finished(3, OK, now=10.8)  # 8 moves: its held one starts
    slots.admit(Item(5, 8), 10.8)
    assert slots.stuck(slots.saturated(), 11.5, after=1.0) == [7]  # 8 ended an attempt 0.7 s ago
    assert sorted(slots.stuck(slots.saturated(), 12.0, after=1.0)) == [7, 8]
    slots.drop_webhook(7)
    assert slots.stuck(slots.saturated(), 20.0, after=1.0) == [8]
    # Idle for long, then busy again: it counts from when it became busy, not from before.
    for delivery_id in (4, 5):
        slots.finished(delivery_id, OK, now=20.0)
    assert slots.running_for(8) == 0 and slots.held_for(8) == 0
    admit_all(slots, [Item(6, 8), Item(7, 8)], now=60.0)
    assert slots.stuck(slots.saturated(), 60.5, after=1.0) == []
    assert slots.stuck(slots.saturated(), 61.0, after=1.0) == [8]


def test_saturated_means_every_slot_busy_and_as_many_held() -> None:
    slots = ledger(per_webhook=2)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7)])
    assert slots.saturated() == []
    slots.admit(Item(4, 7), 0.0)
    assert slots.saturated() == [7]
    # One ends, a held one starts in its place: one held fewer, no longer saturated.
    assert slots.finished(1) == Finished([Item(3, 7)], True)
    assert slots.saturated() == []
    assert slots.finished(2) == Finished([Item(4, 7)], False)


def test_free_slots_count_the_outcomes_not_yet_written_beyond_a_batch() -> None:
    slots = ledger(concurrency=8, batch_size=3)
    admit_all(slots, [Item(1, 1), Item(2, 2)])
    assert slots.free(0) == slots.free(3) == 6
    assert slots.free(5) == 4
    assert slots.claim_limit(0) == 3  # at most a batch
    assert slots.claim_limit(6) == 3
    assert slots.claim_limit(8) == 1
    assert slots.claim_limit(20) == 0


def test_held_deliveries_go_back_after_half_a_lease() -> None:
    slots = ledger(per_webhook=1, lease=10.0)
    slots.admit(Item(1, 7), 0.0)
    slots.admit(Item(2, 7), 1.0)
    slots.admit(Item(3, 7), 4.0)
    slots.admit(Item(4, 8), 0.0)
    assert slots.stale(5.0) == []
    assert slots.stale(6.5) == [2]
    assert slots.stale(100.0) == [3]
    assert (slots.held, slots.running) == (0, 2)
    assert slots.finished(1) == Finished([], False)


def test_stale_waiting_deliveries_go_back_too() -> None:
    slots = ledger(concurrency=1, per_webhook=1, lease=10.0)
    admit_all(slots, [Item(1, 1), Item(2, 2)])
    assert slots.stale(6.0) == [2]
    assert slots.finished(1) == Finished([], False)


def test_stopping_starts_nothing_and_hands_back_what_is_held() -> None:
    slots = ledger(per_webhook=1)
    admit_all(slots, [Item(1, 7), Item(2, 7)])
    slots.stop()
    assert slots.handover(0, 99.0) is None
    assert slots.admit(Item(3, 8), 0.0) is Admit.HOLD
    assert slots.finished(1) == Finished([], False)
    assert sorted(slots.release_held()) == [2, 3]
    assert (slots.running, slots.held) == (0, 0)


# ----- the intake's hand-over --------------------------------------------------------------------


def test_handover_starts_up_to_the_caps_then_holds_a_batch_more_than_claims() -> None:
    slots = ledger(concurrency=8, per_webhook=2, batch_size=3)
    handover = slots.handover(0, 123.0)
    assert handover is not None and handover.lease_until == 123.0
    # A webhook with nothing running: 2 that start, then 2 + 3 held, then queued.
    assert [handover.take(7) for _ in range(8)] == [True] * 7 + [False]


def test_handover_of_a_busy_webhook_holds_only_up_to_its_hold_cap() -> None:
    slots = ledger(concurrency=8, per_webhook=2, batch_size=3)
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7), Item(4, 8)])
    handover = slots.handover(0, 0.0)
    assert handover is not None
    assert [handover.take(7) for _ in range(5)] == [True] * 4 + [False]  # 1 held of 5
    assert [handover.take(8) for _ in range(7)] == [True] * 6 + [False]


def test_handover_starts_no_more_than_the_free_slots() -> None:
    slots = ledger(concurrency=3, per_webhook=1, batch_size=3)
    slots.admit(Item(1, 1), 0.0)
    handover = slots.handover(0, 0.0)
    assert handover is not None
    assert [handover.take(7), handover.take(8)] == [True, True]
    # No slot left: a webhook that could start one leaves it queued rather than hold it,
    # but one that runs all it may still holds.
    assert handover.take(9) is False
    assert handover.take(1) is True
    backlog = slots.handover(4, 0.0)  # 1 outcome beyond a batch takes a slot
    assert backlog is not None and [backlog.take(7), backlog.take(8)] == [True, False]


def test_handover_is_a_snapshot() -> None:
    slots = ledger(concurrency=8, per_webhook=1, batch_size=1)
    handover = slots.handover(0, 0.0)
    assert handover is not None
    admit_all(slots, [Item(1, 7), Item(2, 7), Item(3, 7)])
    assert [handover.take(7) for _ in range(4)] == [True, True, True, False]


# ----- properties --------------------------------------------------------------------------------


class Dispatch(RuleBasedStateMachine):
    """The dispatcher's use of the ledger, with a model beside it. Claims and hand-overs are
    decided on the ledger's state at one moment and admitted at a later one; with `overlap`,
    one claim and one hand-over may be in flight at once, other work going on meanwhile, as
    the claim loop and the intake do on the event loop while the database works."""

    overlap = True

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 1
        self.now = 0.0
        self.unwritten = 0
        self.running: dict[int, int] = {}  # delivery id -> webhook id
        self.held: dict[int, tuple[int, float]] = {}  # delivery id -> (webhook, held at)
        self.claim: tuple[int, list[int]] | None = None  # (limit, saturated) when decided
        self.handing: list[Item] | None = None  # taken by a hand-over, not yet admitted

    @initialize(
        concurrency=st.integers(1, 6),
        per_webhook=st.integers(1, 4),
        batch_size=st.integers(1, 5),
    )
    def setup(self, concurrency: int, per_webhook: int, batch_size: int) -> None:
        self.slots: SlotLedger[Item] = ledger(concurrency, per_webhook, batch_size, LEASE)

    def new_item(self, webhook_id: int) -> Item:
        self.next_id += 1
        return Item(self.next_id, webhook_id)

    def admit(self, items: list[Item]) -> None:
        for item in items:
            was_ours = item.delivery_id in self.running or item.delivery_id in self.held
            could_start = (
                self.slots.running_for(item.webhook_id) < self.slots.per_webhook
                and self.slots.running < self.slots.concurrency
            )
            got = self.slots.admit(item, self.now)
            if was_ours:
                assert got is Admit.SKIP
            elif could_start:
                assert got is Admit.START
                self.running[item.delivery_id] = item.webhook_id
            else:
                assert got is Admit.HOLD
                self.held[item.delivery_id] = (item.webhook_id, self.now)

    # claims: decided, then admitted

    @precondition(lambda self: self.claim is None)
    @rule(
        webhooks=st.lists(st.integers(0, 3), max_size=6),
        again=st.lists(st.integers(0, 10**6), max_size=2),
    )
    def decide_claim(self, webhooks: list[int], again: list[int]) -> None:
        limit = self.slots.claim_limit(self.unwritten)
        assert limit == max(
            0,
            min(
                self.slots.batch_size,
                self.slots.concurrency
                - len(self.running)
                - max(0, self.unwritten - self.slots.batch_size),
            ),
        )
        if limit:
            self.claim = (limit, self.slots.saturated())
            if not self.overlap:
                self.admit_claim(webhooks, again)

    @precondition(lambda self: self.claim is not None)
    @rule(
        webhooks=st.lists(st.integers(0, 3), max_size=6),
        again=st.lists(st.integers(0, 10**6), max_size=2),
    )
    def admit_claim(self, webhooks: list[int], again: list[int]) -> None:
        assert self.claim is not None
        limit, saturated = self.claim
        self.claim = None
        # Due deliveries of webhooks that were not saturated; some may be ours already
        # (their lease ran out while they ran or waited).
        owner = {**self.running, **{d: w for d, (w, _) in self.held.items()}}
        ours = sorted(owner)
        items = [Item(ours[i % len(ours)], owner[ours[i % len(ours)]]) for i in again if ours]
        items += [self.new_item(w) for w in webhooks if w not in saturated]
        self.admit(items[:limit])

    # the intake's hand-over: decided, taken in the insert, admitted after the commit

    @precondition(lambda self: self.handing is None)
    @rule(webhooks=st.lists(st.integers(0, 3), max_size=12))
    def hand_over(self, webhooks: list[int]) -> None:
        handover = self.slots.handover(self.unwritten, self.now + LEASE)
        assert handover is not None
        self.handing = [self.new_item(w) for w in webhooks if handover.take(w)]
        for w in set(webhooks):
            # Per webhook: at most as many start as it has free slots, then at most
            # handover_hold are held (counting those it held already).
            taken = sum(item.webhook_id == w for item in self.handing)
            room = max(0, self.slots.per_webhook - self.slots.running_for(w))
            assert taken <= room + max(
                0, (self.slots.cap(w) + self.slots.batch_size) - self.slots.held_for(w)
            )
        if not self.overlap:
            self.admit_handover()

    @precondition(lambda self: self.handing is not None)
    @rule()
    def admit_handover(self) -> None:
        assert self.handing is not None
        items, self.handing = self.handing, None
        self.admit(items)

    # attempts ending, time passing, holds going stale, the writer

    @precondition(lambda self: self.running)
    @rule(pick=st.integers(0, 10**6))
    def finish(self, pick: int) -> None:
        delivery_id = sorted(self.running)[pick % len(self.running)]
        webhook_id = self.running.pop(delivery_id)
        own_held = [d for d, (w, _) in self.held.items() if w == webhook_id]
        was_saturated = webhook_id in self.slots.saturated()
        before = {w: self.slots.running_for(w) for w in range(4)}
        starts, unsaturated = self.slots.finished(delivery_id)
        assert len(starts) <= 1  # fixed caps: one ended attempt frees one slot
        start = starts[0] if starts else None
        if own_held:
            # No webhook starved: its oldest held one starts in place of the ended attempt.
            assert start is not None and start.delivery_id == own_held[0]
        elif start is not None:
            # Another webhook's held one takes the slot only if that webhook ran fewer than
            # its cap: it was held because every slot was busy.
            assert start.delivery_id in self.held
            assert before[start.webhook_id] < self.slots.per_webhook
            assert len(self.running) + 1 == self.slots.concurrency
        else:
            waiting = {w for w, _ in self.held.values()}
            assert all(self.slots.running_for(w) >= self.slots.per_webhook for w in waiting), (
                "a free slot while a webhook below its cap waits"
            )
        if start is not None:
            held_webhook, _ = self.held.pop(start.delivery_id)
            assert held_webhook == start.webhook_id
            self.running[start.delivery_id] = start.webhook_id
        assert unsaturated == (was_saturated and webhook_id not in self.slots.saturated())

    @rule(seconds=st.floats(0.0, LEASE))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def release_stale(self) -> None:
        released = self.slots.stale(self.now)
        cutoff = self.now - LEASE / 2
        assert sorted(released) == sorted(d for d, (_, at) in self.held.items() if at < cutoff)
        for delivery_id in released:
            del self.held[delivery_id]

    @rule(unwritten=st.integers(0, 12))
    def outcomes(self, unwritten: int) -> None:
        self.unwritten = unwritten

    # invariants

    @invariant()
    def the_model_and_the_ledger_agree(self) -> None:
        assert self.slots.running == len(self.running)
        assert self.slots.held == len(self.held)
        for w in range(4):
            assert self.slots.running_for(w) == sum(v == w for v in self.running.values())
            assert self.slots.held_for(w) == sum(v == w for v, _ in self.held.values())
        assert set(self.slots._running) == set(self.running)
        assert self.slots._held_ids == set(self.held)

    @invariant()
    def never_more_running_than_the_caps(self) -> None:
        assert self.slots.running <= self.slots.concurrency
        for w in range(4):
            assert self.slots.running_for(w) <= self.slots.per_webhook

    @invariant()
    def never_both_running_and_held(self) -> None:
        assert not set(self.running) & set(self.held)

    @invariant()
    def held_per_webhook_within_its_cap(self) -> None:
        s = self.slots
        for w in range(4):
            if self.overlap:
                # A claim decided before a hand-over was admitted adds at most its batch.
                assert s.running_for(w) + s.held_for(w) <= (
                    s.per_webhook + (s.cap(w) + s.batch_size) + s.batch_size
                )
            else:
                assert s.held_for(w) <= (s.cap(w) + s.batch_size)

    @invariant()
    def held_ones_wait_only_while_no_slot_can_take_them(self) -> None:
        s = self.slots
        for w in range(4):
            if s.held_for(w) and s.running_for(w) < s.per_webhook:
                assert s.running == s.concurrency, "starved: a free slot it could take"

    @invariant()
    def a_webhook_with_a_free_slot_is_never_saturated(self) -> None:
        s = self.slots
        for w in s.saturated():
            assert s.running_for(w) + s.held_for(w) >= 2 * s.cap(w)
            assert s.running_for(w) == s.per_webhook or s.running == s.concurrency
        for w in range(4):
            if s.running_for(w) + s.held_for(w) >= 2 * s.cap(w):
                assert w in s.saturated()


class DispatchInTurn(Dispatch):
    """Claims and hand-overs admitted as soon as they are decided."""

    overlap = False


SETTINGS = settings(stateful_step_count=40)  # examples: the profile (conftest.py)
TestDispatch = Dispatch.TestCase
TestDispatch.settings = SETTINGS
TestDispatchInTurn = DispatchInTurn.TestCase
TestDispatchInTurn.settings = SETTINGS


@pytest.mark.parametrize("per_webhook", [1, 2])
def test_unsaturated_is_reported_exactly_when_it_stops(per_webhook: int) -> None:
    slots = ledger(concurrency=10, per_webhook=per_webhook)
    items = [Item(i, 7) for i in range(1, 2 * per_webhook + 3)]
    admit_all(slots, items)
    flags = []
    running = [i.delivery_id for i in items[:per_webhook]]
    while running:
        starts, unsaturated = slots.finished(running.pop(0))
        start = starts[0] if starts else None
        flags.append(unsaturated)
        if start is not None:
            running.append(start.delivery_id)
    # 2r + 2 admitted: saturated until only 2r - 1 are left running and held.
    assert flags.count(True) == 1
    assert flags.index(True) == 2


def test_waiting_webhooks_are_served_per_tenant_in_turn() -> None:
    # Every slot busy: tenant T's three webhooks wait, then tenant U's two (webhooks >= 100).
    slots = ledger(concurrency=2, per_webhook=4)
    assert admit_all(slots, [Item(1, 50), Item(2, 51)]) == [Admit.START] * 2
    waiting = [Item(3, 1), Item(4, 2), Item(5, 3), Item(6, 100), Item(7, 101)]
    assert admit_all(slots, waiting) == [Admit.HOLD] * 5
    order = []
    running = [1, 2]
    while running:
        starts, _ = slots.finished(running.pop(0))
        order += [i.delivery_id for i in starts]
        running += [i.delivery_id for i in starts]
    # T, U, T, U, T: U's deliveries do not wait behind all of T's webhooks
    assert order == [3, 6, 4, 7, 5]
