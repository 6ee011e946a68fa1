"""The retry schedule and state machine of §6: explicit examples of each rule, then properties."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookcast.dispatch.policy import (
    Attempted,
    CounterDelta,
    Decisions,
    RetryPolicy,
    Step,
    decide,
    failed_since_success_after,
    fold,
    needs_counters,
    next_step,
    starts_failure_streak,
    trips,
)
from hookcast.model import State
from hookcast.outcome import AttemptOutcome, ErrorKind
from hookcast.settings import Settings
from hookcast.store.rows import Claimed, CounterRow, DeliveryStatus, SuccessRow, WebhookCounters

PENDING, DELIVERED, GIVEN_UP = (
    DeliveryStatus.PENDING,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.GIVEN_UP,
)
FAIL = AttemptOutcome(ok=False)
OK = AttemptOutcome(ok=True)
GONE = AttemptOutcome(ok=False, gone=True)
DEFAULT = RetryPolicy()

# Every attempt of the default 3x3 budget: (cycle, attempt) tried, then the step that follows
# its failure.
DEFAULT_SCHEDULE = [
    ((0, 0), Step(PENDING, 0, 1, 1.0, False)),
    ((0, 1), Step(PENDING, 0, 2, 4.0, False)),
    ((0, 2), Step(PENDING, 1, 0, 60.0, True)),
    ((1, 0), Step(PENDING, 1, 1, 1.0, False)),
    ((1, 1), Step(PENDING, 1, 2, 4.0, False)),
    ((1, 2), Step(PENDING, 2, 0, 60.0, True)),
    ((2, 0), Step(PENDING, 2, 1, 1.0, False)),
    ((2, 1), Step(PENDING, 2, 2, 4.0, False)),
    ((2, 2), Step(GIVEN_UP, 2, 2, None, False)),
]
EVERY_DEFAULT_ATTEMPT = [position for position, _ in DEFAULT_SCHEDULE]


# --- next_step: examples -------------------------------------------------------------------


def test_default_schedule_is_three_cycles_of_three_attempts() -> None:
    position = (0, 0)
    for tried, expected in DEFAULT_SCHEDULE:
        assert position == tried
        step = next_step(*position, FAIL, DEFAULT)
        assert step == expected
        position = (step.cycle, step.attempt)


@pytest.mark.parametrize("position", EVERY_DEFAULT_ATTEMPT)
def test_success_delivers_at_any_attempt(position: tuple[int, int]) -> None:
    assert next_step(*position, OK, DEFAULT) == Step(DELIVERED, *position, None, False)


@pytest.mark.parametrize("position", EVERY_DEFAULT_ATTEMPT)
def test_gone_gives_up_at_any_attempt(position: tuple[int, int]) -> None:
    assert next_step(*position, GONE, DEFAULT) == Step(GIVEN_UP, *position, None, False)
    with_retry_after = AttemptOutcome(ok=False, gone=True, retry_after=2.0)
    assert next_step(*position, with_retry_after, DEFAULT).status is GIVEN_UP


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        (0.5, 0.5),  # shorter than the fixed 4 s: the receiver's wish wins
        (30.0, 30.0),  # longer than the fixed delay, shorter than the cycle delay
        (60.0, 60.0),
        (3600.0, 60.0),  # capped by the cycle delay
        (math.inf, 60.0),
        (0.0, 0.0),
        (-5.0, 0.0),  # never negative
        (math.nan, 4.0),  # unusable: the fixed delay applies
    ],
)
def test_retry_after_replaces_the_fixed_delay_within_a_cycle(
    retry_after: float, delay: float
) -> None:
    step = next_step(0, 1, AttemptOutcome(ok=False, retry_after=retry_after), DEFAULT)
    assert step == Step(PENDING, 0, 2, delay, False)


@pytest.mark.parametrize("retry_after", [0.0, 5.0, 60.0, 3600.0])
def test_retry_after_never_changes_the_delay_between_cycles(retry_after: float) -> None:
    step = next_step(0, 2, AttemptOutcome(ok=False, retry_after=retry_after), DEFAULT)
    assert step == Step(PENDING, 1, 0, 60.0, True)


def test_retry_after_on_the_last_attempt_still_gives_up() -> None:
    step = next_step(2, 2, AttemptOutcome(ok=False, retry_after=1.0), DEFAULT)
    assert step == Step(GIVEN_UP, 2, 2, None, False)


def test_one_cycle_without_retries_gives_up_at_the_first_failure() -> None:
    policy = RetryPolicy(retry_delays=(), cycles=1)
    assert policy.attempts_per_cycle == 1
    assert next_step(0, 0, FAIL, policy) == Step(GIVEN_UP, 0, 0, None, False)
    assert next_step(0, 0, OK, policy) == Step(DELIVERED, 0, 0, None, False)


def test_one_cycle_with_retries_never_starts_another() -> None:
    policy = RetryPolicy(retry_delays=(0.2, 0.5), cycles=1, cycle_delay=10.0)
    assert next_step(0, 0, FAIL, policy) == Step(PENDING, 0, 1, 0.2, False)
    assert next_step(0, 1, FAIL, policy) == Step(PENDING, 0, 2, 0.5, False)
    assert next_step(0, 2, FAIL, policy) == Step(GIVEN_UP, 0, 2, None, False)


def test_cycles_without_retries_are_single_attempts() -> None:
    policy = RetryPolicy(retry_delays=(), cycles=3, cycle_delay=2.5)
    assert next_step(0, 0, FAIL, policy) == Step(PENDING, 1, 0, 2.5, True)
    assert next_step(1, 0, FAIL, policy) == Step(PENDING, 2, 0, 2.5, True)
    assert next_step(2, 0, FAIL, policy) == Step(GIVEN_UP, 2, 0, None, False)
    # Retry-After has no fixed delay to replace here: cycles keep their delay.
    assert next_step(0, 0, AttemptOutcome(ok=False, retry_after=0.1), policy).delay == 2.5


def test_a_delivery_beyond_a_shrunk_budget_moves_on_or_gives_up() -> None:
    # Settings may shrink while deliveries are queued under the old numbers.
    policy = RetryPolicy(retry_delays=(), cycles=2)
    assert next_step(0, 2, FAIL, policy) == Step(PENDING, 1, 0, 60.0, True)
    assert next_step(4, 0, FAIL, policy) == Step(GIVEN_UP, 4, 0, None, False)


def test_policy_from_settings() -> None:
    settings = Settings(
        retry_delays=[0.1, 0.2, 0.3], cycles=2, cycle_delay=5, max_consecutive_errors=4
    )
    policy = RetryPolicy.from_settings(settings)
    assert policy == RetryPolicy(
        retry_delays=(0.1, 0.2, 0.3), cycles=2, cycle_delay=5.0, max_consecutive_errors=4
    )
    assert policy.attempts_per_cycle == settings.attempts_per_cycle == 4


def test_an_outcome_cannot_be_both_ok_and_gone() -> None:
    with pytest.raises(ValueError, match="ok and gone"):
        AttemptOutcome(ok=True, gone=True)


# --- counters and TooManyErrors: the model and examples ------------------------------------
#
# The contract counts attempts one at a time: every attempt is a call, a failure adds to the
# error run, a success ends it, and the webhook trips when the run reaches the limit or a
# receiver answers 410. `count` is that reading, the oracle the batched production code
# (`fold`, `trips`, `decide`) is checked against.


@dataclass(frozen=True)
class Counters:
    total_calls: int = 0
    total_errors: int = 0
    consecutive_errors: int = 0


def count(counters: Counters, outcome: AttemptOutcome) -> Counters:
    if outcome.ok:
        return Counters(counters.total_calls + 1, counters.total_errors, 0)
    return Counters(
        counters.total_calls + 1, counters.total_errors + 1, counters.consecutive_errors + 1
    )


def claimed(delivery_id: int = 1, webhook_id: int = 1, cycle: int = 0, attempt: int = 0) -> Claimed:
    return Claimed(
        delivery_id=delivery_id, uid=f"uid-{delivery_id}", cycle=cycle, attempt=attempt,
        event_uuid=f"event-{delivery_id}-{cycle}", webhook_id=webhook_id, webhook_name="hook",
        webhook_type="webhook", target_url="https://example.com/", secret=None, headers=None,
        properties=None, tenant="T", event="contact.changed", primary_key=1, associate_id=0,
        occurred_at="2026-01-01T00:00:00.0000000Z", changes=[], change_values=None,
        row_values=None, field_values=None,
    )  # fmt: skip


def decide_one_webhook(
    outcomes: list[AttemptOutcome], state: State, consecutive: int, policy: RetryPolicy = DEFAULT
) -> Decisions:
    batch = [Attempted(claimed(i), o, 1000.0 + i) for i, o in enumerate(outcomes)]
    return decide(batch, {1: WebhookCounters(state, consecutive)}, policy, 2000.0)


def test_fold_of_nothing_changes_nothing() -> None:
    delta = fold([])
    assert delta == CounterDelta(calls=0, errors=0, had_success=False, tail_errors=0, gone=False)
    assert delta.consecutive_after(2) == 2


def test_fold_with_a_success_keeps_only_the_failures_after_it() -> None:
    delta = fold([FAIL, OK, FAIL, FAIL])
    assert delta == CounterDelta(
        calls=4, errors=3, had_success=True, tail_errors=2, gone=False, head_errors=1, longest_run=2
    )
    assert delta.consecutive_after(7) == 2


def test_fold_without_a_success_extends_the_run() -> None:
    delta = fold([FAIL, GONE])
    assert delta == CounterDelta(
        calls=2, errors=2, had_success=False, tail_errors=2, gone=True, head_errors=2, longest_run=2
    )
    assert delta.consecutive_after(7) == 9


def test_fold_remembers_a_gone_before_a_success() -> None:
    assert fold([GONE, OK]).gone


@pytest.mark.parametrize(
    ("state", "consecutive", "outcome", "disabled"),
    [
        (State.Active, 7, FAIL, False),
        (State.Active, 8, FAIL, True),
        (State.Active, 12, FAIL, True),
        (State.Active, 8, OK, False),
        (State.Active, 0, GONE, True),
        (State.Stopped, 100, GONE, False),
        (State.TooManyErrors, 100, FAIL, False),
        (State.Unknown, 100, GONE, False),
    ],
)
def test_decide_disables_only_an_active_webhook_at_the_threshold(
    state: State, consecutive: int, outcome: AttemptOutcome, disabled: bool
) -> None:
    decisions = decide_one_webhook([outcome], state, consecutive)
    assert decisions.disable == ([1] if disabled else [])
    [row] = decisions.counters
    assert (row.calls, row.errors) == (1, 0 if outcome.ok else 1)
    assert row.consecutive_errors == (0 if outcome.ok else consecutive + 1)


def test_a_dead_receiver_trips_the_webhook_on_the_ninth_attempt() -> None:
    state, consecutive = State.Active, 0
    for n, _ in enumerate(EVERY_DEFAULT_ATTEMPT, start=1):
        decisions = decide_one_webhook([FAIL], state, consecutive)
        assert bool(decisions.disable) == (n == 9)
        consecutive = decisions.counters[0].consecutive_errors
        state = State.TooManyErrors if decisions.disable else state
    assert state is State.TooManyErrors


def test_decide_writes_every_row_of_a_mixed_batch() -> None:
    policy = RetryPolicy(retry_delays=(1.0, 4.0), cycles=2, cycle_delay=60.0)
    ok = AttemptOutcome(ok=True, status=200, latency_ms=5.0)
    fail = AttemptOutcome(ok=False, status=500, error="HTTP 500", latency_ms=6.0)
    slow_down = AttemptOutcome(ok=False, status=429, error="HTTP 429", retry_after=30.0)
    last = AttemptOutcome(ok=False, error="timed out", kind=ErrorKind.TIMEOUT)
    batch = [
        Attempted(claimed(1, webhook_id=2), ok, 100.0),
        Attempted(claimed(2, webhook_id=1), fail, 101.0),
        Attempted(claimed(3, webhook_id=1, attempt=1), slow_down, 102.0),
        Attempted(claimed(4, webhook_id=1, attempt=2), last, 103.0),  # a new cycle
        Attempted(claimed(5, webhook_id=3), fail, 104.0),  # its webhook was deleted
    ]
    webhooks = {1: WebhookCounters(State.Active, 0), 2: WebhookCounters(State.Active, 4)}
    ids = iter(["new-cycle-id"])
    d = decide(batch, webhooks, policy, 200.0, new_event_id=lambda: next(ids))
    assert [(r.delivery_id, r.ok, r.http_status, r.error) for r in d.attempts] == [
        (1, True, 200, None), (2, False, 500, "HTTP 500"), (3, False, 429, "HTTP 429"),
        (4, False, None, "timed out"), (5, False, 500, "HTTP 500"),
    ]  # fmt: skip
    assert d.counters == [
        CounterRow(3, 3, 3, 1, "timed out", 103.0, None, "event-4-0", webhook_id=1),
        CounterRow(1, 0, 0, 0, None, None, 100.0, "event-1-0", webhook_id=2),
    ]
    assert [(s.delivery_id, s.status, s.cycle, s.attempt, s.next_at, s.finished_at) for s in d.steps] == [
        (1, DELIVERED, 0, 0, 200.0, 200.0),
        (2, PENDING, 0, 1, 201.0, None),
        (3, PENDING, 0, 2, 230.0, None),  # Retry-After replaced the 4 s delay
        (4, PENDING, 1, 0, 260.0, None),
        (5, GIVEN_UP, 0, 1, 201.0, 200.0),  # no Active webhook: kept for Redeliver
    ]  # fmt: skip
    assert [s.event_uuid for s in d.steps] == [
        "event-1-0", "event-2-0", "event-3-0", "new-cycle-id", "event-5-0"
    ]  # fmt: skip
    assert d.disable == []


def test_a_batch_of_successes_needs_no_counters_and_sets_them() -> None:
    ok = AttemptOutcome(ok=True, status=200)
    batch = [
        Attempted(claimed(1, webhook_id=2), ok, 105.0),
        Attempted(claimed(2, webhook_id=1), ok, 101.0),
        Attempted(claimed(3, webhook_id=2), ok, 103.0),
    ]
    assert not needs_counters(batch)
    assert needs_counters([*batch, Attempted(claimed(4), AttemptOutcome(ok=False), 1.0)])
    d = decide(batch, None, DEFAULT, 200.0)
    assert d.counters == [] and d.disable == [] and d.first_failures == []
    # In webhook id order (the order lock_webhooks locks in); the latest success of each.
    assert d.successes == [
        SuccessRow(1, 101.0, "event-2-0", webhook_id=1),
        SuccessRow(2, 105.0, "event-3-0", webhook_id=2),
    ]
    assert [(s.status, s.finished_at) for s in d.steps] == [(DELIVERED, 200.0)] * 3
    assert len(d.attempts) == 3


def test_a_batch_that_disables_its_webhook_gives_up_its_pending_deliveries() -> None:
    batch = [Attempted(claimed(i), FAIL, 100.0) for i in range(3)]
    d = decide(batch, {1: WebhookCounters(State.Active, 7)}, DEFAULT, 200.0)
    assert d.disable == [1]
    assert {s.status for s in d.steps} == {GIVEN_UP}


# --- properties ----------------------------------------------------------------------------

FAST = settings()  # examples and deadline: the profile (conftest.py)

policies = st.builds(
    RetryPolicy,
    retry_delays=st.lists(st.floats(0, 100), max_size=4).map(tuple),
    cycles=st.integers(1, 5),
    cycle_delay=st.floats(0, 1000),
    max_consecutive_errors=st.integers(1, 12),
)
retry_afters = st.none() | st.floats(allow_nan=True, allow_infinity=True)
outcomes = st.one_of(
    st.just(OK),
    st.builds(AttemptOutcome, ok=st.just(False), retry_after=retry_afters),
    st.builds(AttemptOutcome, ok=st.just(False), gone=st.just(True), retry_after=retry_afters),
)
counters = st.builds(Counters, st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 30))


def decide_in_batches(
    policy: RetryPolicy, start: Counters, initial: State, batches: list[list[AttemptOutcome]]
) -> tuple[Counters, State, int | None]:
    """Run `decide` batch after batch for one webhook, carrying what the store would write:
    the counters after all batches, the state, and the index of the batch that disabled it."""
    running, state, tripped_at = start, initial, None
    for index, outcomes in enumerate(batches):
        if not outcomes:
            continue
        d = decide_one_webhook(outcomes, state, running.consecutive_errors, policy)
        [row] = d.counters
        running = Counters(
            running.total_calls + row.calls, running.total_errors + row.errors,
            row.consecutive_errors,
        )  # fmt: skip
        if d.disable:
            assert state is State.Active and tripped_at is None  # trips once only
            state, tripped_at = State.TooManyErrors, index
    return running, state, tripped_at


@FAST
@given(policy=policies, scripted=st.lists(outcomes, max_size=30))
def test_any_run_follows_the_budget(policy: RetryPolicy, scripted: list[AttemptOutcome]) -> None:
    # The scripted outcomes first, then failures: every run ends, many by exhausting the budget.
    feed = iter(scripted)
    budget = [(c, a) for c in range(policy.cycles) for a in range(policy.attempts_per_cycle)]
    tried: list[tuple[int, int]] = []
    cycle, attempt = 0, 0
    while True:
        assert attempt < policy.attempts_per_cycle  # X-SuperOffice-Retry stays in range
        assert cycle < policy.cycles
        tried.append((cycle, attempt))
        outcome = next(feed, FAIL)
        step = next_step(cycle, attempt, outcome, policy)
        if step.status is not PENDING:
            break
        assert step.new_cycle == (step.cycle == cycle + 1)
        if step.new_cycle:
            assert (step.attempt, step.delay) == (0, policy.cycle_delay)
        else:
            assert (step.cycle, step.attempt) == (cycle, attempt + 1)
            fixed, asked = policy.retry_delays[attempt], outcome.retry_after
            assert step.delay is not None and step.delay >= 0
            if asked is None or math.isnan(asked):
                assert step.delay == fixed
            else:
                assert step.delay == min(max(asked, 0.0), policy.cycle_delay)
        cycle, attempt = step.cycle, step.attempt

    # Attempts are the budget's positions in order, never more.
    assert tried == budget[: len(tried)]
    assert (step.cycle, step.attempt, step.delay, step.new_cycle) == (cycle, attempt, None, False)
    assert (step.status is DELIVERED) == outcome.ok
    if step.status is GIVEN_UP:
        assert outcome.gone or len(tried) == len(budget)


def cut(sequence: list[AttemptOutcome], data: st.DataObject) -> list[list[AttemptOutcome]]:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(sequence)), max_size=8)))
    bounds = [0, *cuts, len(sequence)]
    return [sequence[lo:hi] for lo, hi in itertools.pairwise(bounds)]


@FAST
@given(
    policy=policies,
    start=counters,
    initial=st.sampled_from(State),
    sequence=st.lists(outcomes, max_size=40),
    data=st.data(),
)
def test_batched_decisions_equal_counting_one_by_one(
    policy: RetryPolicy,
    start: Counters,
    initial: State,
    sequence: list[AttemptOutcome],
    data: st.DataObject,
) -> None:
    """However the writer cuts the outcomes into batches, the counters are those of counting
    one attempt at a time, and an Active webhook trips in the batch holding the first
    attempt where the count reached the threshold (e.g. 9 failures, then a success), and
    only then."""
    batches = cut(sequence, data)
    one_by_one, trigger = start, None
    for i, outcome in enumerate(sequence):
        one_by_one = count(one_by_one, outcome)
        too_many = one_by_one.consecutive_errors >= policy.max_consecutive_errors
        if trigger is None and (outcome.gone or too_many):
            trigger = i
    counted, state, tripped_at = decide_in_batches(policy, start, initial, batches)
    assert counted == one_by_one
    if initial is not State.Active or trigger is None:
        assert (state, tripped_at) == (initial, None)
    else:
        ends = list(itertools.accumulate(len(b) for b in batches))
        assert tripped_at == next(i for i, end in enumerate(ends) if trigger < end)
        assert state is State.TooManyErrors


def test_nine_failures_then_a_success_in_one_batch_trips() -> None:
    batch = [AttemptOutcome(ok=False)] * 9 + [AttemptOutcome(ok=True)]
    assert trips(0, fold(batch), RetryPolicy())
    assert not trips(
        0, fold([AttemptOutcome(ok=False)] * 8 + [AttemptOutcome(ok=True)]), RetryPolicy()
    )
    assert trips(5, fold([AttemptOutcome(ok=False)] * 4 + [AttemptOutcome(ok=True)]), RetryPolicy())


# ----- FirstFailure: once per run of errors (§6) ----------------------------------------------

OK, FAIL = AttemptOutcome(ok=True, status=200), AttemptOutcome(ok=False, status=500)


@pytest.mark.parametrize(
    ("failed_before", "outcomes", "starts", "failed_after"),
    [
        (False, [FAIL], True, True),  # the first failure after a success (or ever)
        (True, [FAIL], False, True),  # the same run goes on: told already
        (True, [OK, FAIL], True, True),  # a success ended the run, a new one starts
        (False, [FAIL, OK], True, False),  # a run that started and ended in the batch
        (True, [FAIL, OK], False, False),
        (False, [OK, OK], False, False),
        (True, [], False, True),
    ],
)
def test_first_failure_once_per_run(
    failed_before: bool, outcomes: list[AttemptOutcome], starts: bool, failed_after: bool
) -> None:
    delta = fold(outcomes)
    assert starts_failure_streak(failed_before, delta) is starts
    assert failed_since_success_after(failed_before, delta) is failed_after


def test_first_failure_also_in_the_batch_that_disables() -> None:
    policy = RetryPolicy(max_consecutive_errors=9, retry_delays=(1.0,), cycles=1, cycle_delay=1.0)
    gone = AttemptOutcome(ok=False, status=410, gone=True)
    one = claimed()
    d = decide([Attempted(one, gone, 1.0)], {1: WebhookCounters(State.Active, 0)}, policy, 2.0)
    assert (d.disable, d.first_failures) == ([1], [1])
    # a webhook set Active again after TooManyErrors has consecutive_errors 0 but no success
    again = {1: WebhookCounters(State.Active, 0, failed_since_success=True)}
    d = decide([Attempted(one, FAIL, 3.0)], again, policy, 4.0)
    assert d.first_failures == []
