"""PostgreSQL plans of the claim and the outcome write (issue 18). Without planner
statistics (new tables, autovacuum off, a burst newer than the last ANALYZE) a claim must
still read about as many rows as it leases: walk ix_deliveries_due in next_at order and stop
at its LIMIT, find the rows it updates by primary key, and look up each claimed delivery's
webhook and event by primary key; the next steps of a batch's deliveries (one statement,
the rows as jsonb) find them by primary key too. The planner's guesses made it sort every
due delivery and hash every event or delivery instead, so each claim or write cost as much
as the whole backlog (5 ms at 20,000 due)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection
from support.databases import needs_postgres, new_postgres_url

from hookcast import Hub, Settings, Signal, State
from hookcast.store import queries
from hookcast.store.database import Database
from hookcast.store.dialect import dialect_of
from hookcast.store.rows import PENDING
from hookcast.store.statements import json_rows, marks, statements_for

pytestmark = needs_postgres

QUEUED = 10_000
LIMIT = 50


def _rows_read(plan: dict[str, Any]) -> dict[str, int]:
    """The most rows any node of the plan read from each table (actual rows x loops)."""
    read: dict[str, int] = {}
    nodes = [plan]
    while nodes:
        node = nodes.pop()
        relation = node.get("Relation Name")
        if relation is not None:
            rows = node["Actual Rows"] * node["Actual Loops"]
            read[relation] = max(read.get(relation, 0), rows)
        nodes.extend(node.get("Plans", ()))
    return read


def _explain(conn: Connection, sql: str, params: tuple[Any, ...]) -> dict[str, int]:
    explained = dialect_of(conn).execute(conn, "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
    plan: dict[str, Any] = explained.fetchone()[0][0]["Plan"]
    return _rows_read(plan)


async def test_claims_and_outcome_writes_read_what_they_touch_without_planner_statistics() -> None:
    db = Database(new_postgres_url())
    db.migrate()

    def set_up(conn: Connection) -> None:
        for table in ("deliveries", "events", "webhooks"):  # no ANALYZE behind our back
            conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        queries.insert_webhook(
            conn,
            "Cust1234",
            5,
            time.time(),
            {
                "name": "hot",
                "events": ["contact.changed"],
                "target_url": "https://127.0.0.1:9/hook",
                "secret": "s" * 32,
                "state": State.Active,
                "type": "webhook",
                "headers": None,
                "properties": None,
            },
        )

    db.run_sync(set_up)
    async with Hub(Settings(database_url=db.url), db=db, deliver=False) as hub:
        for first in range(0, QUEUED, 1000):
            await hub.signal_many(
                [Signal("contact.changed", k, "Cust1234") for k in range(first, first + 1000)]
            )

    def plans(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
        analyzed = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('deliveries', 'events')"
            " AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
        ).scalar()
        assert analyzed == 0  # the case this test is about
        dialect = dialect_of(conn)
        dialect.before_claim(conn)
        now = time.time()
        statements = statements_for(dialect.name)
        due = statements["due"].format(exclude="", skip_locked=dialect.skip_locked)
        claim = statements["claim"].format(due=due)
        claimed = dialect.execute(conn, claim, (now + 60, now, LIMIT)).fetchall()
        assert len(claimed) == LIMIT
        claim_read = _explain(conn, claim, (now + 60, now, LIMIT))
        ids = tuple(row[0] for row in claimed)
        lookup = statements["claimed"].format(marks=marks(len(ids)))
        steps = [(PENDING, 0, 1, "e" * 36, now + 60, None, delivery_id) for delivery_id in ids]
        step_read = _explain(conn, statements["step"], (json_rows(steps),))
        return claim_read, _explain(conn, lookup, ids), step_read

    claim_read, lookup_read, step_read = db.run_sync(plans)
    db.close()
    # Leasing 50 of 10,000 due reads those 50 (the second claim, explained, leases the next
    # 50: the first one's are no longer due), not the backlog.
    assert claim_read["deliveries"] <= 2 * LIMIT, claim_read
    assert lookup_read["events"] <= LIMIT and lookup_read["deliveries"] <= LIMIT, lookup_read
    assert step_read["deliveries"] <= LIMIT, step_read
