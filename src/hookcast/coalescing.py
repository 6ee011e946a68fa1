"""Burst coalescing (docs/delivery-options.md, "Burst coalescing"): which signals of one
record merge into one delivery, and what the merged payload says. Pure: no I/O, no clock;
store/queue.py asks and writes.

The rules: a signal merges into a delivery of the same webhook, record and event name that
has not been attempted yet and whose window is still open; `*.deleted` never merges and
ends the record's open windows at once (they fall due now, the delete is delivered after
them). The merged payload's Changes are the union of the field names in order of first
appearance; FieldValues and ChangeValues carry each field's latest value; who changed it
and when are the latest signal's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .store.rows import NewEvent

__all__ = ["coalesces", "merge", "window_end"]


def coalesces(event: str) -> bool:
    """Whether a signal of this event may merge or be merged into: all but `*.deleted`,
    which is never merged away (and ends its record's window, see module doc)."""
    return not event.endswith(".deleted")


def window_end(now: float, coalesce_ms: int) -> float:
    """When a new coalescing delivery falls due: the window from its first signal."""
    return now + coalesce_ms / 1000


def _latest(earlier: dict[str, Any] | None, later: dict[str, Any] | None) -> dict[str, Any] | None:
    if later is None:
        return earlier
    if earlier is None:
        return dict(later)
    return {**earlier, **later}


def merge(into: NewEvent, later: NewEvent) -> NewEvent:
    """The payload of a delivery carrying `into` with the `later` signal merged in (same
    tenant, event and primary key: the caller only merges those)."""
    assert (into.tenant, into.name, into.primary_key) == (
        later.tenant,
        later.name,
        later.primary_key,
    ), "signals of one record and event merge"
    return replace(
        into,
        associate_id=later.associate_id,
        occurred_at=later.occurred_at,
        changes=list(dict.fromkeys([*into.changes, *later.changes])),
        change_values=_latest(into.change_values, later.change_values),
        field_values=_latest(into.field_values, later.field_values),
        traceparent=later.traceparent or into.traceparent,
    )
