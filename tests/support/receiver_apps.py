"""Receivers written with hookcast.receiver's adapters, served over real HTTPS on loopback:
FastAPI under uvicorn and Flask under werkzeug in threads, Django under werkzeug in a
subprocess of its own (Django's settings are global to a process).

Each app serves POST /hook (a `WebhookReceiver` for SECRET) and POST /late (the same, with
its clock an hour ahead: every real delivery is stale there). The handler records what it
got; an event named `contact.flaky` fails the first time each delivery reaches it, so the
sender's retry of the same delivery must be handled once released.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import trustme
from fastapi import Depends, FastAPI, Request

from hookcast.receiver import Delivery

HERE = Path(__file__).resolve().parent
LATE = 3600.0  # seconds the /late receiver's clock is ahead
FLAKY = "contact.flaky"


@dataclass
class Handled:
    """What a handler got: the Delivery's fields and the request as sent (for replays)."""

    route: str
    failed: bool
    event: str
    event_id: str
    primary_key: int
    changes: list[str]
    values: dict[str, Any] | None
    field_values: dict[str, Any] | None
    properties: dict[str, Any]
    entity: str | None
    tenant: str
    associate_id: int
    webhook_name: str
    delivery_id: str | None
    test: bool
    retry: int
    timestamp: str
    headers: dict[str, str]
    body: str  # base64 of the exact bytes


class Recorder:
    """The handlers' shared logic: record, and fail each flaky delivery once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path  # JSON lines, when the handler runs in another process
        self._records: list[Handled] = []
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def handle(self, route: str, delivery: Delivery, headers: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            fail = delivery.event == FLAKY and delivery.dedup_key not in self._failed
            if fail:
                self._failed.add(delivery.dedup_key)
            record = Handled(
                route=route,
                failed=fail,
                event=delivery.event,
                event_id=delivery.event_id,
                primary_key=delivery.primary_key,
                changes=delivery.changes,
                values=delivery.values,
                field_values=delivery.field_values,
                properties=delivery.properties,
                entity=delivery.entity,
                tenant=delivery.context_identifier,
                associate_id=delivery.changed_by_associate_id,
                webhook_name=delivery.webhook_name,
                delivery_id=delivery.delivery_id,
                test=delivery.test,
                retry=delivery.retry,
                timestamp=delivery.timestamp.isoformat(),
                headers={k.lower(): v for k, v in headers.items()},
                body=base64.b64encode(delivery.body).decode(),
            )
            self._records.append(record)
            if self.path is not None:
                with self.path.open("a") as out:
                    out.write(json.dumps(asdict(record)) + "\n")
        if fail:
            raise RuntimeError(f"{FLAKY} fails the first time (a test of release)")
        return {"handled": delivery.event}

    def records(self) -> list[Handled]:
        with self._lock:
            return list(self._records)


def read_records(path: Path) -> list[Handled]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [Handled(**json.loads(line)) for line in lines if line.endswith("}")]


def cert_files(cert: trustme.LeafCert, directory: Path) -> tuple[str, str]:
    """The leaf's certificate chain and key as PEM files: (certfile, keyfile)."""
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


class AppReceiver(Protocol):
    name: str
    port: int

    def records(self) -> list[Handled]: ...

    def stop(self) -> None: ...


def url(app: AppReceiver, route: str = "/hook") -> str:
    return f"https://127.0.0.1:{app.port}{route}"


# -- FastAPI -----------------------------------------------------------------------------------


class FastAPIApp:
    name = "fastapi"

    def __init__(self, cert: trustme.LeafCert, secret: str, workdir: Path) -> None:
        import uvicorn

        from hookcast.receiver import WebhookReceiver
        from hookcast.receiver.fastapi import webhook_dependency

        self._recorder = Recorder()
        hook = webhook_dependency(WebhookReceiver(secret))
        late = webhook_dependency(WebhookReceiver(secret, clock=lambda: time.time() + LATE))
        app = FastAPI()
        recorder = self._recorder

        @app.post("/hook")
        async def handle(
            request: Request, delivery: Annotated[Delivery, Depends(hook)]
        ) -> dict[str, Any]:
            return recorder.handle("/hook", delivery, dict(request.headers))

        @app.post("/late")
        async def handle_late(
            request: Request, delivery: Annotated[Delivery, Depends(late)]
        ) -> dict[str, Any]:
            return recorder.handle("/late", delivery, dict(request.headers))

        certfile, keyfile = cert_files(cert, workdir / "fastapi-tls")
        with socket_on_loopback() as (sock, port):
            self.port = port
            config = uvicorn.Config(
                app, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level="warning"
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
            )
            self._thread.start()
            deadline = time.monotonic() + 20
            while not self._server.started:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    raise AssertionError("uvicorn did not start")
                time.sleep(0.01)

    def records(self) -> list[Handled]:
        return self._recorder.records()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class socket_on_loopback:
    """A listening TCP socket on 127.0.0.1 and a free port (no race for the port)."""

    def __enter__(self) -> tuple[Any, int]:
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        return self.sock, self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass  # the server owns the socket from here


# -- Flask -------------------------------------------------------------------------------------


class FlaskApp:
    name = "flask"

    def __init__(self, cert: trustme.LeafCert, secret: str, workdir: Path) -> None:
        import ssl

        from flask import Flask, request
        from werkzeug.serving import make_server

        from hookcast.receiver import WebhookReceiver
        from hookcast.receiver.flask import webhook_handler

        from .flask_receiver import _QuietHandler

        self._recorder = recorder = Recorder()
        app = Flask(__name__)

        @app.post("/hook")
        @webhook_handler(WebhookReceiver(secret))
        def hook(delivery: Delivery) -> dict[str, Any]:
            return recorder.handle("/hook", delivery, dict(request.headers))

        @app.post("/late")
        @webhook_handler(WebhookReceiver(secret, clock=lambda: time.time() + LATE))
        def late(delivery: Delivery) -> dict[str, Any]:
            return recorder.handle("/late", delivery, dict(request.headers))

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, ssl_context=context, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def records(self) -> list[Handled]:
        return self._recorder.records()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# -- Django (a process of its own) ---------------------------------------------------------------


class DjangoApp:
    name = "django"

    def __init__(self, cert: trustme.LeafCert, secret: str, workdir: Path) -> None:
        certfile, keyfile = cert_files(cert, workdir / "django-tls")
        self._records = workdir / "django-records.jsonl"
        self._log = (workdir / "django.log").open("wb")
        port_file = workdir / "django.port"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "django_receiver.py"), certfile, keyfile, secret,
             str(self._records), str(port_file)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().endswith("\n"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "the Django receiver did not start:\n" + (workdir / "django.log").read_text()
                )
            time.sleep(0.02)
        self.port = int(port_file.read_text())

    def records(self) -> list[Handled]:
        return read_records(self._records)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._log.close()


APPS = {"fastapi": FastAPIApp, "flask": FlaskApp, "django": DjangoApp}
