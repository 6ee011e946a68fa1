"""Per-record ordering (issue 19, feature 1) with real processes: a `hookcast serve` and two
`hookcast worker`s share one database (SQLite with the doorbell, or PostgreSQL with
HOOKCAST_TEST_BACKEND=postgres); one worker is SIGKILLed mid-run with deliveries leased.
Every record's events must reach the receiver in signal order: the sequence numbers a
record's deliveries carry, in the order the receiver saw them, never go down (a copy sent
again after the kill repeats the last one; it never overtakes), and every one arrives."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from support.databases import database_url
from support.processes import HookcastProcess, api_session, create_key, deliveries, tail
from support.receivers import Receiver

pytestmark = [
    pytest.mark.slow,  # three real processes and a kill
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
]

TENANT = "Cust1234"
EVENT = "contact.changed"
RECORDS = 12
PER_RECORD = 10
KILL_AFTER = 40  # deliveries the receiver has seen when the victim is killed
DEADLINE = 90


async def _until(check: Callable[[], bool], what: str, alive: list[HookcastProcess]) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        for process in alive:
            process.check_alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _signal_record(session: aiohttp.ClientSession, base_url: str, pk: int) -> None:
    """Record pk's events one after another: each signal returns before the next is made,
    so their signal order is defined."""
    for seq in range(1, PER_RECORD + 1):
        async with session.post(
            f"{base_url}/api/v1/Webhook/{EVENT}/{pk}", json={"seq": seq}
        ) as response:
            assert response.status == 204, await response.text()


def test_record_order_survives_a_worker_kill(
    tmp_path: Path,
    receiver_factory: Callable[..., Receiver],
    ca_bundle_path: str,
    processes: dict[str, HookcastProcess],
) -> None:
    receiver = receiver_factory(delay=0.02)
    db_url = database_url(tmp_path, "order")
    key = create_key(db_url, tmp_path, TENANT, "order")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_LEASE": "1",  # the victim's leases come back within a second
        "HOOKCAST_POLL_INTERVAL": "0.2",
        "HOOKCAST_RETRY_DELAYS": "0.1,0.2",
        "HOOKCAST_CYCLE_DELAY": "0.5",
        "HOOKCAST_ATTEMPT_TIMEOUT": "0.8",
    }
    # The serve delivers too, one at a time: most go through the workers' claims.
    serve = processes["serve"] = HookcastProcess.serve(
        tmp_path,
        {**env, "HOOKCAST_USER_AGENT": "order/serve", "HOOKCAST_CONCURRENCY": "1"},
        "serve",
    )
    for name in ("victim", "survivor"):
        processes[name] = HookcastProcess(
            tmp_path,
            {**env, "HOOKCAST_USER_AGENT": f"order/{name}"},
            name,
            ["worker", "--db", db_url],
        )
    victim, survivor = processes["victim"], processes["survivor"]
    serve.wait_ready(key, 30)

    async def scenario() -> None:
        async with api_session(key, RECORDS + 2) as session:
            async with session.post(
                f"{serve.url}/api/v1/Webhook",
                json={
                    "Name": "ordered",
                    "Events": [EVENT],
                    "TargetUrl": receiver.url,
                    "Secret": "ordered-secret",
                    "State": "Active",
                    "Ordering": "PerRecord",
                },
            ) as created:
                assert created.status == 200, await created.text()
                assert (await created.json())["Ordering"] == "PerRecord"
            signalling = asyncio.gather(
                *(_signal_record(session, serve.url, pk) for pk in range(1, RECORDS + 1))
            )
            await _until(
                lambda: len(deliveries(receiver)) >= KILL_AFTER,
                f"{KILL_AFTER} deliveries",
                [serve, victim, survivor],
            )
            victim.kill()
            # The victim had its share: it was killed with work done (and some leased).
            agents = Counter(r.header("User-Agent") for r in deliveries(receiver))
            assert agents["order/victim"], agents
            await asyncio.wait_for(signalling, DEADLINE)
            await _until(
                lambda: (
                    len({r.header("webhook-id") for r in deliveries(receiver)})
                    >= RECORDS * PER_RECORD
                ),
                "every event delivered",
                [serve, survivor],
            )

    asyncio.run(scenario())
    seen: dict[int, list[int]] = defaultdict(list)
    for r in deliveries(receiver):
        body = json.loads(r.body)
        seen[body["PrimaryKey"]].append(body["FieldValues"]["seq"])
    for pk in range(1, RECORDS + 1):
        assert seen[pk] == sorted(seen[pk]), f"record {pk} out of signal order: {seen[pk]}"
        assert set(seen[pk]) == set(range(1, PER_RECORD + 1)), seen[pk]
    for process in (serve, survivor):
        assert "Traceback" not in process.log.read_text(errors="replace"), tail(process.log)
