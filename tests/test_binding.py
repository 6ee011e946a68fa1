"""Paths bind as in SuperOffice's REST service (ASP.NET): in any case, and with or without a
trailing slash as the same route, answered in place (never a redirect)."""

from __future__ import annotations

import pytest
from api_support import running_api, stopped_hook


@pytest.fixture
def api(tmp_path, ca_bundle_path):
    with running_api(tmp_path, ca_bundle=ca_bundle_path, allow_targets=["127.0.0.0/8"]) as api:
        yield api


def test_paths_match_in_any_case(api) -> None:
    default = api.get("/api/v1/Webhook/default")
    assert default.status_code == 200
    for path in ("/api/v1/webhook/default", "/API/V1/WEBHOOK/DEFAULT", "/Api/V1/webHook/Default"):
        response = api.get(path)
        assert (response.status_code, response.json()) == (200, default.json()), path
    created = api.post("/api/v1/webhook", json=stopped_hook()).json()
    hook_id = created["WebhookId"]
    assert api.get(f"/API/v1/Webhook/{hook_id}").json() == created
    agents = api.post("/api/v1/agents/webhook/getallwebhooks", json={})
    assert agents.status_code == 200 and [h["WebhookId"] for h in agents.json()] == [hook_id]


def test_a_trailing_slash_is_the_same_route_without_a_redirect(api) -> None:
    created = api.post("/api/v1/Webhook/", json=stopped_hook(), follow_redirects=False)
    assert created.status_code == 200, created.text
    hook_id = created.json()["WebhookId"]
    for path in (f"/api/v1/Webhook/{hook_id}/", "/api/v1/Webhook/", "/api/v1/webhook/default/"):
        response = api.get(path, follow_redirects=False)
        assert response.status_code == 200, (path, response.status_code)
    assert api.get(f"/api/v1/Webhook/{hook_id}/").json() == created.json()
    assert [h["WebhookId"] for h in api.get("/api/v1/Webhook/").json()] == [hook_id]
    deleted = api.delete(f"/api/v1/webhook/{hook_id}/", follow_redirects=False)
    assert deleted.status_code in (200, 204)
    assert api.get(f"/api/v1/Webhook/{hook_id}").status_code == 404


def test_an_unknown_path_is_still_a_404(api) -> None:
    assert api.get("/api/v1/Webhookx/default").status_code == 404
    assert api.get("/api/v1/Webhook/default//").status_code == 404


# ----- JSON property names, query names, bodies (§2) -----------------------------------------


def cased(carrier: dict, how: str) -> dict:
    """A carrier's top-level names in camelCase, UPPER case or a mix, as clients send them."""
    spell = {
        "camel": lambda k: k[0].lower() + k[1:],
        "upper": str.upper,
        "mixed": lambda k: "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(k)),
    }[how]
    return {spell(k): v for k, v in carrier.items()}


def everything(api) -> list:
    return api.get("/api/v1/Webhook").json()


@pytest.mark.parametrize("how", ["camel", "upper", "mixed"])
def test_property_names_match_in_any_case(api, how: str) -> None:
    carrier = stopped_hook(Headers={"x-Keep-Case": "v"}, Properties={"someKey": {"Inner": 1}})
    created = api.post("/api/v1/Webhook", json=cased(carrier, how))
    assert created.status_code == 200, created.text
    hook = created.json()
    # values are the carrier's; keys inside Headers and Properties are left as sent
    assert (hook["Name"], hook["State"], hook["Secret"]) == (
        "Contact handler",
        "Stopped",
        carrier["Secret"],
    )
    assert hook["Headers"] == {"x-Keep-Case": "v"}
    assert hook["Properties"] == {"someKey": {"Inner": 1}}
    hook_id = hook["WebhookId"]
    replaced = api.put(f"/api/v1/Webhook/{hook_id}", json=cased({**carrier, "Name": "put"}, how))
    assert replaced.json()["Name"] == "put", replaced.text
    saved = api.post(
        "/api/v1/Agents/Webhook/SaveWebhook",
        json=cased({**carrier, "WebhookId": hook_id, "Name": "saved"}, how),
    )
    assert (saved.json()["WebhookId"], saved.json()["Name"]) == (hook_id, "saved"), saved.text
    merged = api.patch(f"/api/v1/Webhook/{hook_id}", json=cased({"Name": "merged"}, how))
    assert merged.json()["Name"] == "merged", merged.text
    # responses stay PascalCase
    assert {"WebhookId", "TargetUrl", "_Links"} <= set(merged.json())


def test_save_and_test_take_the_carrier_wrapped(api, receiver) -> None:
    wrapped = api.post("/api/v1/Agents/Webhook/SaveWebhook", json={"Webhook": stopped_hook()})
    assert wrapped.status_code == 200, wrapped.text
    camel = api.post(
        "/api/v1/Agents/Webhook/SaveWebhook",
        json={
            "webhook": cased(
                {**stopped_hook(), "WebhookId": wrapped.json()["WebhookId"], "Name": "re"}, "camel"
            )
        },
    )
    assert (camel.json()["WebhookId"], camel.json()["Name"]) == (wrapped.json()["WebhookId"], "re")
    tested = api.post(
        "/api/v1/Agents/Webhook/TestWebhook",
        json={"Webhook": {**stopped_hook(), "TargetUrl": receiver.url}},
    )
    assert tested.status_code == 200 and tested.json()["Success"] is True, tested.text
    assert receiver.wait_for(1)[0].header("X-Hook-Test") == "true"
    before = everything(api)
    for bad in ({"Webhook": [stopped_hook()]}, {"Webhook": "x"}, {"webhook": None}):
        response = api.post("/api/v1/Agents/Webhook/SaveWebhook", json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert "Webhook must be an object" in response.json()["ErrorMessage"]
    assert everything(api) == before


def test_query_names_and_ids_in_any_case(api) -> None:
    first = api.post("/api/v1/Webhook", json=stopped_hook(Name="one")).json()
    api.post("/api/v1/Webhook", json=stopped_hook(Name="two", Events=["sale.created"]))
    for query in ("nameFilter=one", "NAMEFILTER=one", "namefilter=one", "NameFilter=one"):
        assert [h["Name"] for h in api.get(f"/api/v1/Webhook?{query}").json()] == ["one"], query
    assert [h["Name"] for h in api.get("/api/v1/Webhook?EventFilter=sale.created").json()] == [
        "two"
    ]
    assert [h["Name"] for h in api.get("/api/v1/Webhook?statusfilter=Active").json()] == []
    hook_id = first["WebhookId"]
    agents = "/api/v1/Agents/Webhook"
    for query in (f"webhookId={hook_id}", f"WEBHOOKID={hook_id}", f"WebhookId={hook_id}"):
        got = api.post(f"{agents}/GetWebhook?{query}")
        assert got.json()["WebhookId"] == hook_id, (query, got.text)
    for body in ({"webhookId": hook_id}, {"WEBHOOKID": hook_id}, {"WebhookId": hook_id}):
        assert api.post(f"{agents}/GetWebhook", json=body).json()["WebhookId"] == hook_id
        assert api.post(f"{agents}/GetLastError", json=body).json() is None
    filtered = api.post(f"{agents}/GetAllWebhooks", json={"nameFilter": "two"})
    assert [h["Name"] for h in filtered.json()] == ["two"]
    filtered = api.post(
        f"{agents}/GetAllWebhooks", json={"eventFilter": "SALE.created", "statusFilter": "Stopped"}
    )
    assert [h["Name"] for h in filtered.json()] == ["two"]
    assert api.post(f"{agents}/GetAllWebhooks", json={"statusFilter": 1}).json() == []


@pytest.mark.parametrize(
    "body", [None, b"", b"null", b" null\n"], ids=["none", "empty", "null", "null-ws"]
)
def test_null_empty_and_no_body_are_the_same(api, body) -> None:
    hook_id = api.post("/api/v1/Webhook", json=stopped_hook()).json()["WebhookId"]
    kw = {} if body is None else {"content": body, "headers": {"Content-Type": "application/json"}}
    agents = "/api/v1/Agents/Webhook"
    listed = api.post(f"{agents}/GetAllWebhooks", **kw)
    assert [h["WebhookId"] for h in listed.json()] == [hook_id], listed.text
    assert api.post(f"{agents}/GetWebhook?webhookId={hook_id}", **kw).status_code == 200
    assert api.post(f"{agents}/GetLastError?webhookId={hook_id}", **kw).json() is None
    assert api.post(f"{agents}/CreateDefaultWebhook", **kw).json()["WebhookId"] == 0
    assert api.post("/api/v1/Webhook/contact.changed/1", **kw).status_code == 204
    # a required carrier that is null is missing, and says so
    missing = api.post(f"{agents}/SaveWebhook", **kw)
    assert missing.status_code == 400 and missing.json()["ErrorType"] == "ValidationError"
    assert api.post(f"{agents}/DeleteWebhook?webhookId={hook_id}", **kw).status_code == 204
    assert api.post(f"{agents}/GetWebhook?webhookId={hook_id}", **kw).status_code == 404


def test_strict_validation_in_every_shape(api) -> None:
    before = everything(api)
    wrong = api.post("/api/v1/Webhook", json=cased(stopped_hook(Events="contact.created"), "camel"))
    assert wrong.status_code == 400
    assert [d["Field"] for d in wrong.json()["Details"]] == ["Events"]
    unknown = api.post("/api/v1/Webhook", json={**stopped_hook(), "noSuchField": 1, "nosuch": [2]})
    assert unknown.status_code == 200, unknown.text  # unknown fields are ignored
    before = everything(api)
    for body in ({"webhookId": "x"}, {"webhookId": -1}):
        response = api.post("/api/v1/Agents/Webhook/GetWebhook", json=body)
        assert response.status_code == 400 and response.json()["Details"][0]["Field"] == "WebhookId"
    assert api.post("/api/v1/Agents/Webhook/GetWebhook?webhookid=999").status_code == 404
    assert everything(api) == before


def test_the_tenant_may_lead_the_path(api) -> None:
    created = api.post("/Cust1234/api/v1/Webhook", json=stopped_hook())
    assert created.status_code == 200, created.text
    hook_id = created.json()["WebhookId"]
    for path in (f"/Cust1234/api/v1/Webhook/{hook_id}", f"/cust1234/API/v1/webhook/{hook_id}/"):
        assert api.get(path).json()["WebhookId"] == hook_id, path
    listed = api.post("/Cust1234/api/v1/Agents/Webhook/GetAllWebhooks")
    assert [h["WebhookId"] for h in listed.json()] == [hook_id]
    before = everything(api)
    # another tenant, named in the path: 404, whether or not it exists; nothing changes
    for tenant in ("Cust9999", "Nobody"):
        for method, path in (
            ("get", f"/{tenant}/api/v1/Webhook/{hook_id}"),
            ("delete", f"/{tenant}/api/v1/Webhook/{hook_id}"),
            ("post", f"/{tenant}/api/v1/Agents/Webhook/DeleteWebhook?webhookId={hook_id}"),
            ("post", f"/{tenant}/api/v1/Webhook/contact.changed/1"),
        ):
            response = getattr(api, method)(path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["ErrorType"] == "NotFound"
    assert everything(api) == before
    # the other tenant's own key may name its own tenant
    assert api.get("/Cust9999/api/v1/Webhook", key=api.key_b).json() == []
