"""The outcome writer's window (HOOKCAST_OUTCOME_WINDOW) holds for a steady trickle of
outcomes too: those that finish while a commit waits for the database wait for the next
window, rather than each slow commit being followed at once by another for the few that
came meanwhile. A real Hub and HTTPS receiver; the slow commits are another connection
holding SQLite's write lock, as a CLI command or a second process would."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text
from support.databases import ON_POSTGRES
from support.engine import eventually, running_engine

from hookcast.store.rows import DELIVERED

COUNT = 200

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="holds SQLite's write lock")


def hold_write_lock(path: str, stop: threading.Event) -> None:
    """Take SQLite's write lock for 30 ms out of every 60, until `stop`."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(0.03)
            conn.execute("COMMIT")
            time.sleep(0.03)
    finally:
        conn.close()


async def test_a_trickle_of_outcomes_shares_commits_while_the_database_is_slow(
    tmp_path, ca_bundle_path, receiver
) -> None:
    async with running_engine(
        tmp_path,
        ca_bundle_path,
        outcome_window=0.5,
        per_webhook_concurrency=4,  # four attempts at a time: an outcome every ~5 ms
        endpoint_initial_concurrency=4,
    ) as engine:
        hook = await engine.create(receiver.url, ["contact.changed"])
        receiver.respond(delay=0.02)
        for pk in range(COUNT):
            await engine.hub.signal("contact.changed", pk, tenant="Cust1234", associate_id=5)
        path = engine.settings.database_url.removeprefix("sqlite:///")
        stop = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, stop), daemon=True)
        holder.start()
        try:

            async def finished() -> list[float]:
                rows = await engine.hub.db.read(
                    lambda conn: conn.execute(
                        text(
                            "SELECT finished_at FROM deliveries WHERE webhook_id = :w AND status = :s"
                        ),
                        {"w": hook.id, "s": int(DELIVERED)},
                    ).all()
                )
                return [r[0] for r in rows] if len(rows) == COUNT else []

            times = await eventually(finished, timeout=30, what="every delivery recorded")
        finally:
            stop.set()
            holder.join()
    # Each outcome commit stamps its rows with one time (record_outcomes reads the clock
    # once). 200 outcomes over about a second, each commit held up by the lock: written back
    # to back that was 6-8 commits here, with the window 2-3 (one per window and commit).
    commits = len(set(times))
    assert commits <= 5, f"{commits} commits for {COUNT} outcomes"
    assert len(receiver.requests) >= COUNT  # (the registration test is one more)
