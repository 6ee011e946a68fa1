"""A Django project in one file, for tests/test_receiver_adapters.py: views decorated with
hookcast.receiver.django.webhook_view, served over HTTPS by werkzeug.

Arguments: certfile keyfile secret records-file port-file. Writes the port (and a newline)
to the port file once it listens; runs until SIGTERM.
"""

from __future__ import annotations

import signal
import ssl
import sys
import time
from pathlib import Path

import django
from django.conf import settings

certfile, keyfile, secret, records_path, port_path = sys.argv[1:6]

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from hookcast.receiver import WebhookReceiver  # noqa: E402
from hookcast.receiver.django import webhook_view  # noqa: E402
from support.receiver_apps import LATE, Recorder  # noqa: E402

recorder = Recorder(Path(records_path))


@webhook_view(WebhookReceiver(secret))
def hook(request, delivery):
    return JsonResponse(recorder.handle("/hook", delivery, dict(request.headers)))


@webhook_view(WebhookReceiver(secret, clock=lambda: time.time() + LATE))
def late(request, delivery):
    return JsonResponse(recorder.handle("/late", delivery, dict(request.headers)))


urlpatterns = [path("hook", hook), path("late", late)]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(certfile, keyfile)
server = make_server(
    "127.0.0.1", 0, get_wsgi_application(), threaded=True, ssl_context=context,
    request_handler=QuietHandler,
)  # fmt: skip
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
Path(port_path).write_text(f"{server.server_port}\n")
server.serve_forever()
