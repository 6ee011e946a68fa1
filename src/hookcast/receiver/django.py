"""The Django adapter: a view decorator that calls the view with the verified `Delivery`.

    @webhook_view(WebhookReceiver(SECRET))
    def hook(request, delivery): ...

The view is CSRF-exempt (the signature is what authenticates the sender) and takes POST
only. A refused request never reaches it: 401 (signature, replay window) or 400 (body)
with SuperOffice's error shape. A duplicate is answered `duplicate_status` (200 by default,
so the sender stops retrying) without calling the view. When the view raises or answers
other than 2xx, the delivery is released so the sender's retry is handled. Synchronous
views only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import (  # type: ignore[import-untyped]
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from ._core import WebhookReceiver
from .errors import DuplicateDelivery, ReceiverError, error_body

__all__ = ["webhook_view"]

View = Callable[..., Any]


def webhook_view(
    receiver: WebhookReceiver, *, duplicate_status: int = 200
) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @csrf_exempt  # type: ignore[untyped-decorator]
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            try:
                delivery = receiver.accept(request.body, request.headers)
            except DuplicateDelivery as exc:
                return JsonResponse(error_body(exc), status=duplicate_status)
            except ReceiverError as exc:
                return JsonResponse(error_body(exc), status=exc.status_code)
            try:
                response = view(request, delivery, *args, **kwargs)
            except BaseException:
                receiver.release(delivery)
                raise
            if not 200 <= response.status_code < 300:
                receiver.release(delivery)
            return response

        return wrapper  # type: ignore[no-any-return]

    return decorate
