"""Signalling at full speed (issue 18): the key cache, the fast REST signal path, batch
signals, idempotency keys, `signal_many` and `hookcast signal --file`.

Real parts throughout: a migrated database (SQLite, or PostgreSQL with
HOOKCAST_TEST_BACKEND=postgres), the real app, and real `hookcast` processes where the
property is about several processes (revocation, idempotency across servers)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Api, running_api
from sqlalchemy import func, select
from support.databases import migrated_database_url
from support.processes import HookcastProcess, create_key, run_cli

from hookcast import Hub, IdempotencyKeyReused, Settings, Signal, ValidationError
from hookcast.api.signals import FastSignal
from hookcast.keys import KeyCache
from hookcast.keys import create_key as make_key
from hookcast.rights import Role
from hookcast.store import queries
from hookcast.store.database import Database
from hookcast.store.schema import events

TENANT = "Cust1234"


def count_events(db: Database) -> int:
    return int(
        db.run_sync(
            lambda conn: conn.execute(select(func.count()).select_from(events)).scalar_one()
        )
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as api:
        yield api


# ----- the key cache -------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _CountingReads:
    """A real Database whose reads are counted (the cache's whole point is fewer of them)."""

    def __init__(self, db: Database) -> None:
        self.db, self.reads = db, 0

    async def read(self, fn: Any, *args: Any) -> Any:
        self.reads += 1
        return await self.db.read(fn, *args)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(migrated_database_url(tmp_path))
    yield database
    database.close()


async def test_key_cache_trusts_an_entry_for_its_ttl_only(db: Database) -> None:
    record, key = make_key(db, tenant=TENANT, associate_id=5)
    clock, reads = _Clock(), _CountingReads(db)
    cache = KeyCache(reads, ttl=0.5, clock=clock)  # type: ignore[arg-type]
    who = await cache.principal(key)
    assert who is not None and who.tenant == TENANT
    assert await cache.principal(key) == who and reads.reads == 1
    db.run_sync(queries.revoke_key, record.id, time.time())
    clock.now += 0.4
    assert await cache.principal(key) == who  # still inside the half second
    clock.now += 0.2
    assert await cache.principal(key) is None  # read again: revoked
    assert reads.reads == 2


async def test_key_cache_does_not_remember_unknown_keys_and_is_bounded(db: Database) -> None:
    clock, reads = _Clock(), _CountingReads(db)
    cache = KeyCache(reads, ttl=10, max_entries=2, clock=clock)  # type: ignore[arg-type]
    _, key_a = make_key(db, tenant=TENANT, associate_id=1)
    _, key_b = make_key(db, tenant=TENANT, associate_id=2)
    _, key_c = make_key(db, tenant=TENANT, associate_id=3)
    assert await cache.principal("hc_unknown") is None
    assert await cache.principal("hc_unknown") is None
    assert reads.reads == 2  # a miss is asked again: a key created elsewhere works at once
    for key in (key_a, key_b, key_c):
        assert await cache.principal(key) is not None
    assert reads.reads == 5
    assert await cache.principal(key_c) is not None and reads.reads == 5
    assert await cache.principal(key_a) is not None and reads.reads == 6  # a went first


async def test_concurrent_lookups_of_one_key_share_one_read(db: Database) -> None:
    _, key = make_key(db, tenant=TENANT, associate_id=5)
    reads = _CountingReads(db)
    cache = KeyCache(reads)  # type: ignore[arg-type]
    found = await asyncio.gather(*(cache.principal(key) for _ in range(50)))
    assert all(w is not None and w.associate_id == 5 for w in found)
    assert reads.reads == 1


# ----- the fast path -----------------------------------------------------------------------


class _Rest:
    """What the middleware passes a request on to (the rest of the app): it records it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_fast_path_answers_well_formed_signals_and_passes_on_the_rest(
    tmp_path: Path,
) -> None:
    url = migrated_database_url(tmp_path)
    db = Database(url)
    _, key = make_key(db, tenant=TENANT, associate_id=5)
    _, reader = make_key(db, tenant=TENANT, associate_id=6, role=Role.read)
    rest = _Rest()
    middleware = FastSignal(rest)

    class State:
        pass

    class App:
        state = State()

    async with Hub(Settings(database_url=url), db=db, deliver=False) as hub:
        App.state.hub, App.state.keys = hub, KeyCache(db)  # type: ignore[attr-defined]

        async def post(path: str, token: str | None, body: Any = None, **extra: Any) -> int:
            headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
            headers += [(k.encode(), v.encode()) for k, v in extra.items()]
            scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "app": App}
            if body is not None:
                scope["hookcast.json"] = body
            answers: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                answers.append(message)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b""}

            await middleware(scope, receive, send)
            return int(answers[0]["status"])

        before = count_events(db)
        assert await post("/api/v1/Webhook/contact.changed/7", key, {"name": "Ada"}) == 204
        assert await post("/api/v1/Webhook/contact.changed/8", key) == 204
        assert count_events(db) == before + 2
        assert await post("/api/v1/Webhook/bad..name/7", key) == 400  # answered here too
        assert rest.paths == []
        # Passed on, for the FastAPI route to answer as it always has:
        passed = [
            ("/api/v1/Webhook/contact.changed/7", None, None),  # no key: 401
            ("/api/v1/Webhook/contact.changed/7", "hc_nope", None),  # unknown key: 401
            ("/api/v1/Webhook/contact.changed/7", reader, None),  # no signal right: 403
            ("/api/v1/Webhook/contact.changed/9007199254740992", key, None),  # out of range
            ("/api/v1/Webhook/contact.changed/7", key, [1, 2]),  # not an object
        ]
        for path, token, body in passed:
            assert await post(path, token, body) == 299
        assert (
            await post(
                "/api/v1/Webhook/contact.changed/7", key, None, **{"content-type": "text/plain"}
            )
            == 299
        )
        assert len(rest.paths) == len(passed) + 1
        assert count_events(db) == before + 2
        # The key cannot be looked up (the database is unavailable): passed on too, for the
        # route to answer 503 as every route does.
        db.run_sync(lambda conn: conn.exec_driver_sql("ALTER TABLE api_keys RENAME TO gone"))
        App.state.keys = KeyCache(db)  # type: ignore[attr-defined]  # nothing cached
        try:
            assert await post("/api/v1/Webhook/contact.changed/7", key) == 299
        finally:
            db.run_sync(lambda conn: conn.exec_driver_sql("ALTER TABLE gone RENAME TO api_keys"))


def test_fast_path_and_route_answer_alike(api: Api) -> None:
    """The same bad input through the fast path and through FastAPI (Agents SignalEvent):
    the same §8 answer."""
    fast = api.post("/api/v1/Webhook/bad..name/1")
    routed = api.post(
        "/api/v1/Agents/Webhook/SignalEvent", json={"EventName": "bad..name", "PrimaryKey": 1}
    )
    assert fast.status_code == routed.status_code == 400
    assert fast.json() == routed.json()
    flat = api.post("/api/v1/Webhook/contact.deleted/1", json={"Changes": 5})
    assert flat.status_code == 400 and "Changes must be" in flat.json()["ErrorMessage"]
    # Bound as SuperOffice binds: any case, a trailing slash, the tenant in front.
    before = count_events(api.db)
    assert api.post("/API/V1/webhook/contact.changed/1/").status_code == 204
    assert api.post(f"/{TENANT}/api/v1/Webhook/contact.changed/2").status_code == 204
    assert api.post("/Cust9999/api/v1/Webhook/contact.changed/3").status_code == 404
    assert count_events(api.db) == before + 2


# ----- batches -------------------------------------------------------------------------------


def test_batch_signals_are_stored_together(api: Api) -> None:
    before = count_events(api.db)
    body = [
        {"EventName": "contact.changed", "PrimaryKey": 1, "Data": {"name": "Ada"}},
        {"eventName": "sale.deleted", "primaryKey": 2, "data": {"sale_id": 2}},
        {"EventName": "person.created", "PrimaryKey": 3},
    ]
    answer = api.post("/api/v1/Webhook/Signal", json=body)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["Accepted"] == 3 and out["Replayed"] is False
    assert len(out["Ids"]) == 3 and out["Ids"] == sorted(out["Ids"])
    assert count_events(api.db) == before + 3
    stored = api.db.run_sync(
        lambda conn: {
            r.id: (r.name, r.primary_key, r.row_values)
            for r in conn.execute(select(events).where(events.c.id.in_(out["Ids"])))
        }
    )
    assert [stored[i][:2] for i in out["Ids"]] == [
        ("contact.changed", 1),
        ("sale.deleted", 2),
        ("person.created", 3),
    ]
    assert json.loads(stored[out["Ids"][1]][2]) == {"sale_id": 2}


def test_a_batch_with_bad_events_names_them_and_stores_nothing(api: Api) -> None:
    before = count_events(api.db)
    bad_data = [
        {"EventName": "contact.changed", "PrimaryKey": 1},
        {"EventName": "contact.changed", "PrimaryKey": 2, "Data": {"Changes": 5}},
        {"EventName": "contact.changed", "PrimaryKey": 3, "Data": {"Values": []}},
    ]
    answer = api.post("/api/v1/Webhook/Signal", json=bad_data)
    assert answer.status_code == 400
    details = answer.json()["Details"]
    assert [d["Field"] for d in details] == ["[1].Data", "[2].Data"]
    bad_name = [
        {"EventName": "ok.event", "PrimaryKey": 1},
        {"EventName": "bad..x", "PrimaryKey": 2},
    ]
    answer = api.post("/api/v1/Webhook/Signal", json=bad_name)
    assert answer.status_code == 400 and answer.json()["ErrorMessage"].startswith("Event 1:")
    bad_key = [{"EventName": "ok.event", "PrimaryKey": -1}]
    answer = api.post("/api/v1/Webhook/Signal", json=bad_key)
    assert answer.status_code == 400 and "PrimaryKey" in answer.json()["ErrorMessage"]
    too_many = [{"EventName": "ok.event", "PrimaryKey": i} for i in range(1001)]
    answer = api.post("/api/v1/Webhook/Signal", json=too_many)
    assert answer.status_code == 400 and "1000" in answer.json()["ErrorMessage"]
    assert api.post("/api/v1/Webhook/Signal", json={"EventName": "x"}).status_code == 400
    assert count_events(api.db) == before
    empty = api.post("/api/v1/Webhook/Signal", json=[])
    assert empty.status_code == 200 and empty.json() == {
        "Accepted": 0,
        "Ids": [],
        "Replayed": False,
    }


# ----- idempotency ---------------------------------------------------------------------------


def test_a_retry_with_the_same_key_signals_nothing_again(api: Api) -> None:
    before = count_events(api.db)
    once = {"Idempotency-Key": "order-17"}
    for _ in range(3):
        answer = api.post("/api/v1/Webhook/contact.changed/17", json={"a": 1}, headers=once)
        assert answer.status_code == 204
    assert count_events(api.db) == before + 1
    reused = api.post("/api/v1/Webhook/contact.changed/18", json={"a": 1}, headers=once)
    assert reused.status_code == 409 and reused.json()["ErrorType"] == "Conflict"
    assert "order-17" in reused.json()["ErrorMessage"]
    # Scoped to the tenant: another tenant's same key is its own.
    other = api.post("/api/v1/Webhook/contact.changed/17", api.key_b, json={"a": 1}, headers=once)
    assert other.status_code == 204
    assert count_events(api.db) == before + 2
    batch = [{"EventName": "contact.changed", "PrimaryKey": k} for k in (1, 2)]
    first = api.post("/api/v1/Webhook/Signal", json=batch, headers={"Idempotency-Key": "b-1"})
    again = api.post("/api/v1/Webhook/Signal", json=batch, headers={"Idempotency-Key": "b-1"})
    assert first.json()["Replayed"] is False and again.json()["Replayed"] is True
    assert first.json()["Ids"] == again.json()["Ids"]
    assert count_events(api.db) == before + 4
    assert (
        api.post(
            "/api/v1/Webhook/Signal", json=batch[:1], headers={"Idempotency-Key": "b-1"}
        ).status_code
        == 409
    )
    too_long = api.post("/api/v1/Webhook/a.b/1", headers={"Idempotency-Key": "k" * 256})
    assert too_long.status_code == 400
    assert count_events(api.db) == before + 4


async def test_signal_many_and_its_idempotency_key(tmp_path: Path) -> None:
    url = migrated_database_url(tmp_path)
    async with Hub(Settings(database_url=url), deliver=False) as hub:
        signals = [Signal("contact.changed", k, TENANT, changes=["name"]) for k in range(5)]
        first = await hub.signal_many(signals, idempotency_key="import-1")
        assert len(first.ids) == 5 and not first.replayed
        # Concurrent retries (one commit, or several): one set of events.
        answers = await asyncio.gather(
            *(hub.signal_many(signals, idempotency_key="import-2") for _ in range(5))
        )
        assert len({tuple(a.ids) for a in answers}) == 1
        assert sorted(a.replayed for a in answers) == [False, True, True, True, True]
        again = await hub.signal_many(signals, idempotency_key="import-1")
        assert again.replayed and again.ids == first.ids
        with pytest.raises(IdempotencyKeyReused):
            await hub.signal_many(signals[:2], idempotency_key="import-1")
        with pytest.raises(ValidationError, match=r"^Event 1:"):
            await hub.signal_many([signals[0], Signal("bad..x", 1, TENANT)])
        with pytest.raises(ValidationError, match="one tenant"):
            await hub.signal_many(
                [signals[0], Signal("a.b", 1, "Other")], idempotency_key="import-3"
            )
        assert (await hub.signal_many([])).ids == []
        assert count_events(hub.db) == 10


# ----- several processes ---------------------------------------------------------------------


def _env(db_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_POLL_INTERVAL": "0.2",
    }


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[str, str, list[HookcastProcess]]]:
    url = migrated_database_url(tmp_path)
    key = create_key(url, tmp_path, TENANT, "signaller")
    servers = [HookcastProcess.serve(tmp_path, _env(url), f"serve-{n}") for n in (1, 2)]
    try:
        for server in servers:
            server.wait_ready(key, deadline=90)
        yield url, key, servers
    finally:
        for server in servers:
            server.close()


def test_a_key_revoked_by_another_process_stops_working_on_every_server(
    tmp_path: Path, two_servers: tuple[str, str, list[HookcastProcess]]
) -> None:
    url, key, servers = two_servers
    auth = {"Authorization": f"Bearer {key}"}
    for server in servers:
        assert httpx.post(f"{server.url}/api/v1/Webhook/a.b/1", headers=auth).status_code == 204
    db = Database(url)
    try:
        (key_id,) = [k.id for k in db.run_sync(queries.list_keys, TENANT)]
    finally:
        db.close()
    run_cli(["keys", "revoke", str(key_id), "--db", url], tmp_path)
    revoked_at = time.monotonic()
    took = {}
    for server in servers:
        deadline = time.monotonic() + 10
        while True:
            signal = httpx.post(f"{server.url}/api/v1/Webhook/a.b/1", headers=auth)
            listing = httpx.get(f"{server.url}/api/v1/Webhook", headers=auth)
            if signal.status_code == 401 and listing.status_code == 401:
                break
            assert {signal.status_code, listing.status_code} <= {200, 204, 401}
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.02)
        took[server.name] = round(time.monotonic() - revoked_at, 3)
    print("revocation took effect after", took)


def test_idempotency_holds_across_servers(
    tmp_path: Path, two_servers: tuple[str, str, list[HookcastProcess]]
) -> None:
    url, key, servers = two_servers
    auth = {"Authorization": f"Bearer {key}"}
    batch = [{"EventName": "order.created", "PrimaryKey": k} for k in range(20)]

    async def send_all() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{server.url}/api/v1/Webhook/Signal",
                        json=batch,
                        headers={"Idempotency-Key": f"retry-{round_}"},
                    )
                    for round_ in range(5)
                    for server in servers * 2
                )
            )
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        return [a.json() for a in answers]

    answers = asyncio.run(send_all())
    by_key: dict[int, set[tuple[int, ...]]] = {}
    for n, answer in enumerate(answers):
        by_key.setdefault(n // 4, set()).add(tuple(answer["Ids"]))
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert sum(not a["Replayed"] for a in answers) == 5
    db = Database(url)
    try:
        assert count_events(db) == 5 * 20
    finally:
        db.close()


# ----- hookcast signal --file ----------------------------------------------------------------


def _cli(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookcast", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )


def test_signal_file(tmp_path: Path) -> None:
    url = migrated_database_url(tmp_path)
    lines = [
        {"EventName": "contact.changed", "PrimaryKey": 1, "Data": {"name": "Ada"}},
        {"eventName": "sale.deleted", "primaryKey": 2, "data": {"sale_id": 2}},
        {"EventName": "person.created", "PrimaryKey": 3},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    args = ["signal", "--file", str(path), "--tenant", TENANT, "--db", url]
    done = _cli([*args, "--idempotency-key", "load-1"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Stored 3 events" in done.stdout
    again = _cli([*args, "--idempotency-key", "load-1"], tmp_path)  # e.g. after a crash
    assert again.returncode == 0, again.stdout + again.stderr
    from_stdin = _cli(
        ["signal", "--file", "-", "--tenant", TENANT, "--db", url], tmp_path, stdin=path.read_text()
    )
    assert from_stdin.returncode == 0, from_stdin.stdout + from_stdin.stderr
    db = Database(url)
    try:
        assert count_events(db) == 6
        path.write_text(
            json.dumps(lines[0])
            + "\nnot json\n"
            + json.dumps({"EventName": "x..y", "PrimaryKey": 1})
        )
        bad = _cli(args, tmp_path)
        assert bad.returncode == 2
        assert (
            "line 2" in bad.stdout and "line 3" in bad.stdout and "Nothing was stored" in bad.stdout
        )
        assert count_events(db) == 6
    finally:
        db.close()
