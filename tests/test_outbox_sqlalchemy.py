"""The transactional outbox for SQLAlchemy applications (issue 15): an event signalled inside
the application's transaction is delivered (to a real HTTPS receiver) if and only if that
transaction commits, on SQLite and PostgreSQL (HOOKCAST_TEST_BACKEND=postgres), with sync
and async sessions; a killed application process leaves nothing behind but what it committed.

The hub's poll interval is a minute: a delivery inside a test's deadline shows that the
commit woke the dispatcher (the doorbell on SQLite, NOTIFY on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal as signals
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from support.databases import database_url, needs_postgres, new_postgres_url
from support.engine import TENANT, eventually, running_engine

import hookcast
from hookcast.sqlalchemy import migrate, signal, signal_async
from hookcast.store.database import Database, normalize_url
from hookcast.store.schema import event_outbox, events

app_metadata = MetaData()
contacts = Table(
    "app_contacts",
    app_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
)


def deliveries_of(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests if r.header("X-Hook-Test") is None]


async def delivered(receiver, count: int) -> list[dict]:
    return await eventually(
        lambda: len(deliveries_of(receiver)) >= count and deliveries_of(receiver),
        what=f"{count} deliveries",
    )


def counts(url: str) -> tuple[int, int]:
    """(the application's events stored, events still in the outbox)."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return (
                conn.execute(
                    select(func.count()).where(events.c.name.like("contact.%"))
                ).scalar_one(),
                conn.execute(select(func.count()).select_from(event_outbox)).scalar_one(),
            )
    finally:
        engine.dispose()


def async_url(url: str) -> str:
    parsed = make_url(url)
    driver = (
        "sqlite+aiosqlite" if parsed.drivername.startswith("sqlite") else "postgresql+psycopg_async"
    )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


@pytest.fixture
async def hub_and_app(tmp_path, ca_bundle_path, receiver):
    """A delivering hub with a webhook for contact.* on the receiver, and the application's
    engine on the same database with its own table."""
    async with running_engine(tmp_path, ca_bundle_path, poll_interval=60.0) as engine:
        await engine.create(receiver.url, ["contact.created", "contact.changed"])
        app = create_engine(normalize_url(engine.settings.database_url))
        app_metadata.create_all(app)
        try:
            yield engine, app
        finally:
            app.dispose()


async def test_committed_is_delivered_and_rolled_back_is_not(hub_and_app, receiver) -> None:
    engine, app = hub_and_app

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), Session(app) as session, session.begin():
            session.execute(insert(contacts).values(id=1, name="Gone"))
            signal(session, "contact.created", 1, tenant=TENANT)
            raise RuntimeError("the application fails before its commit")

    def committed() -> None:
        with Session(app) as session, session.begin():
            session.execute(insert(contacts).values(id=2, name="Ada"))
            signal(
                session,
                "contact.created",
                2,
                tenant=TENANT,
                associate_id=316,
                changes=["name"],
                field_values={"name": "Ada"},
            )

    await asyncio.to_thread(rolled_back)
    await asyncio.to_thread(committed)
    [body] = await delivered(receiver, 1)
    assert body["Event"] == "contact.created"
    assert body["PrimaryKey"] == 2
    assert body["Changes"] == ["name"]
    assert body["FieldValues"] == {"name": "Ada"}
    # The rolled-back event was never stored: the committed one, written after it, was
    # moved and delivered, and it is the only event there is.
    assert counts(engine.settings.database_url) == (1, 0)


async def test_a_connection_commit_as_you_go_and_a_savepoint(hub_and_app, receiver) -> None:
    engine, app = hub_and_app

    def work() -> None:
        with app.connect() as conn:
            conn.execute(insert(contacts).values(id=3, name="Bo"))  # begins the transaction
            signal(conn, "contact.changed", 3, tenant=TENANT, changes=["name"])
            nested = conn.begin_nested()
            signal(conn, "contact.changed", 4, tenant=TENANT)
            nested.rollback()  # takes back the second event (and a NOTIFY sent in it)
            signal(conn, "contact.changed", 5, tenant=TENANT)
            conn.commit()

    await asyncio.to_thread(work)
    bodies = await delivered(receiver, 2)
    assert sorted(b["PrimaryKey"] for b in bodies) == [3, 5]
    assert counts(engine.settings.database_url) == (2, 0)


async def test_async_session_and_connection(hub_and_app, receiver) -> None:
    engine, _ = hub_and_app
    app = create_async_engine(async_url(engine.settings.database_url))
    try:
        async with AsyncSession(app) as session:
            with pytest.raises(hookcast.OutboxError, match="transaction"):
                await signal_async(session, "contact.changed", 6, tenant=TENANT)
            async with session.begin():
                await session.execute(insert(contacts).values(id=6, name="Cy"))
                await signal_async(session, "contact.changed", 6, tenant=TENANT)
        async with app.connect() as conn:
            await conn.execute(insert(contacts).values(id=7, name="Di"))
            await signal_async(conn, "contact.changed", 7, tenant=TENANT)
            await conn.rollback()
            async with conn.begin():
                await signal_async(conn, "contact.changed", 8, tenant=TENANT)
    finally:
        await app.dispose()
    bodies = await delivered(receiver, 2)
    assert sorted(b["PrimaryKey"] for b in bodies) == [6, 8]
    assert counts(engine.settings.database_url) == (2, 0)


async def test_bad_input_is_refused_at_the_call_and_writes_nothing(hub_and_app, tmp_path) -> None:
    engine, app = hub_and_app

    def calls() -> None:
        no_transaction = pytest.raises(hookcast.OutboxError, match="transaction")
        with app.connect() as conn, no_transaction:  # no transaction begun yet
            signal(conn, "contact.changed", 1, tenant=TENANT)
        no_transaction = pytest.raises(hookcast.OutboxError, match="transaction")
        with Session(app) as session, no_transaction:
            signal(session, "contact.changed", 1, tenant=TENANT)
        with app.begin() as conn:
            with pytest.raises(hookcast.ValidationError, match="Unknown tenant"):
                signal(conn, "contact.changed", 1, tenant="NoSuchTenant")
            with pytest.raises(hookcast.ValidationError, match="Event name"):
                signal(conn, "contact changed!", 1, tenant=TENANT)
            with pytest.raises(hookcast.ValidationError, match="PrimaryKey"):
                signal(conn, "contact.changed", -1, tenant=TENANT)
        elsewhere = create_engine(normalize_url(database_url(tmp_path, "elsewhere")))
        try:
            refused = pytest.raises(hookcast.OutboxError, match="not in this database")
            with elsewhere.begin() as conn, refused:
                signal(conn, "contact.changed", 1, tenant=TENANT)
        finally:
            elsewhere.dispose()
        with pytest.raises(TypeError):
            signal(object(), "contact.changed", 1, tenant=TENANT)  # type: ignore[arg-type]

    await asyncio.to_thread(calls)
    assert counts(engine.settings.database_url) == (0, 0)


# ----- a real application process, killed ---------------------------------------------------

APP = textwrap.dedent(
    """
    import signal as posix, sys
    from sqlalchemy import create_engine, text
    from hookcast.sqlalchemy import signal

    url, pk, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "commit"
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO app_contacts (id, name) VALUES (:id, 'x')"), {"id": pk})
        signal(conn, "contact.changed", pk, tenant=sys.argv[4])
        if commit:
            conn.commit()
        print("written", flush=True)
        posix.pause()  # SIGKILLed here: before its commit, or after it
    """
)


def run_app(url: str, pk: int, commit: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            APP,
            normalize_url(url),
            str(pk),
            "commit" if commit else "hold",
            TENANT,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def kill_when_written(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written", "the application did not get there"
    finally:
        os.kill(proc.pid, signals.SIGKILL)
        proc.wait(timeout=10)


async def test_an_application_killed_before_its_commit_sends_nothing_after_it_everything(
    hub_and_app, receiver
) -> None:
    engine, _ = hub_and_app
    url = engine.settings.database_url
    await asyncio.to_thread(kill_when_written, run_app(url, 10, commit=False))
    await asyncio.to_thread(kill_when_written, run_app(url, 11, commit=True))
    [body] = await delivered(receiver, 1)
    assert body["PrimaryKey"] == 11
    # Both processes are gone; the one killed before its commit left no event at all.
    assert counts(url) == (1, 0)


# ----- hookcast's tables in the application's database ----------------------------------------


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from hookcast.store.database import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def test_migrate_runs_beside_the_applications_alembic_history(tmp_path) -> None:
    url = database_url(tmp_path, "app")
    app = create_engine(normalize_url(url))
    try:
        with app.begin() as conn:  # the application's own Alembic history
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('1a2b3c4d5e6f')"))
        with app.connect() as conn:
            migrate(conn)
            conn.commit()
        with app.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("1a2b3c4d5e6f",)
            ]
            [(ours,)] = conn.execute(text("SELECT version_num FROM hookcast_alembic_version"))
            assert ours == _head_revision()
    finally:
        app.dispose()
    db = Database(url)  # what `hookcast serve` does at start: nothing left to do
    try:
        db.migrate()
    finally:
        db.close()


@needs_postgres
async def test_postgresql_schema_of_its_own(tmp_path, ca_bundle_path, receiver) -> None:
    url = new_postgres_url()
    app = create_engine(normalize_url(url))
    try:
        with app.begin() as conn:
            app_metadata.create_all(conn)
            migrate(conn, schema="hookcast")
        with app.connect() as conn:
            tables = conn.execute(
                text("SELECT table_schema, table_name FROM information_schema.tables")
            ).all()
            assert ("hookcast", "event_outbox") in tables
            assert ("public", "app_contacts") in tables
            assert ("public", "webhooks") not in tables
        hookcast_url = f"{url}?options=-csearch_path%3Dhookcast"
        async with running_engine(
            tmp_path, ca_bundle_path, database_url=hookcast_url, poll_interval=60.0
        ) as engine:
            await engine.create(receiver.url, ["contact.changed"])

            def work() -> None:
                refused = pytest.raises(hookcast.OutboxError, match="not in")
                with refused, Session(app) as session, session.begin():
                    session.execute(insert(contacts).values(id=1, name="Ada"))
                    signal(session, "contact.changed", 1, tenant=TENANT)  # the public schema
                with Session(app) as session, session.begin():
                    session.execute(insert(contacts).values(id=1, name="Ada"))
                    signal(session, "contact.changed", 1, tenant=TENANT, schema="hookcast")

            await asyncio.to_thread(work)
            [body] = await delivered(receiver, 1)
            assert body["PrimaryKey"] == 1
    finally:
        app.dispose()


async def test_a_row_that_cannot_be_stored_stays_and_holds_up_nothing(
    hub_and_app, receiver
) -> None:
    engine, app = hub_and_app

    def work() -> None:
        with app.begin() as conn:  # written by hand, not by signal(): its Changes is not JSON
            conn.execute(
                insert(event_outbox).values(
                    tenant=TENANT,
                    name="contact.changed",
                    primary_key=20,
                    associate_id=0,
                    occurred_at="2024-01-01T00:00:00.0000000Z",
                    changes="not json",
                    created_at=0.0,
                )
            )
            signal(conn, "contact.changed", 21, tenant=TENANT)

    await asyncio.to_thread(work)
    [body] = await delivered(receiver, 1)
    assert body["PrimaryKey"] == 21
    assert counts(engine.settings.database_url) == (1, 1)  # the bad row waits, logged
