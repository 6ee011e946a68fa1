"""The FastAPI adapter: a dependency that yields the verified `Delivery`.

    hook = webhook_dependency(WebhookReceiver(SECRET))

    @app.post("/hook")
    async def handle(delivery: Annotated[Delivery, Depends(hook)]) -> dict[str, str]: ...

A refused request never reaches the endpoint: 401 (signature, replay window) or 400 (body)
with `{"detail": <SuperOffice's error shape>}`. A duplicate is answered `duplicate_status`
(200 by default, so the sender stops retrying) without running the endpoint. When the
endpoint raises, the delivery is released so the sender's retry is handled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import HTTPException, Request

from ._core import WebhookReceiver
from ._delivery import Delivery
from .errors import DuplicateDelivery, ReceiverError, error_body

__all__ = ["webhook_dependency"]


def webhook_dependency(
    receiver: WebhookReceiver, *, duplicate_status: int = 200
) -> Callable[[Request], AsyncIterator[Delivery]]:
    async def dependency(request: Request) -> AsyncIterator[Delivery]:
        body = await request.body()  # the exact bytes: the signatures are over them
        try:
            delivery = receiver.accept(body, request.headers)
        except DuplicateDelivery as exc:
            # An HTTPException is the one way a dependency can answer for the endpoint.
            raise HTTPException(duplicate_status, detail=error_body(exc)) from None
        except ReceiverError as exc:
            raise HTTPException(exc.status_code, detail=error_body(exc)) from None
        try:
            yield delivery
        except BaseException:
            receiver.release(delivery)
            raise

    return dependency
