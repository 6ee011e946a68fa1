"""The CRMScript store API under /api/v1/CRMScript: scripts, Validate, Execute and the
tenant's HTTP allow-list, on a real app with a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from api_support import running_api

BASE = "/api/v1/CRMScript"
LIB = 'String greet(String who) { return "Hello, " + who + "!"; }'
MAIN = '#include "greetings";\nprintLine(greet(getVariable("who")));'


@pytest.fixture
def api(tmp_path):
    with running_api(tmp_path) as api:
        yield api


def script(include_id: str = "greetings", source: str = LIB, **fields):
    return {
        "Name": f"The {include_id[:40]} script",
        "IncludeId": include_id,
        "Source": source,
        **fields,
    }


def create(api, key=None, **fields) -> dict:
    response = api.post(BASE, key, json=script(**fields))
    assert response.status_code == 200, response.text
    return response.json()


def listing(api, key=None) -> list[dict]:
    response = api.get(BASE, key)
    assert response.status_code == 200
    return response.json()


def assert_error(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ErrorType"] == error_type and body["ErrorMessage"]
    assert body["Error"] is True and isinstance(body.get("Details", []), list)
    return body


def test_default_carrier(api) -> None:
    response = api.get(f"{BASE}/default")
    assert response.status_code == 200
    assert response.json() == {
        "EjscriptId": 0,
        "UniqueIdentifier": None,
        "Name": None,
        "Description": None,
        "IncludeId": None,
        "Source": "",
        "Registered": "0001-01-01T00:00:00",
        "RegisteredAssociateId": 0,
        "Updated": "0001-01-01T00:00:00",
        "UpdatedAssociateId": 0,
    }


def test_create_get_and_list(api) -> None:
    created = create(api, Description="Says hello", EjscriptId=99, Registered="2001-01-01")
    script_id = created["EjscriptId"]
    assert script_id >= 1  # assigned by the server, not taken from the carrier
    assert uuid.UUID(created["UniqueIdentifier"]).version == 4
    assert {k: created[k] for k in ("Name", "Description", "IncludeId", "Source")} == {
        "Name": "The greetings script",
        "Description": "Says hello",
        "IncludeId": "greetings",
        "Source": LIB,
    }
    assert created["RegisteredAssociateId"] == created["UpdatedAssociateId"] == 5
    registered = datetime.strptime(created["Registered"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - registered) < timedelta(minutes=1)
    assert created["_Links"] == {
        "Self": f"http://testserver{BASE}/{script_id}",
        "Archive": f"http://testserver{BASE}",
    }
    fetched = api.get(f"{BASE}/{script_id}")
    assert fetched.status_code == 200 and fetched.json() == created
    other = create(api, include_id="other", source='printLine("x");')
    items = listing(api)
    assert [s["EjscriptId"] for s in items] == [script_id, other["EjscriptId"]]
    assert "_Links" not in items[0] and items[0]["Source"] == LIB
    by_include = api.get(BASE, params={"includeIdFilter": "other"}).json()
    assert [s["IncludeId"] for s in by_include] == ["other"]
    by_name = api.get(BASE, params={"nameFilter": "The greetings script"}).json()
    assert [s["IncludeId"] for s in by_name] == ["greetings"]


def test_unique_identifier_may_be_given_once_per_tenant(api) -> None:
    given = str(uuid.uuid4())
    created = create(api, UniqueIdentifier=given.upper())
    assert created["UniqueIdentifier"] == given
    again = api.post(BASE, json=script("another", UniqueIdentifier=given))
    assert_error(again, 409, "Conflict")
    # another tenant has its own scripts
    assert create(api, api.key_b, UniqueIdentifier=given)["UniqueIdentifier"] == given
    bad = api.post(BASE, json=script("third", UniqueIdentifier="not-a-uuid"))
    assert_error(bad, 400, "ValidationError")


def test_a_script_that_does_not_compile_is_refused_with_line_and_column(api) -> None:
    response = api.post(BASE, json=script("broken", 'printLine("ok");\nInteger x = "text";'))
    body = assert_error(response, 400, "ValidationError")
    assert body["ErrorMessage"] == (
        "CRMScript 'broken' does not compile: TypeError at line 2, "
        "column 13: cannot assign String to Integer."
    )
    assert body["Details"] == [
        {
            "Field": "Source",
            "Kind": "TypeError",
            "Line": 2,
            "Column": 13,
            "Message": "cannot assign String to Integer",
        }
    ]
    syntax = assert_error(
        api.post(BASE, json=script("broken", "Integer x = ;")), 400, "ValidationError"
    )
    assert (syntax["Details"][0]["Line"], syntax["Details"][0]["Column"]) == (1, 13)
    missing = assert_error(
        api.post(BASE, json=script("broken", '#include "nowhere";')), 400, "ValidationError"
    )
    assert missing["Details"][0]["Kind"] == "IncludeError"
    assert listing(api) == []


@pytest.mark.parametrize(
    "body",
    [
        {"Name": "x", "Source": ""},  # no IncludeId
        {"IncludeId": "x", "Source": ""},  # no Name
        {"Name": "x", "IncludeId": "x"},  # no Source
        script("has space"),
        script("slash/es"),
        script("ünïcode"),
        script(""),
        script("x" * 256),
        script("ok", Name="   "),
        script("ok", Name="a\nb"),
        script("ok", Name="x" * 256),
        script("ok", Source=42),
        script("ok", Description="d" * 4001),
        script("ok", EjscriptId="1"),
        [script()],
        "text",
        None,
    ],
)
def test_bad_input_is_400_and_stores_nothing(api, body) -> None:
    assert_error(api.post(BASE, json=body), 400, "ValidationError")
    assert listing(api) == []


def test_include_id_rules(api) -> None:
    longest = "a" * 255
    for include_id in ("A-b_c.1", longest, "..x"):
        create(api, include_id=include_id)
    assert {s["IncludeId"] for s in listing(api)} == {"A-b_c.1", longest, "..x"}


def test_duplicate_include_id_is_a_conflict(api) -> None:
    first = create(api)
    body = assert_error(api.post(BASE, json=script(Name="copy")), 409, "Conflict")
    assert f"already used by CRMScript {first['EjscriptId']}" in body["ErrorMessage"]
    second = create(api, include_id="second")
    moved = api.put(f"{BASE}/{second['EjscriptId']}", json=script("greetings"))
    assert_error(moved, 409, "Conflict")
    assert api.get(f"{BASE}/{second['EjscriptId']}").json()["IncludeId"] == "second"
    # IncludeIds are exact: another letter case is another script; another tenant is separate
    create(api, include_id="Greetings")
    create(api, api.key_b)


def test_put_replaces_the_writable_fields(api) -> None:
    created = create(api, Description="old")
    script_id = created["EjscriptId"]
    replaced = api.put(
        f"{BASE}/{script_id}",
        key=api.key_a,
        json=script(
            "renamed", 'printLine("new");', Name="New name", UniqueIdentifier=str(uuid.uuid4())
        ),
    )
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["Name"], body["IncludeId"], body["Source"], body["Description"]) == (
        "New name",
        "renamed",
        'printLine("new");',
        None,
    )
    assert body["UniqueIdentifier"] == created["UniqueIdentifier"]  # read-only after create
    assert body["Registered"] == created["Registered"]
    assert body["UpdatedAssociateId"] == 5
    broken = api.put(f"{BASE}/{script_id}", json=script("renamed", "Integer x = ;"))
    assert assert_error(broken, 400, "ValidationError")["Details"][0]["Line"] == 1
    assert api.get(f"{BASE}/{script_id}").json()["Source"] == 'printLine("new");'
    assert_error(api.put(f"{BASE}/{script_id}", json={"Name": "x"}), 400, "ValidationError")
    assert_error(api.put(f"{BASE}/999", json=script()), 404, "NotFound")


def test_patch_merge_patch_and_json_patch(api) -> None:
    script_id = create(api)["EjscriptId"]
    url = f"{BASE}/{script_id}"
    merged = api.patch(url, json={"description": "via merge", "EjscriptId": 7, "Unknown": 1})
    assert merged.status_code == 200, merged.text
    assert merged.json()["Description"] == "via merge" and merged.json()["EjscriptId"] == script_id
    patched = api.patch(
        url,
        json=[
            {"op": "test", "path": "/IncludeId", "value": "greetings"},
            {"op": "replace", "path": "name", "value": "Patched"},
            {"op": "remove", "path": "/Description"},
        ],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["Name"], patched.json()["Description"]) == ("Patched", None)
    source = api.patch(
        url,
        json={"Source": LIB + '\nprintLine(greet("you"));'},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert source.status_code == 200
    assert_error(
        api.patch(url, json=[{"op": "test", "path": "/Name", "value": "nope"}]), 409, "Conflict"
    )
    assert_error(
        api.patch(url, json=[{"op": "replace", "path": "/EjscriptId", "value": 1}]),
        400,
        "ValidationError",
    )
    assert_error(
        api.patch(url, json=[{"op": "replace", "path": "/Nope", "value": 1}]),
        400,
        "ValidationError",
    )
    assert_error(
        api.patch(url, json=[{"op": "move", "from": "/Name", "path": "/Source"}]),
        400,
        "ValidationError",
    )
    broken = assert_error(api.patch(url, json={"Source": "x = ;"}), 400, "ValidationError")
    assert broken["Details"][0]["Kind"] == "SyntaxError"
    assert_error(api.patch(url, json={"IncludeId": "bad id"}), 400, "ValidationError")
    assert_error(
        api.patch(url, json=[1], headers={"Content-Type": "application/merge-patch+json"}),
        400,
        "ValidationError",
    )
    assert_error(api.patch(f"{BASE}/999", json={"Name": "x"}), 404, "NotFound")
    assert api.get(url).json()["Name"] == "Patched"


def test_if_unmodified_since(api) -> None:
    script_id = create(api)["EjscriptId"]
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    stale = api.patch(
        f"{BASE}/{script_id}", json={"Name": "x"}, headers={"If-Unmodified-Since": past}
    )
    assert_error(stale, 412, "PreconditionFailed")
    fresh = api.patch(
        f"{BASE}/{script_id}", json={"Name": "x"}, headers={"If-Unmodified-Since": future}
    )
    assert fresh.status_code == 200
    assert_error(
        api.delete(f"{BASE}/{script_id}", headers={"If-Unmodified-Since": past}),
        412,
        "PreconditionFailed",
    )
    assert_error(
        api.put(f"{BASE}/{script_id}", json=script(), headers={"If-Unmodified-Since": "soon"}),
        400,
        "ValidationError",
    )


def test_delete(api) -> None:
    script_id = create(api)["EjscriptId"]
    deleted = api.delete(f"{BASE}/{script_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.get(f"{BASE}/{script_id}"), 404, "NotFound")
    assert_error(api.delete(f"{BASE}/{script_id}"), 404, "NotFound")
    create(api)  # the IncludeId is free again


def test_tenants_see_only_their_own_scripts(api) -> None:
    mine = create(api)
    url = f"{BASE}/{mine['EjscriptId']}"
    assert listing(api, api.key_b) == []
    assert_error(api.get(url, api.key_b), 404, "NotFound")
    assert_error(api.put(url, api.key_b, json=script()), 404, "NotFound")
    assert_error(api.patch(url, api.key_b, json={"Name": "x"}), 404, "NotFound")
    assert_error(api.delete(url, api.key_b), 404, "NotFound")
    assert_error(api.post(f"{url}/Execute", api.key_b, json={}), 404, "NotFound")
    # includes resolve only among the caller's own scripts
    theirs = api.post(BASE, api.key_b, json=script("main", MAIN))
    assert assert_error(theirs, 400, "ValidationError")["Details"][0]["Kind"] == "IncludeError"
    validated = api.post(f"{BASE}/Validate", api.key_b, json={"Source": MAIN}).json()
    assert validated["Valid"] is False and validated["Errors"][0]["Kind"] == "IncludeError"
    assert api.get(url).json() == mine


def test_every_route_needs_a_key(api) -> None:
    for method, path in [
        ("get", BASE),
        ("get", f"{BASE}/default"),
        ("post", BASE),
        ("get", f"{BASE}/1"),
        ("delete", f"{BASE}/1"),
        ("post", f"{BASE}/Validate"),
        ("post", f"{BASE}/1/Execute"),
        ("get", f"{BASE}/HttpAllowList"),
        ("put", f"{BASE}/HttpAllowList"),
    ]:
        response = getattr(api.client, method)(path)
        assert_error(response, 401, "Unauthorized")


def test_validate(api) -> None:
    create(api)
    ok = api.post(f"{BASE}/Validate", json={"Source": MAIN})
    assert ok.status_code == 200 and ok.json() == {"Valid": True, "Errors": []}
    bad = api.post(
        f"{BASE}/Validate", json={"Source": '#include "greetings";\nInteger n = greet("x");'}
    )
    assert bad.json() == {
        "Valid": False,
        "Errors": [
            {
                "Line": 2,
                "Column": 13,
                "Kind": "TypeError",
                "Message": "cannot assign String to Integer",
            }
        ],
    }
    unsupported = api.post(f"{BASE}/Validate", json={"Source": 'runProgram("ls");'}).json()
    assert unsupported["Errors"][0]["Kind"] == "UnsupportedFeature"
    # every compile error is listed (crmscript.md §13), syntax errors and checking errors alike
    several = 'Integer a = "x";\nprintLine(nope);\nsetChatStatus(1, 2);\nInteger b = 2;'
    assert api.post(f"{BASE}/Validate", json={"Source": several}).json() == {
        "Valid": False,
        "Errors": [
            {
                "Line": 1,
                "Column": 13,
                "Kind": "TypeError",
                "Message": "cannot assign String to Integer",
            },
            {"Line": 2, "Column": 11, "Kind": "NameError", "Message": "unknown variable 'nope'"},
            {
                "Line": 3,
                "Column": 1,
                "Kind": "UnsupportedFeature",
                "Message": "setChatStatus() is not supported in this sandbox",
            },
        ],
    }
    syntax = api.post(f"{BASE}/Validate", json={"Source": "Integer x = ;\nprintLine(1 2);"}).json()
    assert [(e["Line"], e["Column"], e["Kind"]) for e in syntax["Errors"]] == [
        (1, 13, "SyntaxError"),
        (2, 13, "SyntaxError"),
    ]
    assert_error(api.post(f"{BASE}/Validate", json={}), 400, "ValidationError")
    assert_error(api.post(f"{BASE}/Validate", json={"Source": 1}), 400, "ValidationError")
    assert len(listing(api)) == 1  # validating stores nothing


def test_execute_with_variables_and_includes(api) -> None:
    create(api)
    main = create(api, include_id="main", source=MAIN)
    url = f"{BASE}/{main['EjscriptId']}/Execute"
    ran = api.post(url, json={"Variables": {"who": "Ada"}})
    assert ran.status_code == 200
    assert ran.json() == {"Output": "Hello, Ada!\n", "Success": True, "Error": None}
    assert api.post(url).json()["Output"] == "Hello, !\n"  # no body, no variables
    # an included script's change shows in the next run
    lib_id = listing(api)[0]["EjscriptId"]
    changed = api.patch(
        f"{BASE}/{lib_id}", json={"Source": 'String greet(String who) { return "Hi " + who; }'}
    )
    assert changed.status_code == 200
    assert api.post(url, json={"Variables": {"who": "Bo"}}).json()["Output"] == "Hi Bo\n"
    assert_error(api.post(url, json={"Variables": {"who": 1}}), 400, "ValidationError")
    assert_error(api.post(url, json={"Variables": ["who"]}), 400, "ValidationError")
    assert_error(api.post(f"{BASE}/999/Execute", json={}), 404, "NotFound")


def test_execute_reports_failures_with_the_output_so_far(api) -> None:
    failing = create(
        api,
        include_id="fails",
        source='printLine("before");\nInteger z = 0;\nprintLine((1 / z).toString());',
    )
    body = api.post(f"{BASE}/{failing['EjscriptId']}/Execute", json={}).json()
    assert body == {
        "Output": "before\n",
        "Success": False,
        "Error": "ERROR: DivisionByZero: division by zero",
    }
    # an include that disappeared after saving is a compile error at run time
    create(api)
    main = create(api, include_id="main", source=MAIN)
    lib_id = next(s["EjscriptId"] for s in listing(api) if s["IncludeId"] == "greetings")
    assert api.patch(f"{BASE}/{lib_id}", json={"IncludeId": "renamed"}).status_code == 200
    body = api.post(f"{BASE}/{main['EjscriptId']}/Execute", json={}).json()
    assert body["Success"] is False and body["Output"] == ""
    assert body["Error"].startswith('ERROR: IncludeError: unknown include "greetings"')


def test_http_allow_list(api) -> None:
    url = f"{BASE}/HttpAllowList"
    assert api.get(url).json() == {"Hosts": []}
    saved = api.put(
        url,
        json={
            "Hosts": [
                "Chat.Example.com",
                "chat.example.com",
                "203.0.113.7",
                "[2001:DB8::1]",
                "under_score.example",
            ]
        },
    )
    assert saved.status_code == 200
    expected = {"Hosts": ["chat.example.com", "203.0.113.7", "2001:db8::1", "under_score.example"]}
    assert saved.json() == expected and api.get(url).json() == expected
    assert api.get(url, api.key_b).json() == {"Hosts": []}  # per tenant
    for bad in (
        ["https://chat.example.com"],
        ["chat.example.com:443"],
        ["*.example.com"],
        ["a b"],
        [""],
        ["chat.example.com/path"],
        ["x" * 64 + ".com"],
        [1],
        "chat.example.com",
        ["h%d.example" % i for i in range(101)],
    ):
        assert_error(api.put(url, json={"Hosts": bad}), 400, "ValidationError")
    assert_error(api.put(url, json={}), 400, "ValidationError")
    assert api.get(url).json() == expected  # refused input changed nothing
    assert api.put(url, json={"Hosts": []}).json() == {"Hosts": []}


def test_script_http_is_refused_unless_the_host_is_allowed(api) -> None:
    source = (
        'HTTP h; String body = String(h.get("https://chat.example.com/x"));\n'
        'printLine(h.hasError().toString() + " " + h.getErrorMessage());'
    )
    script_id = create(api, include_id="caller", source=source)["EjscriptId"]
    body = api.post(f"{BASE}/{script_id}/Execute").json()
    assert body["Output"] == "true host 'chat.example.com' is not on the tenant's allow-list\n"


def test_script_http_goes_through_the_guard_and_tls(tmp_path, receiver, ca_bundle_path) -> None:
    source = (
        'HTTP h; h.addHeader("X-Trace", "t1");\n'
        'String body = String(h.get(getVariable("url")));\n'
        'if (h.hasError()) printLine("error " + h.getErrorMessage());\n'
        'else printLine(h.getValue("statusCode") + " " + body);'
    )
    receiver.respond(body=b"pong")
    # allowed by the tenant, refused by the target guard (no HOOKCAST_ALLOW_TARGETS)
    with running_api(tmp_path / "guarded", ca_bundle=ca_bundle_path) as api:
        api.put(f"{BASE}/HttpAllowList", json={"Hosts": ["127.0.0.1"]})
        script_id = create(api, include_id="ping", source=source)["EjscriptId"]
        run = api.post(
            f"{BASE}/{script_id}/Execute", json={"Variables": {"url": receiver.url}}
        ).json()
        assert run["Output"].startswith("error target refused: ") and receiver.requests == []
    with running_api(
        tmp_path / "open", ca_bundle=ca_bundle_path, allow_targets=["127.0.0.0/8"]
    ) as api:
        api.put(f"{BASE}/HttpAllowList", json={"Hosts": ["127.0.0.1"]})
        script_id = create(api, include_id="ping", source=source)["EjscriptId"]
        run = api.post(
            f"{BASE}/{script_id}/Execute", json={"Variables": {"url": receiver.url}}
        ).json()
        assert run == {"Output": "200 pong\n", "Success": True, "Error": None}
        [request] = receiver.requests
        assert (request.method, request.path, request.header("X-Trace")) == ("GET", "/hook", "t1")


def test_script_http_parameters_are_sent_as_the_bytes_the_script_built(
    tmp_path, receiver, ca_bundle_path
) -> None:
    """crmscript.md §11.9: `parameters` is the body minus its first character, text <= U+00FF
    as those bytes (so utf8Encode()d text is sent once encoded), other text as UTF-8;
    `parametersUTF8` always as UTF-8. The receiver records the raw bytes it got."""
    source = (
        'HTTP h; h.addHeader("Content-Type", "text/plain");\n'
        'h.setOption(getVariable("option"), "?" + getVariable("text"));\n'
        'if (getVariable("encode") == "yes") h.setOption("parameters", "?" + getVariable("text").utf8Encode());\n'
        'String answer = String(h.post(getVariable("url")));\n'
        'printLine(h.getValue("statusCode") + " " + h.getErrorMessage());'
    )
    cases = [
        ({"option": "parameters", "text": "å", "encode": "yes"}, b"\xc3\xa5"),
        ({"option": "parameters", "text": "å"}, b"\xe5"),
        ({"option": "parameters", "text": "å€"}, "å€".encode()),
        ({"option": "parametersUTF8", "text": "å"}, b"\xc3\xa5"),
    ]
    with running_api(tmp_path, ca_bundle=ca_bundle_path, allow_targets=["127.0.0.0/8"]) as api:
        api.put(f"{BASE}/HttpAllowList", json={"Hosts": ["127.0.0.1"]})
        script_id = create(api, include_id="sender", source=source)["EjscriptId"]
        for variables, _ in cases:
            run = api.post(
                f"{BASE}/{script_id}/Execute",
                json={"Variables": {**variables, "url": receiver.url}},
            ).json()
            assert run == {"Output": "200 \n", "Success": True, "Error": None}, variables
    assert [r.body for r in receiver.requests] == [body for _, body in cases]
    assert all(r.method == "POST" for r in receiver.requests)


def test_source_over_the_body_limit_is_413(api) -> None:
    huge = script(source="// " + "x" * (1024 * 1024))
    assert_error(api.post(BASE, json=huge), 413, "PayloadTooLarge")
    assert listing(api) == []


def test_crmscript_webhooks_name_a_stored_script(api) -> None:
    hook = {
        "Name": "Script hook",
        "Events": ["contact.changed"],
        "TargetUrl": "main",
        "Type": "CRMScript",
    }
    missing = assert_error(api.post("/api/v1/Webhook", json=hook), 400, "VerificationFailed")
    assert "There is no CRMScript with IncludeId 'main'" in missing["ErrorMessage"]
    create(api)
    create(api, include_id="main", source=MAIN)
    registered = api.post("/api/v1/Webhook", json=hook)
    assert registered.status_code == 200, registered.text
    assert (registered.json()["Type"], registered.json()["TargetUrl"]) == ("crmscript", "main")
    tested = api.post("/api/v1/Webhook/Test", json=hook).json()
    assert tested == {"Success": True, "Message": "script 'main' compiles"}
    assert_error(api.post("/api/v1/Webhook", api.key_b, json=hook), 400, "VerificationFailed")
