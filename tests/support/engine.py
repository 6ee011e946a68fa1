"""A real Hub (intake, dispatcher, outbox) on a SQLite file, with the registry beside it,
for delivery tests. Delays are short settings, never sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookcast.api.schemas import WebhookIn
from hookcast.hub import Hub
from hookcast.model import Principal, Webhook
from hookcast.registry import Registry
from hookcast.settings import Settings

from .databases import migrated_database_url

if TYPE_CHECKING:
    from hookcast.dispatch.worker import Dispatcher

TENANT = "Cust1234"
CALLER = Principal(tenant=TENANT, associate_id=316, name="tony", full_name="Tony Ng")
SECRET = "Something Super Secret"


@dataclass
class Engine:
    hub: Hub
    registry: Registry
    settings: Settings

    async def create(
        self, url: str, events: list[str], who: Principal = CALLER, **fields: Any
    ) -> Webhook:
        carrier = WebhookIn.model_validate(
            {
                "Name": "Tonys Contact Handler",
                "Events": events,
                "TargetUrl": url,
                "Secret": SECRET,
                "State": "Active",
                "Type": "webhook",
                **fields,
            }
        )
        return await self.registry.create(who, carrier)

    async def patch(self, webhook_id: int, body: Any, who: Principal = CALLER) -> Webhook:
        return await self.registry.patch(who, webhook_id, body, "application/json")

    async def usage(self, webhook_id: int, who: Principal = CALLER) -> Any:
        return await self.registry.usage(who, webhook_id)


async def eventually(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll an (a)sync check until it returns something truthy, and return that; fail at the
    deadline. The deadline only bounds a wait for something that should happen: a test
    never asserts how long it took."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def dispatcher_idle(dispatcher: Dispatcher | None) -> bool:
    assert dispatcher is not None, "the hub does not deliver"
    return dispatcher.idle


def delivery_settings(tmp_path: Path, ca_bundle: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": migrated_database_url(tmp_path),
        "ca_bundle": ca_bundle,
        "allow_targets": ["127.0.0.0/8"],
        "retry_delays": [0.05, 0.1],
        "cycle_delay": 0.2,
        "attempt_timeout": 2.0,
        "poll_interval": 0.2,
        "lease": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_engine(tmp_path: Path, ca_bundle: str, **overrides: Any) -> AsyncIterator[Engine]:
    settings = delivery_settings(tmp_path, ca_bundle, **overrides)
    async with Hub(settings) as hub:
        registry = Registry(hub.db, settings, hub.sender, wake=hub.wake, halt=hub.halt)
        yield Engine(hub, registry, settings)
