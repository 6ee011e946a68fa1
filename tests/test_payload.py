"""The delivery body and headers, byte for byte, and their signatures checked the way a
receiver checks them (independent HMAC, and the standardwebhooks package)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookcast.payload import (
    PAYLOAD_FIELDS,
    build_body,
    build_headers,
    entity_of,
    format_timestamp,
    sign,
    standard_signature,
    verify_signature,
    verify_standard_signature,
)

EVENT_ID = "8d5fcd4c-0ba8-4c3b-9bd0-3cae1c9c4c0f"
STAMP = "2018-04-24T07:50:50.6812130Z"
SECRET = "s3cr3t-ÆØÅ"  # non-ASCII on purpose: the key is the secret's UTF-8 bytes


def common(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = dict(
        event_id=EVENT_ID,
        timestamp=STAMP,
        changes=["name", "department"],
        event="contact.changed",
        primary_key=994863,
        entity="contact",
        tenant="Cust1234",
        associate_id=5,
        webhook_name="My hook",
    )
    args.update(overrides)
    return args


def independent_hmac(key: str, message: bytes) -> str:
    return base64.b64encode(
        hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    ).decode()


# -- timestamps and names -------------------------------------------------------------------


def test_timestamp_has_seven_fraction_digits_and_z() -> None:
    moment = datetime(2018, 4, 24, 7, 50, 50, 681213, tzinfo=UTC)
    assert format_timestamp(moment) == "2018-04-24T07:50:50.6812130Z"


def test_timestamp_converts_to_utc_and_pads_zero_microseconds() -> None:
    oslo = timezone(timedelta(hours=2))
    assert (
        format_timestamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=oslo))
        == "2024-01-02T01:04:05.0000000Z"
    )
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5, 7)) == "2024-01-02T03:04:05.0000070Z"


def test_entity_is_the_part_before_the_first_dot() -> None:
    assert entity_of("contact.changed") == "contact"
    assert entity_of("sale.stage.changed") == "sale"
    assert entity_of("test") == "test"


# -- bodies ----------------------------------------------------------------------------------


def test_body_of_a_normal_event() -> None:
    assert build_body(**common()) == (
        b'{"EventId":"8d5fcd4c-0ba8-4c3b-9bd0-3cae1c9c4c0f","Timestamp":"2018-04-24T07:50:50.6812130Z",'
        b'"Changes":["name","department"],"Event":"contact.changed","PrimaryKey":994863,'
        b'"Entity":"contact","ContextIdentifier":"Cust1234","ChangedByAssociateId":5,'
        b'"WebhookName":"My hook"}'
    )


def test_body_of_a_delete_carries_values() -> None:
    body = build_body(
        **common(
            event="sale.deleted",
            entity="sale",
            changes=[],
            primary_key=1,
            values={"sale_id": 1, "contact_id": 43},
        )
    )
    assert body == (
        b'{"EventId":"8d5fcd4c-0ba8-4c3b-9bd0-3cae1c9c4c0f","Timestamp":"2018-04-24T07:50:50.6812130Z",'
        b'"Changes":[],"Values":{"sale_id":1,"contact_id":43},"Event":"sale.deleted",'
        b'"PrimaryKey":1,"Entity":"sale",'
        b'"ContextIdentifier":"Cust1234","ChangedByAssociateId":5,"WebhookName":"My hook"}'
    )


def test_body_with_field_values_and_properties_in_order_utf8() -> None:
    body = build_body(
        **common(
            changes=["name"],
            webhook_name="Kunde ÆØÅ",
            values={"contact_id": 994863},
            field_values={"name": "Bjørn", "n": None},
            properties={"zeta": 1, "alpha": {"nested": [True, 2.5]}},
        )
    )
    assert (
        body
        == (
            '{"EventId":"8d5fcd4c-0ba8-4c3b-9bd0-3cae1c9c4c0f","Timestamp":"2018-04-24T07:50:50.6812130Z",'
            '"Changes":["name"],"Values":{"contact_id":994863},"Event":"contact.changed",'
            '"PrimaryKey":994863,"Entity":"contact",'
            '"ContextIdentifier":"Cust1234","ChangedByAssociateId":5,"WebhookName":"Kunde ÆØÅ",'
            '"FieldValues":{"name":"Bjørn","n":null},'
            '"zeta":1,"alpha":{"nested":[true,2.5]}}'
        ).encode()
    )


def test_body_of_a_state_event_has_no_entity() -> None:
    body = build_body(
        **common(
            event="webhook.stopped",
            entity=None,
            changes=[],
            primary_key=7,
            field_values={"events": ["contact.created"], "state": 2},
        )
    )
    assert body == (
        b'{"EventId":"8d5fcd4c-0ba8-4c3b-9bd0-3cae1c9c4c0f","Timestamp":"2018-04-24T07:50:50.6812130Z",'
        b'"Changes":[],"Event":"webhook.stopped","PrimaryKey":7,"ContextIdentifier":"Cust1234",'
        b'"ChangedByAssociateId":5,"WebhookName":"My hook",'
        b'"FieldValues":{"events":["contact.created"],"state":2}}'
    )


def test_properties_may_not_replace_payload_fields() -> None:
    assert {"EventId", "Entity", "Values", "FieldValues"} <= PAYLOAD_FIELDS
    with pytest.raises(ValueError, match="EventId"):
        build_body(**common(properties={"EventId": "forged"}))


# -- signatures --------------------------------------------------------------------------------


def test_superoffice_signature_matches_an_independent_hmac() -> None:
    body = build_body(**common())
    assert sign(SECRET, body) == independent_hmac(SECRET, body)
    assert verify_signature(SECRET, body, independent_hmac(SECRET, body))
    assert not verify_signature(SECRET, body + b" ", independent_hmac(SECRET, body))
    assert not verify_signature("other", body, independent_hmac(SECRET, body))


def test_standard_signature_matches_an_independent_hmac() -> None:
    body = build_body(**common())
    expected = "v1," + independent_hmac(SECRET, b"msg_1.1700000000." + body)
    assert standard_signature(SECRET, "msg_1", 1700000000, body) == expected
    assert verify_standard_signature(SECRET, "msg_1", 1700000000, body, f"v1,bm9wZQ== {expected}")
    assert not verify_standard_signature(SECRET, "msg_1", 1700000001, body, expected)
    assert not verify_standard_signature(SECRET, "msg_1", 1700000000, body, "v2," + expected[3:])


def headers_for(body: bytes, **overrides: object) -> dict[str, str]:
    args: dict[str, object] = dict(
        event_header="contact.changed",
        event_id=EVENT_ID,
        retry=1,
        body=body,
        secret=SECRET,
        delivery_id="dlv_42",
        timestamp=int(time.time()),
        custom={"X-Tenant-Key": "abc"},
        user_agent="hookcast/0.1.0",
        standard_webhooks=True,
    )
    args.update(overrides)
    return build_headers(**args)  # type: ignore[arg-type]


def test_headers_in_contract_order_with_both_signatures() -> None:
    body = build_body(**common())
    stamp = int(time.time())
    headers = headers_for(body, timestamp=stamp)
    assert list(headers.items()) == [
        ("Content-Type", "application/json; charset=utf-8"),
        ("User-Agent", "hookcast/0.1.0"),
        ("X-SuperOffice-Event", "contact.changed"),
        ("X-SuperOffice-EventId", EVENT_ID),
        ("X-SuperOffice-Retry", "1"),
        ("X-SuperOffice-Signature", independent_hmac(SECRET, body)),
        ("webhook-id", "dlv_42"),
        ("webhook-timestamp", str(stamp)),
        ("webhook-signature", "v1," + independent_hmac(SECRET, f"dlv_42.{stamp}.".encode() + body)),
        ("X-Tenant-Key", "abc"),
    ]
    # A Standard Webhooks receiver library accepts them as sent.
    receiver = Webhook("whsec_" + base64.b64encode(SECRET.encode("utf-8")).decode())
    assert receiver.verify(body, headers)["EventId"] == EVENT_ID
    with pytest.raises(WebhookVerificationError):
        receiver.verify(body + b" ", headers)


def test_headers_without_secret_carry_no_signatures() -> None:
    headers = headers_for(b"{}", secret=None, custom=None, test=True)
    assert list(headers) == [
        "Content-Type",
        "User-Agent",
        "X-SuperOffice-Event",
        "X-SuperOffice-EventId",
        "X-SuperOffice-Retry",
        "X-Hook-Test",
    ]
    assert headers["X-Hook-Test"] == "true"


def test_standard_webhooks_headers_can_be_turned_off() -> None:
    headers = headers_for(b"{}", standard_webhooks=False)
    assert "X-SuperOffice-Signature" in headers
    assert not [name for name in headers if name.startswith("webhook-")]
