"""The console's pages without a browser (the browser flows are in test_console_browser.py):
sign-in and its cookie, every page answering, CSRF, rights, the API's validation messages."""

from __future__ import annotations

import re

import pytest
from api_support import Api, running_api

from hookcast.keys import create_key
from hookcast.rights import Role


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path) as api:
        yield api


def sign_in(api: Api, key: str) -> str:
    """Sign the test client in; the CSRF token of its session."""
    answer = api.client.post("/console/login", data={"key": key}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(api.client.get("/console/hooks").text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def error_of(html: str) -> str:
    found = re.search(r'id="error"[^>]*>([^<]*)', html)
    return found.group(1) if found else ""


STOPPED = {
    "name": "x",
    "events": "contact.created\ncontact.changed",
    "target_url": "https://hooks.example.com/x",
    "state": "Stopped",
    "secret": "abc",
}


def test_sign_in_cookie_pages_and_sign_out(api: Api) -> None:
    answer = api.client.get("/console/hooks", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    bad = api.client.post("/console/login", data={"key": "hc_wrong"})
    assert bad.status_code == 401 and "unknown or revoked" in error_of(bad.text)
    answer = api.client.post("/console/login", data={"key": api.key_a}, follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert api.key_a not in cookie
    for path in (
        "/console/hooks",
        "/console/hooks/new",
        "/console/search",
        "/console/search?status=given_up&event=contact.changed",
        "/console/alerts",
        "/console/scripts",
        "/console/scripts/new",
        "/console/allow-list",
        "/console/replay?status=given_up",
        "/console/static/htmx.min.js",
        "/console/static/htmx.LICENSE",
    ):
        page = api.client.get(path)
        assert page.status_code == 200, (path, page.text)
    html = api.client.get("/console/hooks").text
    assert "cdn" not in html.lower() and 'src="/console/static/htmx.min.js"' in html
    assert api.client.get("/console/hooks/99").status_code == 404
    assert "not a whole number" in error_of(api.client.get("/console/search?primaryKey=x").text)

    token = csrf_of(html)
    out = api.client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert api.client.get("/console/hooks", follow_redirects=False).status_code == 303


def test_forms_need_the_csrf_token_and_show_the_apis_messages(api: Api) -> None:
    token = sign_in(api, api.key_a)
    refused = api.client.post("/console/hooks", data=STOPPED)
    assert refused.status_code == 403 and "CSRF" in error_of(refused.text)
    wrong = api.client.post("/console/hooks", data={**STOPPED, "csrf": "forged"})
    assert wrong.status_code == 403
    assert api.get("/api/v1/Webhook").json() == []  # nothing was created

    invalid = api.client.post(
        "/console/hooks", data={**STOPPED, "csrf": token, "target_url": "http://plain.example"}
    )
    assert invalid.status_code == 400
    api_answer = api.post(
        "/api/v1/Webhook",
        json={"Name": "x", "Events": ["a.b"], "TargetUrl": "http://plain.example"},
    )
    assert "must use https, not http" in api_answer.json()["ErrorMessage"]
    assert "TargetUrl" in error_of(invalid.text)
    assert "must use https, not http" in error_of(invalid.text)

    made = api.client.post(
        "/console/hooks", data={**STOPPED, "csrf": token}, follow_redirects=False
    )
    assert made.status_code == 303 and made.headers["location"] == "/console/hooks/1"
    hook = api.get("/api/v1/Webhook/1").json()
    assert hook["Events"] == ["contact.created", "contact.changed"] and hook["Secret"] == "abc"
    assert hook["NotifyVia"] == "None"  # the box was not ticked
    # htmx requests send the token as a header.
    check = api.client.post(
        "/console/scripts-check", data={"source": "print(1"}, headers={"X-CSRF-Token": token}
    )
    assert check.status_code == 200 and "SyntaxError" in check.text
    assert api.client.post("/console/scripts-check", data={"source": "x"}).status_code == 403


def test_roles_decide_what_is_shown_and_allowed(api: Api) -> None:
    admin_token = sign_in(api, api.key_a)
    api.client.post("/console/hooks", data={**STOPPED, "csrf": admin_token})
    assert "secret-value" in api.client.get("/console/hooks/1").text
    api.client.cookies.clear()

    _, reader = create_key(api.db, tenant="Cust1234", associate_id=8, role=Role.read)
    token = sign_in(api, reader)
    page = api.client.get("/console/hooks/1").text
    assert "abc" not in page and "secret-value" not in page
    assert 'id="stop"' not in page and 'id="start"' not in page and 'id="save"' not in page
    for path, data in (
        ("/console/hooks/1/start", {}),
        ("/console/hooks/1/delete", {}),
        ("/console/replay", {"status": "given_up"}),
        ("/console/allow-list", {"hosts": "api.example.com"}),
    ):
        answer = api.client.post(path, data={**data, "csrf": token})
        assert answer.status_code == 403, path
    assert api.get("/api/v1/Webhook/1").json()["State"] == "Stopped"
    assert api.client.get("/console/hooks/new").status_code == 403
    api.client.cookies.clear()

    _, signaller = create_key(api.db, tenant="Cust1234", associate_id=9, role=Role.signal)
    answer = api.client.post("/console/login", data={"key": signaller})
    assert answer.status_code == 403 and "cannot read" in error_of(answer.text)
    # Another tenant's key sees none of it.
    sign_in(api, api.key_b)
    assert api.client.get("/console/hooks/1").status_code == 404


def test_the_delivery_options_are_shown_and_edited_in_the_form(api: Api) -> None:
    token = sign_in(api, api.key_a)
    new = api.client.get("/console/hooks/new").text
    assert 'id="ordering"' in new and 'id="max_in_flight"' in new
    options = {"ordering": "PerRecord", "coalesce_ms": "250", "auto_recover": "on",
               "max_per_second": "2.5", "max_in_flight": "4"}  # fmt: skip
    made = api.client.post(
        "/console/hooks", data={**STOPPED, **options, "csrf": token}, follow_redirects=False
    )
    assert made.status_code == 303, made.text
    hook = api.get("/api/v1/Webhook/1").json()
    assert [hook[k] for k in ("Ordering", "CoalesceMs", "AutoRecover", "MaxPerSecond",
                              "MaxInFlight")] == ["PerRecord", 250, True, 2.5, 4]  # fmt: skip
    page = api.client.get("/console/hooks/1").text
    shown = re.search(r'id="options">([^<]*)', page).group(1)  # type: ignore[union-attr]
    assert (
        shown
        == "PerRecord ordering; coalescing 250 ms; AutoRecover; at most 2.5/s; at most 4 at once; "
    )
    assert 'value="250"' in page and 'value="2.5"' in page  # the form holds them
    # emptied fields turn them off; a bad number is the API's 400, and changes nothing
    bad = api.client.post(
        "/console/hooks/1", data={**STOPPED, **options, "max_in_flight": "0", "csrf": token}
    )
    assert bad.status_code == 400 and "MaxInFlight" in error_of(bad.text)
    assert api.get("/api/v1/Webhook/1").json()["MaxInFlight"] == 4
    off = api.client.post(
        "/console/hooks/1", data={**STOPPED, "ordering": "None", "csrf": token},
        follow_redirects=False,
    )  # fmt: skip
    assert off.status_code == 303, off.text
    hook = api.get("/api/v1/Webhook/1").json()
    assert [hook[k] for k in ("Ordering", "CoalesceMs", "AutoRecover", "MaxPerSecond",
                              "MaxInFlight")] == ["None", 0, False, None, None]  # fmt: skip
    assert (
        re.search(r'id="options">([^<]*)', api.client.get("/console/hooks/1").text).group(1)
        == "none"
    )  # type: ignore[union-attr]
