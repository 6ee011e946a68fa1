"""AutoRecover (docs/delivery-options.md, "Self-healing endpoints") end to end: real HTTPS
receivers that fail until the test brings them back, a real SMTP server, a real Hub; and
`hookcast serve` with two `hookcast worker` processes on PostgreSQL sharing the probes.

Probes are told apart from deliveries by the test event's `X-Hook-Test: true` header."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Connection, select
from support.databases import needs_postgres, new_postgres_url
from support.engine import CALLER, SECRET, TENANT, Engine, eventually, running_engine
from support.processes import HookcastProcess, create_key
from support.receivers import Receiver, RecordedRequest
from test_delivery_api import smtp  # noqa: F401 (a fixture: a real aiosmtpd server)

from hookcast.dispatch.recovery import RecoverySchedule
from hookcast.model import State
from hookcast.payload import verify_signature
from hookcast.store.schema import webhooks

EVENT = "contact.changed"
# Probes every 0.2, 0.4, 0.4, ... s after the disabling; three failed attempts disable.
FAST = {
    "max_consecutive_errors": 3,
    "recover_first_delay": 0.2,
    "recover_max_delay": 0.4,
    "recover_give_up_after": 120.0,
}


def probes(receiver: Receiver, since: int = 0) -> list[RecordedRequest]:
    return [r for r in receiver.requests[since:] if r.header("X-Hook-Test") == "true"]


def deliveries_to(receiver: Receiver, since: int = 0) -> list[RecordedRequest]:
    return [r for r in receiver.requests[since:] if r.header("X-Hook-Test") is None]


async def state_of(engine: Engine, webhook_id: int) -> State:
    return (await engine.registry.get(CALLER, webhook_id)).state


def recovery_row(engine: Engine, webhook_id: int) -> Any:
    def read(conn: Connection) -> Any:
        w = webhooks.c
        query = select(w.recover_at, w.recover_since, w.recover_probes).where(w.id == webhook_id)
        return conn.execute(query).one()

    return engine.hub.db.run_sync(read, write=False)


async def test_a_receiver_brought_back_is_found_by_a_probe(
    tmp_path: Path,
    ca_bundle_path: str,
    receiver_factory: Any,
    smtp: Any,  # noqa: F811
) -> None:
    port, mailbox = smtp
    target, watcher = receiver_factory(), receiver_factory()
    async with running_engine(
        tmp_path,
        ca_bundle_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="hookcast@example.com",
        **FAST,
    ) as engine:
        hook = await engine.create(
            target.url,
            [EVENT],
            AutoRecover=True,
            ErrorEmails=["ops@example.com"],
            ErrorAssociates=[{"Id": 5, "Name": "tony"}],
            NotifyVia="Email, InApp",
            NotifyWhen="Disabling",
        )
        # a subscriber of the webhook's own state events
        await engine.create(watcher.url, [f"webhook{hook.id}.started"])
        mark = len(target.requests)  # after the registration's test POST
        target.respond(status=500, body=b"down")
        for pk in (1, 2):
            await engine.hub.signal(EVENT, pk, tenant=TENANT)
        await eventually(
            lambda: _is(state_of(engine, hook.id), State.TooManyErrors), what="TooManyErrors"
        )
        # the Disabling mail says that AutoRecover is on
        disabling = await eventually(lambda: mailbox.envelopes, what="the Disabling mail")
        assert "AutoRecover is on" in disabling[0].content.decode()

        # probes: the test event (§4), signed with the webhook's Secret, on the schedule
        failed = await eventually(lambda: len(probes(target, mark)) >= 2, what="2 probes")
        assert failed
        for probe in probes(target, mark):
            body = json.loads(probe.body)
            assert (body["Event"], body["Entity"], body["PrimaryKey"]) == ("test", "test", 0)
            assert body["WebhookName"] == hook.name and body["ContextIdentifier"] == TENANT
            signature = probe.header("X-SuperOffice-Signature")
            assert signature and verify_signature(SECRET, probe.body, signature)
        assert recovery_row(engine, hook.id).recover_at is not None

        back = len(target.requests)
        target.respond(status=200, body=b"ok")  # the receiver is back
        await eventually(lambda: _is(state_of(engine, hook.id), State.Active), what="Active")
        # the given-up deliveries arrive, webhook{id}.started reaches its subscriber
        await eventually(
            lambda: (
                {1, 2} <= {json.loads(r.body)["PrimaryKey"] for r in deliveries_to(target, back)}
            ),
            what="the given-up deliveries, queued again",
        )
        # ... and their outcomes written: the attempt log and the counters are compared below
        await eventually(lambda: _delivered(engine, hook.id, 2), what="their outcomes")
        started = await eventually(lambda: deliveries_to(watcher), what="the state event")
        assert started[0].header("X-SuperOffice-Event") == f"webhook{hook.id}.started"
        assert json.loads(started[0].body)["Event"] == "webhook.started"
        # the owners are told: a mail (NotifyVia Email), an InApp notice
        mails = await eventually(
            lambda: [e for e in mailbox.envelopes if b"recovered" in e.content],
            what="the Recovered mail",
        )
        assert mails[0].rcpt_tos == ["ops@example.com"]
        text = mails[0].content.decode()
        assert f"WebhookId:           {hook.id}" in text and SECRET not in text
        _, notices = await engine.registry.notifications(CALLER, None, 50, 0)
        assert [(n["kind"], n["associate_id"]) for n in notices] == [
            ("Recovered", 5),
            ("Disabling", 5),
        ]

        # every probe is in the attempt log: failures, then the one success
        sent = probes(target, mark)
        _, log = await engine.registry.deliveries(CALLER, hook.id, 500, 0)
        logged = [r for r in log if r["event"] == "test"]
        assert len(logged) == len(sent)
        assert [r["ok"] for r in reversed(logged)] == [0] * (len(sent) - 1) + [1]
        assert {r["event_uuid"] for r in logged} == {
            p.header("X-SuperOffice-EventId") for p in sent
        }
        row = recovery_row(engine, hook.id)
        assert (row.recover_at, row.recover_probes) == (None, len(sent))
        # probes count in no usage counter; the error run is reset
        usage = await engine.usage(hook.id)
        assert usage.total_calls == len([r for r in log if r["event"] != "test"])
        assert usage.consecutive_errors == 0
        # the failed probes are a log, never deliveries: Redeliver finds nothing more
        assert await engine.registry.redeliver(CALLER, hook.id) == 0
        assert not [r for r in deliveries_to(target) if json.loads(r.body)["Event"] == "test"]


async def _is(state: Any, expected: State) -> bool:
    return bool(await state == expected)


async def _delivered(engine: Any, webhook_id: int, count: int) -> bool:
    """Whether the webhook's log has `count` successful attempts of signalled events."""
    _, log = await engine.registry.deliveries(CALLER, webhook_id, 500, 0)
    return len([r for r in log if r["event"] != "test" and r["ok"]]) >= count


async def test_off_gone_stopped_and_deleted_webhooks_are_not_probed(
    tmp_path: Path, ca_bundle_path: str, receiver_factory: Any
) -> None:
    names = ("control", "off", "gone", "stopped", "active", "deleted")
    receivers = {name: receiver_factory() for name in names}
    async with running_engine(tmp_path, ca_bundle_path, **FAST) as engine:
        hooks = {
            name: await engine.create(
                receivers[name].url, [EVENT], Name=name, AutoRecover=name != "off"
            )
            for name in names
        }
        marks = {name: len(r.requests) for name, r in receivers.items()}
        for name, receiver in receivers.items():
            receiver.respond(status=410 if name == "gone" else 500)
        await engine.hub.signal(EVENT, 1, tenant=TENANT)
        for name, hook in hooks.items():
            await eventually(
                lambda h=hook: _is(state_of(engine, h.id), State.TooManyErrors), what=name
            )
        for name in ("stopped", "active", "deleted"):  # probed once, then the API steps in
            await eventually(lambda n=name: probes(receivers[n], marks[n]), what=f"{name} probed")
        receivers["active"].respond(status=200)  # setting Active verifies the receiver
        await engine.patch(hooks["stopped"].id, {"State": "Stopped"})
        await engine.patch(hooks["active"].id, {"State": "Active"})
        await engine.registry.delete(CALLER, hooks["deleted"].id)
        seen = {name: len(probes(r, marks[name])) for name, r in receivers.items()}
        for name in ("stopped", "active"):
            assert recovery_row(engine, hooks[name].id).recover_at is None
        for name in ("off", "gone"):
            row = recovery_row(engine, hooks[name].id)
            assert (row.recover_at, row.recover_probes) == (None, 0)
        # meanwhile the control webhook is probed three more times; none of the others
        await eventually(
            lambda: len(probes(receivers["control"], marks["control"])) >= seen["control"] + 3,
            what="3 more probes of the control webhook",
        )
        for name in names[1:]:
            assert len(probes(receivers[name], marks[name])) == seen[name], name
        assert seen["off"] == seen["gone"] == 0
        # the Active one's first attempt there was its verification, not a probe
        assert await state_of(engine, hooks["active"].id) == State.Active


async def test_turning_auto_recover_on_for_a_disabled_webhook_starts_probing(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    async with running_engine(tmp_path, ca_bundle_path, **FAST) as engine:
        hook = await engine.create(receiver.url, [EVENT])
        receiver.respond(status=500)
        await engine.hub.signal(EVENT, 1, tenant=TENANT)
        await eventually(lambda: _is(state_of(engine, hook.id), State.TooManyErrors))
        assert recovery_row(engine, hook.id).recover_at is None
        mark = len(receiver.requests)
        await engine.patch(hook.id, {"AutoRecover": True})
        await eventually(lambda: len(probes(receiver, mark)) >= 2, what="probes")
        await engine.patch(hook.id, {"AutoRecover": False})
        assert recovery_row(engine, hook.id).recover_at is None


# ----- two processes on PostgreSQL ------------------------------------------------------------

SCHEDULE = RecoverySchedule(first_delay=0.3, max_delay=0.6, give_up_after=4.0)


@needs_postgres
@pytest.mark.skipif(sys.platform == "win32", reason="real processes")
def test_processes_on_postgres_probe_each_time_once(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver, processes: dict[str, HookcastProcess]
) -> None:
    db_url = new_postgres_url()
    key = create_key(db_url, tmp_path, TENANT, "recover")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_POLL_INTERVAL": "0.05",
        "HOOKCAST_LEASE": "2",
        "HOOKCAST_ATTEMPT_TIMEOUT": "1",
        "HOOKCAST_RETRY_DELAYS": "0.05,0.05",
        "HOOKCAST_MAX_CONSECUTIVE_ERRORS": "3",
        "HOOKCAST_RECOVER_FIRST_DELAY": str(SCHEDULE.first_delay),
        "HOOKCAST_RECOVER_MAX_DELAY": str(SCHEDULE.max_delay),
        "HOOKCAST_RECOVER_GIVE_UP_AFTER": str(SCHEDULE.give_up_after),
    }
    serve = HookcastProcess.serve(tmp_path, {**env, "HOOKCAST_USER_AGENT": "serve"}, "serve")
    processes["serve"] = serve
    for name in ("worker-1", "worker-2"):
        processes[name] = HookcastProcess(
            tmp_path, {**env, "HOOKCAST_USER_AGENT": name}, name, ["worker"]
        )
    serve.wait_ready(key, deadline=30)
    api = httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    created = api.post(
        "/api/v1/Webhook",
        json={"Name": "n", "Events": [EVENT], "TargetUrl": receiver.url, "Secret": SECRET,
              "AutoRecover": True},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    hook_id = created.json()["WebhookId"]
    mark = len(receiver.requests)
    receiver.respond(status=500)
    assert api.post(f"/api/v1/Webhook/{EVENT}/1").status_code == 204

    def row() -> Any:
        with psycopg.connect(db_url) as conn:
            return conn.execute(
                "SELECT state, recover_at, recover_probes FROM webhooks WHERE id = %s", (hook_id,)
            ).fetchone()

    deadline = time.monotonic() + 60
    while not ((r := row())[0] == int(State.TooManyErrors) and r[1] is None and r[2] > 0):
        for process in processes.values():
            process.check_alive()
        assert time.monotonic() < deadline, f"probing did not end: {r}"
        time.sleep(0.05)
    sent = probes(receiver, mark)
    planned = len(SCHEDULE.planned())
    # one probe per scheduled time, whichever process made it
    assert abs(len(sent) - planned) <= 1, (len(sent), planned)
    assert r[2] == len(sent)  # each probe counted once: none was made twice under one claim
    with psycopg.connect(db_url) as conn:
        logged = conn.execute(
            "SELECT count(*) FROM deliveries WHERE webhook_id = %s AND probe = 1", (hook_id,)
        ).fetchone()
    assert logged == (len(sent),)
    senders = {p.header("User-Agent") for p in sent}
    assert senders <= {"serve", "worker-1", "worker-2"}
    print(f"{len(sent)} probes ({planned} planned) made by {sorted(senders)}")
