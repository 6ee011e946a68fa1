"""The rows the store reads and writes, as plain typed records. Decisions about them are
made above the store (dispatch/); the store only reads these and writes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..model import State


class DeliveryStatus(enum.IntEnum):
    PENDING = 0
    DELIVERED = 1
    GIVEN_UP = 2


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


# ----- outcomes: what the policy reads, what it decides ------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookCounters:
    """A webhook's state and error run, read under its row lock before outcomes are applied."""

    state: State
    consecutive_errors: int


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One line of the attempt log."""

    delivery_id: int
    webhook_id: int
    event_uuid: str
    cycle: int
    attempt: int
    at: float
    ok: bool
    http_status: int | None
    latency_ms: float
    error: str | None
    output: str | None


@dataclass(frozen=True, slots=True)
class CounterRow:
    """A webhook's usage counters after a batch: totals are added, the error run is set
    (its row is locked, so the value the policy computed is the current one)."""

    webhook_id: int
    calls: int
    errors: int
    consecutive_errors: int
    last_error: str | None  # None: unchanged (likewise the times below)
    last_error_at: float | None
    last_success_at: float | None
    last_event_id: str


@dataclass(frozen=True, slots=True)
class DeliveryStep:
    """A delivery's row after an attempt: what happens to it next."""

    delivery_id: int
    status: int
    cycle: int
    attempt: int
    event_uuid: str
    next_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class WebhookSnapshot:
    """What a state change's follow-ups (the state event, the ErrorsEmail) need of a webhook."""

    id: int
    tenant: str
    name: str
    target_url: str
    events: list[str]
    registered_at: float
    registered_associate_id: int
    updated_at: float
    updated_associate_id: int
    errors_email: str | None
    last_event_id: str | None
    last_error: str | None
    consecutive_errors: int


@dataclass(frozen=True, slots=True)
class MailRow:
    webhook_id: int
    recipient: str
    subject: str
    body: str
