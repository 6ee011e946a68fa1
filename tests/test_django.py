"""hookcast's Django app (issue 15) in a real Django project (tests/django_project), run as
real processes on SQLite and PostgreSQL (HOOKCAST_TEST_BACKEND=postgres): `manage.py
migrate` creates hookcast's tables, signals and model events inside `transaction.atomic()`
are delivered (to a real HTTPS receiver) if and only if the transaction commits, and a
project process killed before its commit leaves nothing.

The hub's poll interval is a minute: a delivery within a test's deadline shows that the
commit woke the dispatcher."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from support.databases import ON_POSTGRES, database_url, needs_postgres, new_postgres_url
from support.engine import eventually, running_engine

from hookcast.store.database import normalize_url
from hookcast.store.schema import event_outbox, events

pytest.importorskip("django")

PROJECT = Path(__file__).parent / "django_project"


def project_env(url: str, other: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "TEST_DATABASE_URL": url,
        "TEST_OTHER_DATABASE_URL": other,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "PYTHONPATH": os.pathsep.join([str(PROJECT), *sys.path]),
    }


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def scenario(env: dict[str, str], name: str, *args: str) -> dict:
    return json.loads(run(env, "scenarios.py", name, *args).splitlines()[-1])


def deliveries_of(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests if r.header("X-Hook-Test") is None]


async def delivered(receiver, count: int) -> list[dict]:
    return await eventually(
        lambda: len(deliveries_of(receiver)) >= count and deliveries_of(receiver),
        what=f"{count} deliveries",
    )


def counts(url: str) -> tuple[int, int]:
    """(the project's events stored, events still in the outbox)."""
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


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> str:
    """A project database migrated by `manage.py migrate` (once: it takes seconds here)."""
    directory = tmp_path_factory.mktemp("django")
    url = database_url(directory, "template")
    run(project_env(url, database_url(directory, "other")), "manage.py", "migrate", "-v", "0")
    return url


def copy_of(url: str, tmp_path: Path) -> str:
    if ON_POSTGRES:
        return new_postgres_url(template=make_url(url).database)
    path = tmp_path / "django.db"
    source, copy = sqlite3.connect(make_url(url).database), sqlite3.connect(path)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{path}"


@pytest.fixture
async def project(migrated, tmp_path, ca_bundle_path, receiver):
    """A copy of the migrated project database, a delivering hub on it (whose own migration
    finds nothing to do) with a webhook for contact.* on the receiver. The database "other"
    has no hookcast tables."""
    url = copy_of(migrated, tmp_path)
    env = project_env(url, database_url(tmp_path, "other"))
    async with running_engine(
        tmp_path, ca_bundle_path, database_url=url, poll_interval=60.0
    ) as engine:
        await engine.create(receiver.url, ["contact.created", "contact.changed", "contact.deleted"])
        yield env, url


async def test_signal_commits_with_the_transaction_and_rolls_back_with_it(
    project, receiver
) -> None:
    env, url = project
    await asyncio.to_thread(scenario, env, "commit_and_rollback")
    [body] = await delivered(receiver, 1)
    assert body["PrimaryKey"] == 2
    assert body["Changes"] == ["name"]
    assert body["FieldValues"] == {"name": "Ada"}
    # Written before it, the rolled-back event and the savepoint's are not there at all.
    assert counts(url) == (1, 0)


async def test_model_events_in_superoffices_shape(project, receiver) -> None:
    env, url = project
    ids = await asyncio.to_thread(scenario, env, "model_events")
    bodies = await delivered(receiver, 3)
    by_event = {b["Event"]: b for b in bodies}
    assert sorted(by_event) == ["contact.changed", "contact.created", "contact.deleted"]
    created, changed, deleted = (
        by_event["contact.created"],
        by_event["contact.changed"],
        by_event["contact.deleted"],
    )
    assert created["PrimaryKey"] == ids["contact"]
    assert created["Changes"] == ["id", "name", "email", "phone", "company_id"]
    assert created["FieldValues"] == {"name": "Ada", "email": "ada@example.com"}
    # Only the fields that changed; the save without a change and the rolled-back save sent
    # nothing.
    assert changed["Changes"] == ["name", "phone"]
    assert changed["FieldValues"] == {"name": "Ada L.", "email": "ada@example.com"}
    assert deleted["Values"] == {"id": ids["contact"], "company_id": ids["company"]}
    assert "FieldValues" not in deleted
    assert counts(url) == (3, 0)


async def test_bad_input_is_refused_at_the_call(project) -> None:
    env, url = project
    seen = await asyncio.to_thread(scenario, env, "bad_input")
    assert "transaction.atomic" in seen["outside"]
    assert "Unknown tenant 'NoSuchTenant'" in seen["tenant"]
    assert "not in the database 'other'" in seen["database"]
    assert "Nothing was written" in seen["save_outside"]
    assert seen["saved_outside"] == "0"
    assert "integer" in seen["text_pk"]
    assert "not a concrete Django model" in seen["abstract"]
    assert counts(url) == (0, 0)


def start_holding(env: dict[str, str], commit: bool, pk: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "scenarios.py", "hold", "commit" if commit else "hold", str(pk)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_when_written(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written", "the project did not get there"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def test_a_project_process_killed_before_its_commit_sends_nothing_after_it_everything(
    project, receiver
) -> None:
    env, url = project
    await asyncio.to_thread(kill_when_written, start_holding(env, commit=False, pk=100))
    await asyncio.to_thread(kill_when_written, start_holding(env, commit=True, pk=101))
    [body] = await delivered(receiver, 1)
    assert (body["Event"], body["PrimaryKey"]) == ("contact.created", 101)
    assert counts(url) == (1, 0)


def test_management_commands_pass_through_to_hookcast(tmp_path) -> None:
    env = project_env(database_url(tmp_path, "django"), database_url(tmp_path, "other"))
    out = run(env, "manage.py", "hookcast_worker", "--help")
    assert "Usage: manage.py hookcast_worker" in out


@needs_postgres
async def test_postgresql_schema_of_its_own(tmp_path, ca_bundle_path, receiver) -> None:
    url = new_postgres_url()
    env = {**project_env(url, new_postgres_url()), "TEST_HOOKCAST_SCHEMA": "hookcast"}
    run(env, "manage.py", "migrate", "-v", "0")
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            tables = set(
                conn.exec_driver_sql(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                ).all()
            )
    finally:
        engine.dispose()
    assert {("hookcast", "event_outbox"), ("public", "crm_contact")} <= tables
    assert ("public", "webhooks") not in tables
    hookcast_url = f"{url}?options=-csearch_path%3Dhookcast"
    async with running_engine(
        tmp_path, ca_bundle_path, database_url=hookcast_url, poll_interval=60.0
    ) as engine_:
        await engine_.create(receiver.url, ["contact.changed"])
        await asyncio.to_thread(scenario, env, "commit_and_rollback")
        [body] = await delivered(receiver, 1)
        assert body["PrimaryKey"] == 2
    assert counts(hookcast_url) == (1, 0)
