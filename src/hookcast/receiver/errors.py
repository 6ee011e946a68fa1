"""Why a receiver refused a request. Each class carries the HTTP status the adapters
answer with, so a web framework without an adapter can do the same in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import HookcastError

if TYPE_CHECKING:
    from ._delivery import Delivery

__all__ = [
    "DuplicateDelivery",
    "PayloadInvalid",
    "ReceiverError",
    "SignatureInvalid",
    "TimestampInvalid",
]


class ReceiverError(HookcastError):
    """A request a receiver must not act on."""

    status_code = 400
    error_type = "ReceiverError"


class SignatureInvalid(ReceiverError):
    """A required signature is missing, or a signature does not match the body (401)."""

    status_code = 401
    error_type = "SignatureInvalid"


class TimestampInvalid(ReceiverError):
    """`webhook-timestamp` is missing, malformed or outside the replay window (401): an
    old request sent again, or a clock far off."""

    status_code = 401
    error_type = "TimestampInvalid"


class PayloadInvalid(ReceiverError):
    """The signed body is not a §3 payload (400)."""

    status_code = 400
    error_type = "PayloadInvalid"


class DuplicateDelivery(ReceiverError):
    """This delivery (`webhook-id`) was already accepted (409). Adapters answer it with
    2xx by default: a sender takes anything else as a failure and sends it again."""

    status_code = 409
    error_type = "DuplicateDelivery"

    def __init__(self, message: str, delivery: Delivery) -> None:
        super().__init__(message)
        self.delivery = delivery


def error_body(exc: ReceiverError) -> dict[str, object]:
    """The JSON an adapter answers a refusal with: SuperOffice's error shape, as hookcast's
    own API answers (it shows up in the webhook's LastError)."""
    return {
        "Error": True,
        "ErrorType": exc.error_type,
        "ErrorMessage": exc.message,
        "ErrorSource": "hookcast.receiver",
    }
