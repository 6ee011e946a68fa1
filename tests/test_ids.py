"""Ids that clients hold are never handed out twice, also after the newest row was deleted
(SQLite would otherwise reuse the highest id), on SQLite and PostgreSQL, and the migration
that brings an existing SQLite database there keeps every row and reference."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from support.databases import needs_postgres, new_postgres_url

from hookcast.model import State
from hookcast.store import queries
from hookcast.store import scripts as script_store
from hookcast.store.database import MIGRATIONS, Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'ids.db'}" if request.param == "sqlite" else new_postgres_url()
    database = Database(url)
    database.migrate()
    yield database
    database.close()


def add_webhook(conn: Connection, name: str) -> int:
    return queries.insert_webhook(conn, "T", 7, time.time(), {
        "name": name, "events": ["contact.changed"], "target_url": f"https://{name}.example/",
        "secret": None, "state": State.Active, "type": "webhook", "headers": None,
        "properties": None,
    })  # fmt: skip


def add_script(conn: Connection, name: str) -> int:
    return script_store.insert_script(conn, "T", 7, time.time(), str(uuid.uuid4()), {
        "name": name, "description": None, "include_id": name, "source": "printLine(1);",
    })  # fmt: skip


def add_key(conn: Connection, name: str) -> int:
    return queries.insert_key(
        conn, tenant="T", associate_id=7, name=name, prefix=name[:8],
        key_hash=uuid.uuid4().hex * 2, now=time.time(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("add", "delete"),
    [
        (add_webhook, lambda conn, i: queries.delete_webhook(conn, "T", i)),
        (add_script, lambda conn, i: script_store.delete_script(conn, "T", i)),
        (add_key, lambda conn, i: conn.execute(text(f"DELETE FROM api_keys WHERE id = {i}"))),
    ],
    ids=["webhook", "script", "api-key"],
)
def test_the_newest_id_is_not_reused_after_delete(db: Database, add: Any, delete: Any) -> None:
    first = db.run_sync(add, "first")
    newest = db.run_sync(add, "newest")
    db.run_sync(delete, newest)
    again = db.run_sync(add, "again")
    assert first < newest < again


def test_the_migration_keeps_every_row_and_reference(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:  # the schema of the previous release
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    kept = old.run_sync(add_webhook, "kept")
    newest = old.run_sync(add_webhook, "newest")
    old.run_sync(_old_event, [kept, newest])
    before = _counts(path)
    old.close()

    db = Database(f"sqlite:///{path}")
    db.migrate()
    assert _counts(path) == before  # no row lost to a cascade while tables were rebuilt
    assert before["deliveries"] == 2 and before["webhook_events"] == 2
    # An id deleted before the upgrade is beyond knowing (SQLite kept no record of it); one
    # deleted after it stays retired.
    db.run_sync(lambda conn: queries.delete_webhook(conn, "T", newest))
    assert db.run_sync(add_webhook, "after") == newest + 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert (
            "AUTOINCREMENT"
            in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'webhooks'").fetchone()[0]
        )
    # Foreign keys are on again: deleting a webhook still removes its deliveries.
    assert _counts(path)["deliveries"] == 1
    db.run_sync(lambda conn: queries.delete_webhook(conn, "T", kept))
    assert _counts(path)["deliveries"] == 0
    db.close()


def _old_event(conn: Connection, webhook_ids: list[int]) -> None:
    """An event and its deliveries as that release stored them (its columns, not today's)."""
    conn.exec_driver_sql(
        "INSERT INTO events (id, tenant, name, primary_key, associate_id, occurred_at, "
        "changes, created_at) VALUES (1, 'T', 'contact.changed', 1, 7, "
        "'2026-01-01T00:00:00.0000000Z', '[\"name\"]', ?)",
        (time.time(),),
    )
    for n, webhook_id in enumerate(webhook_ids, 1):
        conn.exec_driver_sql(
            "INSERT INTO deliveries (id, event_id, webhook_id, uid, status, cycle, attempt, "
            "event_uuid, next_at, created_at) VALUES (?, 1, ?, ?, 0, 0, 0, ?, ?, ?)",
            (n, webhook_id, f"uid-{n}", f"event-{n}", time.time(), time.time()),
        )


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("webhooks", "webhook_events", "events", "deliveries", "api_keys")
        }
