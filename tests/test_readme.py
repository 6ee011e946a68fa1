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
