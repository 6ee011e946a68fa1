"""Key rights (§7, issue 13 item 8): each role is allowed and refused exactly its routes,
found by walking the app's route table, and a `read` key never sees a Secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from api_support import Api, running_api, stopped_hook
from sqlalchemy import func, inspect, select, text
from support.databases import needs_postgres, new_postgres_url
from typer.testing import CliRunner

from hookcast.cli import app as cli_app
from hookcast.keys import create_key, hash_key
from hookcast.rights import RIGHTS, Right, Role, allows
from hookcast.store import queries
from hookcast.store.database import MIGRATIONS, Database
from hookcast.store.schema import events

# The right every route needs; None: no key at all. A route missing here fails the test, so
# a new route cannot ship without deciding who may call it.
RULES: dict[tuple[str, str], Right | None] = {
    ("GET", "/health"): None,
    ("GET", "/metrics"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    # REST webhooks
    ("GET", "/api/v1/Webhook/default"): Right.read,
    ("GET", "/api/v1/Webhook"): Right.read,
    ("POST", "/api/v1/Webhook"): Right.manage,
    ("POST", "/api/v1/Webhook/Test"): Right.manage,
    ("GET", "/api/v1/Webhook/Notifications"): Right.read,
    ("GET", "/api/v1/Webhook/{webhookId:int}"): Right.read,
    ("PUT", "/api/v1/Webhook/{webhookId:int}"): Right.manage,
    ("PATCH", "/api/v1/Webhook/{webhookId:int}"): Right.manage,
    ("DELETE", "/api/v1/Webhook/{webhookId:int}"): Right.manage,
    ("GET", "/api/v1/Webhook/{webhookId:int}/LastError"): Right.read,
    ("GET", "/api/v1/Webhook/{webhookId:int}/Usage"): Right.read,
    ("GET", "/api/v1/Webhook/{webhookId:int}/Deliveries"): Right.read,
    ("POST", "/api/v1/Webhook/{webhookId:int}/Redeliver"): Right.manage,
    ("POST", "/api/v1/Webhook/{eventName}/{primaryKey:signed_int}"): Right.signal,
    ("POST", "/api/v1/Webhook/Signal"): Right.signal,
    # Agents: the RPC forms of the same operations, with the same rights
    ("POST", "/api/v1/Agents/Webhook/CreateDefaultWebhook"): Right.read,
    ("POST", "/api/v1/Agents/Webhook/SaveWebhook"): Right.manage,
    ("POST", "/api/v1/Agents/Webhook/GetWebhook"): Right.read,
    ("POST", "/api/v1/Agents/Webhook/DeleteWebhook"): Right.manage,
    ("POST", "/api/v1/Agents/Webhook/GetAllWebhooks"): Right.read,
    ("POST", "/api/v1/Agents/Webhook/TestWebhook"): Right.manage,
    ("POST", "/api/v1/Agents/Webhook/GetLastError"): Right.read,
    ("POST", "/api/v1/Agents/Webhook/SignalEvent"): Right.signal,
    # CRMScript
    ("GET", "/api/v1/CRMScript/default"): Right.read,
    ("GET", "/api/v1/CRMScript"): Right.read,
    ("POST", "/api/v1/CRMScript"): Right.manage,
    ("POST", "/api/v1/CRMScript/Validate"): Right.manage,
    ("GET", "/api/v1/CRMScript/HttpAllowList"): Right.read,
    ("PUT", "/api/v1/CRMScript/HttpAllowList"): Right.manage,
    ("GET", "/api/v1/CRMScript/{scriptId:int}"): Right.read,
    ("PUT", "/api/v1/CRMScript/{scriptId:int}"): Right.manage,
    ("PATCH", "/api/v1/CRMScript/{scriptId:int}"): Right.manage,
    ("DELETE", "/api/v1/CRMScript/{scriptId:int}"): Right.manage,
    ("POST", "/api/v1/CRMScript/{scriptId:int}/Execute"): Right.manage,
}

# Path parameters, as the route table spells them; ids that do not exist, so an allowed
# call changes nothing (404) whatever order the routes come in.
PARAMS = {
    "webhookId:int": "999999",
    "scriptId:int": "999999",
    "eventName": "contact.changed",
    "primaryKey:signed_int": "7",
}
ABSENT_ID = {"webhookId": 999999}


def route_table(app: Any) -> Iterator[tuple[str, str]]:
    """Every (method, path) the app answers, with the included routers opened up."""
    routes = list(app.router.routes)
    while routes:
        route = routes.pop()
        included = getattr(route, "original_router", None)
        if included is not None:
            routes.extend(included.routes)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, route.path


def concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PARAMS[m.group(1)], path)


def call(api: Api, method: str, path: str, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = concrete(path)
    query = {"webhookId": 999999} if "/Agents/" in path else None
    body: Any = None
    if method in ("POST", "PUT", "PATCH"):
        body = {"EventName": "contact.changed", "PrimaryKey": 7} if "SignalEvent" in path else {}
    return api.client.request(method, url, headers=headers, params=query, json=body)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as api:
        yield api


def role_keys(api: Api) -> dict[Role, str]:
    return {
        role: create_key(api.db, tenant="Cust1234", associate_id=5, role=role)[1] for role in Role
    }


def count_events(api: Api) -> int:
    return int(
        api.db.run_sync(
            lambda conn: conn.execute(select(func.count()).select_from(events)).scalar_one()
        )
    )


def test_policy_table() -> None:
    assert RIGHTS[Role.admin] == frozenset(Right)
    assert allows(Role.manage, Right.secrets) and not allows(Role.manage, Right.keys)
    assert not allows(Role.manage, Right.signal)
    assert [r for r in Right if allows(Role.signal, r)] == [Right.signal]
    assert [r for r in Right if allows(Role.read, r)] == [Right.read]


def test_each_role_is_allowed_and_refused_exactly_its_routes(api: Api) -> None:
    keys = role_keys(api)
    table = sorted(set(route_table(api.client.app)))
    unknown = [r for r in table if r not in RULES]
    assert not unknown, f"routes without a rule in RULES: {unknown}"
    assert set(RULES) <= set(table), f"rules for routes that are gone: {set(RULES) - set(table)}"
    wrong: list[str] = []
    for method, path in table:
        right = RULES[(method, path)]
        if right is None:
            continue
        anonymous = call(api, method, path, None)
        if anonymous.status_code != 401:
            wrong.append(f"{method} {path} without a key: {anonymous.status_code}")
        for role, key in keys.items():
            response = call(api, method, path, key)
            if allows(role, right):
                if response.status_code in (401, 403) or response.status_code >= 500:
                    wrong.append(f"{method} {path} as {role}: {response.status_code} (allowed)")
            elif response.status_code != 403 or response.json()["ErrorType"] != "Forbidden":
                wrong.append(f"{method} {path} as {role}: {response.status_code} (refused)")
    assert not wrong, "\n".join(wrong)


def test_forbidden_body_and_nothing_changes(api: Api) -> None:
    keys = role_keys(api)
    hook = api.post("/api/v1/Webhook", keys[Role.manage], json=stopped_hook()).json()
    before = count_events(api)
    for role in (Role.read, Role.manage):
        refused = api.post("/api/v1/Webhook/contact.changed/1", keys[role], json={"a": 1})
        assert refused.status_code == 403
        body = refused.json()
        assert body["Error"] is True and body["ErrorType"] == "Forbidden"
        assert role.value in body["ErrorMessage"] and "--role" in body["ErrorMessage"]
        agents = api.post(
            "/api/v1/Agents/Webhook/SignalEvent",
            keys[role],
            json={"EventName": "contact.changed", "PrimaryKey": 1},
        )
        assert agents.status_code == 403
    assert count_events(api) == before
    for role in (Role.read, Role.signal):
        url = f"/api/v1/Webhook/{hook['WebhookId']}"
        assert api.delete(url, keys[role]).status_code == 403
        assert api.put(url, keys[role], json=stopped_hook(Name="x")).status_code == 403
        assert api.patch(url, keys[role], json={"Name": "x"}).status_code == 403
        assert (
            api.post(
                "/api/v1/Agents/Webhook/DeleteWebhook",
                keys[role],
                params={"webhookId": hook["WebhookId"]},
            ).status_code
            == 403
        )
    kept = api.get(f"/api/v1/Webhook/{hook['WebhookId']}", keys[Role.admin]).json()
    assert kept["Name"] == hook["Name"]
    # The signal key does what it is for; the tenant prefix does not change the rights.
    assert api.post("/api/v1/Webhook/contact.changed/1", keys[Role.signal]).status_code == 204
    assert api.get("/Cust1234/api/v1/Webhook", keys[Role.signal]).status_code == 403
    assert api.post("/Cust1234/api/v1/Webhook/a.b/2", keys[Role.signal]).status_code == 204
    assert count_events(api) == before + 2


def test_read_never_sees_a_secret(api: Api) -> None:
    keys = role_keys(api)
    secret, token = "Something Super Secret", "Bearer do-not-show-9f2c"
    carrier = stopped_hook(Secret=secret, Headers={"Authorization": token, "X-Tenant": "t-77"})
    created = api.post("/api/v1/Webhook", keys[Role.manage], json=carrier)
    assert created.status_code == 200, created.text
    hook_id = created.json()["WebhookId"]
    reads = {
        "REST one": lambda k: api.get(f"/api/v1/Webhook/{hook_id}", k),
        "REST list": lambda k: api.get("/api/v1/Webhook", k),
        "Agents one": lambda k: api.post(
            "/api/v1/Agents/Webhook/GetWebhook", k, params={"webhookId": hook_id}
        ),
        "Agents list": lambda k: api.post("/api/v1/Agents/Webhook/GetAllWebhooks", k),
    }
    for what, read in reads.items():
        shown = read(keys[Role.read])
        assert shown.status_code == 200, (what, shown.text)
        for value in (secret, token, "do-not-show", "t-77"):
            assert value not in shown.text, (what, value)
        one = shown.json()[0] if isinstance(shown.json(), list) else shown.json()
        assert one["WebhookId"] == hook_id and one["Name"] == carrier["Name"]
        assert one["Secret"] is None and one["StandardWebhooksSecret"] is None
        assert one["Headers"] is None
        # manage and admin keys see them, as SuperOffice answers them
        for role in (Role.manage, Role.admin):
            full = read(keys[role]).json()
            full = full[0] if isinstance(full, list) else full
            assert full["Secret"] == secret and full["StandardWebhooksSecret"]
            assert full["Headers"] == {"Authorization": token, "X-Tenant": "t-77"}


def test_keys_create_with_a_role_and_list_it(tmp_path: Path) -> None:
    from support.databases import migrated_database_url

    url = migrated_database_url(tmp_path)
    runner = CliRunner()
    base = ["keys", "create", "--tenant", "Cust1234", "--associate-id", "5", "--db", url]
    made = runner.invoke(cli_app, [*base, "--role", "Signal"])
    assert made.exit_code == 0, made.output
    assert "role signal" in made.output
    default = runner.invoke(cli_app, base)
    assert default.exit_code == 0 and "role admin" in default.output
    bad = runner.invoke(cli_app, [*base, "--role", "owner"])
    assert bad.exit_code == 2 and "owner" in bad.output
    listing = runner.invoke(cli_app, ["keys", "list", "--db", url], env={"COLUMNS": "200"})
    assert listing.exit_code == 0
    rows = [line for line in listing.output.splitlines() if "Cust1234" in line]
    assert len(rows) == 2 and "signal" in rows[0] and "admin" in rows[1]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_existing_keys_become_admin(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else new_postgres_url()
    old = Database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:  # the schema of the previous release
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    for name in ("kept", "gone"):
        old.run_sync(
            lambda conn, name=name: conn.execute(
                text(
                    "INSERT INTO api_keys (tenant, associate_id, name, prefix, key_hash,"
                    " created_at) VALUES ('Cust1234', 5, :name, 'hc_x', :hash, 1)"
                ),
                {"name": name, "hash": hash_key(name)},
            )
        )
    old.run_sync(lambda conn: conn.execute(text("DELETE FROM api_keys WHERE name = 'gone'")))
    old.close()
    db = Database(url)
    try:
        db.migrate()
        keys = db.run_sync(queries.list_keys)
        assert [(k.name, k.role) for k in keys] == [("kept", Role.admin)]
        who = db.run_sync(queries.principal_for_key, hash_key("kept"))
        assert who is not None and who.role is Role.admin
        # ids stay retired across the migration (SQLite's AUTOINCREMENT counter kept)
        record, _ = create_key(db, tenant="Cust1234", associate_id=5, role=Role.read)
        assert record.id == 3 and record.role is Role.read
        with db.engine.begin() as conn:  # and back
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
            columns = {c["name"] for c in inspect(conn).get_columns("api_keys")}
        assert "role" not in columns
    finally:
        db.close()
