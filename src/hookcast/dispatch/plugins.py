"""Delivery plugins (§9): `Type` names the plugin that carries a delivery out. `webhook`
posts over HTTPS; `crmscript` runs a stored script; others come from the entry point group
`hookcast.plugins` (a factory taking Settings) and get the same retry and state machinery."""

from __future__ import annotations

import functools
import re
import time
from importlib.metadata import entry_points
from typing import Protocol

from ..outcome import AttemptOutcome
from ..payload import build_body, build_headers, entity_of
from ..settings import Settings
from ..store.database import Database
from ..store.queue import Claimed
from .http import HttpSender

STATE_EVENT = re.compile(r"^webhook\d+\.(started|stopped|errors)$")


class Plugin(Protocol):
    async def deliver(self, item: Claimed) -> AttemptOutcome: ...

    async def close(self) -> None: ...


def payload_of(item: Claimed) -> bytes:
    """The §3 body of a delivery; state events say `webhook.<verb>` and have no Entity."""
    state_event = STATE_EVENT.match(item.event)
    return build_body(
        event_id=item.event_uuid,
        timestamp=item.occurred_at,
        changes=item.changes,
        event=f"webhook.{state_event.group(1)}" if state_event else item.event,
        primary_key=item.primary_key,
        entity=None if state_event else entity_of(item.event),
        tenant=item.tenant,
        associate_id=item.associate_id,
        webhook_name=item.webhook_name,
        values=item.row_values,
        field_values=item.field_values,
        properties=item.properties,
    )


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
        return await self._sender.send(item.target_url, body, headers)  # the attempt timeout

    async def close(self) -> None:
        pass  # the sender belongs to the Hub, which closes it


def load_plugins(settings: Settings, sender: HttpSender, db: Database) -> dict[str, Plugin]:
    from .crmscript import CrmScriptPlugin  # it imports this module

    plugins: dict[str, Plugin] = {"webhook": HttpPlugin(settings, sender)}
    plugins["crmscript"] = CrmScriptPlugin(settings, db, sender)
    for entry in entry_points(group="hookcast.plugins"):
        plugins.setdefault(entry.name.lower(), entry.load()(settings))
    return plugins


@functools.cache
def plugin_names() -> frozenset[str]:
    """Every Type a webhook may name."""
    return frozenset(
        {"webhook", "crmscript", *(e.name.lower() for e in entry_points(group="hookcast.plugins"))}
    )
