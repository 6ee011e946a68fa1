"""Every registry endpoint's success and error codes, tenant isolation and keys, through the
real app on a real SQLite file. Active webhooks (which need a test POST) are covered in
test_registration.py against real HTTPS receivers."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from api_support import Api, running_api, stopped_hook

from hookcast import standard_webhooks_secret
from hookcast.store import queries

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path) as api:
        yield api


def create(api: Api, key: str | None = None, **overrides) -> dict:
    response = api.post("/api/v1/Webhook", key, json=stopped_hook(**overrides))
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status: int, error_type: str, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    # SuperOffice's REST error shape (§8), Details only when there are per-field problems
    assert body["Error"] is True and body["ErrorSource"] == "hookcast"
    assert set(body) - {"Details"} == {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
    assert body["ErrorType"] == error_type
    assert fragment.lower() in body["ErrorMessage"].lower(), body["ErrorMessage"]


def test_default_carrier(api: Api) -> None:
    response = api.get("/api/v1/Webhook/default")
    assert response.status_code == 200
    assert response.json() == {
        "WebhookId": 0,
        "Name": None,
        "Events": ["contact.created", "contact.deleted"],
        "TargetUrl": None,
        "Secret": None,
        "StandardWebhooksSecret": None,
        "State": "Active",
        "Type": "webhook",
        "Headers": None,
        "Properties": None,
        "ErrorsEmail": None,
        "ErrorEmails": None,
        "ErrorAssociates": None,
        "Description": None,
        "NotifyVia": None,
        "NotifyWhen": None,
        # hookcast's delivery options (docs/delivery-options.md)
        "Ordering": None,
        "CoalesceMs": None,
        "AutoRecover": None,
        "MaxPerSecond": None,
        "MaxInFlight": None,
        "TotalCalls": None,
        "TotalErrors": None,
        "ConsecutiveErrors": None,
        "LastError": None,
        "Registered": "0001-01-01T00:00:00",
        "RegisteredAssociate": None,
        "Updated": "0001-01-01T00:00:00",
        "UpdatedAssociate": None,
    }


def test_create_returns_the_contract_shape(api: Api) -> None:
    body = create(
        api,
        Headers={"X-Tenant": "a"},
        Properties={"customer": 42},
        ErrorsEmail="ops@example.com",
        State=2,
        Type="WebHook",
    )
    assert list(body) == [
        "WebhookId",
        "Name",
        "Events",
        "TargetUrl",
        "Secret",
        "StandardWebhooksSecret",
        "State",
        "Type",
        "Headers",
        "Properties",
        "ErrorsEmail",
        "ErrorEmails",
        "ErrorAssociates",
        "Description",
        "NotifyVia",
        "NotifyWhen",
        "Ordering",
        "CoalesceMs",
        "AutoRecover",
        "MaxPerSecond",
        "MaxInFlight",
        "TotalCalls",
        "TotalErrors",
        "ConsecutiveErrors",
        "LastError",
        "Registered",
        "RegisteredAssociate",
        "Updated",
        "UpdatedAssociate",
        "_Links",
    ]
    assert body["WebhookId"] >= 1
    assert body["StandardWebhooksSecret"] == standard_webhooks_secret(body["Secret"])
    assert body["Events"] == ["contact.created", "contact.changed"]  # lower-cased, de-duplicated
    assert body["State"] == "Stopped" and body["Type"] == "webhook"
    assert body["Headers"] == {"X-Tenant": "a"} and body["Properties"] == {"customer": 42}
    assert DATE.match(body["Registered"]) and DATE.match(body["Updated"])
    assert body["RegisteredAssociate"] == {
        "AssociateId": 5,
        "Name": "tony",
        "FullName": "Tony Ng",
        "Type": "Employee",
    }
    assert body["UpdatedAssociate"] == body["RegisteredAssociate"]
    base = "http://testserver/api/v1/Webhook"
    assert body["_Links"] == {"Self": f"{base}/{body['WebhookId']}", "Archive": base}
    assert api.get(f"/api/v1/Webhook/{body['WebhookId']}").json() == body


def test_get_list_and_filters(api: Api) -> None:
    first = create(api, Name="one", Events=["contact.created"])
    second = create(api, Name="two", Events=["sale.deleted"])
    create(api, api.key_b, Name="other tenant")
    listed = api.get("/api/v1/Webhook").json()
    assert [h["WebhookId"] for h in listed] == [first["WebhookId"], second["WebhookId"]]
    assert "_Links" not in listed[0]
    by_name = api.get("/api/v1/Webhook", params={"nameFilter": "two"}).json()
    assert [h["Name"] for h in by_name] == ["two"]
    by_event = api.get("/api/v1/Webhook", params={"eventFilter": "Contact.Created"}).json()
    assert [h["Name"] for h in by_event] == ["one"]
    assert api.get("/api/v1/Webhook", params={"statusFilter": "Active"}).json() == []
    assert len(api.get("/api/v1/Webhook", params={"statusFilter": "stopped"}).json()) == 2
    assert len(api.get("/api/v1/Webhook", params={"statusFilter": "Unknown"}).json()) == 2
    assert len(api.get("/api/v1/Webhook", params={"statusFilter": "2"}).json()) == 2
    for wrong in ("Sleeping", "\r 3", " Active", "３"):  # "\r 3" was taken for 3 (schemathesis)
        assert_error(
            api.get("/api/v1/Webhook", params={"statusFilter": wrong}),
            400,
            "ValidationError",
            "statusFilter",
        )


def test_tenants_are_isolated(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    for response in (
        api.get(f"/api/v1/Webhook/{hook_id}", api.key_b),
        api.put(f"/api/v1/Webhook/{hook_id}", api.key_b, json=stopped_hook()),
        api.patch(f"/api/v1/Webhook/{hook_id}", api.key_b, json={"Name": "stolen"}),
        api.delete(f"/api/v1/Webhook/{hook_id}", api.key_b),
        api.get(f"/api/v1/Webhook/{hook_id}/LastError", api.key_b),
        api.get(f"/api/v1/Webhook/{hook_id}/Usage", api.key_b),
        api.post("/api/v1/Agents/Webhook/GetWebhook", api.key_b, params={"webhookId": hook_id}),
    ):
        assert_error(response, 404, "NotFound")
    assert api.get("/api/v1/Webhook", api.key_b).json() == []
    assert api.get(f"/api/v1/Webhook/{hook_id}").json()["Name"] == "Contact handler"


def test_missing_unknown_and_revoked_keys(api: Api) -> None:
    assert_error(api.client.get("/api/v1/Webhook"), 401, "Unauthorized", "API key")
    assert api.client.get("/api/v1/Webhook").headers["www-authenticate"] == "Bearer"
    assert_error(api.get("/api/v1/Webhook", "hc_not-a-key"), 401, "Unauthorized")
    assert_error(
        api.client.get("/api/v1/Webhook", headers={"Authorization": "Basic eDp5"}),
        401,
        "Unauthorized",
    )
    assert api.get("/api/v1/Webhook").status_code == 200
    key_id = next(k.id for k in api.db.run_sync(queries.list_keys, "Cust1234"))
    assert api.db.run_sync(queries.revoke_key, key_id, time.time())
    # A key is trusted from the key cache for half a second after it was read (keys.KeyCache).
    deadline = time.monotonic() + 5
    while (answer := api.get("/api/v1/Webhook")).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.05)
    assert_error(answer, 401, "Unauthorized", "revoked")


def test_put_replaces_and_records_the_updater(api: Api) -> None:
    hook = create(api)
    response = api.put(
        f"/api/v1/Webhook/{hook['WebhookId']}",
        json=stopped_hook(Name="renamed", Events=["person.changed"], Secret=None),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["Name"], body["Events"], body["Secret"]) == ("renamed", ["person.changed"], None)
    assert body["Registered"] == hook["Registered"]
    assert api.get("/api/v1/Webhook", params={"eventFilter": "contact.created"}).json() == []
    assert_error(api.put("/api/v1/Webhook/999", json=stopped_hook()), 404, "NotFound")


def test_patch_json_patch_case_insensitive_paths(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    ops = [
        {"op": "test", "path": "name", "value": "Contact handler"},
        {"op": "replace", "path": "NAME", "value": "patched"},
        {"op": "add", "path": "/events/-", "value": "sale.created"},
        {"op": "add", "path": "headers", "value": {"X-A": "1"}},
        {"op": "remove", "path": "/Secret"},
    ]
    response = api.patch(f"/api/v1/Webhook/{hook_id}", json=ops)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Name"] == "patched" and body["Secret"] is None
    assert body["Events"] == ["contact.created", "contact.changed", "sale.created"]
    assert body["Headers"] == {"X-A": "1"}
    response = api.patch(
        f"/api/v1/Webhook/{hook_id}",
        json=[{"op": "add", "path": "/Headers/X-B", "value": "2"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.json()["Headers"] == {"X-A": "1", "X-B": "2"}


def test_patch_failed_test_is_409_and_changes_nothing(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    before = api.get(f"/api/v1/Webhook/{hook_id}").json()
    ops = [
        {"op": "replace", "path": "/Name", "value": "x"},
        {"op": "test", "path": "/Name", "value": "something else"},
    ]
    assert_error(api.patch(f"/api/v1/Webhook/{hook_id}", json=ops), 409, "Conflict", "test")
    assert api.get(f"/api/v1/Webhook/{hook_id}").json() == before


def test_merge_patch(api: Api) -> None:
    hook_id = create(api, Properties={"a": 1, "b": 2})["WebhookId"]
    response = api.patch(
        f"/api/v1/Webhook/{hook_id}",
        json={"properties": {"b": None, "c": 3}, "Name": "m"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["Properties"] == {"a": 1, "c": 3}
    assert response.json()["Name"] == "m"


def test_bad_patches(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    before = api.get(f"/api/v1/Webhook/{hook_id}").json()
    url = f"/api/v1/Webhook/{hook_id}"
    assert_error(
        api.patch(url, json=[{"op": "move", "from": "/Name", "path": "/Secret"}]),
        400,
        "ValidationError",
    )
    assert_error(
        api.patch(url, json=[{"op": "replace", "path": "/Nope", "value": 1}]),
        400,
        "ValidationError",
        "Nope",
    )
    assert_error(
        api.patch(url, json=[{"op": "replace", "path": "/WebhookId", "value": 9}]),
        400,
        "ValidationError",
    )
    assert_error(
        api.patch(url, json=[{"op": "remove", "path": "/Headers/X-None"}]), 400, "ValidationError"
    )
    assert_error(
        api.patch(url, json=[{"op": "replace", "path": "/Events", "value": []}]),
        400,
        "ValidationError",
        "Events",
    )
    assert_error(api.patch(url, json={"State": "Sleeping"}), 400, "ValidationError", "State")
    assert_error(
        api.patch(url, json={"Name": "x"}, headers={"Content-Type": "application/json-patch+json"}),
        400,
        "ValidationError",
    )
    assert_error(api.patch("/api/v1/Webhook/999", json={"Name": "x"}), 404, "NotFound")
    assert api.get(url).json() == before


def test_if_unmodified_since(api: Api) -> None:
    hook = create(api)
    url = f"/api/v1/Webhook/{hook['WebhookId']}"
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert_error(
        api.patch(url, json={"Name": "late"}, headers={"If-Unmodified-Since": past}),
        412,
        "PreconditionFailed",
    )
    assert_error(
        api.patch(url, json={"Name": "x"}, headers={"If-Unmodified-Since": "yesterday"}),
        400,
        "ValidationError",
        "If-Unmodified-Since",
    )
    assert api.get(url).json()["Name"] == "Contact handler"
    response = api.patch(url, json={"Name": "on time"}, headers={"If-Unmodified-Since": future})
    assert response.status_code == 200 and response.json()["Name"] == "on time"


def test_delete(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    response = api.delete(f"/api/v1/Webhook/{hook_id}")
    assert response.status_code == 204 and response.content == b""
    assert_error(api.get(f"/api/v1/Webhook/{hook_id}"), 404, "NotFound")
    assert_error(api.delete(f"/api/v1/Webhook/{hook_id}"), 404, "NotFound")


def test_last_error_and_usage_of_a_new_webhook(api: Api) -> None:
    hook_id = create(api)["WebhookId"]
    response = api.get(f"/api/v1/Webhook/{hook_id}/LastError")
    assert response.status_code == 200 and response.json() is None
    assert api.get(f"/api/v1/Webhook/{hook_id}/Usage").json() == {
        "TotalCalls": 0,
        "TotalErrors": 0,
        "ConsecutiveErrors": 0,
        "LastError": None,
        "LastErrorAt": None,
        "LastSuccessAt": None,
    }
    assert_error(api.get("/api/v1/Webhook/424242/LastError"), 404, "NotFound")


def test_agents_rpc(api: Api) -> None:
    base = "/api/v1/Agents/Webhook"
    default = api.post(f"{base}/CreateDefaultWebhook")
    assert default.status_code == 200 and default.json()["WebhookId"] == 0
    saved = api.post(f"{base}/SaveWebhook", json={**default.json(), **stopped_hook()})
    assert saved.status_code == 200, saved.text
    hook = saved.json()
    assert hook["WebhookId"] >= 1 and "_Links" in hook
    updated = api.post(
        f"{base}/SaveWebhook",
        json={**stopped_hook(Name="saved again"), "WebhookId": hook["WebhookId"]},
    )
    assert (
        updated.json()["Name"] == "saved again" and updated.json()["WebhookId"] == hook["WebhookId"]
    )
    got = api.post(f"{base}/GetWebhook", params={"webhookId": hook["WebhookId"]})
    assert got.json()["Name"] == "saved again"
    got_by_body = api.post(f"{base}/GetWebhook", json={"WebhookId": hook["WebhookId"]})
    assert got_by_body.json()["WebhookId"] == hook["WebhookId"]
    listed = api.post(
        f"{base}/GetAllWebhooks", json={"NameFilter": "saved again", "StatusFilter": "Stopped"}
    )
    assert [h["WebhookId"] for h in listed.json()] == [hook["WebhookId"]]
    assert api.post(f"{base}/GetAllWebhooks", json={"EventFilter": "nothing.here"}).json() == []
    assert api.post(f"{base}/GetLastError", params={"webhookId": hook["WebhookId"]}).json() is None
    assert_error(api.post(f"{base}/GetWebhook"), 400, "ValidationError", "webhookId")
    assert (
        api.post(f"{base}/DeleteWebhook", params={"webhookId": hook["WebhookId"]}).status_code
        == 204
    )
    assert_error(
        api.post(f"{base}/GetWebhook", params={"webhookId": hook["WebhookId"]}), 404, "NotFound"
    )
    assert_error(
        api.post(f"{base}/SaveWebhook", json={**stopped_hook(), "WebhookId": 999}), 404, "NotFound"
    )


BAD_BODIES = [
    ("not json", b"{nope", "not valid JSON"),
    ("array", b"[]", ""),
    ("name type", stopped_hook(Name=12), "Name"),
    ("no name", {k: v for k, v in stopped_hook().items() if k != "Name"}, "Name"),
    ("blank name", stopped_hook(Name="   "), "Name"),
    ("no events", {k: v for k, v in stopped_hook().items() if k != "Events"}, "Events"),
    ("empty events", stopped_hook(Events=[]), "Events"),
    ("empty event name", stopped_hook(Events=[""]), "Events"),
    ("malformed event", stopped_hook(Events=["contact..created"]), "malformed"),
    ("event with space", stopped_hook(Events=["contact created"]), "malformed"),
    ("long event", stopped_hook(Events=["a" * 129]), "128"),
    ("too many events", stopped_hook(Events=[f"e{i}" for i in range(101)]), "Events"),
    ("unknown state", stopped_hook(State="Sleeping"), "State"),
    ("state number", stopped_hook(State=7), "State"),
    ("state bool", stopped_hook(State=True), "State"),
    ("unknown type", stopped_hook(Type="carrier-pigeon"), "Type"),
    ("http url", stopped_hook(TargetUrl="http://hooks.example.com/x"), "https"),
    ("relative url", stopped_hook(TargetUrl="/hooks"), "TargetUrl"),
    ("long url", stopped_hook(TargetUrl="https://example.com/" + "a" * 2100), "TargetUrl"),
    ("credentials", stopped_hook(TargetUrl="https://user:pw@example.com/x"), "credentials"),
    ("fragment", stopped_hook(TargetUrl="https://example.com/x#frag"), "fragment"),
    ("reserved header", stopped_hook(Headers={"X-SuperOffice-Event": "x"}), "reserved"),
    ("webhook- header", stopped_hook(Headers={"webhook-id": "x"}), "reserved"),
    ("svix- header", stopped_hook(Headers={"Svix-Id": "x"}), "reserved"),
    ("host header", stopped_hook(Headers={"Host": "x"}), "reserved"),
    ("bad header name", stopped_hook(Headers={"Bad Name": "x"}), "token"),
    ("crlf header", stopped_hook(Headers={"X-A": "a\r\nX-B: b"}), "CR"),
    ("nul header", stopped_hook(Headers={"X-A": "a\0"}), "NUL"),
    ("header value type", stopped_hook(Headers={"X-A": 1}), "Headers"),
    ("too many headers", stopped_hook(Headers={f"X-{i}": "v" for i in range(21)}), "20"),
    ("property collides", stopped_hook(Properties={"EventId": "x"}), "collides"),
    ("property collides in case", stopped_hook(Properties={"webhookname": "x"}), "collides"),
    ("big properties", stopped_hook(Properties={"blob": "x" * 17000}), "16 KiB"),
    ("bad email", stopped_hook(ErrorsEmail="not an address"), "ErrorsEmail"),
    ("two emails", stopped_hook(ErrorsEmail="a@example.com, b@example.com"), "ErrorsEmail"),
    ("long secret", stopped_hook(Secret="s" * 257), "Secret"),
    ("secret type", stopped_hook(Secret=5), "Secret"),
    ("whsec not base64", stopped_hook(Secret="whsec_not*base64"), "base64"),
    ("whsec too short", stopped_hook(Secret="whsec_" + "QUJD" * 4), "24 bytes"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_a_400_and_changes_nothing(api: Api, case: str, body, fragment: str) -> None:
    existing = create(api)
    before = api.get("/api/v1/Webhook").json()
    kwargs = (
        {"content": body, "headers": {"Content-Type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    assert_error(api.post("/api/v1/Webhook", **kwargs), 400, "ValidationError", fragment)
    assert_error(
        api.put(f"/api/v1/Webhook/{existing['WebhookId']}", **kwargs),
        400,
        "ValidationError",
        fragment,
    )
    assert api.get("/api/v1/Webhook").json() == before


def test_body_over_one_mebibyte_is_413(api: Api) -> None:
    body = b'{"Name": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.post(
        "/api/v1/Webhook", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "PayloadTooLarge")
    assert api.get("/api/v1/Webhook").json() == []


def test_unknown_route_and_bad_id(api: Api) -> None:
    assert_error(api.get("/api/v1/Nothing"), 404, "NotFound")
    assert_error(api.get("/api/v1/Webhook/abc"), 404, "NotFound")
    assert_error(api.put("/api/v1/Webhook/default", json={}), 405, "MethodNotAllowed")


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert (
        "/api/v1/Webhook" in spec["paths"] and "/api/v1/Agents/Webhook/SaveWebhook" in spec["paths"]
    )
    create_body = spec["paths"]["/api/v1/Webhook"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert create_body["$ref"].endswith("/WebhookIn")
    assert {"Name", "Events", "TargetUrl"} <= set(
        spec["components"]["schemas"]["WebhookIn"]["required"]
    )
    assert api.client.get("/docs").status_code == 200


def test_nul_characters_are_refused_everywhere(api: Api) -> None:
    before = api.get("/api/v1/Webhook").json()
    assert_error(
        api.get("/api/v1/Webhook", params={"nameFilter": "a\0b"}), 400, "ValidationError", "NUL"
    )
    assert_error(
        api.post("/api/v1/Webhook", json=stopped_hook(Name="a\0b")), 400, "ValidationError", "NUL"
    )
    assert_error(
        api.post("/api/v1/Webhook", json=stopped_hook(Properties={"x": "a\0"})),
        400,
        "ValidationError",
        "NUL",
    )
    assert api.get("/api/v1/Webhook").json() == before


def test_chunked_body_over_the_limit_is_413(api: Api) -> None:
    def chunks():
        for _ in range(9):
            yield b"x" * (128 * 1024)

    response = api.post(
        "/api/v1/Webhook", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "PayloadTooLarge")
