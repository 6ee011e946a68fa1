"""The README's Python snippets run as pasted.

Every fenced ```python block right after an HTML comment `<!-- test: run -->` (or
`<!-- test: run NAME -->`) is run in a fresh interpreter in an empty folder, with only
hookcast and the test dependencies installed. A NAME that has a driver below gets code
appended that uses what the snippet defined (e.g. sends its app real signed requests) and
fails when it does not behave as the README says; other names just run. Untagged blocks
(fragments, shell sessions) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a Python process per block

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TAGGED = re.compile(r"^<!-- test: run(?: +([\w.-]+))? *-->\n+```python\n(.*?)^```", re.M | re.S)
TIMEOUT = 120  # a snippet's run, imports included, on a loaded machine


@dataclass(frozen=True)
class Block:
    line: int
    name: str | None
    heading: str
    code: str

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.name or self.heading}"


def tagged_blocks(text: str) -> list[Block]:
    blocks = []
    for match in TAGGED.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.M)
        blocks.append(
            Block(
                line=before.count("\n") + 1,
                name=match.group(1),
                heading=re.sub(r"\W+", "-", headings[-1]).strip("-") if headings else "top",
                code=match.group(2),
            )
        )
    return blocks


BLOCKS = tagged_blocks(README.read_text(encoding="utf-8"))

# A signed delivery as hookcast sends it, for the receiver drivers.
SIGNED = """
import time as _time
from hookcast.payload import build_body as _build_body, build_headers as _build_headers

def _signed(msg_id="msg_readme", secret="Something Super Secret", at=None):
    body = _build_body(
        event_id="e1", timestamp="2018-04-24T07:50:50.6812131Z", changes=["name"],
        event="contact.changed", primary_key=994863, entity="contact", tenant="Cust1234",
        associate_id=316, webhook_name="readme", field_values={"name": "Ada"},
    )
    headers = _build_headers(
        event_header="contact.changed", event_id="e1", retry=0, body=body, secret=secret,
        delivery_id=msg_id, timestamp=int(_time.time()) if at is None else at, custom=None,
        user_agent="hookcast/readme", standard_webhooks=True,
    )
    return body, headers

_body, _headers = _signed()
_stale = _signed("msg_stale", at=int(_time.time()) - 3600)
_wrong = _signed("msg_wrong", secret="not the secret")
"""

DRIVERS = {
    "receiver-core": SIGNED
    + """
assert handle(*_signed()) == 204
assert handle(*_signed()) == 200, "a duplicate"
assert handle(*_stale) == 401 and handle(*_wrong) == 401
assert handle(b"{}", {}) == 401
""",
    "receiver-fastapi": SIGNED
    + """
from fastapi.testclient import TestClient
client = TestClient(app)
first = client.post("/hook", content=_body, headers=_headers)
assert first.status_code == 200 and first.json() == {"handled": "contact.changed 994863"}, first.text
again = client.post("/hook", content=_body, headers=_headers)
assert again.status_code == 200 and again.json()["detail"]["ErrorType"] == "DuplicateDelivery"
for body, headers in (_stale, _wrong):
    assert client.post("/hook", content=body, headers=headers).status_code == 401
""",
    "receiver-flask": SIGNED
    + """
client = app.test_client()
assert client.post("/hook", data=_body, headers=_headers).status_code == 204
assert client.post("/hook", data=_body, headers=_headers).status_code == 200
for body, headers in (_stale, _wrong):
    assert client.post("/hook", data=body, headers=headers).status_code == 401
""",
    "receiver-django": SIGNED
    + """
import django
from django.conf import settings
settings.configure(DEBUG=True, ALLOWED_HOSTS=["testserver"])
django.setup()
from django.test import RequestFactory
def post(body, headers):
    return hook(RequestFactory().post("/hook", data=body, content_type="application/json",
                                      headers={k: v for k, v in headers.items() if k != "Content-Type"}))
assert post(_body, _headers).status_code == 204
assert post(_body, _headers).status_code == 200
assert post(*_stale).status_code == 401 and post(*_wrong).status_code == 401
assert hook(RequestFactory().get("/hook")).status_code == 405
""",
    "receiver-store": SIGNED
    + """
from hookcast.receiver import DuplicateDelivery
receiver.accept(_body, _headers)
other_process = WebhookReceiver("Something Super Secret", store=SqliteDedupStore("seen.db"))
try:
    other_process.accept(_body, _headers)
except DuplicateDelivery:
    pass
else:
    raise AssertionError("the shared store did not see the first claim")
with other_process.receive(*_signed("msg_2")):
    pass
""",
}


def test_the_readme_has_tagged_blocks() -> None:
    names = {block.name for block in BLOCKS}
    assert {"receiver-core", "receiver-fastapi", "receiver-flask", "receiver-django"} <= names


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_a_readme_python_block_runs_as_pasted(block: Block, tmp_path: Path) -> None:
    code = block.code + "\n" + DRIVERS.get(block.name or "", "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.id}) failed:\n{result.stdout}\n{result.stderr}"
    )


# -- the walk-through, in three shells -----------------------------------------------------------

WALK_THROUGH = "## A five-minute walk-through"


def walk_through_blocks(text: str) -> list[str]:
    """The ```sh blocks of the walk-through section (its numbered steps), dedented."""
    section = text.split(WALK_THROUGH, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```", section, re.M | re.S)
    return ["\n".join(line[len(indent) :] for line in code.splitlines()) for indent, code in blocks]


def fake_checkout(root: Path) -> None:
    """The project folder as `make run` finds it after its first run: the Makefile and
    pyproject.toml, and a .venv whose install stamp is current (so make installs nothing)
    and whose `hookcast` runs this checkout's code."""
    for name in ("Makefile", "pyproject.toml"):
        (root / name).write_bytes((ROOT / name).read_bytes())
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "hookcast"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m hookcast "$@"\n')
    script.chmod(0o755)
    stamp = subprocess.run(
        "cat pyproject.toml | cksum | cut -d' ' -f1",
        shell=True, cwd=root, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (root / ".venv" / f".installed-{stamp}").touch()


def test_the_walk_through_runs_as_pasted(tmp_path: Path) -> None:
    """The three terminals of the walk-through: `make run` with --dev, `hookcast listen
    --register`, one curl; the listener prints the delivery. The one change made to the
    pasted text: port 8000 becomes a free port (tests run in parallel), through
    HOOKCAST_PORT and HOOKCAST_URL and in the curl line."""
    import signal
    import socket
    import time

    first, second, third = walk_through_blocks(README.read_text(encoding="utf-8"))
    assert "make run" in first and "hookcast listen --register contact.changed" in second
    assert third.count("curl ") == 1
    fake_checkout(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path]),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "HOOKCAST_PORT": str(port),
        "HOOKCAST_URL": f"http://127.0.0.1:{port}",
        "COLUMNS": "200",
    }
    env.pop("HOOKCAST_API_KEY", None)
    env.pop("HOOKCAST_DATABASE_URL", None)
    terminals: list[subprocess.Popen[bytes]] = []

    def terminal(name: str, script: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script], cwd=tmp_path, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        terminals.append(proc)
        return proc, log

    def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
        end = time.monotonic() + 60
        while text not in (content := log.read_text(errors="replace")):
            assert proc.poll() is None and time.monotonic() < end, f"no {text!r}:\n{content}"
            time.sleep(0.1)
        return content

    try:
        serve, serve_log = terminal("terminal1", first)
        wait_for(serve_log, "Application startup complete", serve)
        assert "DEVELOPMENT MODE (--dev)" in serve_log.read_text()
        listen, listen_log = terminal("terminal2", second)
        wait_for(listen_log, "Ready.", listen)
        curl = subprocess.run(
            ["bash", "-c", third.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert curl.returncode == 0 and curl.stdout == "", curl.stdout + curl.stderr  # a 204
        printed = wait_for(listen_log, '"PrimaryKey": 994863', listen)
        assert "contact.changed" in printed and "signature: verified" in printed
    finally:
        for proc in terminals:  # each terminal's session: bash, make and hookcast
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in terminals:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
