"""The outcome writer against real databases: one mixed batch through `record_outcomes`
(success, failure, 410, Retry-After, a run crossing the error threshold) on SQLite and on
PostgreSQL, every row it writes checked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.databases import needs_postgres, new_postgres_url

from hookcast.dispatch.outcomes import record_outcomes
from hookcast.dispatch.policy import Attempted, RetryPolicy
from hookcast.model import NotifyVia, State
from hookcast.outcome import AttemptOutcome, ErrorKind
from hookcast.store import queries, queue
from hookcast.store.database import Database
from hookcast.store.rows import DELIVERED, GIVEN_UP, PENDING, Claimed, NewEvent

POLICY = RetryPolicy(retry_delays=(1.0, 4.0), cycles=3, cycle_delay=60.0, max_consecutive_errors=3)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=needs_postgres),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'outcomes.db'}" if request.param == "sqlite" else None
    database = Database(url or new_postgres_url())
    database.migrate()
    yield database
    database.close()


def add_webhook(conn: Any, name: str, errors_email: str | None = None) -> int:
    return queries.insert_webhook(conn, "T", 7, time.time(), {
        "name": name, "events": ["contact.changed"], "target_url": f"https://{name}.example/",
        "secret": None, "state": State.Active, "type": "webhook", "headers": None,
        "properties": None, "error_emails": [errors_email] if errors_email else [],
        "notify_via": NotifyVia.Email if errors_email else NotifyVia.NONE,
    })  # fmt: skip


def signal(conn: Any, count: int) -> None:
    queue.insert_events(conn, [
        NewEvent("T", "contact.changed", pk, 7, "2026-01-01T00:00:00.0000000Z", ["name"])
        for pk in range(count)
    ], time.time())  # fmt: skip


def by_webhook(claimed: list[Claimed]) -> dict[int, list[Claimed]]:
    found: dict[int, list[Claimed]] = {}
    for c in claimed:
        found.setdefault(c.webhook_id, []).append(c)
    return found


def test_a_mixed_batch_writes_every_row(db: Database) -> None:
    healthy, flaky, gone, dying = (
        db.run_sync(add_webhook, name, f"{name}@example.com" if name == "dying" else None)
        for name in ("healthy", "flaky", "gone", "dying")
    )
    db.run_sync(signal, 3)
    now = time.time()
    claimed = by_webhook(db.run_sync(queue.claim, now, now + 60, 100))
    assert {w: len(c) for w, c in claimed.items()} == {healthy: 3, flaky: 3, gone: 3, dying: 3}

    ok = AttemptOutcome(ok=True, status=200, latency_ms=3.0)
    fail = AttemptOutcome(ok=False, status=500, error="HTTP 500 Internal Server Error",
                          kind=ErrorKind.STATUS, latency_ms=4.0)  # fmt: skip
    slow_down = AttemptOutcome(ok=False, status=503, error="HTTP 503 Service Unavailable",
                               kind=ErrorKind.STATUS, retry_after=20.0)  # fmt: skip
    gone_away = AttemptOutcome(ok=False, status=410, error="HTTP 410 Gone",
                               kind=ErrorKind.STATUS, gone=True)  # fmt: skip
    timeout = AttemptOutcome(ok=False, error="timed out after 10 s", kind=ErrorKind.TIMEOUT)
    batch = [
        *(Attempted(c, ok, now) for c in claimed[healthy]),
        Attempted(claimed[flaky][0], fail, now),
        Attempted(claimed[flaky][1], slow_down, now),
        Attempted(claimed[flaky][2], ok, now + 1),
        Attempted(claimed[gone][0], gone_away, now),
        # three failures in a row reach max_consecutive_errors=3
        *(Attempted(c, timeout, now + i) for i, c in enumerate(claimed[dying])),
    ]
    written_at = now + 2
    transitions = db.run_sync(record_outcomes, batch, POLICY, written_at).disabled

    assert sorted((t.webhook_id, t.state, t.mail_queued) for t in transitions) == sorted([
        (gone, State.TooManyErrors, False), (dying, State.TooManyErrors, True),
    ])  # fmt: skip
    with db.engine.connect() as conn:
        hooks = {row.id: row for row in conn.execute(text(
            "SELECT id, state, total_calls, total_errors, consecutive_errors, last_error,"
            " last_success_at FROM webhooks"))}  # fmt: skip
        deliveries = {row.id: row for row in conn.execute(text(
            "SELECT id, status, cycle, attempt, next_at, finished_at FROM deliveries"))}  # fmt: skip
        attempts = conn.execute(
            text("SELECT delivery_id, ok, http_status, error FROM attempts")
        ).all()
        events = [row.name for row in conn.execute(text("SELECT name FROM events ORDER BY id"))]
        mails = conn.execute(text("SELECT recipient, subject FROM mail_outbox")).all()

    state = {w: State(hooks[w].state) for w in (healthy, flaky, gone, dying)}
    assert state == {healthy: State.Active, flaky: State.Active, gone: State.TooManyErrors,
                     dying: State.TooManyErrors}  # fmt: skip
    counts = {w: (hooks[w].total_calls, hooks[w].total_errors, hooks[w].consecutive_errors)
              for w in state}  # fmt: skip
    assert counts == {healthy: (3, 0, 0), flaky: (3, 2, 0), gone: (1, 1, 1), dying: (3, 3, 3)}
    assert hooks[flaky].last_error == "HTTP 503 Service Unavailable"
    assert hooks[flaky].last_success_at == pytest.approx(now + 1)
    assert hooks[dying].last_error == "timed out after 10 s"

    assert len(attempts) == len(batch)
    step = {c.delivery_id: deliveries[c.delivery_id] for cs in claimed.values() for c in cs}
    for c in claimed[healthy]:
        assert (step[c.delivery_id].status, step[c.delivery_id].finished_at) == (
            DELIVERED,
            written_at,
        )
    first, second, third = (step[c.delivery_id] for c in claimed[flaky])
    assert (first.status, first.attempt, first.next_at) == (
        PENDING,
        1,
        pytest.approx(written_at + 1),
    )
    # Retry-After (20 s) replaces the fixed 4 s delay before attempt 3
    assert (second.status, second.attempt, second.next_at) == (
        PENDING,
        1,
        pytest.approx(written_at + 20),
    )
    assert third.status == DELIVERED
    # A disabled webhook's deliveries are all given up, attempted or not.
    for w in (gone, dying):
        assert {step[c.delivery_id].status for c in claimed[w]} == {GIVEN_UP}

    assert sorted(events[-2:]) == sorted([f"webhook{gone}.errors", f"webhook{dying}.errors"])
    assert [m.recipient for m in mails] == ["dying@example.com"]
    assert "dying" in mails[0].subject


def test_a_batch_for_a_webhook_disabled_meanwhile_does_not_disable_it_twice(db: Database) -> None:
    hook = db.run_sync(add_webhook, "twice", "ops@example.com")
    db.run_sync(signal, 4)
    now = time.time()
    claimed = db.run_sync(queue.claim, now, now + 60, 100)
    fail = AttemptOutcome(ok=False, status=500, error="HTTP 500", kind=ErrorKind.STATUS)
    first = db.run_sync(
        record_outcomes, [Attempted(c, fail, now) for c in claimed[:3]], POLICY, now
    ).disabled
    assert [(t.webhook_id, t.state) for t in first] == [(hook, State.TooManyErrors)]
    # The fourth was given up with the webhook: its late outcome leaves no trace.
    late = db.run_sync(record_outcomes, [Attempted(claimed[3], fail, now)], POLICY, now)
    assert late == ([], False)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mail_outbox")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM attempts")).scalar_one() == 3


def test_every_value_of_a_batch_is_stored_as_written(db: Database) -> None:
    """On PostgreSQL a batch's attempt lines and next steps go to the server as one JSON
    document each (statements.sql); what comes back must be what went in: floats to the
    last bit, text with quotes, backslashes, an escaped-looking `\\u0000`, characters beyond
    the BMP, NULLs, and NUL characters (which PostgreSQL's text cannot hold: U+FFFD on both
    backends, where before a receiver answering one made the batch fail on every retry)."""
    hook = db.run_sync(add_webhook, "exact")
    db.run_sync(signal, 3)
    now = 1_765_000_000.123456789  # more digits than a float keeps
    claimed = db.run_sync(queue.claim, time.time(), time.time() + 60, 100)
    odd = 'say "hi" \\ back\\slash, \\u0000 as text, 😀 and é'
    outcomes = [
        AttemptOutcome(ok=True, status=200, latency_ms=0.1 + 0.2, excerpt="HTTP/1.1 200 OK\r\n\r\n" + odd,
                       request="POST /hook HTTP/1.1\r\n\r\n{}"),
        AttemptOutcome(ok=False, status=500, error="HTTP 500 bad\0reason", kind=ErrorKind.STATUS,
                       latency_ms=1e-9, excerpt="HTTP/1.1 500 x\r\n\r\nnul:\0:end", request="POST / HTTP/1.1"),
        AttemptOutcome(ok=True, latency_ms=12345.678, excerpt="script output\nline\0two"),
    ]  # fmt: skip
    batch = [
        Attempted(c, o, now + i / 7) for i, (c, o) in enumerate(zip(claimed, outcomes, strict=True))
    ]
    written_at = now + 0.5
    db.run_sync(record_outcomes, batch, POLICY, written_at)

    with db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT delivery_id, webhook_id, event_uuid, cycle, attempt, at, ok, http_status,"
            " latency_ms, error, output, request_excerpt, response_excerpt FROM attempts"
            " ORDER BY delivery_id"
        )).all()  # fmt: skip
        steps = conn.execute(text(
            "SELECT id, status, cycle, attempt, event_uuid, next_at, finished_at FROM deliveries"
            " ORDER BY id"
        )).all()  # fmt: skip
        last_error = conn.execute(
            text("SELECT last_error FROM webhooks WHERE id = :id"), {"id": hook}
        ).scalar_one()
    first, second, third = claimed
    assert [tuple(r) for r in rows] == [
        (first.delivery_id, hook, first.event_uuid, 0, 0, now, 1, 200, 0.1 + 0.2, None, None,
         "POST /hook HTTP/1.1\r\n\r\n{}", "HTTP/1.1 200 OK\r\n\r\n" + odd),
        (second.delivery_id, hook, second.event_uuid, 0, 0, now + 1 / 7, 0, 500, 1e-9,
         "HTTP 500 bad\ufffdreason", None, "POST / HTTP/1.1", "HTTP/1.1 500 x\r\n\r\nnul:\ufffd:end"),
        (third.delivery_id, hook, third.event_uuid, 0, 0, now + 2 / 7, 1, None, 12345.678, None,
         "script output\nline\ufffdtwo", None, None),
    ]  # fmt: skip
    assert last_error == "HTTP 500 bad\ufffdreason"
    retry = POLICY.retry_delays[0]
    assert [tuple(s) for s in steps] == [
        (first.delivery_id, DELIVERED, 0, 0, first.event_uuid, written_at, written_at),
        (second.delivery_id, PENDING, 0, 1, second.event_uuid, written_at + retry, None),
        (third.delivery_id, DELIVERED, 0, 0, third.event_uuid, written_at, written_at),
    ]  # fmt: skip
