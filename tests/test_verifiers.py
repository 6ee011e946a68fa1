"""Receivers written as users write them verify hookcast's deliveries with ONLY the libraries
users run (§3): a Node receiver (express 5; npm `standardwebhooks`, npm `svix`, node's crypto
for X-SuperOffice-Signature) and a Flask one (PyPI `standardwebhooks`, PyPI `svix`, hmac).

Each test runs for a `whsec_<base64>` Secret and for plain Secrets (ASCII and beyond), which
the libraries get in the form `hookcast.standard_webhooks_secret` gives. The webhook is created Active against
the receiver, so the registration test POST passes through the verifiers too, and a receiver
answers 401 to anything one of them refuses; a tampered body shows the checks can fail.
"""

from __future__ import annotations

import base64
import os
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
from support.engine import TENANT, Engine, eventually, running_engine
from support.flask_receiver import FlaskReceiver
from support.verifying_receivers import VERIFIERS, NodeReceiver, Record, VerifyingReceiver

from hookcast import VerificationFailed
from hookcast.model import Usage

WHSEC = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PLAIN = "It's a secret to everybody"
# A plain Secret beyond ASCII too: the libraries' form and X-SuperOffice-Signature both take
# its UTF-8 bytes, which a Latin-1 or UTF-16 slip anywhere would break.
SECRETS = {"whsec": WHSEC, "plain": PLAIN, "plain-utf8": "Sécret — 秘密 🔑"}
# Non-ASCII in the body (WebhookName): Node's svix turns a Buffer body into a string and back.
NAME = "Tonys Contact Handler — Ærø 🚀"
PRIMARY_KEY = 994863
# Headers an HTTP client sets from the request it sends; the rest are copied as received.
HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}
NO_MATCH = "No matching signature found"  # both libraries, in both languages


@pytest.fixture(scope="module")
def receiver_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def node_receiver(
    tmp_path_factory: pytest.TempPathFactory, receiver_cert: trustme.LeafCert, ca_bundle_path: str
) -> Iterator[NodeReceiver]:
    receiver = NodeReceiver(tmp_path_factory.mktemp("node"), receiver_cert, ca_bundle_path, SECRETS)
    try:
        yield receiver.start()
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def flask_receiver(receiver_cert: trustme.LeafCert) -> Iterator[FlaskReceiver]:
    receiver = FlaskReceiver(receiver_cert, SECRETS).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(params=["node", "flask"])
def verifying(request: pytest.FixtureRequest) -> VerifyingReceiver:
    receiver: VerifyingReceiver = request.getfixturevalue(f"{request.param}_receiver")
    return receiver


def refusals(record: Record) -> dict[str, str | None]:
    """The verifiers that refused a request, with what they said."""
    return {name: v.error for name, v in record.verdicts.items() if not v.ok}


async def deliver(
    engine: Engine, receiver: VerifyingReceiver, kind: str
) -> tuple[str, list[Record]]:
    """Create a webhook Active against the receiver (its registration test must verify, or
    creation fails), signal contact.changed, and wait until hookcast counted the delivery.
    Returns the webhook's URL and every request the receiver got for it."""
    run = uuid.uuid4().hex  # this test's own path on the receiver the module shares
    url = receiver.url(kind, run)
    hook = await engine.create(url, ["contact.changed"], Name=NAME, Secret=SECRETS[kind])
    await engine.hub.signal("contact.changed", PRIMARY_KEY, tenant=TENANT, associate_id=316)

    async def attempted() -> bool:
        usage: Usage = await engine.usage(hook.id)
        return usage.total_calls >= 1  # counts every attempt, good or not

    await eventually(attempted, what="the delivery's outcome")
    usage: Usage = await engine.usage(hook.id)
    records = await receiver.records(httpx.URL(url).path)
    assert (usage.total_calls, usage.total_errors) == (1, 0), [refusals(r) for r in records]
    return url, records


@pytest.mark.parametrize("kind", list(SECRETS))
async def test_every_request_hookcast_sends_verifies(
    tmp_path: Path, ca_bundle_path: str, verifying: VerifyingReceiver, kind: str
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        _, records = await deliver(engine, verifying, kind)
    # The registration test, then the delivery: nothing else (no retry after a refusal).
    assert [(r.event, r.test) for r in records] == [("test", "true"), ("contact.changed", None)]
    for record in records:
        assert set(record.verdicts) == set(VERIFIERS)
        assert refusals(record) == {}, record.event
        assert record.status == 200
        for name in ("x-superoffice-signature", "webhook-id", "webhook-timestamp"):
            assert record.headers.get(name), name  # verified, not absent
        assert record.headers["webhook-signature"].startswith("v1,")
    test, delivery = (orjson.loads(r.body) for r in records)
    assert (test["Event"], test["PrimaryKey"]) == ("test", 0)
    assert (delivery["Event"], delivery["PrimaryKey"]) == ("contact.changed", PRIMARY_KEY)
    assert test["WebhookName"] == delivery["WebhookName"] == NAME


@pytest.mark.parametrize("kind", list(SECRETS))
async def test_a_tampered_body_fails_every_verifier(
    tmp_path: Path, ca_bundle_path: str, verifying: VerifyingReceiver, kind: str
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        url, records = await deliver(engine, verifying, kind)
    genuine = records[-1]
    assert genuine.event == "contact.changed" and refusals(genuine) == {}
    headers = {k: v for k, v in genuine.headers.items() if k not in HOP_HEADERS}
    tampered = genuine.body.replace(b"%d" % PRIMARY_KEY, b"%d" % (PRIMARY_KEY + 1))
    assert tampered != genuine.body and len(tampered) == len(genuine.body)
    trust = ssl.create_default_context(cafile=ca_bundle_path)
    async with httpx.AsyncClient(verify=trust, timeout=5.0) as client:
        # The same bytes and headers again: accepted, so the copy itself changes nothing...
        assert (await client.post(url, content=genuine.body, headers=headers)).status_code == 200
        # ...and one digit of the body changed is refused by every verifier.
        assert (await client.post(url, content=tampered, headers=headers)).status_code == 401
    *_, replayed, refused = await verifying.records(httpx.URL(url).path)
    assert replayed.body == genuine.body and refusals(replayed) == {}
    assert refused.body == tampered and refused.status == 401
    assert refused.headers["webhook-signature"] == genuine.headers["webhook-signature"]
    said = refusals(refused)
    assert set(said) == set(VERIFIERS)
    # Refused for the signature, not for missing headers or a stale timestamp.
    assert said["standardwebhooks"] == NO_MATCH
    assert said["svix"] == NO_MATCH
    assert said["x-superoffice-signature"] == "X-SuperOffice-Signature does not match the body"


async def test_registration_fails_when_the_receiver_refuses_the_test_post(
    tmp_path: Path, ca_bundle_path: str, verifying: VerifyingReceiver
) -> None:
    """The registration test goes through the verifiers: signed with another Secret than the
    receiver knows, it is refused, and so is the webhook."""
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    url = verifying.url("whsec", uuid.uuid4().hex)
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        with pytest.raises(VerificationFailed, match="401"):
            await engine.create(url, ["contact.changed"], Secret=other)
    [record] = await verifying.records(httpx.URL(url).path)
    assert (record.event, record.test, record.status) == ("test", "true", 401)
    said = refusals(record)
    assert (said["standardwebhooks"], said["svix"]) == (NO_MATCH, NO_MATCH)
    assert said["x-superoffice-signature"] == "X-SuperOffice-Signature does not match the body"
