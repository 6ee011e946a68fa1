"""The error hierarchy. Each class knows its HTTP status and contract ErrorType (§8);
`api/errors.py` is the one place that turns them into response bodies."""

from __future__ import annotations

from typing import Any


class HookcastError(Exception):
    status_code = 500
    error_type = "InternalError"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ValidationError(HookcastError, ValueError):
    """Bad input (400). Also a ValueError, which is what Python callers of `signal` expect."""

    status_code = 400
    error_type = "ValidationError"


class VerificationFailed(ValidationError):
    """The target did not pass the registration checks of §5."""

    error_type = "VerificationFailed"


class TargetRefused(VerificationFailed):
    """The target guard refused an address (§7)."""

    error_type = "TargetRefused"


class OutboxError(HookcastError, RuntimeError):
    """An application's transactional signal (hookcast.sqlalchemy, hookcast.contrib.django)
    cannot keep its promise here: no transaction is open, or the database holds no hookcast
    tables. Raised at the call; nothing is written."""

    error_type = "OutboxError"


class Unauthorized(HookcastError):
    status_code = 401
    error_type = "Unauthorized"


class Forbidden(HookcastError):
    status_code = 403
    error_type = "Forbidden"


class NotFound(HookcastError):
    status_code = 404
    error_type = "NotFound"


class Conflict(HookcastError):
    status_code = 409
    error_type = "Conflict"


class IdempotencyKeyReused(Conflict):
    """An idempotency key sent again with a different request than the one that took it."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The idempotency key {key!r} was used before for a different request; "
            "a retry must send the same events, and a new request a new key."
        )


class PreconditionFailed(HookcastError):
    status_code = 412
    error_type = "PreconditionFailed"


class PayloadTooLarge(HookcastError):
    status_code = 413
    error_type = "PayloadTooLarge"


class UnsupportedMediaType(HookcastError):
    status_code = 415
    error_type = "UnsupportedMediaType"


class Unavailable(HookcastError):
    """A service hookcast needs is down (503); the caller may retry later. `reported`: the
    outage is logged by its reporter (outage.py), not again with each failed operation."""

    status_code = 503
    error_type = "ServiceUnavailable"
    reported = True


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached or used (connection refused or lost, read-only, full)."""
