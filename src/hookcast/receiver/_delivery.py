"""The typed form of one delivery: the §3 body and the headers that identify it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ..payload import PAYLOAD_FIELDS
from .errors import PayloadInvalid

__all__ = ["Delivery", "parse_delivery"]


@dataclass(frozen=True)
class Delivery:
    """One verified delivery. The body's fields by their contract names in snake case;
    `properties` holds the webhook's own Properties (top-level keys beyond §3)."""

    event_id: str
    timestamp: datetime
    changes: list[str]
    event: str
    primary_key: int
    context_identifier: str
    changed_by_associate_id: int
    webhook_name: str
    entity: str | None = None  # absent for webhook state events
    values: dict[str, Any] | None = None  # the id values of a deleted row
    field_values: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    # From the headers
    delivery_id: str | None = None  # webhook-id: the same for every attempt of a delivery
    retry: int = 0  # X-SuperOffice-Retry
    test: bool = False  # X-Hook-Test: the registration or Webhook/Test event
    event_header: str | None = None  # X-SuperOffice-Event (webhook{id}.started for state events)
    body: bytes = b""  # the exact bytes the signatures cover

    @property
    def dedup_key(self) -> str:
        """What a duplicate shares with the original: the delivery id when sent, else the
        EventId (the same within a cycle only, §6)."""
        return self.delivery_id or self.event_id


def _require(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PayloadInvalid(f"the body's {name} must be a {want}, got {value!r}")
    return value


def _optional_object(data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        raise PayloadInvalid(f"the body's {name} must be an object, got {value!r}")
    return value


def _timestamp(text: str) -> datetime:
    # 7 fractional digits and Z (SuperOffice's form); fromisoformat keeps microseconds.
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadInvalid(f"the body's Timestamp is not an ISO 8601 time: {text!r}") from None
    if parsed.tzinfo is None:
        raise PayloadInvalid(f"the body's Timestamp has no time zone: {text!r}")
    return parsed


def parse_delivery(body: bytes, headers: Mapping[str, str]) -> Delivery:
    """The body (already verified) and headers (names lower-cased) as a `Delivery`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadInvalid(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadInvalid("the body must be a JSON object")
    changes = _require(data, "Changes", list)
    if not all(isinstance(name, str) for name in changes):
        raise PayloadInvalid("the body's Changes must list field names (strings)")
    entity = data.get("Entity")
    if entity is not None and not isinstance(entity, str):
        raise PayloadInvalid(f"the body's Entity must be a string, got {entity!r}")
    retry = headers.get("x-superoffice-retry", "0")
    return Delivery(
        event_id=_require(data, "EventId", str),
        timestamp=_timestamp(_require(data, "Timestamp", str)),
        changes=changes,
        event=_require(data, "Event", str),
        primary_key=_require(data, "PrimaryKey", int),
        context_identifier=_require(data, "ContextIdentifier", str),
        changed_by_associate_id=_require(data, "ChangedByAssociateId", int),
        webhook_name=_require(data, "WebhookName", str),
        entity=entity,
        values=_optional_object(data, "Values"),
        field_values=_optional_object(data, "FieldValues"),
        properties={k: v for k, v in data.items() if k not in PAYLOAD_FIELDS},
        delivery_id=headers.get("webhook-id"),
        retry=int(retry) if retry.isdigit() else 0,
        test=headers.get("x-hook-test", "").lower() == "true",
        event_header=headers.get("x-superoffice-event"),
        body=body,
    )
