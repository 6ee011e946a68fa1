"""Receivers that verify hookcast's deliveries with only the libraries users run, and what
they record. The Node one (tests/node/verify_receiver.cjs: npm `standardwebhooks`, npm
`svix`, node's crypto) runs as a subprocess; the Python one is in support.flask_receiver.

Both serve POST /hook/<kind>/<run>: <kind> names a Secret given at start, <run> keeps one
test's records apart from another's on a receiver shared by the module. Every such request
is checked by each verifier and answered 200 when all accept it, else 401.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import trustme

from hookcast import standard_webhooks_secret

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
NODE_SCRIPT = "verify_receiver.cjs"
# The names the receivers record their verdicts under.
VERIFIERS = ("standardwebhooks", "svix", "x-superoffice-signature")
START_TIMEOUT = 20.0  # node's start-up on a loaded 2-core machine; polled, not slept
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Verdict:
    ok: bool
    error: str | None


@dataclass(frozen=True)
class Record:
    """One request a verifying receiver got, and what each verifier said of it."""

    path: str
    event: str | None  # X-SuperOffice-Event
    test: str | None  # X-Hook-Test
    headers: dict[str, str]  # names lower-cased
    body: bytes
    verdicts: dict[str, Verdict]
    status: int  # what the receiver answered

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            path=data["path"],
            event=data["event"],
            test=data["test"],
            headers={k.lower(): v for k, v in data["headers"].items()},
            body=base64.b64decode(data["body"]),
            verdicts={name: Verdict(v["ok"], v["error"]) for name, v in data["verdicts"].items()},
            status=data["status"],
        )


class VerifyingReceiver(Protocol):
    def url(self, kind: str, run: str) -> str: ...

    async def records(self, prefix: str) -> list[Record]: ...


def secrets_config(secrets: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per kind: the Secret itself (X-SuperOffice-Signature) and the form the Standard
    Webhooks libraries take, from hookcast's helper as the README tells users."""
    return {
        kind: {"secret": secret, "standard": standard_webhooks_secret(secret)}
        for kind, secret in secrets.items()
    }


class NodeReceiver:
    """`node tests/node/verify_receiver.cjs` on 127.0.0.1 and a port it picks itself (port 0,
    read back from its readiness line: no window in which another process could take it)."""

    def __init__(
        self, workdir: Path, cert: trustme.LeafCert, ca_bundle: str, secrets: dict[str, str]
    ) -> None:
        self._workdir = workdir
        self._cert = cert
        self._secrets = secrets
        self._ca = ssl.create_default_context(cafile=ca_bundle)
        self._stdout = workdir / "node-receiver.out"
        self._stderr = workdir / "node-receiver.err"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeReceiver:
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules" / "svix").is_dir():
            raise RuntimeError(
                f"needs node and the pinned packages: cd {NODE_DIR} && npm ci (make test does it)"
            )
        key, chain = self._workdir / "receiver-key.pem", self._workdir / "receiver-cert.pem"
        self._cert.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in self._cert.cert_chain_pems))
        config = self._workdir / "receiver.json"
        # The Secrets go in a file only this user can read, not on the command line.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(
                {"key": str(key), "cert": str(chain), "secrets": secrets_config(self._secrets)},
                out,
            )
        # Output goes to files: a pipe nobody reads could fill up and block the receiver.
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self._proc = subprocess.Popen(
                [node, NODE_SCRIPT, str(config)], cwd=NODE_DIR, stdout=out, stderr=err
            )
        self.port = self._wait_ready()
        return self

    def _wait_ready(self) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for line in self._stdout.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    ready = json.loads(line)
                    if ready.get("ready"):
                        return int(ready["port"])
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the node receiver exited {self._proc.returncode}: {self._log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the node receiver did not get ready: {self._log()}")
            time.sleep(0.02)

    def _log(self) -> str:
        return self._stderr.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT)

    def url(self, kind: str, run: str) -> str:
        return f"https://127.0.0.1:{self.port}/hook/{kind}/{run}"

    async def records(self, prefix: str) -> list[Record]:
        async with httpx.AsyncClient(verify=self._ca, timeout=5.0) as client:
            response = await client.get(
                f"https://127.0.0.1:{self.port}/results", params={"prefix": prefix}
            )
        response.raise_for_status()
        return [Record.from_json(r) for r in response.json()]
