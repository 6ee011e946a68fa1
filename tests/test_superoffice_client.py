"""SuperOffice's official JS client, `WebhookAgent` of `@superoffice/webapi`, against a real
hookcast server (§2: "its official clients depend on this").

tests/node/webapi_client.cjs calls every WebhookAgent method with the client's own carriers
and prints one JSON line per step with what the client MAPPED (Dates, enum values, the
SuperOffice 12 fields) and the HTTP exchange it made. This test starts hookcast (uvicorn on
127.0.0.1) and two trustme HTTPS receivers, runs the script, and checks every step; a
failure lists every failing step with the hookcast error body, not only the first.

Node runs with TZ=Asia/Kolkata (+05:30): the client turns a date without a zone designator
into local time, so a Registered that is not marked UTC maps to the wrong instant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.engine import delivery_settings
from support.receivers import Receiver
from support.server import ServerThread

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.store.database import Database

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = "webapi_client.cjs"
CLIENT_PACKAGE = NODE_DIR / "node_modules" / "@superoffice" / "webapi" / "package.json"
TENANT, OTHER_TENANT = "Cust1234", "Cust9999"
ASSOCIATE_ID, ASSOCIATE_NAME, ASSOCIATE_FULL_NAME = 5, "tony", "Tony Ng"
NODE_TZ = "Asia/Kolkata"
SECRET = "Something Super Secret"  # as webapi_client.cjs sets it
STATES = {"Unknown", "Active", "Stopped", "TooManyErrors"}
# The SuperOffice 12 fields every webhook in a response carries (§1), as sent and as mapped.
SO12_FIELDS = {
    "ErrorEmails": "errorEmails",
    "ErrorAssociates": "errorAssociates",
    "Description": "description",
    "NotifyVia": "notifyVia",
    "NotifyWhen": "notifyWhen",
    "TotalCalls": "totalCalls",
    "TotalErrors": "totalErrors",
    "ConsecutiveErrors": "consecutiveErrors",
    "LastError": "lastError",
}
NOTIFY_EMAIL, NOTIFY_IN_APP = 1, 2  # WebhookNotifyVia
WHEN_FIRST_FAILURE, WHEN_DISABLING = 1, 2  # WebhookNotifyWhen

Line = dict[str, Any]


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: this test drives the Node client @superoffice/webapi")
    if not CLIENT_PACKAGE.is_file():
        pytest.fail(
            f"{CLIENT_PACKAGE.relative_to(NODE_DIR.parent.parent)} is missing: run "
            "`npm ci --no-audit --no-fund` in tests/node (make test and make unit do it)"
        )
    return node


# ----- reading the script's lines ---------------------------------------------------------


def is_undefined(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$undefined") is True


def as_date(value: Any) -> datetime | None:
    """The instant of a mapped Date ({"$date": ISO}); None for anything else."""
    if not (isinstance(value, dict) and isinstance(value.get("$date"), str)):
        return None
    try:
        return datetime.fromisoformat(value["$date"].replace("Z", "+00:00"))
    except ValueError:  # "Invalid Date", or year 0 (0001-01-01 read as local time west of UTC)
        return None


def is_valid_date(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$date") not in (None, "Invalid Date")


def summarize_error(error: Any) -> str:
    if not isinstance(error, dict):
        return repr(error)
    text = f"{error.get('name')}"
    if "httpStatus" in error:
        body = json.dumps(error.get("body"), ensure_ascii=False)
        return f"{text} HTTP {error['httpStatus']}, body {body}"
    text += f": {error.get('message')}"
    if error.get("at"):
        text += f" ({error['at'][0]})"
    return text


@dataclass
class Run:
    """The script's lines and the receivers, and the problems found per step."""

    lines: dict[str, Line]
    receiver: Receiver
    failing: Receiver
    started: datetime
    finished: datetime
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, step: str, message: str) -> None:
        problems = self.problems.setdefault(step, [])
        if message not in problems:  # the same problem in every webhook of a list: once
            problems.append(message)

    def expect(self, step: str, condition: bool, message: str) -> bool:
        if not condition:
            self.fail(step, message)
        return condition

    def result(self, step: str) -> Any:
        """The mapped result of a step that must succeed; None (and a problem) otherwise."""
        line = self.lines.get(step)
        if line is None:
            self.fail(step, "the script printed no line for this step")
            return None
        if line.get("outcome") != "ok":
            self.fail(step, f"client call failed: {summarize_error(line.get('error'))}")
            return None
        return line.get("result")

    def error(self, step: str, status: int, error_type: str, fragment: str = "") -> None:
        """A step that must fail: the client rejects with an AxiosError whose response has
        `status` and the §8 body."""
        line = self.lines.get(step)
        if line is None:
            self.fail(step, "the script printed no line for this step")
            return
        if line.get("outcome") != "err":
            self.fail(step, f"expected HTTP {status}, the client resolved {line.get('result')!r}")
            return
        error = line.get("error") or {}
        if not self.expect(
            step,
            error.get("name") == "AxiosError" and error.get("httpStatus") == status,
            f"expected an AxiosError with HTTP {status}, got {summarize_error(error)}",
        ):
            return
        body = error.get("body")
        wrong = []
        if not isinstance(body, dict):
            wrong.append("not an object")
            body = {}
        if body.get("Error") is not True:
            wrong.append("Error is not true")
        if body.get("ErrorType") != error_type:
            wrong.append(f"ErrorType is not {error_type}")
        message = body.get("ErrorMessage")
        if not (isinstance(message, str) and message):
            wrong.append("no ErrorMessage")
        elif fragment.lower() not in message.lower():
            wrong.append(f"ErrorMessage does not mention {fragment!r}")
        if body.get("ErrorSource") != "hookcast":
            wrong.append("ErrorSource is not hookcast")
        self.expect(
            step,
            not wrong,
            f"HTTP {status} as expected, but the body is not SuperOffice's error shape "
            f"({', '.join(wrong)}): {json.dumps(error.get('body'), ensure_ascii=False)}",
        )

    def webhook(self, step: str, hook: Any, raw: Any) -> bool:
        """What every mapped webhook must look like: Dates, a State name, the 12.x fields
        sent (PascalCase, raw) and mapped."""
        if not self.expect(step, isinstance(hook, dict), f"not a mapped webhook: {hook!r}"):
            return False
        for name in ("registered", "updated"):
            self.expect(
                step, is_valid_date(hook.get(name)), f"{name} is not a Date: {hook.get(name)}"
            )
        self.expect(
            step, hook.get("state") in STATES, f"state is not a WebhookState: {hook.get('state')}"
        )
        if isinstance(raw, dict):
            missing = [k for k in SO12_FIELDS if k not in raw]
            self.expect(step, not missing, f"response lacks the SuperOffice 12 fields {missing}")
        unmapped = [v for v in SO12_FIELDS.values() if is_undefined(hook.get(v))]
        self.expect(step, not unmapped, f"mapped as undefined: {unmapped}")
        return True

    def raw_response(self, step: str) -> Any:
        exchange = self.lines.get(step, {}).get("exchange") or {}
        return exchange.get("responseBody")

    def recent(self, step: str, value: Any, what: str) -> None:
        """A Date that is this run's wall-clock time (a zone-less date would be off by the
        node process's +05:30)."""
        instant = as_date(value)
        window = timedelta(minutes=2)
        self.expect(
            step,
            instant is not None and self.started - window <= instant <= self.finished + window,
            f"{what} {value} is not the time of this run ({self.started:%H:%M:%S}Z)",
        )

    def ids(self, step: str) -> Any:
        return self.lines.get(step, {}).get("ids")

    def webhook_id(self, step: str) -> int | None:
        """The id a create step made: by the client, or by the script's REST fallback when
        the client's SaveWebhook failed (so later steps still run on a real webhook)."""
        value = (self.lines.get(step) or {}).get("webhookId")
        return value if isinstance(value, int) else None


# ----- the checks, one per step -------------------------------------------------------------


def check_create_default(run: Run) -> None:
    step = "create_default"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    got = (hook.get("webhookId"), hook.get("state"), hook.get("type"), hook.get("events"))
    want = (0, "Active", "webhook", ["contact.created", "contact.deleted"])
    run.expect(step, got == want, f"(webhookId, state, type, events) {got} != {want}")


def check_save_create(run: Run) -> None:
    step = "save_create"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    name = run.lines[step].get("name")
    webhook_id = hook.get("webhookId")
    run.expect(step, isinstance(webhook_id, int) and webhook_id >= 1, f"webhookId {webhook_id} < 1")
    expected = {
        "name": name,
        "targetUrl": run.receiver.url,
        "events": ["contact.created", "sale.created"],
        "secret": SECRET,
        "state": "Active",
        "type": "webhook",
        "errorEmails": ["ops@example.com", "dev@example.com"],
        "description": "Created by @superoffice/webapi WebhookAgent",
        "notifyVia": NOTIFY_EMAIL | NOTIFY_IN_APP,
        "notifyWhen": WHEN_FIRST_FAILURE | WHEN_DISABLING,
        "totalCalls": 0,
        "totalErrors": 0,
        "consecutiveErrors": 0,
        "lastError": None,
    }
    for key, want in expected.items():
        run.expect(step, hook.get(key) == want, f"{key} {hook.get(key)!r} != {want!r}")
    associates = [(a.get("id"), a.get("name")) for a in hook.get("errorAssociates") or []]
    run.expect(
        step,
        associates == [(ASSOCIATE_ID, ASSOCIATE_NAME)],
        f"errorAssociates {associates} != [({ASSOCIATE_ID}, {ASSOCIATE_NAME!r})]",
    )
    run.recent(step, hook.get("registered"), "registered")
    run.recent(step, hook.get("updated"), "updated")
    who = hook.get("registeredAssociate")
    run.expect(
        step,
        isinstance(who, dict)
        and (who.get("associateId"), who.get("fullName")) == (ASSOCIATE_ID, ASSOCIATE_FULL_NAME),
        f"registeredAssociate {who} is not associate {ASSOCIATE_ID} {ASSOCIATE_FULL_NAME}",
    )


def check_save_create_stopped(run: Run) -> None:
    step = "save_create_stopped"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    run.expect(step, hook.get("state") == "Stopped", f"state {hook.get('state')} != Stopped")
    run.expect(step, hook.get("events") == ["person.changed"], f"events {hook.get('events')}")
    id_a, id_b = run.webhook_id("save_create"), hook.get("webhookId")
    run.expect(step, isinstance(id_b, int) and id_b >= 1 and id_b != id_a, f"webhookId {id_b}")


def check_save_update(run: Run) -> None:
    step = "save_update"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    id_a = run.webhook_id("save_create")
    expected = {
        "webhookId": id_a,
        "events": ["contact.created", "sale.created", "project.created"],
        "description": "Updated by @superoffice/webapi WebhookAgent",
        "errorEmails": ["ops@example.com"],
        "notifyVia": NOTIFY_EMAIL,
        "notifyWhen": WHEN_DISABLING,
        "state": "Active",
    }
    for key, want in expected.items():
        run.expect(step, hook.get(key) == want, f"{key} {hook.get(key)!r} != {want!r}")
    associates = [a.get("id") for a in hook.get("errorAssociates") or []]
    run.expect(step, associates == [ASSOCIATE_ID, 7], f"errorAssociates ids {associates}")
    created = run.lines.get("save_create", {}).get("result") or {}
    run.expect(
        step,
        not created or hook.get("registered") == created.get("registered"),
        f"registered changed on update: {created.get('registered')} -> {hook.get('registered')}",
    )
    run.recent(step, hook.get("updated"), "updated")


def check_get_webhook(run: Run) -> None:
    step = "get_webhook"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    want = run.webhook_id("save_create")
    run.expect(step, hook.get("webhookId") == want, f"webhookId {hook.get('webhookId')} != {want}")
    if run.lines.get("save_update", {}).get("outcome") != "ok":
        return  # nothing the client saved to compare with
    saved = run.lines["save_update"].get("result") or {}
    for key in ("name", "events", "targetUrl", "state", "registered", "updated"):
        run.expect(step, hook.get(key) == saved.get(key), f"{key} {hook.get(key)!r} != saved")
    for key in SO12_FIELDS.values():
        if key != "errorAssociates":
            run.expect(step, hook.get(key) == saved.get(key), f"{key} {hook.get(key)!r} != saved")


def list_check(step: str, want: Callable[[int | None, int | None], list[int | None]]) -> Any:
    def check(run: Run) -> None:
        hooks = run.result(step)
        if hooks is None:
            return
        if not run.expect(step, isinstance(hooks, list), f"not a list: {hooks!r}"):
            return
        raw = run.raw_response(step)
        for index, hook in enumerate(hooks):
            item = raw[index] if isinstance(raw, list) and index < len(raw) else None
            run.webhook(step, hook, item)
        expected = want(run.webhook_id("save_create"), run.webhook_id("save_create_stopped"))
        got = run.ids(step)
        run.expect(
            step,
            sorted(got or [], key=str) == sorted(expected, key=str),
            f"ids {got} != {expected}",
        )

    return check


def check_test_webhook(run: Run) -> None:
    step = "test_webhook"
    result = run.result(step)
    if result is None:
        return
    run.expect(step, result.get("success") is True, f"success {result.get('success')!r}")
    message = result.get("message")
    run.expect(
        step, isinstance(message, str) and "200" in message, f"message {message!r} lacks 200"
    )


def check_signal_event(run: Run) -> None:
    step = "signal_event"
    if run.result(step) is None:
        return
    if not run.expect(step, bool(run.deliveries), "contact.created never reached the receiver"):
        return
    body = run.deliveries[0]
    name = run.lines.get("save_create", {}).get("name")
    got = {k: body.get(k) for k in ("Event", "PrimaryKey", "ContextIdentifier", "WebhookName")}
    got["ChangedByAssociateId"] = body.get("ChangedByAssociateId")
    got["Changes"] = sorted(body.get("Changes") or [])
    want = {
        "Event": "contact.created",
        "PrimaryKey": 994863,
        "ContextIdentifier": TENANT,
        "WebhookName": name,
        "ChangedByAssociateId": ASSOCIATE_ID,
        "Changes": ["department", "name"],
    }
    run.expect(step, got == want, f"delivery {got} != {want}")


def check_delivered(run: Run) -> None:
    step = "delivered"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    calls = hook.get("totalCalls")
    run.expect(step, isinstance(calls, int) and calls >= 1, f"totalCalls {calls!r} < 1")
    for key, want in (("totalErrors", 0), ("consecutiveErrors", 0), ("lastError", None)):
        run.expect(step, hook.get(key) == want, f"{key} {hook.get(key)!r} != {want!r}")


def check_save_create_failing(run: Run) -> None:
    step = "save_create_failing"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    run.expect(step, hook.get("state") == "Active", f"state {hook.get('state')} != Active")


def check_signal_failing(run: Run) -> None:
    run.result("signal_failing")


def check_last_error(run: Run) -> None:
    step = "last_error"
    error = run.result(step)
    if step not in run.problems:
        run.expect(
            step,
            isinstance(error, str) and "500" in error,
            f"last error {error!r} does not name the receiver's 500",
        )


def check_failing_state(run: Run) -> None:
    step = "failing_state"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    run.expect(
        step, hook.get("state") == "TooManyErrors", f"state {hook.get('state')} != TooManyErrors"
    )
    for key in ("totalCalls", "totalErrors", "consecutiveErrors"):
        value = hook.get(key)
        run.expect(step, isinstance(value, int) and value >= 2, f"{key} {value!r} < 2")
    last = hook.get("lastError")
    run.expect(step, isinstance(last, str) and "500" in last, f"lastError {last!r} lacks 500")


def check_tenant_url(run: Run) -> None:
    step = "tenant_url"
    hook = run.result(step)
    if hook is None or not run.webhook(step, hook, run.raw_response(step)):
        return
    want = run.webhook_id("save_create")
    run.expect(step, hook.get("webhookId") == want, f"webhookId {hook.get('webhookId')} != {want}")


def check_delete_webhook(run: Run) -> None:
    run.result("delete_webhook")


def check_cleanup(run: Run) -> None:
    run.result("cleanup")


CHECKS: dict[str, Callable[[Run], None]] = {
    "create_default": check_create_default,
    "save_create": check_save_create,
    "save_create_stopped": check_save_create_stopped,
    "save_update": check_save_update,
    "get_webhook": check_get_webhook,
    "get_all": list_check("get_all", lambda a, b: [a, b]),
    "get_all_by_name": list_check("get_all_by_name", lambda a, b: [a]),
    "get_all_by_event": list_check("get_all_by_event", lambda a, b: [b]),
    "get_all_by_state": list_check("get_all_by_state", lambda a, b: [b]),
    "get_all_combined": list_check("get_all_combined", lambda a, b: [a]),
    "get_all_no_match": list_check("get_all_no_match", lambda a, b: []),
    "test_webhook": check_test_webhook,
    "signal_event": check_signal_event,
    "delivered": check_delivered,
    "save_create_failing": check_save_create_failing,
    "signal_failing": check_signal_failing,
    "last_error": check_last_error,
    "failing_state": check_failing_state,
    "tenant_url": check_tenant_url,
    "other_tenant_url": lambda run: run.error("other_tenant_url", 404, "NotFound"),
    "save_invalid": lambda run: run.error("save_invalid", 400, "ValidationError", "https"),
    "bad_key": lambda run: run.error("bad_key", 401, "Unauthorized"),
    "delete_webhook": check_delete_webhook,
    "get_deleted": lambda run: run.error("get_deleted", 404, "NotFound"),
    "cleanup": check_cleanup,
}


# ----- running it ---------------------------------------------------------------------------


def deliveries(receiver: Receiver, event: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.body) for r in receiver.requests if r.header("X-SuperOffice-Event") == event
    ]


def wait_for_delivery(receiver: Receiver, event: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not (found := deliveries(receiver, event)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def report(run: Run) -> str:
    """One line per step: ok, or the problems, with the request the client made."""
    rows = []
    for step in CHECKS:
        line = run.lines.get(step, {})
        problems = run.problems.get(step)
        if not problems:
            rows.append(f"  PASS {step}")
            continue
        rows.append(f"  FAIL {step}: " + "; ".join(problems))
        exchange = line.get("exchange")
        if exchange:
            body = str(exchange.get("requestBody"))
            body = body if len(body) <= 300 else body[:300] + "..."
            rows.append(
                f"         {exchange.get('method')} {exchange.get('url')} "
                f"body {body} -> {exchange.get('status')}"
            )
        fallback = line.get("fallback")
        if isinstance(fallback, dict) and fallback.get("fromRawResponse"):
            rows.append(
                f"         (stored: WebhookId {fallback.get('webhookId')} in the raw answer)"
            )
        elif isinstance(fallback, dict):
            rows.append(
                f"         (created over REST instead: HTTP {fallback.get('status')}, "
                f"WebhookId {fallback.get('webhookId')})"
            )
    return "\n".join(rows)


def test_superoffice_webhook_agent_drives_hookcast(
    tmp_path: Path, ca_bundle_path: str, receiver_factory: Callable[..., Receiver]
) -> None:
    node = require_node()
    receiver = receiver_factory()
    # Answers the verification POST, then fails every delivery: LastError and TooManyErrors.
    failing = receiver_factory(status=500, body=b"receiver says boom", statuses=(200,))
    settings = delivery_settings(tmp_path, ca_bundle_path, max_consecutive_errors=2)
    db = Database(settings.database_url)
    _, key = create_key(
        db,
        tenant=TENANT,
        associate_id=ASSOCIATE_ID,
        name=ASSOCIATE_NAME,
        full_name=ASSOCIATE_FULL_NAME,
    )
    try:
        with ServerThread(create_app(settings, db=db)) as server:
            config = {
                "baseUrl": f"{server.url}/",
                "key": key,
                "targetUrl": receiver.url,
                "failingTargetUrl": failing.url,
                "tenantBaseUrl": f"{server.url}/{TENANT}/api/",
                "otherTenantBaseUrl": f"{server.url}/{OTHER_TENANT}/api/",
                "associateId": ASSOCIATE_ID,
                "associateName": ASSOCIATE_NAME,
                "requestTimeoutMs": 15000,
                "pollDeadlineMs": 15000,
            }
            started = datetime.now(UTC)
            try:
                process = subprocess.run(
                    [node, SCRIPT, json.dumps(config)],
                    cwd=NODE_DIR,
                    capture_output=True,
                    text=True,
                    timeout=180,
                    env={**os.environ, "TZ": NODE_TZ},
                )
            except subprocess.TimeoutExpired as exc:
                partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
                pytest.fail(
                    f"{SCRIPT} did not finish in {exc.timeout} s; output so far:\n{partial}"
                )
            finished = datetime.now(UTC)
            print(process.stdout)  # the per-step lines, shown with -s / -rA and on failure
            lines: dict[str, Line] = {}
            for text in process.stdout.splitlines():
                if text.strip():
                    line = json.loads(text)
                    lines[line["step"]] = line
            signalled = lines.get("signal_event", {}).get("outcome") == "ok"
            found = wait_for_delivery(receiver, "contact.created", 10.0 if signalled else 0.0)
    finally:
        db.close()

    assert process.returncode == 0, f"{SCRIPT} exited {process.returncode}:\n{process.stderr}"
    run = Run(lines, receiver, failing, started, finished, deliveries=found)
    for check in CHECKS.values():
        check(run)
    assert not run.problems, (
        f"{len(run.problems)} of {len(CHECKS)} WebhookAgent steps failed:\n{report(run)}"
    )
