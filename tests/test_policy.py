"""The retry schedule and state machine of §6: explicit examples of each rule, then properties."""

from __future__ import annotations

import itertools
import math
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookcast.dispatch.policy import (
    CounterDelta,
    Counters,
    DeliveryStatus,
    RetryPolicy,
    Step,
    apply,
    count,
    fold,
    next_state,
    next_step,
    trips,
)
from hookcast.model import State
from hookcast.outcome import AttemptOutcome
from hookcast.settings import Settings

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


# --- counters: examples --------------------------------------------------------------------


def test_count_one_attempt_at_a_time() -> None:
    counters = Counters(total_calls=10, total_errors=4, consecutive_errors=3)
    assert count(counters, FAIL) == Counters(11, 5, 4)
    assert count(counters, GONE) == Counters(11, 5, 4)
    assert count(counters, OK) == Counters(11, 4, 0)


def test_fold_of_nothing_changes_nothing() -> None:
    delta = fold([])
    assert delta == CounterDelta(calls=0, errors=0, had_success=False, tail_errors=0, gone=False)
    assert apply(Counters(5, 3, 2), delta) == Counters(5, 3, 2)


def test_fold_with_a_success_keeps_only_the_failures_after_it() -> None:
    delta = fold([FAIL, OK, FAIL, FAIL])
    assert delta == CounterDelta(
        calls=4, errors=3, had_success=True, tail_errors=2, gone=False, head_errors=1, longest_run=2
    )
    assert apply(Counters(10, 5, 7), delta) == Counters(14, 8, 2)


def test_fold_without_a_success_extends_the_run() -> None:
    delta = fold([FAIL, GONE])
    assert delta == CounterDelta(
        calls=2, errors=2, had_success=False, tail_errors=2, gone=True, head_errors=2, longest_run=2
    )
    assert apply(Counters(10, 5, 7), delta) == Counters(12, 7, 9)


def test_fold_remembers_a_gone_before_a_success() -> None:
    assert fold([GONE, OK]).gone


# --- next_state: examples ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "consecutive", "gone", "expected"),
    [
        (State.Active, 8, False, None),
        (State.Active, 9, False, State.TooManyErrors),
        (State.Active, 12, False, State.TooManyErrors),
        (State.Active, 0, True, State.TooManyErrors),
        (1, 9, False, State.TooManyErrors),  # a plain int read back from the database
        (State.Stopped, 100, True, None),
        (State.TooManyErrors, 100, True, None),
        (State.Unknown, 100, True, None),
    ],
)
def test_next_state(state: State, consecutive: int, gone: bool, expected: State | None) -> None:
    counters = Counters(total_calls=100, total_errors=100, consecutive_errors=consecutive)
    assert next_state(state, counters, gone, DEFAULT) == expected


def test_a_dead_receiver_trips_the_webhook_on_the_ninth_attempt() -> None:
    counters, state = Counters(), State.Active
    for n, _ in enumerate(EVERY_DEFAULT_ATTEMPT, start=1):
        counters = count(counters, FAIL)
        changed = next_state(state, counters, False, DEFAULT)
        assert (changed is not None) == (n == 9)
        state = changed or state
    assert state is State.TooManyErrors


# --- properties ----------------------------------------------------------------------------

FAST = settings(max_examples=200, deadline=None)

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


@FAST
@given(start=counters, sequence=st.lists(outcomes, max_size=40), data=st.data())
def test_batched_folds_equal_counting_one_by_one(
    start: Counters, sequence: list[AttemptOutcome], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(sequence)), max_size=8)))
    bounds = [0, *cuts, len(sequence)]
    batches = [sequence[lo:hi] for lo, hi in itertools.pairwise(bounds)]

    one_by_one = reduce(count, sequence, start)
    assert reduce(lambda c, batch: apply(c, fold(batch)), batches, start) == one_by_one
    assert any(fold(batch).gone for batch in batches) == any(o.gone for o in sequence)
    for outcome in sequence:
        assert apply(start, fold([outcome])) == count(start, outcome)


@FAST
@given(
    policy=policies,
    start=counters,
    initial=st.sampled_from(State),
    sequence=st.lists(outcomes, max_size=40),
)
def test_too_many_errors_trips_once_at_the_first_trigger(
    policy: RetryPolicy, start: Counters, initial: State, sequence: list[AttemptOutcome]
) -> None:
    running, trigger = start, None
    for i, outcome in enumerate(sequence):
        running = count(running, outcome)
        if outcome.gone or running.consecutive_errors >= policy.max_consecutive_errors:
            trigger = i
            break
    expected = trigger if initial is State.Active else None

    state, tripped_at, current = initial, None, start
    for i, outcome in enumerate(sequence):
        current = count(current, outcome)
        changed = next_state(state, current, outcome.gone, policy)
        if changed is not None:
            assert changed is State.TooManyErrors and tripped_at is None  # trips once only
            tripped_at, state = i, changed
    assert tripped_at == expected


@FAST
@given(policy=policies, start=counters, sequence=st.lists(outcomes, max_size=40), data=st.data())
def test_a_batch_trips_exactly_when_counting_one_by_one_would(
    policy: RetryPolicy, start: Counters, sequence: list[AttemptOutcome], data: st.DataObject
) -> None:
    """The dispatcher checks the threshold once per written batch; that must not miss a
    point inside the batch where the count reached it (e.g. 9 failures, then a success)."""
    cuts = sorted(data.draw(st.sets(st.integers(0, len(sequence)), max_size=8)))
    bounds = [0, *cuts, len(sequence)]
    running, tripped_in_batches = start, False
    for lo, hi in itertools.pairwise(bounds):
        delta = fold(sequence[lo:hi])
        tripped_in_batches |= bool(sequence[lo:hi]) and trips(
            running.consecutive_errors, delta, policy
        )
        running = apply(running, delta)
    one_by_one, tripped = start, False
    for outcome in sequence:
        one_by_one = count(one_by_one, outcome)
        tripped |= outcome.gone or one_by_one.consecutive_errors >= policy.max_consecutive_errors
    assert tripped_in_batches == tripped


def test_nine_failures_then_a_success_in_one_batch_trips() -> None:
    batch = [AttemptOutcome(ok=False)] * 9 + [AttemptOutcome(ok=True)]
    assert trips(0, fold(batch), RetryPolicy())
    assert not trips(
        0, fold([AttemptOutcome(ok=False)] * 8 + [AttemptOutcome(ok=True)]), RetryPolicy()
    )
    assert trips(5, fold([AttemptOutcome(ok=False)] * 4 + [AttemptOutcome(ok=True)]), RetryPolicy())
