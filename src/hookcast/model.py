"""The domain types: a webhook as stored, its State, who is calling, usage counters, API keys.

Plain Python only: no pydantic and no HTTP stack, so the store, the dispatcher and the CLI
can use these without loading the API. The rules the fields follow are in `rules`; the
request and response shapes of the contract (PascalCase on the wire) are in `api.schemas`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .rights import DEFAULT_ROLE, Role


class State(enum.IntEnum):
    Unknown = 0
    Active = 1
    Stopped = 2
    TooManyErrors = 3

    @classmethod
    def parse(cls, value: Any) -> State:
        """A name in any case or the integer, as §1 says input may be."""
        if isinstance(value, State):
            return value
        if isinstance(value, bool):  # bool is an int subclass; True is not a state
            raise ValueError("State must be a name or an integer")
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unknown State {value}; use 0-3 or a name") from None
        if isinstance(value, str):
            # Exactly a name or 0-3, as the OpenAPI enum says: no padding (" 3", "\r3"),
            # no digits of other scripts ("３").
            for member in cls:
                if member.name.lower() == value.lower():
                    return member
            if value.isascii() and value.isdigit():
                return cls.parse(int(value))
            names = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown State {value!r}; use one of {names}")
        raise ValueError("State must be a name or an integer")


class NotifyVia(enum.IntFlag):
    """How a webhook's owners are told (SuperOffice 12's WebhookNotifyVia, §1)."""

    NONE = 0  # SuperOffice's name for it is None
    Email = 1
    InApp = 2


class NotifyWhen(enum.IntFlag):
    """When a webhook's owners are told (SuperOffice 12's WebhookNotifyWhen, §6)."""

    NONE = 0
    FirstFailure = 1  # the first failed attempt after a success, once per failure streak
    Disabling = 2  # the webhook goes to TooManyErrors


class Ordering(enum.IntEnum):
    """Whether a webhook's deliveries of one record keep signal order (hookcast's addition,
    docs/delivery-options.md). Off by default: the contract promises no order (§6)."""

    NONE = 0  # the wire name is None
    PerRecord = 1

    @property
    def wire_name(self) -> str:
        return "None" if self is Ordering.NONE else self.name

    @classmethod
    def parse(cls, value: Any) -> Ordering:
        """A name in any case or the integer, as the contract's other enums take."""
        if isinstance(value, Ordering):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            for member in cls:
                if value.strip().lower() in (member.wire_name.lower(), str(int(member))):
                    return member
        raise ValueError(f"unknown Ordering {value!r}; use None or PerRecord")


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """hookcast's per-webhook delivery options beside the SuperOffice fields, each off by
    default so SuperOffice's behaviour is unchanged (docs/delivery-options.md)."""

    ordering: Ordering = Ordering.NONE
    coalesce_ms: int = 0  # 0: off; else signals of one record within it become one delivery
    auto_recover: bool = False  # probe a webhook in TooManyErrors and set it Active again
    max_per_second: float | None = None  # None: unlimited
    max_in_flight: int | None = None  # None: unlimited

    @property
    def keyed(self) -> bool:
        """Whether its deliveries carry their record's key (deliveries.record)."""
        return self.ordering is Ordering.PerRecord or self.coalesce_ms > 0


NO_OPTIONS = DeliveryOptions()

WEBHOOK_TYPE = "webhook"
CRMSCRIPT_TYPE = "crmscript"
EVENT_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
DEFAULT_EVENTS = ["contact.created", "contact.deleted"]
MAX_ID = 2**53 - 1  # ids stay exact in every JSON client (JavaScript numbers)
MAX_PRIMARY_KEY = MAX_ID  # §3: the same bound for PrimaryKey, on every route
MAX_ASSOCIATE_ID = 2**31 - 1  # SuperOffice's associate ids are 32-bit, and so are the columns


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key's tenant, associate and role (§7)."""

    tenant: str
    associate_id: int
    name: str = ""
    full_name: str = ""
    key_id: int = 0
    role: Role = DEFAULT_ROLE


@dataclass(slots=True)
class Webhook:
    """A webhook as stored."""

    id: int
    tenant: str
    name: str
    events: list[str]
    target_url: str
    secret: str | None
    state: State
    type: str
    headers: dict[str, str] | None
    properties: dict[str, Any] | None
    error_emails: list[str]
    error_associates: list[dict[str, Any]]  # [{"Id": int, "Name": str}]
    description: str | None
    notify_via: NotifyVia
    notify_when: NotifyWhen
    registered: datetime
    registered_associate_id: int
    updated: datetime
    updated_associate_id: int
    registered_associate: dict[str, Any] | None = None
    updated_associate: dict[str, Any] | None = None
    usage: Usage | None = None  # read-only counters, when read with the webhook
    options: DeliveryOptions = NO_OPTIONS

    @property
    def errors_email(self) -> str | None:
        """SuperOffice's obsolete single address: the first of ErrorEmails."""
        return self.error_emails[0] if self.error_emails else None


@dataclass(frozen=True, slots=True)
class Usage:
    total_calls: int = 0
    total_errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant: str
    associate_id: int
    name: str
    prefix: str
    created: datetime
    revoked: datetime | None = None
    role: Role = DEFAULT_ROLE


def format_date(value: datetime) -> str:
    """UTC ISO 8601 with second precision, as SuperOffice clients parse it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_epoch(epoch: float) -> str:
    return format_date(datetime.fromtimestamp(epoch, UTC))
