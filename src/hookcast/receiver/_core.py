"""`WebhookReceiver`: verify a request's signatures and replay window, parse its body,
and de-duplicate it. Framework-free; the adapters (fastapi, django, flask) are thin."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol

from ..payload import verify_signature, verify_standard_signature
from ._delivery import Delivery, parse_delivery
from .dedup import DedupStore, MemoryDedupStore
from .errors import DuplicateDelivery, SignatureInvalid, TimestampInvalid

__all__ = ["Headers", "Scheme", "WebhookReceiver"]

Scheme = Literal["superoffice", "standard"]
SCHEMES: tuple[Scheme, ...] = ("superoffice", "standard")


class Headers(Protocol):
    """Anything with `.items()` of name/value pairs: a dict, Starlette's, Werkzeug's or
    Django's headers."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class WebhookReceiver:
    """Checks hookcast's (and SuperOffice's) deliveries for one Secret, or several while
    one is being rotated.

    `require` names the signatures a request must carry: both by default, as hookcast sends
    them; `("superoffice",)` for SuperOffice itself, which signs only X-SuperOffice-Signature.
    A signature present but not required is still checked. With Standard Webhooks headers,
    `webhook-timestamp` must be within `tolerance` seconds of `clock()` either way.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        require: Collection[Scheme] = SCHEMES,
        tolerance: float = 300.0,
        deduplicate: bool = True,
        store: DedupStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        if not self._secrets or not all(self._secrets):
            raise ValueError("a receiver needs the webhook's Secret")
        unknown = set(require) - set(SCHEMES)
        if unknown:
            raise ValueError(f"unknown signature schemes {sorted(unknown)}; known: {SCHEMES}")
        if not require:
            raise ValueError("require at least one signature scheme")
        self.require = frozenset(require)
        self.tolerance = tolerance
        self.store: DedupStore | None = (
            (store if store is not None else MemoryDedupStore()) if deduplicate else None
        )
        self._clock = clock

    # -- the steps ---------------------------------------------------------------------------

    def verify(self, body: bytes, headers: Headers) -> Delivery:
        """The signatures, the replay window and the body: a `Delivery`, or raises
        SignatureInvalid, TimestampInvalid or PayloadInvalid. Does not de-duplicate."""
        lowered = {name.lower(): value for name, value in headers.items()}
        self._check_superoffice(body, lowered)
        self._check_standard(body, lowered)
        return parse_delivery(body, lowered)

    def accept(self, body: bytes, headers: Headers) -> Delivery:
        """`verify`, then claim the delivery in the store: raises DuplicateDelivery for one
        already accepted. Call `release` if handling it fails, so a retry is handled."""
        delivery = self.verify(body, headers)
        if self.store is not None and not self.store.claim(delivery.dedup_key):
            raise DuplicateDelivery(f"delivery {delivery.dedup_key} was already accepted", delivery)
        return delivery

    def release(self, delivery: Delivery) -> None:
        """Forget an accepted delivery whose handling failed."""
        if self.store is not None:
            self.store.release(delivery.dedup_key)

    @contextmanager
    def receive(self, body: bytes, headers: Headers) -> Iterator[Delivery]:
        """`with receiver.receive(body, headers) as delivery:` accepts it, and releases it
        when the block raises."""
        delivery = self.accept(body, headers)
        try:
            yield delivery
        except BaseException:
            self.release(delivery)
            raise

    # -- the checks ----------------------------------------------------------------------------

    def _check_superoffice(self, body: bytes, headers: dict[str, str]) -> None:
        signature = headers.get("x-superoffice-signature")
        if signature is None:
            if "superoffice" in self.require:
                raise SignatureInvalid("missing X-SuperOffice-Signature")
            return
        if not any(verify_signature(secret, body, signature) for secret in self._secrets):
            raise SignatureInvalid("X-SuperOffice-Signature does not match the body")

    def _check_standard(self, body: bytes, headers: dict[str, str]) -> None:
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if msg_id is None and stamp is None and signature is None:
            if "standard" in self.require:
                raise SignatureInvalid(
                    "missing the Standard Webhooks headers (webhook-id, webhook-timestamp, "
                    "webhook-signature)"
                )
            return
        if not msg_id or not stamp or not signature:
            raise SignatureInvalid(
                "webhook-id, webhook-timestamp and webhook-signature must come together"
            )
        try:
            timestamp = int(stamp)
        except ValueError:
            raise TimestampInvalid(f"webhook-timestamp is not a number: {stamp!r}") from None
        age = self._clock() - timestamp
        if abs(age) > self.tolerance:
            when = "old" if age > 0 else "in the future"
            raise TimestampInvalid(
                f"webhook-timestamp is {abs(age):.0f} s {when}, outside the replay window "
                f"of {self.tolerance:.0f} s"
            )
        if not any(
            verify_standard_signature(secret, msg_id, timestamp, body, signature)
            for secret in self._secrets
        ):
            raise SignatureInvalid("webhook-signature does not match the body")
