"""What every delivery plugin shares (§9): the `Plugin` protocol, the §3 body of a delivery,
the names of the state events, and the Types a webhook may name.

A plugin turns one claimed delivery into one `AttemptOutcome`; the dispatcher records it and
the retry policy reads it, whatever the plugin. Plugins from other packages register a
factory taking Settings in the entry point group `hookcast.plugins`.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import entry_points
from typing import Protocol

from ...outcome import AttemptOutcome
from ...payload import build_body, entity_of
from ...store.rows import Claimed

__all__ = ["ENTRY_POINTS", "STATE_EVENT", "Plugin", "payload_of", "plugin_names"]

ENTRY_POINTS = "hookcast.plugins"
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


@functools.cache
def plugin_names() -> frozenset[str]:
    """Every Type a webhook may name."""
    return frozenset(
        {"webhook", "crmscript", *(e.name.lower() for e in entry_points(group=ENTRY_POINTS))}
    )
