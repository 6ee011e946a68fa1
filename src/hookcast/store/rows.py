"""The rows the store reads and writes, as plain typed records. Decisions about them are
made above the store (dispatch/); the store only reads these and writes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..model import NO_OPTIONS, DeliveryOptions, NotifyVia, NotifyWhen, Ordering, State
from .codec import to_json


class DeliveryStatus(enum.IntEnum):
    PENDING = 0
    DELIVERED = 1
    GIVEN_UP = 2


# The same as plain ints, for loops over every delivery of a batch.
PENDING, DELIVERED, GIVEN_UP = (int(s) for s in DeliveryStatus)

# A parked pending delivery's next_at is PARKED + when it falls due again (queue.claim's
# park, queue.unpark): beyond any real time, so never due, and never taken for a lease's end.
PARKED = 1e11


class MailStatus(enum.IntEnum):
    """mail_outbox.status."""

    QUEUED = 0
    SENT = 1
    FAILED = 2  # refused, or out of retries
    SENDING = 3  # claimed for an attempt; left so by a crash: it may or may not have been sent


MAIL_QUEUED, MAIL_SENT, MAIL_FAILED, MAIL_SENDING = (int(s) for s in MailStatus)


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant: str
    name: str  # lower-case
    primary_key: int
    associate_id: int
    occurred_at: str  # the payload Timestamp
    changes: list[str]
    change_values: dict[str, Any] | None = None
    row_values: dict[str, Any] | None = None
    field_values: dict[str, Any] | None = None
    # The W3C traceparent of the signal (hookcast.tracing); None unless tracing or trace
    # propagation is on.
    traceparent: str | None = None


def event_values(e: NewEvent, now: float) -> tuple[object, ...]:
    """An event's columns from tenant to created_at, as the events table and the event
    outbox (event_outbox.py) both store them."""
    return (
        e.tenant,
        e.name,
        e.primary_key,
        e.associate_id,
        e.occurred_at,
        to_json(e.changes),
        to_json(e.change_values),
        to_json(e.row_values),
        to_json(e.field_values),
        now,
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """One delivery attempt to make, with everything needed to make it."""

    delivery_id: int
    uid: str
    cycle: int
    attempt: int
    event_uuid: str
    webhook_id: int
    webhook_name: str
    webhook_type: str
    target_url: str
    secret: str | None
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    tenant: str
    event: str
    primary_key: int
    associate_id: int
    occurred_at: str
    changes: list[str]
    change_values: dict[str, Any] | None
    row_values: dict[str, Any] | None
    field_values: dict[str, Any] | None
    signalled_at: float = 0.0  # when the event was stored (events.created_at)
    traceparent: str | None = None  # the signal's (NewEvent.traceparent)
    options: DeliveryOptions = NO_OPTIONS  # its webhook's

    @property
    def endpoint(self) -> str:
        """Where its attempts go, for per-endpoint limits: scheme://host:port of the
        TargetUrl (webhooks on one receiver share it); a script webhook is its own."""
        return endpoint_of(self.webhook_type, self.target_url, self.webhook_id)


@lru_cache(maxsize=4096)
def endpoint_of(webhook_type: str, target_url: str, webhook_id: int) -> str:
    if not target_url.startswith(("https://", "http://")):
        return f"{webhook_type}:{webhook_id}"
    try:
        parts = urlsplit(target_url)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or 443}"
    except ValueError:  # a port out of range: no connection will share it
        return f"{webhook_type}:{webhook_id}"


@lru_cache(maxsize=1024)
def options_of(
    ordering: int,
    coalesce_ms: int,
    auto_recover: int,
    max_per_second: float | None,
    max_in_flight: int | None,
) -> DeliveryOptions:
    """A webhook's delivery options from its columns (shared: most webhooks have none)."""
    options = DeliveryOptions(
        Ordering(ordering), coalesce_ms, bool(auto_recover), max_per_second, max_in_flight
    )
    return NO_OPTIONS if options == NO_OPTIONS else options


# ----- outcomes: what the policy reads, what it decides ------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookCounters:
    """A webhook's state and error run, read under its row lock before outcomes are applied."""

    state: State
    consecutive_errors: int
    failed_since_success: bool = False


# The rows below are written with executemany: NamedTuples whose field order is the order of
# their statement's parameters (statements.sql), so they are passed as they are.


class AttemptRow(NamedTuple):
    """One line of the attempt log (statement insert_attempt)."""

    delivery_id: int
    webhook_id: int
    event_uuid: str
    cycle: int
    attempt: int
    at: float
    ok: int  # 1 or 0
    http_status: int | None
    latency_ms: float
    error: str | None
    output: str | None
    request_excerpt: str | None  # an HTTP attempt's request, bounded (net/excerpts.py)
    response_excerpt: str | None  # and its answer


class SuccessRow(NamedTuple):
    """A webhook's counters after a batch of successes only (statement count_successes):
    calls added, the error run ended, the last success kept if it is the latest."""

    calls: int
    last_success_at: float
    last_event_id: str
    webhook_id: int


class CounterRow(NamedTuple):
    """A webhook's usage counters after a batch (statement count): totals are added, the
    error run is set (its row is locked, so the value the policy computed is the current
    one)."""

    calls: int
    errors: int
    consecutive_errors: int
    failed_since_success: int
    last_error: str | None  # None: unchanged (likewise the times below)
    last_error_at: float | None
    last_success_at: float | None
    last_event_id: str
    webhook_id: int


class DeliveryStep(NamedTuple):
    """A delivery's row after an attempt (statement step): what happens to it next."""

    status: int
    cycle: int
    attempt: int
    event_uuid: str
    next_at: float
    finished_at: float | None
    delivery_id: int


@dataclass(frozen=True, slots=True)
class WebhookSnapshot:
    """What a state change's follow-ups (the state event, notifications) need of a webhook."""

    id: int
    tenant: str
    name: str
    target_url: str
    events: list[str]
    registered_at: float
    registered_associate_id: int
    updated_at: float
    updated_associate_id: int
    error_emails: list[str]
    error_associates: list[dict[str, Any]]
    notify_via: NotifyVia
    notify_when: NotifyWhen
    last_event_id: str | None
    last_error: str | None
    consecutive_errors: int
    recovering: bool = False  # AutoRecover is probing it (store/recovery.py)


@dataclass(frozen=True, slots=True)
class MailRow:
    webhook_id: int
    recipient: str
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """One InApp notification (§6) for one associate."""

    tenant: str
    associate_id: int
    associate_name: str
    webhook_id: int
    webhook_name: str
    kind: str  # FirstFailure | Disabling
    message: str
    event_id: str | None
