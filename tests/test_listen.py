"""`hookcast listen` and `hookcast serve --dev` as real processes: the serve delivers to the
listener over HTTPS with the dev CA's certificate, the listener prints and verifies each
delivery and forwards it to a real plain-HTTP app, whose answer hookcast records."""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from support.processes import HookcastProcess, create_key, free_port, tail

from hookcast.devca import dev_settings, ensure_dev_ca
from hookcast.receiver import WebhookReceiver
from hookcast.settings import Settings

pytestmark = pytest.mark.slow  # several processes each

SECRET = "listen secret for the test"
DEADLINE = 60.0  # polled; only bounds a wait (process starts take long on a loaded machine)


class App:
    """A plain-HTTP application on loopback (what --forward points at): records each POST
    and answers 201 with a JSON body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, dict(self.headers.items()), body))
                answer = json.dumps({"app": "got it"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-App", "yes")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def app() -> Iterator[App]:
    started = App()
    yield started
    started.stop()


def environment(tmp_path: Path) -> dict[str, str]:
    src = str(Path(__file__).resolve().parent.parent / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, *sys.path]),
        "HOOKCAST_DEV_CA_DIR": str(tmp_path / "dev-ca"),
        "HOOKCAST_DATABASE_URL": f"sqlite:///{tmp_path / 'hookcast.db'}",
        "HOOKCAST_RETRY_DELAYS": "0.1,0.2",
        "HOOKCAST_POLL_INTERVAL": "0.2",
        "COLUMNS": "200",
    }


def wait_for_text(process: HookcastProcess, text: str) -> str:
    end = time.monotonic() + DEADLINE
    while True:
        log = process.log.read_text(errors="replace")
        if text in log:
            return log
        if process.proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"{process.name} never printed {text!r}:\n{tail(process.log, 80)}")
        time.sleep(0.05)


def started_serve(
    tmp_path: Path, env: dict[str, str], processes: dict[str, HookcastProcess], *args: str
) -> tuple[HookcastProcess, str]:
    key = create_key(env["HOOKCAST_DATABASE_URL"], tmp_path, "Cust1234", "dev")
    port = free_port()
    serve = HookcastProcess(
        tmp_path, env, "serve", ["serve", *args, "--host", "127.0.0.1", "--port", str(port)],
        port=port,
    )  # fmt: skip
    processes["serve"] = serve
    serve.wait_ready(key, DEADLINE)
    return serve, key


def test_serve_dev_delivers_to_listen_which_forwards_to_the_app(
    tmp_path: Path, processes: dict[str, HookcastProcess], app: App
) -> None:
    env = environment(tmp_path)
    serve, key = started_serve(tmp_path, env, processes, "--dev")
    assert "DEVELOPMENT MODE (--dev)" in wait_for_text(serve, "DEVELOPMENT MODE")
    listen = HookcastProcess(
        tmp_path, env, "listen",
        ["listen", "--register", "contact.changed,contact.deleted", "--url", serve.url,
         "--key", key, "--secret", SECRET, "--forward", f"http://127.0.0.1:{app.port}/hooks/crm"],
    )  # fmt: skip
    processes["listen"] = listen
    log = wait_for_text(listen, "Ready.")
    assert "Registered webhook 1 for contact.changed, contact.deleted" in log
    assert "(test event)" in log  # the registration's test POST reached it, verified
    auth = {"Authorization": f"Bearer {key}"}
    [hook] = httpx.get(f"{serve.url}/api/v1/Webhook", headers=auth).json()
    assert hook["TargetUrl"].startswith("https://127.0.0.1:")

    signalled = httpx.post(
        f"{serve.url}/api/v1/Webhook/contact.changed/994863", headers=auth, json={"name": "Ada"}
    )
    assert signalled.status_code == 204, signalled.text
    end = time.monotonic() + DEADLINE
    while not [r for r in app.requests if "X-Hook-Test" not in r[1]]:
        assert time.monotonic() < end, tail(listen.log, 80)
        time.sleep(0.05)
    [(path, headers, body)] = [r for r in app.requests if "X-Hook-Test" not in r[1]]
    # Forwarded as sent: the exact body and the signatures still verify at the app.
    assert path == "/hooks/crm"
    delivery = WebhookReceiver(SECRET).verify(body, headers)
    assert (delivery.event, delivery.primary_key, delivery.field_values) == (
        "contact.changed", 994863, {"name": "Ada"},
    )  # fmt: skip
    # The listener's printout: the event, the ids, the verdict, the body pretty-printed,
    # and the app's answer.
    log = wait_for_text(listen, "201 Created")
    assert f"webhook-id {delivery.delivery_id}" in log
    assert f"EventId {delivery.event_id}" in log
    assert "signature: verified (X-SuperOffice-Signature, webhook-signature)" in log
    assert '  "PrimaryKey": 994863,' in log and '"name": "Ada"' in log
    # hookcast got the app's answer back through the listener.
    end = time.monotonic() + DEADLINE
    while True:
        page = httpx.get(f"{serve.url}/api/v1/Webhook/1/Deliveries", headers=auth).json()
        if page["Items"]:
            break
        assert time.monotonic() < end, page
        time.sleep(0.05)
    assert page["Items"][0]["HttpStatus"] == 201 and page["Items"][0]["Outcome"] == "success"

    # The app's answer is relayed as it is: status, headers, body.
    port = int(log.split("https://127.0.0.1:")[1].split("/")[0])
    dev_ca = ssl.create_default_context(cafile=str(tmp_path / "dev-ca" / "ca.pem"))
    direct = httpx.post(f"https://localhost:{port}/", verify=dev_ca, content=b"{}")
    assert (direct.status_code, direct.headers["X-App"], direct.json()) == (
        201, "yes", {"app": "got it"},
    )  # fmt: skip

    # On exit the listener deletes the webhook it registered.
    listen.stop_or_kill(signal.SIGINT, DEADLINE)
    assert listen.proc.returncode == 0, tail(listen.log)
    assert "Deleted webhook 1." in listen.log.read_text()
    assert httpx.get(f"{serve.url}/api/v1/Webhook", headers=auth).json() == []


def test_a_bad_signature_is_shown_and_a_dead_app_is_a_502(
    tmp_path: Path, processes: dict[str, HookcastProcess]
) -> None:
    env = environment(tmp_path)
    listen = HookcastProcess(
        tmp_path, env, "listen",
        ["listen", "--secret", SECRET, "--forward", "http://127.0.0.1:9/nothing-here"],
    )  # fmt: skip
    processes["listen"] = listen
    log = wait_for_text(listen, "Ready.")
    port = int(log.split("https://127.0.0.1:")[1].split("/")[0])
    context = ssl.create_default_context(cafile=str(tmp_path / "dev-ca" / "ca.pem"))
    answer = httpx.post(
        f"https://localhost:{port}/x", verify=context, content=b'{"Event": "x"}',
        headers={"X-SuperOffice-Signature": "AAAA", "X-SuperOffice-Event": "contact.changed"},
    )  # fmt: skip
    assert answer.status_code == 502 and "could not forward" in answer.text
    log = wait_for_text(listen, "NOT verified")
    assert "X-SuperOffice-Signature does not match the body" in log


def test_a_worker_with_dev_delivers_to_what_serve_dev_registered(
    tmp_path: Path, processes: dict[str, HookcastProcess]
) -> None:
    """`serve --dev` beside `worker --dev` (HOOKCAST_DEV=1 for both): a worker without dev
    mode refused the listener's loopback target, so each delivery it claimed failed until
    the serve happened to claim it."""
    env = {**environment(tmp_path), "HOOKCAST_DEV": "1"}
    serve, key = started_serve(tmp_path, env, processes)
    listen = HookcastProcess(
        tmp_path, env, "listen",
        ["listen", "--register", "contact.changed", "--url", serve.url, "--key", key,
         "--secret", SECRET],
    )  # fmt: skip
    processes["listen"] = listen
    wait_for_text(listen, "Ready.")
    serve.proc.send_signal(signal.SIGTERM)  # from here on only the worker delivers
    serve.proc.wait(timeout=DEADLINE)
    worker = HookcastProcess(tmp_path, env, "worker", ["worker"])
    processes["worker"] = worker
    assert "DEVELOPMENT MODE (--dev)" in wait_for_text(worker, "hookcast worker delivering")

    signalled = HookcastProcess(
        tmp_path, env, "signal",
        ["signal", "contact.changed", "994863", "--tenant", "Cust1234", "--data", '{"name": "Ada"}'],
    )  # fmt: skip
    assert signalled.proc.wait(timeout=DEADLINE) == 0, tail(signalled.log)
    log = wait_for_text(listen, '"PrimaryKey": 994863')
    assert "signature: verified (X-SuperOffice-Signature, webhook-signature)" in log
    assert "target refused" not in worker.log.read_text()


def test_register_without_dev_mode_is_refused_and_says_why(
    tmp_path: Path, processes: dict[str, HookcastProcess]
) -> None:
    env = environment(tmp_path)
    serve, key = started_serve(tmp_path, env, processes)
    listen = HookcastProcess(
        tmp_path, env, "listen", ["listen", "--register", "contact.changed", "--url", serve.url,
                                  "--key", key],
    )  # fmt: skip
    processes["listen"] = listen
    assert listen.proc.wait(timeout=DEADLINE) == 1
    log = listen.log.read_text()
    assert "Registration refused (400)" in log and "hookcast serve --dev" in log


def test_register_needs_a_key(tmp_path: Path, processes: dict[str, HookcastProcess]) -> None:
    env = {k: v for k, v in environment(tmp_path).items() if k != "HOOKCAST_API_KEY"}
    listen = HookcastProcess(tmp_path, env, "listen", ["listen", "--register", "contact.changed"])
    processes["listen"] = listen
    assert listen.proc.wait(timeout=DEADLINE) == 2
    assert "API key" in listen.log.read_text()


def test_the_dev_ca_is_made_once_and_reused(tmp_path: Path) -> None:
    first = ensure_dev_ca(tmp_path / "ca")
    ca_pem, cert_pem = first.ca_cert.read_bytes(), first.cert.read_bytes()
    again = ensure_dev_ca(tmp_path / "ca")
    assert (again.ca_cert.read_bytes(), again.cert.read_bytes()) == (ca_pem, cert_pem)
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"
    assert oct(first.ca_key.stat().st_mode & 0o777) == "0o600"
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(first.cert, first.key)  # the key belongs to the certificate
    # A lost server certificate is issued again by the same CA.
    first.cert.unlink()
    renewed = ensure_dev_ca(tmp_path / "ca")
    assert renewed.ca_cert.read_bytes() == ca_pem and renewed.cert.read_bytes() != cert_pem


def test_dev_settings_keep_what_was_configured(tmp_path: Path, ca_bundle_path: str) -> None:
    ca = ensure_dev_ca(tmp_path / "ca")
    plain = dev_settings(Settings(), ca)
    assert plain.ca_bundle == str(ca.ca_cert)
    assert [str(n) for n in plain.allow_targets] == ["127.0.0.0/8", "::1/128"]
    configured = dev_settings(
        Settings(ca_bundle=ca_bundle_path, allow_targets=["10.0.0.0/8", "127.0.0.0/8"]), ca
    )
    bundle = Path(configured.ca_bundle or "").read_bytes()
    assert Path(ca_bundle_path).read_bytes() in bundle and ca.ca_cert.read_bytes() in bundle
    assert [str(n) for n in configured.allow_targets] == ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
