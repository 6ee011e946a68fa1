"""signal(): validate an event, then commit it with its deliveries before returning.

Signals arriving together share one transaction (group commit): while one batch is being
committed on the database thread, the next one gathers. That is where throughput comes
from, without giving up durability.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import DatabaseUnavailable, ValidationError
from .model import EVENT_NAME, MAX_ASSOCIATE_ID, MAX_PRIMARY_KEY
from .payload import format_timestamp
from .store import queue
from .store.database import Database
from .store.queue import SignalKey
from .store.rows import Claimed, NewEvent

if TYPE_CHECKING:
    from .tracing import Tracing


def new_event(
    event: str,
    primary_key: int,
    *,
    tenant: str,
    associate_id: int = 0,
    changes: Sequence[str] | Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    field_values: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    traceparent: str | None = None,
) -> NewEvent:
    """Check a signal's arguments (§3) and build the event to store. `traceparent`: the
    signal's trace context (hookcast.tracing), stored with it."""
    if not isinstance(event, str) or not event or len(event) > 128 or not EVENT_NAME.match(event):
        raise ValidationError(
            f"Event name {event!r} is malformed; use letters, digits and _ separated by dots, "
            "at most 128 characters, e.g. contact.changed."
        )
    if (
        isinstance(primary_key, bool)
        or not isinstance(primary_key, int)
        or not 0 <= primary_key <= MAX_PRIMARY_KEY
    ):
        raise ValidationError(
            f"PrimaryKey must be an integer from 0 to {MAX_PRIMARY_KEY} (2^53-1), not {primary_key!r}."
        )
    if not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 255 or "\0" in tenant:
        raise ValidationError(
            "The tenant (ContextIdentifier) must be a non-empty string without NUL."
        )
    if (
        isinstance(associate_id, bool)
        or not isinstance(associate_id, int)
        or not 0 <= associate_id <= MAX_ASSOCIATE_ID
    ):
        raise ValidationError(f"associate_id must be an integer from 0 to {MAX_ASSOCIATE_ID}.")
    change_values: dict[str, Any] | None = None
    if changes is None:
        names: list[str] = []
    elif isinstance(changes, Mapping):
        change_values = dict(changes)
        names = list(change_values)
    elif isinstance(changes, (list, tuple)):
        names = list(changes)
    else:
        raise ValidationError(
            "changes must be a list of field names or a mapping of name to value."
        )
    if not all(isinstance(n, str) and n and "\0" not in n for n in names):
        raise ValidationError("Every changed field name must be a non-empty string without NUL.")
    name = event.lower()
    if values is not None:
        if not name.endswith(".deleted"):
            raise ValidationError(
                "values (the ids of a deleted row) are only for *.deleted events."
            )
        if not isinstance(values, Mapping):
            raise ValidationError("values must be a mapping of id column to value.")
    if field_values is not None and not isinstance(field_values, Mapping):
        raise ValidationError("field_values must be a mapping.")
    when = occurred_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValidationError("occurred_at must be timezone-aware (e.g. datetime.now(UTC)).")
    return NewEvent(
        tenant=tenant,
        name=name,
        primary_key=primary_key,
        associate_id=associate_id,
        occurred_at=format_timestamp(when),
        changes=names,
        change_values=change_values,
        row_values=dict(values) if values is not None else None,
        field_values=dict(field_values) if field_values is not None else None,
        traceparent=traceparent,
    )


class EventData(NamedTuple):
    """What a REST or Agents signal body says, as `new_event` takes it."""

    changes: dict[str, Any] | list[str] | None = None
    values: dict[str, Any] | None = None
    field_values: dict[str, Any] | None = None


_STRUCTURED = {"changes": "changes", "values": "values", "fieldvalues": "field_values"}


def read_event_data(event: str, data: Any) -> EventData:
    """A signal body (§3 "Event data"): structured, an object whose keys (any case) are only
    among Changes, Values and FieldValues; or flat, an object of fields, which is a deleted
    row's Values for a `*.deleted` event and otherwise both Changes and FieldValues, so that
    receivers get the new values as SuperOffice's current payloads carry them."""
    if data is None:
        return EventData()
    if not isinstance(data, dict):
        raise ValidationError("The event data must be a JSON object (or absent).")
    if not data:
        return EventData()
    if all(str(key).lower() in _STRUCTURED for key in data):
        parts: dict[str, Any] = {}
        for key, value in data.items():
            part = _STRUCTURED[key.lower()]
            allowed = (dict, list) if part == "changes" else (dict,)
            if value is not None and not isinstance(value, allowed):
                kind = "an object (or a list of names)" if part == "changes" else "an object"
                raise ValidationError(f"{key} must be {kind}, not {type(value).__name__}.")
            parts[part] = value
        return EventData(**parts)
    if event.lower().endswith(".deleted"):
        return EventData(values=data)
    return EventData(changes=data, field_values=data)


class Signal(NamedTuple):
    """One event for `Hub.signal_many`: the arguments `Hub.signal` takes."""

    event: str
    primary_key: int
    tenant: str
    associate_id: int = 0
    changes: Sequence[str] | Mapping[str, Any] | None = None
    values: Mapping[str, Any] | None = None
    field_values: Mapping[str, Any] | None = None
    occurred_at: datetime | None = None


MAX_KEY_LENGTH = 255


def signal_key(key: str | None, batch: Sequence[NewEvent]) -> SignalKey | None:
    """The idempotency key of a request to signal `batch`, scoped to its tenant, with a
    digest of what it signals (not of when: a retry's events carry a later time)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(
            f"An idempotency key is 1 to {MAX_KEY_LENGTH} printable characters, not {key!r}."
        )
    tenants = {e.tenant for e in batch}
    if len(tenants) != 1:
        raise ValidationError("An idempotency key covers the events of one tenant.")
    digest = hashlib.sha256(
        json.dumps(
            [_what(e) for e in batch],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    return SignalKey(tenants.pop(), key, digest)


def _what(e: NewEvent) -> tuple[Any, ...]:
    """What an event says, without when it was signalled."""
    return (
        e.name,
        e.primary_key,
        e.associate_id,
        e.changes,
        e.change_values,
        e.row_values,
        e.field_values,
    )


class _Request(NamedTuple):
    events: list[NewEvent]
    key: SignalKey | None
    future: asyncio.Future[queue.Signalled]


class Intake:
    """Group commit of signalled events. `submit` returns once the events are durable."""

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[list[Claimed], set[int]], None],
        handover: Callable[[], queue.Handover | None] = lambda: None,
        max_batch: int = 1000,
        tracing: Tracing | None = None,
    ) -> None:
        """`handover` gives, per commit, the local dispatcher's decisions on which new
        deliveries it takes directly; `on_commit` gets them (already leased to it) after
        each commit, with the webhooks whose new deliveries were queued for any claimer
        instead. A commit takes whole requests, up to `max_batch` events unless one request
        alone has more. `tracing`: a span per traced signal for the commit (None: off)."""
        self._db = db
        self._tracing = tracing
        self._on_commit = on_commit
        self._handover = handover
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hookcast-intake")

    async def submit(self, events: list[NewEvent], key: SignalKey | None = None) -> queue.Signalled:
        """Store `events` together (all or none) under idempotency `key`, if given."""
        if self._task is None or self._closing:
            raise RuntimeError("the intake is not running; start the Hub first")
        future: asyncio.Future[queue.Signalled] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(events, key, future))
        self._ready.set()
        return await future

    async def close(self) -> None:
        """Commit what was submitted, then stop."""
        if self._task is None:
            return
        self._closing = True
        self._ready.set()
        await self._task

    async def _commit(self, batch: list[_Request]) -> None:
        started = time.time_ns() if self._tracing is not None else 0
        try:
            stored, handed, queued = await self._db.run(
                queue.store_signals,
                [(r.events, r.key) for r in batch],
                time.time(),
                self._handover(),
            )
        except DatabaseUnavailable as exc:
            for request in batch:  # nothing was stored; retrying one by one would not help
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) > 1:  # one bad request must not fail the others that shared its commit
                for request in batch:
                    await self._commit([request])
                return
            # The caller sees the failure; nothing was stored.
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        if self._tracing is not None:
            fresh = [(r, a) for r, a in zip(batch, stored, strict=True) if not a.replayed]
            self._tracing.committed(
                [e for r, _ in fresh for e in r.events],
                [i for _, a in fresh for i in a.ids],
                started,
                time.time_ns(),
            )
        for request, answer in zip(batch, stored, strict=True):
            if not request.future.done():
                request.future.set_result(answer)
        self._on_commit(handed, queued)

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                taken, size = 0, 0
                for request in self._pending:
                    if taken and size + len(request.events) > self._max_batch:
                        break
                    taken, size = taken + 1, size + len(request.events)
                batch = self._pending[:taken]
                del self._pending[:taken]
                await self._commit(batch)
