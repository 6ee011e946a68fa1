"""Property tests of the API: schemathesis against our own /openapi.json, and hypothesis
bodies (random and mutated carriers) that must never give a 5xx nor change what is stored;
hostile JSON text (deep nesting, integers beyond 64 bits, lone surrogates, NaN, Infinity,
1e400) that every route refuses with a 400, and odd TargetUrl hosts (issue 13, item 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
import yarl
from api_support import running_api, stopped_hook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from support.databases import database_url
from support.dns import DnsServer
from support.server import ServerThread

from hookcast.api.app import create_app
from hookcast.keys import create_key
from hookcast.settings import Settings
from hookcast.store.database import Database

pytestmark = pytest.mark.slow  # schemathesis and hypothesis: hundreds of requests

# Every URL a generated body carries is pointed at a private IP literal: the target guard
# refuses it before any packet leaves, so no DNS lookup or connection leaves loopback.
SAFE_URL = "https://10.9.9.9/hook"


def defuse(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return SAFE_URL
    if isinstance(value, dict):
        return {k: defuse(v) for k, v in value.items()}
    if isinstance(value, list):
        return [defuse(v) for v in value]
    return value


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    config = Settings(
        database_url=database_url(tmp_path_factory.mktemp("schemathesis")), attempt_timeout=0.5
    )
    db = Database(config.database_url)
    db.migrate()
    _, key = create_key(db, tenant="Cust1234", associate_id=5, name="fuzz")
    with ServerThread(create_app(config, db=db)) as server:
        yield server, key
    db.close()


def _without_security(document: dict[str, Any]) -> dict[str, Any]:
    """The document less its bearer requirement: every case below sends a valid key itself,
    so schemathesis's "no Authorization" negatives would be answered 200 (auth is tested
    in test_api and test_rights)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    return document


# The document the app serves; cases are sent to a live server started by `live_api`.
schema = schemathesis.openapi.from_dict(_without_security(create_app(Settings()).openapi()))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_no_5xx_and_no_schema_violation(case, live_api) -> None:
    server, key = live_api
    case.body = defuse(case.body)
    # Positive-data acceptance cannot hold here: a schema-valid carrier is still refused when
    # its target does not answer the verification POST (§5), which no schema can express.
    excluded = [positive_data_acceptance]
    body = case.operation.definition.raw.get("requestBody")
    if body is not None and not body.get("required"):
        # An optional body (null or none, §2); schemathesis offers "no body" as a negative case.
        excluded.append(negative_data_rejection)
    case.call_and_validate(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, excluded_checks=excluded
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "WebhookId",
    "Name",
    "Events",
    "TargetUrl",
    "Secret",
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
    "name",
    "events",
    "state",
    "targetUrl",
    "errorEmails",
    "NOTIFYVIA",
]


@st.composite
def mutated_carrier(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = stopped_hook(TargetUrl=SAFE_URL)
    for _ in range(draw(st.integers(1, 4))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(JSON)
    if draw(st.booleans()):  # SuperOffice's documented SaveWebhook/TestWebhook form
        body = {"Webhook": body}
    return defuse(body)


BODIES = st.one_of(JSON.map(defuse), mutated_carrier())


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("fuzz"), attempt_timeout=0.5) as api:
        hook = api.post("/api/v1/Webhook", json=stopped_hook(TargetUrl=SAFE_URL)).json()
        yield api, hook["WebhookId"]


@given(body=BODIES, method=st.sampled_from(["post", "put", "patch", "save", "test"]))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_bodies_never_5xx_nor_change_what_is_stored_when_refused(
    fuzz_api, body, method
) -> None:
    api, hook_id = fuzz_api
    before = api.get("/api/v1/Webhook").json()
    target = {
        "post": ("post", "/api/v1/Webhook"),
        "put": ("put", f"/api/v1/Webhook/{hook_id}"),
        "patch": ("patch", f"/api/v1/Webhook/{hook_id}"),
        "save": ("post", "/api/v1/Agents/Webhook/SaveWebhook"),
        "test": ("post", "/api/v1/Webhook/Test"),
    }[method]
    response = getattr(api, target[0])(target[1], json=body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()
        assert error["Error"] is True and error["ErrorType"] and error["ErrorMessage"]
        assert set(error) <= {"Error", "ErrorType", "ErrorMessage", "ErrorSource", "Details"}
        assert api.get("/api/v1/Webhook").json() == before


# ----- hostile JSON text, on every route -----------------------------------------------------

# Atoms no JSON encoder writes but a client can send; each must make the whole body a 400.
HOSTILE_ATOM = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1E999", "123e4567"]),
    st.integers(min_value=2**63).map(str),
    st.integers(max_value=-(2**63) - 1).map(str),
    st.integers(0xD800, 0xDFFF).map(lambda c: f'"x\\u{c:04x}"'),  # a lone surrogate
)
PLAIN_TEXT = JSON.map(json.dumps)
KEY_TEXT = st.one_of(
    st.text(max_size=8).map(json.dumps),
    st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04X}k"'),  # a lone surrogate in a key
)


def _nested(inner: str, depth: int, as_object: bool) -> str:
    return (
        ('{"a":' * depth + inner + "}" * depth) if as_object else "[" * depth + inner + "]" * depth
    )


@st.composite
def hostile_fragment(draw: st.DrawFn) -> str:
    """JSON text with at least one thing hookcast refuses somewhere inside it."""
    if draw(st.booleans()):
        fragment = _nested(draw(PLAIN_TEXT), draw(st.integers(65, 600)), draw(st.booleans()))
    else:
        fragment = draw(HOSTILE_ATOM)
    for _ in range(draw(st.integers(0, 3))):  # buried in containers among ordinary values
        others = draw(st.lists(PLAIN_TEXT, max_size=2))
        if draw(st.booleans()):
            fragment = "[" + ",".join([*others, fragment]) + "]"
        else:
            keys = draw(st.lists(KEY_TEXT, min_size=len(others) + 1, max_size=len(others) + 1))
            members = [*others, fragment]
            fragment = "{" + ",".join(f"{k}:{v}" for k, v in zip(keys, members, strict=True)) + "}"
    return fragment


def _carrier_text(field: str, fragment: str) -> str:
    carrier = json.dumps(stopped_hook(TargetUrl=SAFE_URL))
    return carrier[:-1] + f", {json.dumps(field)}: {fragment}}}"


HOSTILE_BODY = st.one_of(
    hostile_fragment(),
    st.builds(_carrier_text, st.sampled_from([*FIELDS, "Data", "Properties"]), hostile_fragment()),
    hostile_fragment().map(
        lambda f: f'{{"EventName": "contact.changed", "PrimaryKey": 1, "Data": {{"a": {f}}}}}'
    ),
)


def _operations() -> list[tuple[str, str]]:
    document = create_app(Settings()).openapi()
    return [(method.upper(), path) for path, ops in document["paths"].items() for method in ops]


@pytest.mark.parametrize(("method", "path"), _operations())
@given(body=HOSTILE_BODY)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_json_is_a_400_on_every_route(fuzz_api, method, path, body) -> None:
    api, hook_id = fuzz_api
    url = (
        path.replace("{webhookId}", str(hook_id))
        .replace("{scriptId}", "1")
        .replace("{eventName}", "contact.changed")
        .replace("{primaryKey}", "1")
    )
    before = api.get("/api/v1/Webhook").json()
    response = api.client.request(
        method,
        url,
        content=body.encode("utf-8", "surrogatepass"),
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["Error"] is True and error["ErrorType"] == "ValidationError"
    assert error["ErrorSource"] == "hookcast" and error["ErrorMessage"]
    assert api.get("/api/v1/Webhook").json() == before


# ----- odd TargetUrl hosts -----------------------------------------------------------------

LABEL = st.one_of(
    st.text("abcxyz0189-_", min_size=0, max_size=70),
    st.sampled_from(["", "xn--", "xn--zz", "xn--bcher-kva", "-a", "a-", "ab--cd", "%61", "*"]),
    st.text(st.characters(codec="utf-8", categories=["L", "M", "N", "Pd"]), max_size=20),
)


@st.composite
def odd_url(draw: st.DrawFn) -> str:
    labels = draw(st.lists(LABEL, min_size=1, max_size=8))
    if draw(st.booleans()):  # long names: past 253 characters
        labels = labels * draw(st.integers(1, 40))
    # The last label is a name under .invalid, never an IP literal: nothing leaves loopback
    # (the app's DNS is a loopback server that answers NXDOMAIN).
    return f"https://{'.'.join(labels)}.invalid/hook"


@pytest.fixture(scope="module")
def dns_api(tmp_path_factory):
    dns = DnsServer().start()
    try:
        with running_api(
            tmp_path_factory.mktemp("odd-hosts"),
            attempt_timeout=0.5,
            dns_nameservers=f"127.0.0.1:{dns.port}",
        ) as api:
            hook = api.post("/api/v1/Webhook", json=stopped_hook(TargetUrl=SAFE_URL)).json()
            yield api, hook["WebhookId"]
    finally:
        dns.stop()


@given(
    url=odd_url(),
    state=st.sampled_from(["Stopped", "Active"]),
    method=st.sampled_from(["post", "put", "patch", "save", "test"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_odd_target_hosts_are_a_clear_4xx_or_a_dns_name(dns_api, url, state, method) -> None:
    api, hook_id = dns_api
    before = api.get(f"/api/v1/Webhook/{hook_id}").json()
    carrier = {**stopped_hook(TargetUrl=url), "State": state}
    target = {
        "post": ("post", "/api/v1/Webhook", carrier),
        "put": ("put", f"/api/v1/Webhook/{hook_id}", {**carrier, "State": "Stopped"}),
        "patch": ("patch", f"/api/v1/Webhook/{hook_id}", {"TargetUrl": url}),
        "save": ("post", "/api/v1/Agents/Webhook/SaveWebhook", carrier),
        "test": ("post", "/api/v1/Agents/Webhook/TestWebhook", carrier),
    }[method]
    response = getattr(api, target[0])(target[1], json=target[2])
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["ErrorType"] in ("ValidationError", "VerificationFailed")
        assert api.get(f"/api/v1/Webhook/{hook_id}").json() == before
    elif method != "test":  # stored: then its host is one DNS can carry
        host = yarl.URL(response.json()["TargetUrl"]).raw_host or ""
        labels = host.removesuffix(".").split(".")
        assert all(0 < len(label) <= 63 for label in labels) and len(host) <= 254, host
