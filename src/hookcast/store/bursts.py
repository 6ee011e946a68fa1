"""Burst coalescing in the intake's transaction (docs/delivery-options.md, "Burst
coalescing"): a new delivery of a coalescing webhook merges into the open window of its
record and event, or opens one; a `*.deleted` closes its record's open windows. What a
merged payload says is hookcast.coalescing's decision; this reads the open windows, locked,
and writes the merged payloads and the closed windows.

Race-free with several intake processes on PostgreSQL: the open windows are read with
`FOR UPDATE OF d`, so a concurrent merger of the same window waits for this one; a window
changed meanwhile drops out of the read (a claimer leased it: its next_at no longer equals
window_until; another intake merged into it: its event_id no longer joins the event row read
before the wait), and the signal gets a new delivery instead: no merge is lost. Claimers pass
a window being merged into (SKIP LOCKED) and take it after the commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from ..coalescing import coalesces, merge, window_end
from .codec import from_json, to_json
from .dialect import dialect_of
from .rows import NewEvent, event_values
from .statements import marks, run


class Burst(NamedTuple):
    """How a new delivery of a coalescing webhook is stored: its window open until `until`
    and due then (None: due now, no window), carrying the signals `merged` (None: one)."""

    until: float | None
    merged: list[int] | None


@dataclass(slots=True, eq=False)
class _Window:
    """A delivery not attempted yet that later signals of its record and event merge into."""

    webhook_id: int
    payload: NewEvent
    event_id: int  # the event row its payload is in now
    created_at: float  # when its first signal was stored
    until: float
    signals: list[int]
    delivery_id: int | None = None  # a stored one; None: new in this transaction
    index: int = -1  # a new one's place among the kept pairs
    own_event: bool = False  # event_id is its own merged row (replaced on a merge)
    merged: bool = False  # a signal merged into it in this transaction
    closed: bool = False  # a delete of its record came: due now, no more merges


def coalesce(
    conn: Connection,
    pairs: Sequence[tuple[int, NewEvent, Any]],
    now: float,
    records: dict[int, str],
) -> tuple[list[tuple[int, NewEvent, Any]], dict[int, Burst], set[int]]:
    """Of the (event id, event, webhook) pairs about to become deliveries, those that still
    do, in order, with a Burst by index for each of a coalescing webhook's; the others were
    merged into a window. Also the webhooks whose stored windows closed (due now).
    `records`: pair index -> record key, for the pairs of coalescing webhooks."""
    windows = _open_windows(conn, {(pairs[i][2].id, r) for i, r in records.items()}, now)
    touched: dict[int, _Window] = {}  # by id(): each window once, in first-touched order
    kept: list[tuple[int, NewEvent, Any]] = []
    for index, (event_id, e, hook) in enumerate(pairs):
        record = records.get(index)
        if record is None:
            kept.append((event_id, e, hook))
            continue
        open_ = windows[(hook.id, record)]
        if not coalesces(e.name):  # a delete: never merged, and its record's windows end now
            for w in open_:
                w.closed = True
                touched[id(w)] = w
            open_.clear()
            kept.append((event_id, e, hook))
            continue
        found = next((w for w in open_ if w.payload.name == e.name), None)
        if found is None:
            until = window_end(now, hook.options.coalesce_ms)
            found = _Window(hook.id, e, event_id, now, until, [event_id], index=len(kept))
            open_.append(found)
            kept.append((event_id, e, hook))
        else:
            found.payload = merge(found.payload, e)
            found.signals.append(event_id)
            found.merged = True
        touched[id(found)] = found
    return kept, *_write(conn, list(touched.values()), kept, now)


def _write(
    conn: Connection, touched: list[_Window], kept: list[tuple[int, NewEvent, Any]], now: float
) -> tuple[dict[int, Burst], set[int]]:
    merged = [w for w in touched if w.merged]
    ids = dialect_of(conn).allocate_ids(conn, "events", len(merged))
    replaced = [w.event_id for w in merged if w.own_event]
    for w, event_id in zip(merged, ids, strict=True):
        w.event_id = event_id
    if merged:
        run(
            conn,
            "insert_event",
            [
                (w.event_id, *event_values(w.payload, w.created_at), w.payload.traceparent)
                for w in merged
            ],
        )
    bursts: dict[int, Burst] = {}
    updates, closed = [], set()
    for w in touched:
        until = None if w.closed else w.until
        signals = w.signals if len(w.signals) > 1 else None
        if w.delivery_id is None:
            _, e, hook = kept[w.index]
            kept[w.index] = (w.event_id, e, hook)
            bursts[w.index] = Burst(until, signals)
        else:
            due = now if w.closed else w.until
            updates.append((w.event_id, to_json(signals), due, until, w.delivery_id))
            if w.closed:
                closed.add(w.webhook_id)
    if updates:
        run(conn, "update_window", updates)
    if replaced:  # a merged row belongs to its delivery alone, which no longer names it
        run(conn, "delete_events", tuple(replaced), marks=marks(len(replaced)))
    return bursts, closed


def _open_windows(
    conn: Connection, keys: Iterable[tuple[int, str]], now: float
) -> defaultdict[tuple[int, str], list[_Window]]:
    """The open windows of these (webhook, record)s, oldest first, locked (PostgreSQL)."""
    by_webhook: defaultdict[int, list[str]] = defaultdict(list)
    for webhook_id, record in keys:
        by_webhook[webhook_id].append(record)
    lock = " FOR UPDATE OF d" if dialect_of(conn).row_lock else ""
    found: defaultdict[tuple[int, str], list[_Window]] = defaultdict(list)
    for webhook_id, records in sorted(by_webhook.items()):
        rows = run(
            conn,
            "open_windows",
            (webhook_id, *records, now),
            marks=marks(len(records)),
            lock=lock,
        )
        for (
            delivery_id,
            record,
            event_id,
            signals,
            until,
            created_at,
            tenant,
            name,
            primary_key,
            associate_id,
            occurred_at,
            changes,
            change_values,
            field_values,
            traceparent,
        ) in rows:
            payload = NewEvent(
                tenant,
                name,
                primary_key,
                associate_id,
                occurred_at,
                from_json(changes) or [],
                from_json(change_values),
                None,
                from_json(field_values),
                traceparent,
            )
            found[(webhook_id, record)].append(
                _Window(
                    webhook_id,
                    payload,
                    event_id,
                    created_at,
                    until,
                    from_json(signals) or [event_id],
                    delivery_id=delivery_id,
                    own_event=signals is not None,
                )
            )
    return found
