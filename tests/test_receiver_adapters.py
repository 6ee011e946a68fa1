"""hookcast.receiver's adapters (FastAPI dependency, Flask decorator, Django view decorator)
against real hookcast deliveries: a real Hub posts over verified TLS to each framework's app
served on loopback (uvicorn, werkzeug; Django in a process of its own)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
from support.engine import CALLER, SECRET, TENANT, Engine, eventually, running_engine
from support.receiver_apps import APPS, FLAKY, AppReceiver, Handled, url

from hookcast import VerificationFailed


@pytest.fixture(scope="module")
def app_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(params=sorted(APPS))
def app(
    request: pytest.FixtureRequest, app_cert: trustme.LeafCert, tmp_path: Path
) -> Iterator[AppReceiver]:
    started = APPS[request.param](app_cert, SECRET, tmp_path / "app")
    yield started
    started.stop()


@pytest.fixture
async def engine(tmp_path: Path, ca_bundle_path: str):  # type: ignore[no-untyped-def]
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        yield engine


def handled(app: AppReceiver, route: str = "/hook") -> list[Handled]:
    """What the handler got on `route`, without the registration test event."""
    return [r for r in app.records() if r.route == route and not r.test]


async def replay(
    app: AppReceiver, record: Handled, route: str, body: bytes | None = None
) -> httpx.Response:
    """POST the exact bytes and headers of a delivery again (or another body with them)."""
    headers = {
        k: v for k, v in record.headers.items() if k.lower() not in ("host", "content-length")
    }
    data = base64.b64decode(record.body) if body is None else body
    # verify=False: the app's certificate is from the test CA; what is tested is the answer.
    async with httpx.AsyncClient(verify=False, timeout=10) as client:
        return await client.post(url(app, route), content=data, headers=headers)


async def test_a_delivery_arrives_verified_and_typed(app: AppReceiver, engine: Engine) -> None:
    hook = await engine.create(
        url(app), ["contact.changed", "sale.deleted"], Properties={"source": "crm"}
    )
    # The registration test POST went through the adapter too.
    [test] = [r for r in app.records() if r.test]
    assert (test.event, test.entity, test.primary_key, test.webhook_name) == (
        "test", "test", 0, "Tonys Contact Handler",
    )  # fmt: skip
    await engine.hub.signal(
        "contact.changed", 994863, tenant=TENANT, associate_id=316,
        changes={"name": "Ada", "department": "R&D"}, field_values={"name": "Ada"},
    )  # fmt: skip
    await engine.hub.signal(
        "sale.deleted", 7, tenant=TENANT, associate_id=316, values={"sale_id": 7, "contact_id": 43}
    )
    records = await eventually(lambda: len(handled(app)) >= 2 and handled(app), what="deliveries")
    by_event = {r.event: r for r in records}
    changed, deleted = by_event["contact.changed"], by_event["sale.deleted"]
    assert changed.primary_key == 994863 and changed.entity == "contact"
    assert sorted(changed.changes) == ["department", "name"]
    assert changed.field_values == {"name": "Ada"}
    assert (changed.tenant, changed.associate_id) == (TENANT, 316)
    assert changed.properties == {"source": "crm"}
    assert changed.delivery_id and changed.delivery_id == changed.headers.get("webhook-id")
    assert changed.event_id == orjson.loads(base64.b64decode(changed.body))["EventId"]
    assert changed.timestamp.endswith("+00:00")
    assert deleted.values == {"sale_id": 7, "contact_id": 43} and deleted.changes == []
    assert hook.id >= 1


async def test_replays_tampering_and_stale_requests_are_refused(
    app: AppReceiver, engine: Engine
) -> None:
    await engine.create(url(app), ["contact.changed"])
    await engine.hub.signal("contact.changed", 1, tenant=TENANT, associate_id=316)
    [original] = await eventually(lambda: handled(app), what="the delivery")

    # The same delivery again (what a sender's retry after a lost answer looks like): 2xx so
    # the sender stops, and the handler is not run again.
    again = await replay(app, original, "/hook")
    assert again.status_code == 200, again.text
    assert "DuplicateDelivery" in again.text
    # A changed body under the real signatures.
    tampered = await replay(app, original, "/hook", body=base64.b64decode(original.body) + b" ")
    assert tampered.status_code == 401, tampered.text
    assert "SignatureInvalid" in tampered.text
    # A receiver whose clock is an hour ahead sees a stale webhook-timestamp.
    stale = await replay(app, original, "/late")
    assert stale.status_code == 401, stale.text
    assert "TimestampInvalid" in stale.text and "replay window" in stale.text
    # No signatures at all.
    async with httpx.AsyncClient(verify=False, timeout=10) as client:
        bare = await client.post(
            url(app), content=base64.b64decode(original.body),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
    assert bare.status_code == 401 and "missing" in bare.text

    assert [r.delivery_id for r in handled(app)] == [original.delivery_id]
    assert handled(app, "/late") == []


async def test_a_handler_that_fails_gets_the_retry_of_the_same_delivery(
    app: AppReceiver, engine: Engine
) -> None:
    hook = await engine.create(url(app), [FLAKY])
    await engine.hub.signal(FLAKY, 5, tenant=TENANT, associate_id=316)
    records = await eventually(lambda: len(handled(app)) >= 2 and handled(app), what="the retry")
    first, second = records[:2]
    assert (first.failed, second.failed) == (True, False)
    assert first.delivery_id == second.delivery_id  # the same delivery, released and handled
    assert (first.retry, second.retry) == (0, 1)
    usage = await eventually(lambda: _usage_settled(engine, hook.id), what="the success recorded")
    assert (usage.total_calls, usage.total_errors, usage.consecutive_errors) == (2, 1, 0)


async def _usage_settled(engine: Engine, webhook_id: int):  # type: ignore[no-untyped-def]
    usage = await engine.usage(webhook_id)
    return usage if usage.total_calls >= 2 and usage.consecutive_errors == 0 else None


async def test_a_webhook_with_another_secret_cannot_register(
    app: AppReceiver, engine: Engine
) -> None:
    with pytest.raises(VerificationFailed, match="401") as refused:
        await engine.create(url(app), ["contact.changed"], Secret="not the receiver's secret")
    assert "SignatureInvalid" in str(refused.value)
    assert app.records() == []
    assert CALLER.tenant == TENANT
