"""Standard Webhooks signatures verify with the Standard Webhooks library itself (PyPI
`standardwebhooks`), for a `whsec_<base64>` Secret as it is and for a plain Secret in the form
`hookcast.standard_webhooks_secret` gives, on real deliveries and on the registration test."""

from __future__ import annotations

import base64
import os
import time

import orjson
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from support.engine import running_engine
from test_delivery import wait_deliveries

from hookcast import standard_webhooks_secret, verify_signature
from hookcast.payload import build_headers, standard_webhooks_key

WHSEC = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PLAIN = "It's a secret to everybody"


def test_the_secret_form_for_a_library() -> None:
    assert standard_webhooks_secret(PLAIN) == "whsec_" + base64.b64encode(PLAIN.encode()).decode()
    assert standard_webhooks_secret(WHSEC) == WHSEC
    assert standard_webhooks_key(WHSEC) == base64.b64decode(WHSEC[6:])
    assert standard_webhooks_key(PLAIN) == PLAIN.encode()
    for bad, says in (("whsec_***", "base64"), ("whsec_" + "QUJD" * 4, "24 bytes")):
        with pytest.raises(ValueError, match=says):
            standard_webhooks_secret(bad)


@pytest.mark.parametrize("secret", [WHSEC, PLAIN], ids=["whsec", "plain"])
def test_the_library_verifies_what_hookcast_signs(secret: str) -> None:
    body = b'{"EventId":"e","Event":"contact.changed"}'
    headers = build_headers(
        event_header="contact.changed", event_id="e", retry=0, body=body, secret=secret,
        delivery_id="msg_1", timestamp=int(time.time()), custom=None,
        user_agent="hookcast/test", standard_webhooks=True,
    )  # fmt: skip
    library = StandardWebhook(standard_webhooks_secret(secret))
    assert library.verify(body, headers) == orjson.loads(body)
    # X-SuperOffice-Signature keeps the Secret's UTF-8 bytes, as SuperOffice does, whsec_ or not.
    assert verify_signature(secret, body, headers["X-SuperOffice-Signature"])


@pytest.mark.parametrize("secret", [WHSEC, PLAIN], ids=["whsec", "plain"])
async def test_real_deliveries_verify_with_the_library(
    tmp_path, ca_bundle_path, receiver, secret: str
) -> None:
    async with running_engine(tmp_path, ca_bundle_path) as engine:
        await engine.create(receiver.url, ["contact.changed"], Secret=secret)
        await engine.hub.signal("contact.changed", 994863, tenant="Cust1234", associate_id=316)
        [request] = await wait_deliveries(receiver, 1)
    library = StandardWebhook(standard_webhooks_secret(secret))
    for sent in (request, *(r for r in receiver.requests if r.header("X-Hook-Test"))):
        headers = dict(sent.headers)
        assert library.verify(sent.body, headers) == orjson.loads(sent.body)
    assert any(r.header("X-Hook-Test") for r in receiver.requests)  # the registration test too


def test_a_malformed_whsec_secret_stored_earlier_still_signs_as_before() -> None:
    """Secrets were not checked before this rule: such a webhook keeps being delivered,
    signed with the Secret's UTF-8 bytes as it was."""
    body, stored = b"{}", "whsec_not*base64"
    headers = build_headers(
        event_header="contact.changed", event_id="e", retry=0, body=body, secret=stored,
        delivery_id="msg_1", timestamp=int(time.time()), custom=None,
        user_agent="hookcast/test", standard_webhooks=True,
    )  # fmt: skip
    as_before = "whsec_" + base64.b64encode(stored.encode()).decode()
    assert StandardWebhook(as_before).verify(body, headers) == {}
