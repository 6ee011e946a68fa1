"""Usage counters stay exact with four `hookcast worker` processes on one PostgreSQL database
and one hot webhook (issue 18): batches of successes write their counters without reading
them first (policy.needs_counters), batches with failures lock the row and read it, and
both kinds race here. Afterwards TotalCalls and TotalErrors equal the attempt log and what
the real HTTPS receiver answered, and no delivery is pending."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.databases import needs_postgres, new_postgres_url
from support.processes import HookcastProcess
from support.receivers import Behaviour, Receiver

from hookcast import Hub, Settings, Signal, State
from hookcast.store import queries
from hookcast.store.database import Database
from hookcast.store.rows import PENDING
from hookcast.store.schema import attempts, deliveries, webhooks

pytestmark = [pytest.mark.slow, needs_postgres]

EVENTS = 1500
WORKERS = 4
TENANT = "Cust1234"


async def test_counters_are_exact_under_four_workers(
    tmp_path: Path, receiver: Receiver, ca_bundle_path: str
) -> None:
    url = new_postgres_url()
    db = Database(url)
    db.migrate()
    now = time.time()
    webhook_id = db.run_sync(
        lambda conn: queries.insert_webhook(
            conn,
            TENANT,
            5,
            now,
            {
                "name": "hot",
                "events": ["contact.changed"],
                "target_url": receiver.url,
                "secret": "s" * 32,
                "state": State.Active,
                "type": "webhook",
                "headers": None,
                "properties": None,
            },
        )
    )
    # Every fourth answer a 500 (never three in a row: the webhook stays Active), so
    # batches of successes and batches with failures interleave in every worker.
    receiver.behaviour = Behaviour(
        statuses=tuple(500 if i % 4 == 3 else 200 for i in range(EVENTS * 2))
    )
    async with Hub(Settings(database_url=url), deliver=False) as app:
        signals = [Signal("contact.changed", k, TENANT) for k in range(EVENTS)]
        for at in range(0, EVENTS, 500):
            await app.signal_many(signals[at : at + 500])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_RETRY_DELAYS": "0.05,0.05",
        "HOOKCAST_POLL_INTERVAL": "0.1",
        "HOOKCAST_BATCH_SIZE": "16",
    }
    workers = [
        HookcastProcess(tmp_path, env, f"worker-{n}", ["worker", "--db", url])
        for n in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 180
        while True:
            for worker in workers:
                worker.check_alive()
            pending = db.run_sync(
                lambda conn: conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status == PENDING)
                ).scalar_one()
            )
            if pending == 0:
                break
            assert time.monotonic() < deadline, f"{pending} deliveries still pending"
            await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            worker.close()

    def read(conn):  # type: ignore[no-untyped-def]
        hook = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).one()
        logged = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
        failed = conn.execute(
            select(func.count()).select_from(attempts).where(attempts.c.ok == 0)
        ).scalar_one()
        return hook, logged, failed

    hook, logged, failed = db.run_sync(read)
    db.close()
    answered = receiver.requests
    errors = sum(1 for i in range(len(answered)) if i % 4 == 3)
    assert hook.state == int(State.Active)
    assert len(answered) == logged == hook.total_calls
    assert errors == failed == hook.total_errors
    assert hook.consecutive_errors in (0, 1)
    assert logged >= EVENTS
