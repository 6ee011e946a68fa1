"""Paths bind as in SuperOffice's REST service (ASP.NET): in any case, and with or without a
trailing slash as the same route, answered in place (never a redirect)."""

from __future__ import annotations

import pytest
from api_support import running_api, stopped_hook


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path) as api:
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
