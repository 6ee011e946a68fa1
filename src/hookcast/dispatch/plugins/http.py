"""The `webhook` plugin (§3, §9): a signed HTTPS POST per attempt through the Hub's sender."""

from __future__ import annotations

import time

from ...net.excerpts import request_excerpt
from ...net.sender import HttpSender
from ...outcome import AttemptOutcome
from ...payload import build_headers
from ...settings import Settings
from ...store.rows import Claimed
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
        # The attempt timeout; what was sent and the answer described for the attempt log.
        sent = request_excerpt(item.target_url, headers, body, item.headers or ())
        return await self._sender.send(item.target_url, body, headers, excerpt=True, request=sent)

    async def close(self) -> None:
        pass  # the sender belongs to the Hub, which closes it
