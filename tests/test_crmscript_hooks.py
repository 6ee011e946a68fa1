"""`crmscript` webhooks end to end (crmscript.md §15, webhooks-api.md §5, §6, §9): a real Hub
runs the tenant's stored script for each delivery; its output lands in the delivery log, a
failing script follows the retry and TooManyErrors rules, and a script's HTTP goes through
the tenant allow-list, the target guard and TLS to a real HTTPS receiver on loopback."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from support.engine import CALLER, TENANT, eventually, running_engine
from support.scripts import attempts_of, script_hook, scripts_of, store_script

from hookcast import State, VerificationFailed
from hookcast.model import Principal
from hookcast.scripts import ScriptIn
from hookcast.store import queue

OCCURRED = datetime(2024, 3, 5, 8, 15, 30, 123456, tzinfo=UTC)

DUMP_VARIABLES = """#setLanguageLevel 3;
Map vars = getVariables();
for (vars.first(); !vars.eof(); vars.next())
  printLine(vars.getKey() + "=" + vars.getVal());
if (getVariable("Event") == "contact.changed" && !getVariable("Changes.name").isEmpty())
  printLine("contact " + getVariable("PrimaryKey") + " renamed to " + getVariable("Changes.name"));
"""


@pytest.fixture
async def engine(tmp_path, ca_bundle_path):
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        yield engine


async def _queue_empty(engine) -> bool:
    return (await engine.hub.db.run(queue.queue_depth))["pending"] == 0


async def _state(engine, webhook_id: int) -> State:
    return (await engine.registry.get(CALLER, webhook_id)).state


async def test_script_gets_the_event_changed_values_and_properties(engine) -> None:
    await store_script(engine, "contact-changed", DUMP_VARIABLES)
    hook = await script_hook(
        engine,
        "contact-changed",
        ["contact.changed"],
        Properties={
            "region": "EMEA",
            "tier": 2,
            "vip": True,
            "nothing": None,
            "meta": {"a": [1, "x"]},
        },
    )
    await engine.hub.signal(
        "contact.changed",
        994863,
        tenant=TENANT,
        associate_id=316,
        occurred_at=OCCURRED,
        changes={
            "name": "Ada",
            "department": None,
            "score": 12.5,
            "active": False,
            "updated": "2024-03-05T08:15:30",
        },
    )
    [attempt] = await eventually(lambda: attempts_of(engine, hook.id), what="the script's run")
    assert (attempt["ok"], attempt["error"], attempt["http_status"]) == (1, None, None)
    expected = {
        "ChangedByAssociateId": "316",
        "Changes.active": "false",
        "Changes.department": "",
        "Changes.name": "Ada",
        "Changes.score": "12.5",
        "Changes.updated": "2024-03-05T08:15:30",
        "ContextIdentifier": TENANT,
        "Entity": "contact",
        "Event": "contact.changed",
        "EventId": attempt["event_uuid"],
        "PrimaryKey": "994863",
        "Timestamp": "2024-03-05T08:15:30.1234560Z",
        "meta": '{"a":[1,"x"]}',
        "nothing": "",
        "region": "EMEA",
        "tier": "2",
        "vip": "true",
    }
    lines = [f"{k}={v}" for k, v in sorted(expected.items())]
    assert attempt["output"] == "\n".join(lines) + "\ncontact 994863 renamed to Ada\n"
    usage = await eventually(lambda: _usage_when(engine, hook.id, 1))
    assert (usage.total_errors, usage.consecutive_errors, usage.last_error) == (0, 0, None)


async def _usage_when(engine, webhook_id: int, calls: int):
    usage = await engine.usage(webhook_id)
    return usage if usage.total_calls >= calls else None


async def test_event_without_changes_and_unknown_names_are_empty(engine) -> None:
    await store_script(
        engine,
        "probe",
        'printLine("[" + getVariable("Changes.name") + "]" '
        '+ getVariable("WebhookName") + "|" + getVariable("Entity"));',
    )
    hook = await script_hook(engine, "probe", ["sale.created"])
    await engine.hub.signal("sale.created", 5, tenant=TENANT)
    [attempt] = await eventually(lambda: attempts_of(engine, hook.id))
    assert attempt["output"] == "[]|sale\n"


async def test_failing_script_follows_retries_then_too_many_errors(engine) -> None:
    await store_script(
        engine, "broken", 'printLine("trying " + getVariable("EventId"));\nthrow "boom";'
    )
    hook = await script_hook(engine, "broken", ["contact.changed"])
    await engine.hub.signal("contact.changed", 7, tenant=TENANT)
    await eventually(lambda: _state_is(engine, hook.id, State.TooManyErrors), what="TooManyErrors")
    attempts = await eventually(lambda: _attempts_when(engine, hook.id, 9))
    assert len(attempts) == 9
    assert [(a["cycle"], a["attempt"]) for a in attempts] == [
        (c, n) for c in range(3) for n in range(3)
    ]
    assert all(a["ok"] == 0 and a["error"] == "ERROR: GeneralException: boom" for a in attempts)
    # three cycles, each with its own EventId, which the script saw
    event_ids = [a["event_uuid"] for a in attempts]
    assert len(set(event_ids)) == 3
    assert all(a["output"] == f"trying {a['event_uuid']}\n" for a in attempts)
    assert len({event_ids[i] for i in (0, 1, 2)}) == 1
    usage = await engine.usage(hook.id)
    assert (usage.total_calls, usage.total_errors, usage.consecutive_errors) == (9, 9, 9)
    assert usage.last_error == "ERROR: GeneralException: boom"
    # the delivery is kept as given up, never silently lost
    depth = await engine.hub.db.run(queue.queue_depth)
    assert depth["given_up"] == 1 and depth["pending"] == 0


async def _state_is(engine, webhook_id: int, state: State) -> bool:
    return await _state(engine, webhook_id) is state


async def _attempts_when(engine, webhook_id: int, count: int):
    attempts = await attempts_of(engine, webhook_id)
    return attempts if len(attempts) >= count else None


async def test_limit_and_runtime_errors_are_failed_attempts_that_keep_output(engine) -> None:
    await store_script(engine, "loop", 'printLine("start");\nwhile (true) { }')
    hook = await script_hook(engine, "loop", ["contact.changed"])
    await engine.hub.signal("contact.changed", 1, tenant=TENANT)
    first = (await eventually(lambda: attempts_of(engine, hook.id)))[0]
    assert first["ok"] == 0 and first["output"] == "start\n"
    assert first["error"] == "ERROR: LimitExceeded: more than 1000000 statements executed"


async def test_a_deleted_script_fails_the_attempt(engine) -> None:
    script = await store_script(engine, "gone-soon", 'printLine("x");')
    hook = await script_hook(engine, "gone-soon", ["contact.changed"])
    service = scripts_of(engine)
    await service.delete(CALLER, script.id)
    service.close()
    await engine.hub.signal("contact.changed", 1, tenant=TENANT)
    first = (await eventually(lambda: attempts_of(engine, hook.id)))[0]
    assert first["ok"] == 0
    assert first["error"] == (
        f"ERROR: IncludeError: there is no CRMScript with IncludeId 'gone-soon' in tenant {TENANT}"
    )


async def test_registration_checks_the_script_exists_and_compiles(engine) -> None:
    with pytest.raises(VerificationFailed, match="no CRMScript with IncludeId 'missing'"):
        await script_hook(engine, "missing", ["contact.changed"])
    await store_script(engine, "lib", "Integer answer() { return 42; }")
    await store_script(engine, "uses-lib", '#include "lib";\nprintLine(answer().toString());')
    # the library changes so that its user no longer compiles: registration says where
    service = scripts_of(engine)
    lib = (await service.list(CALLER, include_id="lib"))[0]
    await service.replace(
        CALLER,
        lib.id,
        ScriptIn(Name="lib", IncludeId="lib", Source='String answer() { return "x"; }'),
    )
    service.close()
    with pytest.raises(VerificationFailed) as failed:
        await script_hook(engine, "uses-lib", ["contact.changed"])
    assert failed.value.message == (
        "CRMScript 'uses-lib' does not compile: NameError at line 2, "
        "column 11: String has no method toString()"
    )
    assert (failed.value.details[0]["Line"], failed.value.details[0]["Column"]) == (2, 11)
    # another tenant's script of that name does not count
    with pytest.raises(VerificationFailed):
        await script_hook(engine, "lib", ["contact.changed"], who=Principal("Cust9999", 1))
    assert await engine.registry.list(CALLER) == []  # nothing was stored


FORWARD = """#setLanguageLevel 3;
JSONBuilder jb;
jb.pushObject("");
jb.addString("text", "contact " + getVariable("PrimaryKey") + " renamed to " + getVariable("Changes.name"));
jb.addString("by", getVariable("ChangedByAssociateId"));
jb.finalize();
HTTP h;
h.addHeader("Content-Type", "application/json");
h.setOption("parameters", "?" + jb.getString());
String answer = String(h.post(getVariable("url")));
if (h.hasError())
  printLine("hasError " + h.getErrorMessage());
else
  printLine(h.getValue("statusCode") + " " + answer + " " + h.getResponseHeader("X-Answer"));
"""


async def test_script_forwards_over_https_only_to_allowed_hosts(engine, receiver) -> None:
    receiver.respond(body=b"thanks", headers={"X-Answer": "42"})
    service = scripts_of(engine)
    assert await service.set_allow_list(CALLER, ["127.0.0.1"]) == ["127.0.0.1"]
    service.close()
    await store_script(engine, "forward", FORWARD)
    allowed = await script_hook(
        engine, "forward", ["contact.changed"], Properties={"url": receiver.url_for("/chat")}
    )
    refused = await script_hook(
        engine,
        "forward",
        ["contact.changed"],
        Properties={"url": receiver.url_for("/chat", host="localhost")},
    )
    await engine.hub.signal(
        "contact.changed", 18, tenant=TENANT, associate_id=316, changes={"name": "Ada"}
    )
    [request] = await receiver.wait_for_async(1)
    assert (request.method, request.path) == ("POST", "/chat")
    assert orjson.loads(request.body) == {"text": "contact 18 renamed to Ada", "by": "316"}
    assert request.header("Content-Type") == "application/json"
    assert request.header("User-Agent") == engine.settings.user_agent
    [ok] = await eventually(lambda: attempts_of(engine, allowed.id))
    assert (ok["ok"], ok["output"]) == (1, "200 thanks 42\n")
    [no] = await eventually(lambda: attempts_of(engine, refused.id))
    assert no["output"] == "hasError host 'localhost' is not on the tenant's allow-list\n"
    await eventually(lambda: _queue_empty(engine))
    assert len(receiver.requests) == 1  # the refused host was never contacted


async def test_allowed_host_still_needs_the_target_guard_and_tls(
    tmp_path, ca_bundle_path, receiver_factory
) -> None:
    good, untrusted = receiver_factory(), receiver_factory(cert="untrusted")
    # 127.0.0.0/8 is not allowed past the guard here, even though the tenant allows the host
    async with running_engine(tmp_path, ca_bundle_path, allow_targets=[]) as engine:
        service = scripts_of(engine)
        await service.set_allow_list(CALLER, ["127.0.0.1"])
        service.close()
        await store_script(engine, "forward", FORWARD)
        hook = await script_hook(
            engine, "forward", ["contact.changed"], Properties={"url": good.url}
        )
        await engine.hub.signal("contact.changed", 1, tenant=TENANT, changes={"name": "x"})
        [attempt] = await eventually(lambda: attempts_of(engine, hook.id))
        assert attempt["output"].startswith("hasError target refused: ")
        assert "127.0.0.1" in attempt["output"] and good.requests == []
    async with running_engine(tmp_path / "tls", ca_bundle_path) as engine:
        service = scripts_of(engine)
        await service.set_allow_list(CALLER, ["127.0.0.1"])
        service.close()
        await store_script(engine, "forward", FORWARD)
        hook = await script_hook(
            engine, "forward", ["contact.changed"], Properties={"url": untrusted.url}
        )
        await engine.hub.signal("contact.changed", 1, tenant=TENANT, changes={"name": "x"})
        [attempt] = await eventually(lambda: attempts_of(engine, hook.id))
        assert attempt["output"].startswith("hasError TLS certificate verification failed")
        assert untrusted.requests == []
