"""The shapes of the contract (§1): the Webhook as stored, as accepted and as returned.

Validation rules live on `WebhookIn` so the API, the RPC agents and the CLI share them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from .guard import check_target_url
from .payload import PAYLOAD_FIELDS


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
            for member in cls:
                if member.name.lower() == value.strip().lower():
                    return member
            if value.strip().isdigit():
                return cls.parse(int(value))
            names = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown State {value!r}; use one of {names}")
        raise ValueError("State must be a name or an integer")


WEBHOOK_TYPE = "webhook"
CRMSCRIPT_TYPE = "crmscript"
EVENT_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token
RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"}
)
RESERVED_HEADER_PREFIXES = ("x-superoffice-", "webhook-")
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_HEADER_VALUE = 4096
DEFAULT_EVENTS = ["contact.created", "contact.deleted"]
MAX_ID = 2**53 - 1  # ids stay exact in every JSON client (JavaScript numbers)
# The schema states the rules too (for OpenAPI clients); the validator gives the clear message.
EventName = Annotated[
    StrictStr, WithJsonSchema({"type": "string", "pattern": EVENT_NAME.pattern, "maxLength": 128})
]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key's tenant and associate."""

    tenant: str
    associate_id: int
    name: str = ""
    full_name: str = ""
    key_id: int = 0


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
    errors_email: str | None
    registered: datetime
    registered_associate_id: int
    updated: datetime
    updated_associate_id: int
    registered_associate: dict[str, Any] | None = None
    updated_associate: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    total_calls: int = 0
    total_errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None


# ----- input ---------------------------------------------------------------------------------


def _parse_state(value: Any) -> State:
    return State.parse(value)


def _lower_type(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# The field below is named State too; annotations inside the class must not see the field.
StateEnum = State


class WebhookIn(BaseModel):
    """The webhook carrier as a client sends it (POST, PUT, SaveWebhook, Test)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    WebhookId: StrictInt = Field(default=0, ge=0, le=MAX_ID)
    Name: StrictStr = Field(min_length=1, max_length=255)
    Events: list[EventName] = Field(min_length=1, max_length=100)
    TargetUrl: StrictStr = Field(max_length=2048)
    Secret: StrictStr | None = Field(default=None, max_length=256)
    State: Annotated[
        StateEnum,
        BeforeValidator(_parse_state),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "enum": ["Active", "Stopped", "TooManyErrors"]},
                    {"type": "integer", "enum": [1, 2, 3]},
                ]
            }
        ),
    ] = StateEnum.Active
    Type: Annotated[StrictStr, BeforeValidator(_lower_type)] = WEBHOOK_TYPE
    Headers: dict[str, StrictStr] | None = None
    Properties: dict[str, Any] | None = None
    ErrorsEmail: StrictStr | None = None

    @field_validator("Name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Name must not be blank")
        if any(ord(c) < 32 for c in value):
            raise ValueError("Name must not contain control characters")
        return value

    @field_validator("Events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for name in value:
            if len(name) > 128:
                raise ValueError(f"event name {name[:40]!r}... is longer than 128 characters")
            if not EVENT_NAME.match(name):
                raise ValueError(
                    f"event name {name!r} is malformed; use letters, digits and _ "
                    "separated by dots, e.g. contact.created"
                )
            seen.setdefault(name.lower(), None)
        return list(seen)

    @field_validator("State")
    @classmethod
    def _state(cls, value: StateEnum) -> StateEnum:
        if value is StateEnum.Unknown:
            raise ValueError("State Unknown cannot be stored; use Active or Stopped")
        return value

    @field_validator("Headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > 20:
            raise ValueError("at most 20 custom headers are allowed")
        lowered: set[str] = set()
        for name, text in value.items():
            if not HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            low = name.lower()
            if low in RESERVED_HEADERS or low.startswith(RESERVED_HEADER_PREFIXES):
                raise ValueError(f"header {name!r} is reserved and set by hookcast")
            if low in lowered:
                raise ValueError(f"header {name!r} is given twice")
            lowered.add(low)
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains CR, LF or NUL")
            if len(text) > MAX_HEADER_VALUE:
                raise ValueError(f"the value of header {name!r} is over {MAX_HEADER_VALUE} chars")
        return value

    @field_validator("Properties")
    @classmethod
    def _properties(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        reserved = {f.lower() for f in PAYLOAD_FIELDS}
        for key in value:
            # .NET receivers bind JSON case-insensitively, so a case variant still collides.
            if key.lower() in reserved:
                raise ValueError(f"property {key!r} collides with the payload field of that name")
        try:
            size = len(orjson.dumps(value))
        except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
            raise ValueError(f"Properties cannot be stored as JSON: {exc}") from None
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError("Properties are over 16 KiB when serialized")
        return value

    @field_validator("ErrorsEmail")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            return validate_email(
                value, check_deliverability=False, globally_deliverable=False
            ).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"ErrorsEmail is not one valid e-mail address: {exc}") from None

    def check_target(self, known_types: frozenset[str]) -> None:
        """Rules that depend on Type; raises hookcast.errors.ValidationError."""
        from .errors import ValidationError

        if self.Type not in known_types:
            raise ValidationError(
                f"Type {self.Type!r} is unknown; use one of {', '.join(sorted(known_types))}",
                [{"Field": "Type", "Message": "unknown type"}],
            )
        if self.Type == WEBHOOK_TYPE:
            check_target_url(self.TargetUrl)
        elif not self.TargetUrl.strip():
            raise ValidationError(
                "TargetUrl must name the IncludeId of a script for Type crmscript",
                [{"Field": "TargetUrl", "Message": "empty"}],
            )


# ----- output --------------------------------------------------------------------------------


class AssociateOut(BaseModel):
    AssociateId: int
    Name: str
    FullName: str
    Type: str = "Employee"


class WebhookOut(BaseModel):
    """A webhook as returned in lists."""

    WebhookId: int
    Name: str | None
    Events: list[str]
    TargetUrl: str | None
    Secret: str | None
    State: str
    Type: str
    Headers: dict[str, str] | None
    Properties: dict[str, Any] | None
    ErrorsEmail: str | None = None
    Registered: str
    RegisteredAssociate: AssociateOut | None
    Updated: str
    UpdatedAssociate: AssociateOut | None


class Links(BaseModel):
    Self: str
    Archive: str


class WebhookWithLinks(WebhookOut):
    """A single webhook, with `_Links` (§1)."""

    links: Links = Field(alias="_Links", serialization_alias="_Links")

    model_config = ConfigDict(populate_by_name=True)


MIN_DATE = "0001-01-01T00:00:00"


def format_date(value: datetime) -> str:
    """UTC ISO 8601 with second precision, as SuperOffice clients parse it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_epoch(epoch: float) -> str:
    return format_date(datetime.fromtimestamp(epoch, UTC))


def webhook_out(hook: Webhook) -> dict[str, Any]:
    """The §1 response shape of a stored webhook (key order as SuperOffice sends it)."""
    return {
        "WebhookId": hook.id,
        "Name": hook.name,
        "Events": hook.events,
        "TargetUrl": hook.target_url,
        "Secret": hook.secret,
        "State": hook.state.name,
        "Type": hook.type,
        "Headers": hook.headers,
        "Properties": hook.properties,
        "ErrorsEmail": hook.errors_email,
        "Registered": format_date(hook.registered),
        "RegisteredAssociate": hook.registered_associate,
        "Updated": format_date(hook.updated),
        "UpdatedAssociate": hook.updated_associate,
    }


def default_carrier() -> dict[str, Any]:
    """GET /Webhook/default (§2)."""
    return {
        "WebhookId": 0,
        "Name": None,
        "Events": list(DEFAULT_EVENTS),
        "TargetUrl": None,
        "Secret": None,
        "State": State.Active.name,
        "Type": WEBHOOK_TYPE,
        "Headers": None,
        "Properties": None,
        "ErrorsEmail": None,
        "Registered": MIN_DATE,
        "RegisteredAssociate": None,
        "Updated": MIN_DATE,
        "UpdatedAssociate": None,
    }


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant: str
    associate_id: int
    name: str
    prefix: str
    created: datetime
    revoked: datetime | None = None
