"""hookcast: a self-hosted webhook broadcaster that speaks the SuperOffice Webhook API.

`import hookcast` stays light: the errors, the domain types and `verify_signature` are
loaded at once, while `Hub` and `Settings` (which bring in SQLAlchemy, pydantic and the HTTP
stack) are loaded on first use through the module `__getattr__` (PEP 562).
"""

import typing as _typing

from ._version import __version__
from .errors import (
    Conflict,
    HookcastError,
    IdempotencyKeyReused,
    NotFound,
    OutboxError,
    PayloadTooLarge,
    PreconditionFailed,
    TargetRefused,
    Unauthorized,
    ValidationError,
    VerificationFailed,
)
from .model import State, Webhook
from .outcome import AttemptOutcome, ErrorKind
from .payload import standard_webhooks_secret, verify_signature

if _typing.TYPE_CHECKING:
    from .hub import Hub
    from .intake import Signal
    from .settings import Settings
    from .store.queue import Signalled

__all__ = [
    "AttemptOutcome",
    "Conflict",
    "ErrorKind",
    "HookcastError",
    "Hub",
    "IdempotencyKeyReused",
    "NotFound",
    "OutboxError",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Settings",
    "Signal",
    "Signalled",
    "State",
    "TargetRefused",
    "Unauthorized",
    "ValidationError",
    "VerificationFailed",
    "Webhook",
    "__version__",
    "standard_webhooks_secret",
    "verify_signature",
]

# The heavy exports: name -> the module that defines it, imported on first access. Type
# checkers see them through the imports above and never see __getattr__, so a misspelt name
# stays an error for them.
_LAZY = {
    "Hub": "hookcast.hub",
    "Settings": "hookcast.settings",
    "Signal": "hookcast.intake",
    "Signalled": "hookcast.store.queue",
}

if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
