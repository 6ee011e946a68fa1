"""What one delivery attempt came to: the one result type every plugin returns, the
dispatcher records and the retry policy reads. Plugin authors import it as
`hookcast.AttemptOutcome`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AttemptOutcome", "ErrorKind"]


class ErrorKind(enum.StrEnum):
    """Why an attempt failed, coarse enough to group in metrics and logs."""

    STATUS = "status"  # the receiver answered, but not 2xx (a redirect included)
    TIMEOUT = "timeout"  # no complete answer within the attempt timeout
    NETWORK = "network"  # DNS, connect, TLS or a broken answer: no usable HTTP answer
    REFUSED = "refused"  # the target guard refused the address
    SCRIPT = "script"  # a CRMScript run failed (compile error, runtime error, limit)
    PLUGIN = "plugin"  # no plugin for the Type, or the plugin raised


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    ok: bool
    status: int | None = None  # the HTTP status; None when no answer arrived
    error: str | None = None  # a short sentence fit for LastError and the log; None when ok
    kind: ErrorKind | None = None  # None when ok
    retry_after: float | None = None  # seconds a 429/503 asked us to wait
    latency_ms: float = 0.0
    # The answer as shown to people: status line, headers and the first 4 KiB of the body
    # (Webhook/Test and verification only), or a script's output; "" when there is none.
    excerpt: str = ""
    gone: bool = False  # answered 410: the receiver wants no more deliveries
    # What an HTTP attempt sent, as shown to people (request line, headers, body start);
    # "" for other plugins. With it, `excerpt` is the answer; without, a script's output.
    request: str = ""

    def __post_init__(self) -> None:
        # A 410 is a failure; an outcome both ok and gone would count one way and stop another.
        if self.ok and self.gone:
            raise ValueError("an outcome cannot be both ok and gone")

    @classmethod
    def failed(cls, error: str, kind: ErrorKind, latency_ms: float = 0.0) -> AttemptOutcome:
        return cls(ok=False, error=error, kind=kind, latency_ms=latency_ms)

    @property
    def answer_body(self) -> str:
        """The body part of an HTTP excerpt ("" without one)."""
        return self.excerpt.partition("\r\n\r\n")[2] if self.status is not None else ""
