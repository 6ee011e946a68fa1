"""The rules a webhook's and a script's fields follow, in plain Python.

Each field rule takes the value and returns it (normalized where the rule says so) or raises
ValueError with the message a client sees. The request shapes in `api.schemas` call them
(pydantic turns the ValueError into a 400 naming the field); `check_target`, which depends
on the Type and on the plugins loaded, is called by the registry and raises the API error
itself. No pydantic and no HTTP stack here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import orjson
from email_validator import EmailNotValidError, validate_email

from .errors import ValidationError
from .model import EVENT_NAME, WEBHOOK_TYPE, NotifyVia, NotifyWhen, Ordering, State
from .payload import PAYLOAD_FIELDS, standard_webhooks_key
from .targets import check_target_url

# ----- webhooks ------------------------------------------------------------------------------

MAX_EVENT_NAME = 128
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token
RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"}
)
# svix- too: the svix libraries read svix-id/-timestamp/-signature before webhook-*.
RESERVED_HEADER_PREFIXES = ("x-superoffice-", "webhook-", "svix-")
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096
MAX_PROPERTIES_BYTES = 16 * 1024


def check_name(value: str, what: str = "Name") -> str:
    """A display name: not blank, no control characters. `what` names the field."""
    if not value.strip():
        raise ValueError(f"{what} must not be blank")
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def check_events(value: list[str]) -> list[str]:
    """Well-formed event names, lower-cased and de-duplicated, order kept."""
    seen: dict[str, None] = {}
    for name in value:
        if len(name) > MAX_EVENT_NAME:
            raise ValueError(
                f"event name {name[:40]!r}... is longer than {MAX_EVENT_NAME} characters"
            )
        if not EVENT_NAME.match(name):
            raise ValueError(
                f"event name {name!r} is malformed; use letters, digits and _ "
                "separated by dots, e.g. contact.created"
            )
        seen.setdefault(name.lower(), None)
    return list(seen)


def parse_state(value: Any) -> State:
    """A State as §1 accepts it on input: a name in any case or the integer."""
    return State.parse(value)


def check_state(value: State) -> State:
    """A State that may be stored (Unknown is only a filter)."""
    if value is State.Unknown:
        raise ValueError("State Unknown cannot be stored; use Active or Stopped")
    return value


def normalize_type(value: Any) -> Any:
    """The Type as stored: trimmed and lower-cased (other values are left to the schema)."""
    return value.strip().lower() if isinstance(value, str) else value


def check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    """Custom headers: valid HTTP tokens, none that hookcast sets, no CR/LF/NUL in values."""
    if value is None:
        return None
    if len(value) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers are allowed")
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


def check_properties(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Extra payload fields: no name of a payload field (in any case), at most 16 KiB as JSON."""
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


def check_secret(value: str | None) -> str | None:
    """A `whsec_` Secret must be what Standard Webhooks libraries accept (payload.py)."""
    if value is not None:
        standard_webhooks_key(value)
    return value


def normalize_email(value: str | None, what: str = "ErrorsEmail") -> str | None:
    """One e-mail address, normalized; None (or "") for none."""
    if value is None or value == "":
        return None
    try:
        return validate_email(
            value, check_deliverability=False, globally_deliverable=False
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{what} has {value!r}, not one valid e-mail address: {exc}") from None


MAX_ERROR_EMAILS = 10
MAX_ERROR_ASSOCIATES = 100
MAX_WEBHOOK_DESCRIPTION = 2000


def check_error_emails(value: list[str]) -> list[str]:
    """ErrorEmails: up to 10 addresses, normalized, each once (in any case: one mailbox)."""
    found: list[str] = []
    for raw in value:
        address = normalize_email(raw, "ErrorEmails")
        if address and address.lower() not in {f.lower() for f in found}:
            found.append(address)
    if len(found) > MAX_ERROR_EMAILS:
        raise ValueError(f"at most {MAX_ERROR_EMAILS} addresses, not {len(found)}")
    return found


Flags = type[NotifyVia] | type[NotifyWhen]


def _names(kind: Flags) -> dict[str, Any]:
    """A flags enum's names as .NET spells them ("None" for 0), by their lower-case form."""
    return {"none": kind(0), **{str(m.name).lower(): m for m in kind}}


def flag_names(flags: NotifyVia | NotifyWhen) -> str:
    """A flags value as .NET writes it, which SuperOffice's clients parse: "Email, InApp",
    or "None"."""
    return ", ".join(str(m.name) for m in type(flags) if m in flags) or "None"


def flags_schema(kind: Flags) -> dict[str, Any]:
    names = ", ".join(flag_names(m) for m in _names(kind).values())
    return {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": sum(kind)},
            {"type": "string", "description": f"names, comma-separated: {names}"},
            {"type": "null"},
        ]
    }


def parse_flags(kind: Flags, value: Any) -> Any:
    """NotifyVia / NotifyWhen: the integer (also as digits), or names in any case, as a
    .NET flags enum writes them ("Email, InApp") or as a list; "None" is 0; null is null."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be an integer or names, not a boolean")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    names = _names(kind)
    known = ", ".join(flag_names(m) for m in names.values())
    if isinstance(value, int):
        if not 0 <= value <= sum(kind):
            raise ValueError(f"{value} is not a combination of {known}")
        return kind(value)
    items = (
        value if isinstance(value, list) else value.split(",") if isinstance(value, str) else None
    )
    if items is None:
        raise ValueError(f"must be an integer or names among {known}")
    flags = kind(0)
    for name in items:
        if not isinstance(name, str) or name.strip().lower() not in names:
            raise ValueError(f"{name!r} is not one of {known}")
        flags |= names[name.strip().lower()]
    return flags


def check_target(type_: str, target_url: str, known_types: frozenset[str]) -> None:
    """Rules that depend on Type; raises hookcast.errors.ValidationError."""
    if type_ not in known_types:
        raise ValidationError(
            f"Type {type_!r} is unknown; use one of {', '.join(sorted(known_types))}",
            [{"Field": "Type", "Message": "unknown type"}],
        )
    if type_ == WEBHOOK_TYPE:
        check_target_url(target_url)
    elif not target_url.strip():
        raise ValidationError(
            "TargetUrl must name the IncludeId of a script for Type crmscript",
            [{"Field": "TargetUrl", "Message": "empty"}],
        )


# ----- CRMScript scripts ---------------------------------------------------------------------

INCLUDE_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MAX_INCLUDE_ID = 255
MAX_SOURCE_CHARS = 1024 * 1024  # the API body limit (1 MiB) already bounds the bytes
MAX_DESCRIPTION = 4000
MAX_ALLOWED_HOSTS = 100
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def normalize_hosts(hosts: list[str]) -> list[str]:
    """Lower-cased, de-duplicated, order kept; ValueError names the first bad entry."""
    if len(hosts) > MAX_ALLOWED_HOSTS:
        raise ValueError(f"at most {MAX_ALLOWED_HOSTS} hosts are allowed")
    seen: dict[str, None] = {}
    for raw in hosts:
        seen.setdefault(_host(raw), None)
    return list(seen)


def _host(raw: str) -> str:
    host = raw.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return (
            ipaddress.ip_address(host).compressed
            if ":" in host
            else str(ipaddress.ip_address(host))
        )
    except ValueError:
        pass
    labels = host.split(".")
    if not (0 < len(host) <= 253) or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{raw[:100]!r} is not a host name; give the bare host (e.g. chat.example.com or "
            "203.0.113.7): no scheme, port, path or wildcard, non-ASCII names in punycode"
        )
    return host


# ----- hookcast's delivery options (model.DeliveryOptions) ---------------------------------

MAX_COALESCE_MS = 60_000  # a burst window longer than a minute is a delay, not a burst
MAX_PER_SECOND = 100_000.0
MAX_IN_FLIGHT = 10_000


def parse_ordering(value: Any) -> Any:
    """Ordering: "None" or "PerRecord" in any case, or 0 / 1; null is null (off)."""
    return None if value is None else Ordering.parse(value)
