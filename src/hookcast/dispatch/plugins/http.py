"""The `webhook` plugin (§3, §9): a signed HTTPS POST per attempt through the Hub's sender."""

from __future__ import annotations

import time

from ...net.excerpts import request_excerpt
from ...net.sender import HttpSender
from ...outcome import AttemptOutcome
from ...payload import build_headers
from ...settings import Settings
from ...store.rows import Claimed
from ...tracing import outgoing_traceparent
from .base import payload_of

__all__ = ["HttpPlugin"]


class HttpPlugin:
    """Type `webhook`: a signed HTTPS POST through the pooled, guarded sender."""

    def __init__(self, settings: Settings, sender: HttpSender) -> None:
        self._settings = settings
        self._sender = sender

    async def deliver(self, item: Claimed) -> AttemptOutcome:
        body = payload_of(item)
        headers = build_headers(
            event_header=item.event,
            event_id=item.event_uuid,
            retry=item.attempt,
            body=body,
            secret=item.secret,
            delivery_id=item.uid,
            timestamp=int(time.time()),
            custom=item.headers,
            user_agent=self._settings.user_agent,
            standard_webhooks=self._settings.standard_webhooks,
        )
        if self._settings.propagate_trace:
            _add_traceparent(headers, item)
        # The attempt timeout; what was sent and the answer described for the attempt log.
        sent = request_excerpt(item.target_url, headers, body, item.headers or ())
        return await self._sender.send(item.target_url, body, headers, excerpt=True, request=sent)

    async def close(self) -> None:
        pass  # the sender belongs to the Hub, which closes it


def _add_traceparent(headers: dict[str, str], item: Claimed) -> None:
    """The W3C traceparent of the attempt (or of the signal), unless the webhook's own
    Headers set one."""
    if (value := outgoing_traceparent(item)) is not None and not any(
        name.lower() == "traceparent" for name in headers
    ):
        headers["traceparent"] = value
