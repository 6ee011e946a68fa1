"""AutoRecover's probe schedule (dispatch/recovery.py), pure: doubling delays up to the cap,
anchored on the disabling, and the end of probing after the span."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hookcast.dispatch.recovery import RecoverySchedule
from hookcast.settings import Settings


def test_the_defaults_double_from_a_minute_to_six_hours_for_three_days() -> None:
    s = RecoverySchedule.from_settings(Settings())
    assert (s.first_delay, s.max_delay, s.give_up_after) == (60, 6 * 3600, 3 * 86400)
    assert [s.delay(n) for n in range(11)] == [
        60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600,
    ]  # fmt: skip
    planned = s.planned()
    assert planned[:3] == [60, 180, 420]
    assert planned[8] == 60 * 511  # 8.5 hours: the last doubled delay
    assert all(b - a == 21600 for a, b in itertools.pairwise(planned[9:]))
    assert planned[-1] <= 3 * 86400 < planned[-1] + 21600
    assert len(planned) == 19


def test_next_probe_is_on_the_schedule_and_none_after_the_span() -> None:
    s = RecoverySchedule(1.0, 4.0, 10.0)
    disabled = 1000.0
    assert s.next_probe(disabled, 0, disabled) == 1001.0  # the first, at the disabling
    # on time or a little late, the schedule keeps its times (1, 3, 7, 11 > 10: over)
    assert s.next_probe(disabled, 1, 1001.3) == 1003.0
    assert s.next_probe(disabled, 2, 1003.9) == 1007.0
    assert s.next_probe(disabled, 3, 1007.0) is None
    # so late that the next time is past (nobody ran): a full delay from now, not a burst
    assert s.next_probe(disabled, 1, 1005.0) == 1007.0
    assert s.next_probe(disabled, 2, 1008.0) is None  # 1008 + 4 is past the span


def test_a_span_shorter_than_the_first_delay_never_probes() -> None:
    s = RecoverySchedule(60.0, 60.0, 30.0)
    assert s.next_probe(0.0, 0, 0.0) is None
    assert s.planned() == []


@pytest.mark.parametrize(
    "bad",
    [(0.0, 10.0, 10.0), (-1.0, 10.0, 10.0), (10.0, 5.0, 10.0), (1.0, 2.0, -1.0)],
)
def test_impossible_schedules_are_refused(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        RecoverySchedule(*bad)


def test_the_settings_come_from_hookcast_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKCAST_RECOVER_FIRST_DELAY", "0.5")
    monkeypatch.setenv("HOOKCAST_RECOVER_MAX_DELAY", "2")
    monkeypatch.setenv("HOOKCAST_RECOVER_GIVE_UP_AFTER", "30")
    assert RecoverySchedule.from_settings(Settings()) == RecoverySchedule(0.5, 2.0, 30.0)
    monkeypatch.setenv("HOOKCAST_RECOVER_MAX_DELAY", "0.1")  # below the first delay
    with pytest.raises(ValidationError, match="HOOKCAST_RECOVER_MAX_DELAY"):
        Settings()


@given(
    first=st.floats(0.01, 1000),
    factor=st.floats(1, 10_000),
    span=st.floats(0, 1e6),
    probes=st.integers(0, 10_000),
    late=st.floats(0, 1e5),
)
def test_properties(first: float, factor: float, span: float, probes: int, late: float) -> None:
    s = RecoverySchedule(first, first * factor, span)
    delays = [s.delay(n) for n in range(probes % 80)]
    assert all(first <= d <= s.max_delay for d in delays)
    assert all(a <= b for a, b in itertools.pairwise(delays))  # never shorter
    assert s.offset(probes) == pytest.approx(sum(s.delay(n) for n in range(probes + 1)))
    disabled = 5000.0
    now = disabled + s.offset(probes - 1 if probes else 0) * (probes > 0) + late
    at = s.next_probe(disabled, probes, now)
    if at is not None:
        assert now < at <= disabled + span  # in the future, never after the span
        assert at - now <= s.delay(probes) + 1e-6 * at  # never more than a delay away
