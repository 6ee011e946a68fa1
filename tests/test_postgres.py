"""PostgreSQL-only behaviour: LISTEN/NOTIFY wake-ups across processes and an exact
TooManyErrors transition when many dispatchers fail one webhook at the same time."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text
from support.databases import needs_postgres, new_postgres_url
from support.engine import (
    CALLER,
    TENANT,
    delivery_settings,
    dispatcher_idle,
    eventually,
    running_engine,
)

from hookcast.hub import Hub
from hookcast.model import State
from hookcast.store import queue
from hookcast.store.dialect import NOTIFY_CHANNEL
from hookcast.store.schema import deliveries, events, mail_outbox

pytestmark = needs_postgres


async def test_notify_wakes_an_idle_dispatcher_at_once(tmp_path, ca_bundle_path, receiver) -> None:
    url = new_postgres_url()
    # A 60 s poll: only the notification can make the delivery arrive within the deadline.
    async with running_engine(
        tmp_path, ca_bundle_path, database_url=url, poll_interval=60.0
    ) as engine:
        await engine.create(receiver.url, ["contact.changed"])
        # Idle on its long poll: listening, and nothing to do until a wake-up or in 60 s.
        await eventually(lambda: _idle_and_listening(engine), what="an idle, listening hub")
        async with Hub(engine.settings, deliver=False) as other_process:
            await other_process.signal("contact.changed", 5, tenant=TENANT)
        await eventually(
            lambda: [r for r in receiver.requests if r.header("X-Hook-Test") is None],
            timeout=10,
            what="a delivery woken by NOTIFY",
        )


async def test_concurrent_dispatchers_disable_a_webhook_exactly_once(
    tmp_path, ca_bundle_path, receiver
) -> None:
    url = new_postgres_url()
    overrides = dict(
        database_url=url,
        retry_delays=[0.0, 0.0],
        cycle_delay=0.0,
        poll_interval=0.05,
        smtp_host=None,
        per_webhook_concurrency=8,
    )
    async with running_engine(tmp_path, ca_bundle_path, **overrides) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"], ErrorsEmail="ops@example.com")
        watcher = await engine.create(receiver.url, [f"webhook{hook.id}.errors"])
        receiver.respond(status=500)
        # Three more dispatchers (separate connection pools, as separate processes would have).
        settings = delivery_settings(tmp_path, ca_bundle_path, **overrides)
        others = [Hub(settings) for _ in range(3)]
        for other in others:
            await other.start()
        try:
            await asyncio.gather(
                *(engine.hub.signal("contact.changed", pk, tenant=TENANT) for pk in range(60))
            )
            await eventually(lambda: _state(engine, hook.id), timeout=20, what="TooManyErrors")
            await eventually(lambda: _queue_quiet(engine), timeout=20, what="a quiet queue")
        finally:
            for other in others:
                await other.close()

        def counts(conn):  # type: ignore[no-untyped-def]
            state_events = conn.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.name == f"webhook{hook.id}.errors")
            ).scalar_one()
            mails = conn.execute(
                select(func.count())
                .select_from(mail_outbox)
                .where(mail_outbox.c.webhook_id == hook.id)
            ).scalar_one()
            watcher_deliveries = conn.execute(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.webhook_id == watcher.id)
            ).scalar_one()
            return state_events, mails, watcher_deliveries

        assert await engine.hub.db.run(counts) == (1, 1, 1)
        usage = await engine.usage(hook.id)
        assert usage.total_calls == usage.total_errors >= 9
        depth = await engine.hub.db.run(queue.queue_depth)
        assert depth["pending"] == 0


async def _idle_and_listening(engine) -> bool:
    """The hub's LISTEN connection is up and waiting (pg_stat_activity shows it idle after
    its LISTEN), and then its dispatcher is idle. In this order because the listener wakes
    the dispatcher once right after its LISTEN is answered (for anything committed before):
    once this query has seen that answer sent, that wake-up is at most a loop iteration
    away, and the empty claim it may cause is over long before another process has started
    and committed a signal."""

    def listening(conn) -> int:  # type: ignore[no-untyped-def]
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                f"AND state = 'idle' AND query = 'LISTEN {NOTIFY_CHANNEL}'"
            )
        ).scalar_one()

    return await engine.hub.db.read(listening) == 1 and dispatcher_idle(engine.hub.dispatcher)


async def _state(engine, webhook_id: int) -> bool:
    return (await engine.registry.get(CALLER, webhook_id)).state is State.TooManyErrors


async def _queue_quiet(engine) -> bool:
    return (await engine.hub.db.run(queue.queue_depth))["pending"] == 0
