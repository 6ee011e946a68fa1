"""A webhook receiver as a Flask user writes one: every request verified with ONLY the PyPI
`svix` and `standardwebhooks` libraries and an X-SuperOffice-Signature check written from the
documented algorithm. Served by werkzeug's `make_server` over HTTPS in a thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
import threading
from collections.abc import Callable
from typing import Any

import trustme
from flask import Flask, request
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from support.verifying_receivers import Record, Verdict, secrets_config


def check_superoffice_signature(secret: str, body: bytes, header: str | None) -> None:
    """X-SuperOffice-Signature: base64(HMAC-SHA256(key = Secret as UTF-8, message = body))."""
    if not header:
        raise ValueError("missing X-SuperOffice-Signature")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, header.encode()):
        raise ValueError("X-SuperOffice-Signature does not match the body")


def _verdict(check: Callable[[], Any]) -> Verdict:
    try:
        check()
    except Exception as exc:  # any refusal is the verdict, whatever the library raises
        return Verdict(False, str(exc))
    return Verdict(True, None)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request on stderr is noise in test output


class FlaskReceiver:
    def __init__(self, cert: trustme.LeafCert, secrets: dict[str, str]) -> None:
        self._records: list[Record] = []
        self._lock = threading.Lock()
        # Built once, as a user would: a secret a library refuses fails here.
        self._verifiers = {
            kind: (
                forms["secret"],
                StandardWebhook(forms["standard"]),
                SvixWebhook(forms["standard"]),
            )
            for kind, forms in secrets_config(secrets).items()
        }
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1",
            0,
            self._app(),
            threaded=True,
            ssl_context=context,
            request_handler=_QuietHandler,
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _app(self) -> Flask:
        app = Flask(__name__)

        @app.route("/hook/<kind>/<run>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def hook(kind: str, run: str) -> tuple[dict[str, Any], int]:
            if kind not in self._verifiers:
                return {"error": "no such kind"}, 404
            secret, standard, svix = self._verifiers[kind]
            body = request.get_data()  # the exact bytes: the signatures are over them
            # Flask's own headers object, passed as the libraries' docs show (their
            # annotations say dict; they only call .items()).
            headers: Any = request.headers
            verdicts = {
                "standardwebhooks": _verdict(lambda: standard.verify(body, headers)),
                "svix": _verdict(lambda: svix.verify(body, headers)),
                "x-superoffice-signature": _verdict(
                    lambda: check_superoffice_signature(
                        secret, body, request.headers.get("X-SuperOffice-Signature")
                    )
                ),
            }
            status = 200 if all(v.ok for v in verdicts.values()) else 401
            record = Record(
                path=request.path,
                event=request.headers.get("X-SuperOffice-Event"),
                test=request.headers.get("X-Hook-Test"),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                verdicts=verdicts,
                status=status,
            )
            with self._lock:
                self._records.append(record)
            return {name: {"ok": v.ok, "error": v.error} for name, v in verdicts.items()}, status

        return app

    def start(self) -> FlaskReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()  # returns once serve_forever has stopped
        self._server.server_close()
        self._thread.join(timeout=10)

    def url(self, kind: str, run: str) -> str:
        return f"https://127.0.0.1:{self.port}/hook/{kind}/{run}"

    async def records(self, prefix: str) -> list[Record]:
        with self._lock:
            return [r for r in self._records if r.path.startswith(prefix)]
