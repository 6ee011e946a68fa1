"""The script corpus: every cases/NAME.crmscript runs and must print cases/NAME.out.

Header comments in a script (first lines) configure the run:
  // vars: {"PrimaryKey": "18"}        webhook variables (JSON object)
  // limits: {"max_steps": 1000}       Limits overrides (JSON object)
A failing run's expected output ends with the line `ERROR: <Kind>: <message>`.
Includes resolve to cases/includes/NAME.crmscript; HTTP goes to tests' FakeTransport with
api.example.com and down.example.com on the allow-list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hookcast.crmscript import Limits, run_script

from .fakes import ALLOWED, FakeTransport

CASES = Path(__file__).with_name("cases")
INCLUDES = CASES / "includes"


def include(name: str) -> str | None:
    p = INCLUDES / f"{name}.crmscript"
    return p.read_text(encoding="utf-8") if p.is_file() else None


def _header(src: str, key: str) -> dict:
    for line in src.splitlines():
        if not line.startswith("//"):
            break
        body = line[2:].strip()
        if body.startswith(key + ":"):
            return json.loads(body[len(key) + 1 :])
    return {}


def render(src: str) -> str:
    limits = Limits(**_header(src, "limits"))
    r = run_script(
        src,
        variables=_header(src, "vars"),
        include=include,
        limits=limits,
        http=FakeTransport(),
        http_allow_hosts=ALLOWED,
    )
    out = r.output
    if not r.success:
        if out and not out.endswith("\n"):
            out += "\n"
        out += f"{r.error_line}\n"
    return out


CASE_FILES = sorted(CASES.glob("*.crmscript"))


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    src = path.read_text(encoding="utf-8")
    expected = path.with_suffix(".out").read_text(encoding="utf-8")
    assert render(src) == expected


def test_corpus_is_large_enough() -> None:
    assert len(CASE_FILES) >= 100
    for p in CASE_FILES:
        assert p.with_suffix(".out").is_file(), p
