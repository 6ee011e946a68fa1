"""Receiving hookcast's (and SuperOffice's) webhooks: verify both signatures and the replay
window, parse the §3 body into a `Delivery`, de-duplicate by `webhook-id`.

    receiver = WebhookReceiver("Something Super Secret")
    delivery = receiver.accept(body, headers)   # raises a ReceiverError subclass

Adapters: `hookcast.receiver.fastapi.webhook_dependency`, `hookcast.receiver.django.webhook_view`,
`hookcast.receiver.flask.webhook_handler`. This package imports none of the frameworks.
"""

from ._core import Headers, Scheme, WebhookReceiver
from ._delivery import Delivery, parse_delivery
from .dedup import DedupStore, MemoryDedupStore
from .errors import (
    DuplicateDelivery,
    PayloadInvalid,
    ReceiverError,
    SignatureInvalid,
    TimestampInvalid,
)

__all__ = [
    "DedupStore",
    "Delivery",
    "DuplicateDelivery",
    "Headers",
    "MemoryDedupStore",
    "PayloadInvalid",
    "ReceiverError",
    "Scheme",
    "SignatureInvalid",
    "TimestampInvalid",
    "WebhookReceiver",
    "parse_delivery",
]
