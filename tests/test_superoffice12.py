"""The SuperOffice 12 webhook fields (§1) through every write route, and the notifications
they ask for (§6): FirstFailure and Disabling, by Email (a real aiosmtpd server) and InApp
(GET /api/v1/Webhook/Notifications). The migration that carries ErrorsEmail over."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from api_support import Api, assert_every_write_refuses, running_api, stopped_hook
from support.engine import delivery_settings
from test_delivery_api import Mailbox, smtp, wait_until  # noqa: F401 (smtp is a fixture)

from hookcast.store.database import MIGRATIONS, Database

W = "/api/v1/Webhook"
SO12 = {
    "ErrorEmails": ["Ops@Example.com", "dev@example.com", "ops@example.com"],
    "ErrorAssociates": [{"Id": 5, "Name": "tony", "TableRight": None, "ChildItems": []}, {"id": 7}],
    "Description": "Orders to the ERP",
    "NotifyVia": "Email, InApp",
    "NotifyWhen": 3,
}


@pytest.fixture
def api(tmp_path, ca_bundle_path, smtp):  # noqa: F811
    settings = delivery_settings(
        tmp_path,
        ca_bundle_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp[0],
        smtp_from="hookcast@example.com",
        max_consecutive_errors=3,
    )
    values = {k: v for k, v in settings.model_dump().items() if k != "database_url"}
    with running_api(tmp_path, **values) as api:
        yield api


def fields(hook: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "ErrorsEmail",
        "ErrorEmails",
        "ErrorAssociates",
        "Description",
        "NotifyVia",
        "NotifyWhen",
    )
    return {k: hook[k] for k in keys}


STORED = {
    "ErrorsEmail": "Ops@example.com",
    "ErrorEmails": ["Ops@example.com", "dev@example.com"],  # normalized, each once
    "ErrorAssociates": [{"Id": 5, "Name": "tony"}, {"Id": 7, "Name": ""}],
    "Description": "Orders to the ERP",
    "NotifyVia": "Email, InApp",
    "NotifyWhen": "FirstFailure, Disabling",
}


def test_the_fields_round_trip_through_every_write_route(api: Api) -> None:
    created = api.post(W, json=stopped_hook(**SO12)).json()
    assert fields(created) == STORED
    assert (created["TotalCalls"], created["TotalErrors"], created["ConsecutiveErrors"]) == (
        0,
        0,
        0,
    )
    hook_id = created["WebhookId"]
    assert fields(api.get(f"{W}/{hook_id}").json()) == STORED
    assert fields(api.get(W).json()[0]) == STORED
    # PUT replaces: absent fields take their defaults (NotifyVia Email when an address is set)
    put = api.put(f"{W}/{hook_id}", json=stopped_hook(ErrorEmails=["a@example.com"])).json()
    assert fields(put) == {
        "ErrorsEmail": "a@example.com",
        "ErrorEmails": ["a@example.com"],
        "ErrorAssociates": [],
        "Description": None,
        "NotifyVia": "Email",
        "NotifyWhen": "Disabling",
    }
    # the obsolete ErrorsEmail writes ErrorEmails; read-only counters in input are ignored
    put = api.put(f"{W}/{hook_id}", json=stopped_hook(ErrorsEmail="b@example.com", TotalCalls=99))
    assert (put.json()["ErrorEmails"], put.json()["TotalCalls"]) == (["b@example.com"], 0)
    # JSON Patch and Merge Patch, names in any case
    patched = api.patch(f"{W}/{hook_id}", json=[
        {"op": "add", "path": "/errorEmails/-", "value": "c@example.com"},
        {"op": "replace", "path": "notifyVia", "value": 2},
        {"op": "add", "path": "/ErrorAssociates/-", "value": {"Id": 9, "Name": "nina"}},
    ]).json()  # fmt: skip
    assert patched["ErrorEmails"] == ["b@example.com", "c@example.com"]
    assert (patched["NotifyVia"], patched["ErrorAssociates"]) == (
        "InApp",
        [{"Id": 9, "Name": "nina"}],
    )
    merged = api.patch(f"{W}/{hook_id}", json={"errorsEmail": "d@example.com", "description": "x"})
    assert (merged.json()["ErrorEmails"], merged.json()["Description"]) == (["d@example.com"], "x")
    merged = api.patch(f"{W}/{hook_id}", json={"NotifyWhen": "none", "ErrorEmails": []}).json()
    assert (merged["NotifyWhen"], merged["ErrorsEmail"], merged["ErrorEmails"]) == (
        "None",
        None,
        [],
    )
    # Agents SaveWebhook, camelCase as SuperOffice's client sends it
    saved = api.post("/api/v1/Agents/Webhook/SaveWebhook", json={
        "webhookId": hook_id, **{k[0].lower() + k[1:]: v for k, v in stopped_hook(**SO12).items()}
    }).json()  # fmt: skip
    assert fields(saved) == STORED
    got = api.post(f"/api/v1/Agents/Webhook/GetWebhook?webhookId={hook_id}").json()
    assert fields(got) == STORED


def test_what_clients_send_back_keeps_notifications_on(api: Api) -> None:
    # the default carrier's 12.x fields are null (§2); filled in, NotifyVia takes its default
    default = api.get(f"{W}/default").json()
    assert [default[k] for k in ("ErrorEmails", "NotifyVia", "NotifyWhen", "TotalCalls")] == [
        None, None, None, None,
    ]  # fmt: skip
    carrier = {**default, **stopped_hook(), "ErrorEmails": ["ops@example.com"]}
    created = api.post(W, json=carrier).json()
    assert (created["NotifyVia"], created["NotifyWhen"]) == ("Email", "Disabling")
    hook_id = created["WebhookId"]
    # a GET, ErrorsEmail changed, sent back whole: PUT and SaveWebhook write it through
    got = api.get(f"{W}/{hook_id}").json()
    put = api.put(f"{W}/{hook_id}", json={**got, "ErrorsEmail": "new@example.com"}).json()
    assert (put["ErrorsEmail"], put["ErrorEmails"]) == ("new@example.com", ["new@example.com"])
    saved = api.post(
        "/api/v1/Agents/Webhook/SaveWebhook", json={**put, "ErrorsEmail": "again@example.com"}
    ).json()
    assert saved["ErrorEmails"] == ["again@example.com"]
    # ErrorsEmail null beside an unchanged ErrorEmails (what a client that knows only the new
    # field sends) clears nothing
    kept = api.put(f"{W}/{hook_id}", json={**saved, "ErrorsEmail": None}).json()
    assert kept["ErrorEmails"] == ["again@example.com"]
    # the first address of a webhook that had none turns Email on, whichever route
    bare = api.post(W, json=stopped_hook()).json()
    assert bare["NotifyVia"] == "None"
    patched = api.patch(f"{W}/{bare['WebhookId']}", json={"ErrorsEmail": "ops@example.com"})
    assert (patched.json()["ErrorEmails"], patched.json()["NotifyVia"]) == (
        ["ops@example.com"], "Email",
    )  # fmt: skip
    # explicit values win; numbers as digits are read as .NET reads them; associates once
    explicit = api.post(W, json=stopped_hook(
        ErrorEmails=["a@example.com"], NotifyVia="0", NotifyWhen=" 1 ",
        ErrorAssociates=[{"id": 5}, {"Id": 5, "Name": "again"}, {"Id": 6}],
    )).json()  # fmt: skip
    assert (explicit["NotifyVia"], explicit["NotifyWhen"]) == ("None", "FirstFailure")
    assert [a["Id"] for a in explicit["ErrorAssociates"]] == [5, 6]


BAD = [
    ({"ErrorEmails": ["not an address"]}, "ErrorEmails"),
    ({"ErrorEmails": [f"u{i}@example.com" for i in range(11)]}, "ErrorEmails"),
    ({"ErrorEmails": "ops@example.com"}, "ErrorEmails"),
    ({"ErrorsEmail": "nope"}, "ErrorsEmail"),
    ({"ErrorAssociates": [{"Name": "no id"}]}, "ErrorAssociates.0.Id"),
    ({"ErrorAssociates": [{"Id": "5"}]}, "ErrorAssociates.0.Id"),
    ({"ErrorAssociates": [{"Id": 2**31}]}, "ErrorAssociates.0.Id"),  # 32-bit, as SuperOffice
    ({"NotifyVia": 4}, "NotifyVia"),
    ({"NotifyVia": "Email, Pigeon"}, "NotifyVia"),
    ({"NotifyWhen": True}, "NotifyWhen"),
    ({"Description": "x" * 2001}, "Description"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_values_are_400_naming_the_field_and_change_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    assert_every_write_refuses(api, SO12, change, field)


def register(api: Api, url: str, **so12: Any) -> dict[str, Any]:
    response = api.post(W, json={
        "Name": "Orders", "Events": ["contact.changed"], "TargetUrl": url, "Secret": "s3cret", **so12
    })  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def notices(api: Api, **query: Any) -> list[dict[str, Any]]:
    page = api.get(f"{W}/Notifications", params=query)
    assert page.status_code == 200, page.text
    return page.json()["Items"]


def test_first_failure_and_disabling_by_mail_and_in_app(api: Api, receiver, smtp) -> None:  # noqa: F811
    _, mailbox = smtp
    hook = register(api, receiver.url, **SO12)
    hook_id = hook["WebhookId"]
    receiver.respond(status=500, body=b"broken")
    api.post(f"{W}/contact.changed/1")
    # FirstFailure: one mail to each address, one InApp notice to each associate
    wait_until(lambda: len(mailbox.envelopes) >= 2, what="2 mails")
    first = mailbox.envelopes[:2]  # the outbox sends in the order the notices were written
    assert sorted(e.rcpt_tos[0] for e in first) == ["Ops@example.com", "dev@example.com"]
    assert all(e.rcpt_tos == [e.rcpt_tos[0]] for e in first)  # one address per mail
    text = first[0].content.decode()
    assert "failed to deliver" in text and f"WebhookId:           {hook_id}" in text
    assert "s3cret" not in text
    # the cycle's retries and the next cycle fail too: Disabling, after the same error run
    wait_until(lambda: api.get(f"{W}/{hook_id}").json()["State"] == "TooManyErrors")
    mails = wait_until(lambda: len(mailbox.envelopes) >= 4 and mailbox.envelopes, what="4 mails")
    subjects = [e.content.decode() for e in mails]
    assert sum("was disabled after too many errors" in s for s in subjects) == 2
    assert (
        sum("failed to deliver" in s for s in subjects) == 2
    )  # once per error run, not per attempt
    listed = notices(api)
    assert [(n["Kind"], n["AssociateId"]) for n in listed] == [
        ("Disabling", 7), ("Disabling", 5), ("FirstFailure", 7), ("FirstFailure", 5),
    ]  # fmt: skip
    assert listed[0]["WebhookId"] == hook_id and listed[0]["EventId"]
    assert "HTTP 500" in listed[0]["Message"] and listed[3]["AssociateName"] == "tony"
    assert [n["Kind"] for n in notices(api, associateId=5)] == ["Disabling", "FirstFailure"]
    assert notices(api, limit=1, offset=1)[0]["NotificationId"] == listed[1]["NotificationId"]
    # another tenant sees none of them
    other = api.get(f"{W}/Notifications", key=api.key_b).json()
    assert (other["Total"], other["Items"]) == (0, [])
    # back to Active and working, then failing again: a new error run, a new FirstFailure
    receiver.respond(status=200)
    assert api.patch(f"{W}/{hook_id}", json={"State": "Active"}).status_code == 200
    api.post(f"{W}/contact.changed/2")
    wait_until(lambda: api.get(f"{W}/{hook_id}/Usage").json()["LastSuccessAt"], what="a success")
    receiver.respond(status=503)
    api.post(f"{W}/contact.changed/3")
    wait_until(lambda: [n["Kind"] for n in notices(api)][:2] == ["FirstFailure"] * 2)
    wait_until(lambda: len(mailbox.envelopes) >= 6, what="the second run's FirstFailure mails")


def test_first_failure_only_once_per_run_and_also_when_gone(api: Api, receiver) -> None:
    # FirstFailure alone: a 410 disables at once, and the owner still hears of it
    hook = register(api, receiver.url, **{**SO12, "NotifyWhen": "FirstFailure", "NotifyVia": 2})
    hook_id = hook["WebhookId"]
    receiver.respond(status=410)
    api.post(f"{W}/contact.changed/1")
    wait_until(lambda: api.get(f"{W}/{hook_id}").json()["State"] == "TooManyErrors")
    wait_until(lambda: len(notices(api)) == 2, what="the FirstFailure notices")
    # Active again, but failing on: the same run of errors (no success between), no new notice
    receiver.respond(status=200)
    assert api.patch(f"{W}/{hook_id}", json={"State": "Active"}).status_code == 200
    receiver.respond(status=500)
    api.post(f"{W}/contact.changed/2")
    wait_until(lambda: api.get(f"{W}/{hook_id}").json()["State"] == "TooManyErrors")
    assert [n["Kind"] for n in notices(api)] == ["FirstFailure"] * 2


def test_no_notice_unless_asked(api: Api, receiver, smtp) -> None:  # noqa: F811
    _, mailbox = smtp
    # NotifyWhen Disabling only, NotifyVia InApp only: no FirstFailure, no mail at all
    hook = register(api, receiver.url, **{**SO12, "NotifyWhen": "Disabling", "NotifyVia": 2})
    receiver.respond(status=500)
    api.post(f"{W}/contact.changed/1")
    wait_until(lambda: api.get(f"{W}/{hook['WebhookId']}").json()["State"] == "TooManyErrors")
    wait_until(lambda: len(notices(api)) == 2)
    assert {n["Kind"] for n in notices(api)} == {"Disabling"}
    delivered = [r for r in receiver.requests if r.header("X-Hook-Test") is None]
    assert delivered and orjson.loads(delivered[0].body)["PrimaryKey"] == 1
    assert mailbox.envelopes == []


def test_the_migration_carries_errors_email_over(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:  # the schema of the previous release
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
    old.close()
    with sqlite3.connect(path) as conn:
        for name, email in (("with", '"Quoted"@example.com'), ("without", None), ("gone", None)):
            conn.execute(
                "INSERT INTO webhooks (tenant, name, events, target_url, state, type, errors_email,"
                " registered_at, registered_associate_id, updated_at, updated_associate_id)"
                " VALUES ('T', ?, '[\"a.b\"]', 'https://x.example/', 2, 'webhook', ?, 1, 1, 1, 1)",
                (name, email),
            )
        conn.execute("DELETE FROM webhooks WHERE name = 'gone'")  # id 3, the highest
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, error_emails, notify_via, notify_when FROM webhooks ORDER BY id"
        ).fetchall()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(webhooks)")]
    assert [(n, json.loads(e), v, w) for n, e, v, w in rows] == [
        ("with", ['"Quoted"@example.com'], 1, 2),
        ("without", [], 0, 2),
    ]
    assert "errors_email" not in columns
    with sqlite3.connect(path) as conn:  # the table was rebuilt; id 3 stays retired (§1)
        conn.execute(
            "INSERT INTO webhooks (tenant, name, events, target_url, state, type, registered_at,"
            " registered_associate_id, updated_at, updated_associate_id)"
            " VALUES ('T', 'next', '[]', 'https://x.example/', 2, 'webhook', 1, 1, 1, 1)"
        )
        assert conn.execute("SELECT max(id) FROM webhooks").fetchone()[0] == 4
