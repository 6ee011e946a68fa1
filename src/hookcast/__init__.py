"""hookcast: a self-hosted webhook broadcaster that speaks the SuperOffice Webhook API."""

from ._version import __version__
from .errors import (
    Conflict,
    HookcastError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    TargetRefused,
    Unauthorized,
    ValidationError,
    VerificationFailed,
)
from .hub import Hub
from .model import State, Webhook
from .payload import verify_signature
from .settings import Settings

__all__ = [
    "Conflict",
    "HookcastError",
    "Hub",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Settings",
    "State",
    "TargetRefused",
    "Unauthorized",
    "ValidationError",
    "VerificationFailed",
    "Webhook",
    "__version__",
    "verify_signature",
]
