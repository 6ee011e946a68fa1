"""Every error answer has SuperOffice's REST error shape (§8): {"Error": true, "ErrorType",
"ErrorMessage", "ErrorSource"}, plus "Details" for per-field problems; a 405 names the
methods the path takes in Allow. One parametrised test walks the error paths of the routes."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import Api, running_api, stopped_hook

PAST = "Mon, 01 Jan 2001 00:00:00 GMT"
W = "/api/v1/Webhook"
A = "/api/v1/Agents/Webhook"
S = "/api/v1/CRMScript"

# (method, path, request keywords, status, ErrorType, Allow or None); {id} is a webhook's id
CASES: list[tuple[str, str, dict[str, Any], int, str, str | None]] = [
    ("get", W, {"key": "nope"}, 401, "Unauthorized", None),
    ("get", f"{W}/{{id}}", {"key": ""}, 401, "Unauthorized", None),
    ("post", f"{A}/GetAllWebhooks", {"key": "nope"}, 401, "Unauthorized", None),
    ("get", "/api/v1/Nothing", {}, 404, "NotFound", None),
    ("get", "/nothing/at/all", {}, 404, "NotFound", None),
    ("post", f"{A}/NoSuchMethod", {}, 404, "NotFound", None),
    ("get", f"{W}/999999", {}, 404, "NotFound", None),
    ("put", f"{W}/999999", {"json": stopped_hook()}, 404, "NotFound", None),
    ("patch", f"{W}/999999", {"json": {"Name": "x"}}, 404, "NotFound", None),
    ("delete", f"{W}/999999", {}, 404, "NotFound", None),
    ("get", f"{W}/999999/LastError", {}, 404, "NotFound", None),
    ("get", f"{W}/999999/Usage", {}, 404, "NotFound", None),
    ("post", f"{A}/GetWebhook?webhookId=999999", {}, 404, "NotFound", None),
    ("post", f"{A}/DeleteWebhook?webhookId=999999", {}, 404, "NotFound", None),
    ("get", f"{S}/999999", {}, 404, "NotFound", None),
    ("get", f"/Cust9999{W}/{{id}}", {}, 404, "NotFound", None),
    ("delete", f"{W}/default", {}, 405, "MethodNotAllowed", "GET"),
    ("put", W, {"json": stopped_hook()}, 405, "MethodNotAllowed", "GET, POST"),
    ("post", f"{W}/{{id}}", {"json": {}}, 405, "MethodNotAllowed", "DELETE, GET, PATCH, PUT"),
    ("get", f"{A}/GetWebhook", {}, 405, "MethodNotAllowed", "POST"),
    ("delete", f"{W}/{{id}}/LastError", {}, 405, "MethodNotAllowed", "GET"),
    ("post", W, {"content": b"{" + b" " * (1024 * 1024 + 1) + b"}"}, 413, "PayloadTooLarge", None),
    ("post", W, {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "ValidationError", None),
    ("post", W, {"json": {"Name": 5}}, 400, "ValidationError", None),
    ("put", f"{W}/{{id}}", {"json": {**stopped_hook(), "State": "Sleeping"}}, 400, "ValidationError", None),
    ("post", f"{A}/SaveWebhook", {"json": {"Webhook": 1}}, 400, "ValidationError", None),
    ("post", f"{A}/GetWebhook", {}, 400, "ValidationError", None),
    ("post", f"{W}/contact.changed/-1", {}, 400, "ValidationError", None),
    ("post", f"{W}/contact.changed/{'9' * 5000}", {}, 400, "ValidationError", None),
    ("get", f"{W}/{'9' * 5000}", {}, 400, "ValidationError", None),
    ("get", f"{W}/{'9' * 5000}", {"key": ""}, 401, "Unauthorized", None),
    ("post", "/api/v1/webhook/contact%00x/5", {}, 400, "ValidationError", None),
    ("patch", f"{W}/{{id}}", {"json": [{"op": "test", "path": "/Name", "value": "other"}]}, 409, "Conflict", None),
    ("patch", f"{W}/{{id}}", {"json": {"Name": "x"}, "headers": {"If-Unmodified-Since": PAST}}, 412, "PreconditionFailed", None),
    ("delete", f"{W}/{{id}}", {"headers": {"If-Unmodified-Since": PAST}}, 412, "PreconditionFailed", None),
]  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Any:
    with running_api(tmp_path_factory.mktemp("errors")) as api:
        yield api


@pytest.mark.parametrize(("method", "path", "kw", "status", "error_type", "allow"), CASES)
def test_every_error_has_superoffices_shape(
    api: Api,
    method: str,
    path: str,
    kw: dict[str, Any],
    status: int,
    error_type: str,
    allow: str | None,
) -> None:
    hook = api.post(W, json=stopped_hook()).json()
    kw = dict(kw)
    key = kw.pop("key", None)
    url = path.replace("{id}", str(hook["WebhookId"]))
    before = api.get(W).json()
    if key is None:
        response = getattr(api, method)(url, **kw)
    else:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = getattr(api.client, method)(url, headers=headers, **kw)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Error"] is True and body["ErrorSource"] == "hookcast"
    assert body["ErrorType"] == error_type
    assert isinstance(body["ErrorMessage"], str) and body["ErrorMessage"].endswith(".")
    assert set(body) <= {"Error", "ErrorType", "ErrorMessage", "ErrorSource", "Details"}
    if "Details" in body:
        assert body["Details"] and all({"Field", "Message"} <= set(d) for d in body["Details"])
    if allow is not None:
        assert response.headers["Allow"] == allow
        assert f"use {allow}." in body["ErrorMessage"]
    assert api.get(W).json() == before  # nothing changed


def test_validation_details_name_each_field(api: Api) -> None:
    response = api.post(W, json={"name": "", "events": "x", "targetUrl": 5, "Secret": 7})
    assert response.status_code == 400
    fields = [d["Field"] for d in response.json()["Details"]]
    assert fields == ["Name", "Events", "TargetUrl", "Secret"]
    assert response.json()["ErrorMessage"].startswith("Name: ")
