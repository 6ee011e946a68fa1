"""Quiet outages (issue 13, item 7, the database): one line when an outage starts, a summary
at most once a minute while it lasts, one line when it ends; no traceback per attempt.

The policy (`Outage`) is tested with a fake clock; the whole of it with a real `hookcast
serve` on PostgreSQL whose database stops accepting connections for a few seconds while
events keep being signalled: every event it accepted is still delivered."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import pytest
from sqlalchemy.engine import make_url
from support.databases import _admin, needs_postgres, new_postgres_url
from support.processes import (
    HookcastProcess,
    api_session,
    check_each_delivered,
    create_key,
    deliveries,
    primary_key,
    tail,
)
from support.receivers import Receiver

from hookcast.outage import Outage, OutageReporter, duration


def test_outage_is_one_start_line_summaries_a_minute_apart_and_one_end_line() -> None:
    outage = Outage("database", summary_every=60)
    assert outage.succeeded(0.0) is None  # all well: nothing to say
    start = outage.failed(100.0, "OperationalError: connection refused")
    assert start is not None and start.startswith("database unavailable: OperationalError")
    # Failures within the minute are counted, not logged.
    assert all(outage.failed(100.0 + i * 0.5, "refused") is None for i in range(1, 119))
    summary = outage.failed(160.0, "refused")
    assert summary == ("database unavailable for 1m00s, 120 operations failed; last error: refused")
    assert outage.failed(219.9, "refused") is None
    assert outage.failed(220.0, "refused") is not None  # the next minute's summary
    assert outage.succeeded(230.0) == (
        "database available again after 2m10s; 122 operations failed meanwhile"
    )
    assert outage.succeeded(231.0) is None
    again = outage.failed(300.0, "refused")  # a new outage starts afresh
    assert again is not None and again.startswith("database unavailable: refused")


def test_a_success_as_the_outage_starts_does_not_end_it() -> None:
    outage = Outage("database")
    assert outage.failed(10.0, "server closed the connection") is not None
    assert outage.succeeded(10.002) is None  # a connection not closed yet: still down
    assert outage.failed(10.5, "connection refused") is None  # the same outage
    assert (
        outage.succeeded(13.0) == "database available again after 3s; 2 operations failed meanwhile"
    )


def test_duration() -> None:
    assert [duration(s) for s in (0, 15.9, 60, 130, 3599, 3720)] == [
        "0s",
        "15s",
        "1m00s",
        "2m10s",
        "59m59s",
        "1h02m",
    ]


def test_reporter_logs_the_lines_only(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = OutageReporter(
        "database", logging.getLogger("hookcast"), clock=lambda: now[0], summary_every=60
    )
    caplog.set_level(logging.DEBUG, "hookcast")
    for _ in range(500):
        now[0] += 0.25
        reporter.failed(ConnectionRefusedError(111, "Connection refused"))
    reporter.succeeded()
    reporter.succeeded()
    assert [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("WARNING", "database unavailable: ConnectionRefusedError: [Errno 111] Connection refused"),
        ("WARNING", "database unavailable for 1m00s, 241 operations failed"),
        ("WARNING", "database unavailable for 2m00s, 481 operations failed"),
        ("INFO", "database available again after 2m04s"),
    ]
    assert not any(r.exc_info for r in caplog.records)


# ----- a real serve through a real PostgreSQL outage -----------------------------------------

EVENT = "contact.changed"
OUTAGE_SECONDS = 3.0
DEADLINE = 60


def _set_connections(database: str, *, allowed: bool) -> None:
    """Let nobody (superusers included) connect to `database`, and end every session it has;
    or let them in again."""
    with _admin() as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


async def _signal_until(
    base_url: str, key: str, stop: asyncio.Event, statuses: dict[int, int | str]
) -> None:
    """Signal EVENT with rising primary keys, 4 at a time, until `stop`."""
    next_pk = iter(range(1, 1_000_000))

    async def one_by_one(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            pk = next(next_pk)
            try:
                async with session.post(
                    f"{base_url}/api/v1/Webhook/{EVENT}/{pk}", json={"name": f"c{pk}"}
                ) as response:
                    await response.read()
                    statuses[pk] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[pk] = repr(exc)
            await asyncio.sleep(0.01)

    async with api_session(key, 4) as session:
        await asyncio.gather(*(one_by_one(session) for _ in range(4)))


def _wait_until(condition: Callable[[], bool], what: str, serve: HookcastProcess) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        serve.check_alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}:\n{tail(serve.log)}")
        time.sleep(0.05)


@needs_postgres
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_postgres_outage_logs_one_start_and_one_end_line_and_loses_nothing(
    tmp_path: Path,
    receiver: Receiver,
    ca_bundle_path: str,
    processes: dict[str, HookcastProcess],
) -> None:
    url = new_postgres_url()
    database = make_url(url).database
    assert database is not None
    key = create_key(url, tmp_path, "Cust1234", "outage")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_LEASE": "3",
        "HOOKCAST_POLL_INTERVAL": "0.1",
        "HOOKCAST_RETRY_DELAYS": "0.1,0.2",
        "HOOKCAST_ATTEMPT_TIMEOUT": "2",
        "HOOKCAST_LOG_LEVEL": "DEBUG",
        # A line per request and per attempt is what those logs are for; this test measures
        # what the outage itself logs.
        "HOOKCAST_LOG_ACCESS": "false",
        "HOOKCAST_LOG_ATTEMPTS": "false",
    }
    serve = HookcastProcess.serve(tmp_path, env, "serve")
    processes[serve.name] = serve
    serve.wait_ready(key, DEADLINE)
    created = httpx.post(
        f"{serve.url}/api/v1/Webhook",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        json={
            "Name": "outage",
            "Events": [EVENT],
            "TargetUrl": receiver.url,
            "Secret": "outage-test-secret",
            "State": "Active",
        },
    )
    assert created.status_code == 200, created.text
    receiver.respond(delay=0.05)  # deliveries are in flight when the database goes

    statuses: dict[int, int | str] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        signalling = asyncio.create_task(_signal_until(serve.url, key, stop, statuses))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_set_connections, database, allowed=False)
        try:
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            await asyncio.to_thread(_set_connections, database, allowed=True)
        await asyncio.sleep(1.5)
        stop.set()
        await signalling

    asyncio.run(scenario())
    accepted = {pk for pk, status in statuses.items() if status == 204}
    refused = {pk: s for pk, s in statuses.items() if s != 204}
    assert accepted and max(accepted) == max(statuses), "signals were not accepted after it"
    assert refused and set(refused.values()) == {503}, set(refused.values())
    _wait_until(
        lambda: accepted <= {primary_key(r) for r in deliveries(receiver)},
        "every accepted event at the receiver",
        serve,
    )
    check_each_delivered(deliveries(receiver), accepted)
    serve.stop_or_kill(signal.SIGTERM, 15)
    log = serve.log.read_text(errors="replace")
    starts = [line for line in log.splitlines() if "database unavailable:" in line]
    ends = [line for line in log.splitlines() if "database available again" in line]
    assert len(starts) == 1 and len(ends) == 1, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
    assert len(log) < 20_000, f"{len(log)} bytes of log for a {OUTAGE_SECONDS} s outage"
