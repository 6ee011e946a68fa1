"""The pure decisions of burst coalescing (hookcast.coalescing): what merges, and what a
merged payload says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hookcast.coalescing import coalesces, merge, window_end
from hookcast.store.rows import NewEvent


def _event(changes, values=None, fields=None, associate=1, at="t1", trace=None) -> NewEvent:
    return NewEvent(
        tenant="Cust1234",
        name="contact.changed",
        primary_key=7,
        associate_id=associate,
        occurred_at=at,
        changes=changes,
        change_values=values,
        field_values=fields,
        traceparent=trace,
    )


def test_changes_are_the_union_in_order_of_first_appearance() -> None:
    merged = merge(_event(["name", "email"]), _event(["phone", "name"]))
    assert merged.changes == ["name", "email", "phone"]


def test_values_are_the_latest_of_each_field() -> None:
    first = _event(["name", "email"], {"name": "Ada", "email": "a@x"}, {"name": "Ada", "n": 1})
    later = _event(["name"], {"name": "Ada L"}, {"name": "Ada L"})
    merged = merge(first, later)
    assert merged.change_values == {"name": "Ada L", "email": "a@x"}
    assert merged.field_values == {"name": "Ada L", "n": 1}


def test_who_and_when_are_the_latest_signals() -> None:
    merged = merge(
        _event(["a"], associate=1, at="t1", trace="tp1"), _event(["b"], associate=2, at="t2")
    )
    assert (merged.associate_id, merged.occurred_at) == (2, "t2")
    assert merged.traceparent == "tp1"  # the later signal had none
    assert merge(_event(["a"], trace="tp1"), _event(["b"], trace="tp2")).traceparent == "tp2"


def test_absent_values_stay_absent_and_the_inputs_unchanged() -> None:
    first, later = _event(["a"]), _event(["b"], fields={"b": 2})
    merged = merge(first, later)
    assert merged.change_values is None and merged.field_values == {"b": 2}
    assert merge(_event(["a"], fields={"a": 1}), _event(["b"])).field_values == {"a": 1}
    merged.field_values["b"] = 3  # a copy: the signal's own payload is not shared
    assert later.field_values == {"b": 2} and first.changes == ["a"]


def test_deletes_never_coalesce() -> None:
    assert coalesces("contact.changed") and coalesces("contact.created")
    assert not coalesces("contact.deleted") and not coalesces("sale.deleted")


def test_the_window_runs_from_the_first_signal() -> None:
    assert window_end(1000.0, 250) == 1000.25


names = st.lists(st.sampled_from("abcdefg"), max_size=5, unique=True)  # as a signal has them


@given(
    st.lists(
        st.tuples(names, st.dictionaries(st.sampled_from("abcdefg"), st.integers())),
        min_size=1,
        max_size=6,
    )
)
def test_merging_a_burst_one_by_one(burst) -> None:
    """Folding a burst signal by signal: every field name once, in order of first
    appearance, each value the last one signalled."""
    events = [_event(changes, fields=fields or None) for changes, fields in burst]
    merged = events[0]
    for later in events[1:]:
        merged = merge(merged, later)
    every = [n for changes, _ in burst for n in changes]
    assert merged.changes == list(dict.fromkeys(every))
    latest: dict[str, int] = {}
    for _, fields in burst:
        latest.update(fields)
    assert (merged.field_values or {}) == latest
