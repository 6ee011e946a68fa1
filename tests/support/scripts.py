"""CRMScript helpers for delivery tests on a real Hub (see engine.py): store scripts through
the service layer, register `crmscript` webhooks, read the delivery log."""

from __future__ import annotations

from typing import Any

from hookcast.model import Principal, Webhook
from hookcast.scripts import ScriptIn, Scripts
from hookcast.store import queue
from hookcast.store.scripts import StoredScript

from .engine import CALLER, Engine


def scripts_of(engine: Engine) -> Scripts:
    """The script service over the engine's database and sender (as the API builds it)."""
    return Scripts(engine.hub.db, engine.settings, engine.hub.sender)


async def store_script(
    engine: Engine, include_id: str, source: str, who: Principal = CALLER
) -> StoredScript:
    carrier = ScriptIn(Name=f"{include_id} handler", IncludeId=include_id, Source=source)
    service = scripts_of(engine)
    try:
        return await service.create(who, carrier)
    finally:
        service.close()


async def script_hook(
    engine: Engine, include_id: str, events: list[str], who: Principal = CALLER, **fields: Any
) -> Webhook:
    """A webhook of Type crmscript whose TargetUrl names the script."""
    return await engine.create(include_id, events, who=who, Type="crmscript", Secret=None, **fields)


async def attempts_of(engine: Engine, webhook_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The delivery log of a webhook, oldest first."""
    rows = await engine.hub.db.run(queue.list_attempts, webhook_id, limit, 0)
    return list(reversed(rows))
