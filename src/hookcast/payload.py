"""The bytes and headers of one delivery (§3), and the signatures that protect them.

Pure functions on the hot path: the body is built once per delivery cycle and signed once,
so everything here avoids per-call allocation it can do without.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "PAYLOAD_FIELDS",
    "build_body",
    "build_headers",
    "entity_of",
    "format_timestamp",
    "sign",
    "standard_signature",
    "verify_signature",
    "verify_standard_signature",
]

# The top-level names of the body that a webhook's Properties may not reuse.
PAYLOAD_FIELDS: frozenset[str] = frozenset(
    {
        "EventId",
        "Timestamp",
        "Changes",
        "Event",
        "PrimaryKey",
        "Entity",
        "ContextIdentifier",
        "ChangedByAssociateId",
        "WebhookName",
        "Values",
        "FieldValues",
    }
)

CONTENT_TYPE = "application/json; charset=utf-8"


def format_timestamp(dt: datetime) -> str:
    """UTC with 7 fractional digits and Z, as SuperOffice writes it (naive means UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond:06d}0Z"
    )


def entity_of(event_name: str) -> str:
    return event_name.partition(".")[0]


def build_body(
    *,
    event_id: str,
    timestamp: str,
    changes: list[str],
    event: str,
    primary_key: int,
    entity: str | None,
    tenant: str,
    associate_id: int,
    webhook_name: str,
    values: dict[str, Any] | None = None,
    field_values: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> bytes:
    """The compact UTF-8 JSON body, keys in contract order (orjson keeps insertion order)."""
    body: dict[str, Any] = {
        "EventId": event_id,
        "Timestamp": timestamp,
        "Changes": changes,
    }
    if values is not None:
        body["Values"] = values  # right after Changes, as in SuperOffice's delete payloads
    body["Event"] = event
    body["PrimaryKey"] = primary_key
    if entity is not None:
        body["Entity"] = entity
    body["ContextIdentifier"] = tenant
    body["ChangedByAssociateId"] = associate_id
    body["WebhookName"] = webhook_name
    if field_values is not None:
        body["FieldValues"] = field_values
    if properties:
        # A colliding key would silently replace a core field (e.g. EventId) in place.
        if not PAYLOAD_FIELDS.isdisjoint(properties):
            clash = sorted(PAYLOAD_FIELDS.intersection(properties))
            raise ValueError(f"Properties may not use payload field names: {', '.join(clash)}")
        body.update(properties)
    return orjson.dumps(body)


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    # Not hmac.digest: its one-shot C call always lets go of the interpreter lock, and
    # getting it back behind a busy database thread can take a switch interval (5 ms) on
    # the event loop. An HMAC object keeps the lock for messages under 2 KiB.
    return hmac.new(key, msg, "sha256").digest()


def sign(secret: str, body: bytes) -> str:
    """The X-SuperOffice-Signature value: base64(HMAC-SHA256(secret, body))."""
    return base64.b64encode(_hmac_sha256(secret.encode(), body)).decode("ascii")


STANDARD_PREFIX = "whsec_"
MIN_STANDARD_KEY_BYTES = 24  # the Standard Webhooks libraries' lower bound is 24 bytes


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of `webhook-signature`, by the Standard Webhooks rule: a `whsec_<base64>`
    Secret signs with the decoded bytes, any other with its UTF-8 bytes. Raises ValueError
    for a `whsec_` Secret that is not base64 or decodes to fewer than 24 bytes."""
    if not secret.startswith(STANDARD_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret[len(STANDARD_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a Secret starting with whsec_ must be base64 after the prefix") from None
    if len(key) < MIN_STANDARD_KEY_BYTES:
        raise ValueError(
            f"a whsec_ Secret must decode to at least {MIN_STANDARD_KEY_BYTES} bytes "
            f"(this one has {len(key)})"
        )
    return key


def standard_webhooks_secret(secret: str) -> str:
    """The form a Standard Webhooks library (`standardwebhooks`, `svix`) takes to verify the
    deliveries of a webhook with this Secret: the Secret itself when it is `whsec_…`,
    else `whsec_` + base64 of its UTF-8 bytes."""
    if secret.startswith(STANDARD_PREFIX):
        standard_webhooks_key(secret)  # refuses a malformed one
        return secret
    return STANDARD_PREFIX + base64.b64encode(secret.encode()).decode("ascii")


def _signing_key(secret: str) -> bytes:
    """The key `webhook-signature` is made with for a stored Secret."""
    try:
        return standard_webhooks_key(secret)
    except ValueError:  # a malformed whsec_ Secret stored before they were refused: as before
        return secret.encode()


def stored_standard_webhooks_secret(secret: str) -> str:
    """`standard_webhooks_secret` of a stored Secret (the API's StandardWebhooksSecret), which
    is also right for a malformed `whsec_` Secret stored before they were refused."""
    try:
        return standard_webhooks_secret(secret)
    except ValueError:
        return STANDARD_PREFIX + base64.b64encode(_signing_key(secret)).decode("ascii")


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value (v1) over `id.timestamp.body`."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = _hmac_sha256(_signing_key(secret), signed)
    return "v1," + base64.b64encode(digest).decode("ascii")


def build_headers(
    *,
    event_header: str,
    event_id: str,
    retry: int,
    body: bytes,
    secret: str | None,
    delivery_id: str,
    timestamp: int,
    custom: dict[str, str] | None,
    user_agent: str,
    standard_webhooks: bool,
    test: bool = False,
) -> dict[str, str]:
    """The headers of one attempt, in contract order; the webhook's own Headers come last."""
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": user_agent,
        "X-SuperOffice-Event": event_header,
        "X-SuperOffice-EventId": event_id,
        "X-SuperOffice-Retry": str(retry),
    }
    if secret:
        headers["X-SuperOffice-Signature"] = sign(secret, body)
        if standard_webhooks:
            headers["webhook-id"] = delivery_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = standard_signature(secret, delivery_id, timestamp, body)
    if test:
        headers["X-Hook-Test"] = "true"
    if custom:
        headers.update(custom)
    return headers


def verify_signature(secret: str, body: bytes, signature: str) -> bool:
    """For receivers: does X-SuperOffice-Signature match these exact body bytes?"""
    return hmac.compare_digest(sign(secret, body).encode(), signature.encode())


def verify_standard_signature(
    secret: str, msg_id: str, timestamp: int, body: bytes, header_value: str
) -> bool:
    """For receivers: does any `v1,...` entry of a `webhook-signature` header match?

    Checking that `timestamp` is recent (replay protection) is up to the caller.
    """
    expected = standard_signature(secret, msg_id, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in header_value.split()
        if candidate.startswith("v1,")
    )
