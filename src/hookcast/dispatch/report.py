"""What a process tells about the attempts it has recorded: Prometheus metrics and one log
line per attempt on `hookcast.attempts` (docs/observability.md).

Called once per batch of outcomes, after the commit that wrote them, so what it tells is
what the store holds. It adds no I/O of its own to the hot path beyond the log handler's
write, and when the line is off (HOOKCAST_LOG_ATTEMPTS=false, or the logger's level above
INFO) it makes no record at all. The lines of a batch are one record (`logs.Lines`),
rendered only by the handler that prints them and written at once: a record per line would
cost several times what a line does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .. import metrics
from ..logs import ATTEMPTS, Lines, quoted, redact
from .policy import Attempted

__all__ = ["attempt_fields", "attempt_text", "report"]

_INFO = logging.INFO
_MAX_ERROR = 300  # characters of an error text in a line


def attempt_fields(attempted: Attempted) -> dict[str, Any]:
    """The fields of an attempt's line: what it was (webhook, tenant, event, EventId,
    webhook-id header, delivery, cycle and attempt as the Deliveries list numbers them) and
    what came of it (outcome, HTTP status, latency, and for a failure its kind and text)."""
    c, outcome, _ = attempted
    fields: dict[str, Any] = {
        "webhook": c.webhook_id,
        "tenant": c.tenant,
        "event": c.event,
        "event_id": c.event_uuid,
        "message_id": c.uid,
        "delivery": c.delivery_id,
        "cycle": c.cycle,
        "attempt": c.attempt,
        "outcome": "success" if outcome.ok else "failure",
        "status": outcome.status,
        "latency_ms": round(outcome.latency_ms, 1),
    }
    if not outcome.ok:
        fields["error_kind"] = str(outcome.kind or "plugin")
        fields["error"] = redact((outcome.error or "")[:_MAX_ERROR])
    return fields


def attempt_text(f: Mapping[str, Any]) -> str:
    """An attempt's fields as logfmt (logs.logfmt, unrolled: the ids, the event name and the
    outcome never need quotes)."""
    text = (
        f"webhook={f['webhook']} tenant={quoted(f['tenant'])} event={f['event']} "
        f"event_id={f['event_id']} message_id={f['message_id']} delivery={f['delivery']} "
        f"cycle={f['cycle']} attempt={f['attempt']} outcome={f['outcome']} "
        f"status={'-' if f['status'] is None else f['status']} latency_ms={f['latency_ms']:.1f}"
    )
    if "error" in f:
        text += f" error_kind={f['error_kind']} error={quoted(f['error'])}"
    return text


def report(batch: Sequence[Attempted], *, lines: bool = True) -> None:
    """Count a written batch, and log a line per attempt when `lines` and the logger let it."""
    metrics.record_attempts(batch)
    if not lines or not ATTEMPTS.isEnabledFor(_INFO):
        return
    ATTEMPTS.info(Lines("attempt", [attempt_fields(a) for a in batch], attempt_text))
