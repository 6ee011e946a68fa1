"""The Flask adapter: a decorator that calls the view with the verified `Delivery`.

    @app.post("/hook")
    @webhook_handler(WebhookReceiver(SECRET))
    def hook(delivery: Delivery): ...

A refused request never reaches the view: 401 (signature, replay window) or 400 (body)
with SuperOffice's error shape. A duplicate is answered `duplicate_status` (200 by default,
so the sender stops retrying) without calling the view. When the view raises or answers
other than 2xx, the delivery is released so the sender's retry is handled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from flask import Response, jsonify, make_response, request
from flask.typing import ResponseReturnValue

from ._core import WebhookReceiver
from ._delivery import Delivery
from .errors import DuplicateDelivery, ReceiverError, error_body

__all__ = ["webhook_handler"]

P = ParamSpec("P")


def webhook_handler(
    receiver: WebhookReceiver, *, duplicate_status: int = 200
) -> Callable[[Callable[Concatenate[Delivery, P], ResponseReturnValue]], Callable[P, Response]]:
    def decorate(
        view: Callable[Concatenate[Delivery, P], ResponseReturnValue],
    ) -> Callable[P, Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                delivery = receiver.accept(request.get_data(), request.headers)
            except DuplicateDelivery as exc:
                return _answer(error_body(exc), duplicate_status)
            except ReceiverError as exc:
                return _answer(error_body(exc), exc.status_code)
            try:
                response = make_response(view(delivery, *args, **kwargs))
            except BaseException:
                receiver.release(delivery)
                raise
            if not 200 <= response.status_code < 300:
                receiver.release(delivery)
            return response

        return wrapper

    return decorate


def _answer(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
