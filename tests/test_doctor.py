"""`hookcast doctor` against a healthy and a broken set-up: a real database (SQLite, or
PostgreSQL with HOOKCAST_TEST_BACKEND=postgres), a real aiosmtpd server and a trustme CA on
disk. One line per check, ✓ or ✗ with the fix; exit status 1 when any check fails; it
creates nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from support.databases import ON_POSTGRES, database_url, migrated_database_url
from typer.testing import CliRunner

from hookcast.cli import app
from hookcast.keys import create_key
from hookcast.store.database import Database

CHECKS = [
    "settings",
    "database",
    "first key",
    "clock",
    "SMTP",
    "CA bundle",
    "target guard",
    "open files",
]


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def doctor(*args: str, **env: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, ["doctor", *args], env=env)
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_a_healthy_set_up(tmp_path: Path, smtp: int) -> None:
    url = migrated_database_url(tmp_path)
    db = Database(url)
    create_key(db, tenant="Default", associate_id=1)
    db.close()
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    env = {
        "HOOKCAST_DATABASE_URL": url,
        "HOOKCAST_SMTP_HOST": "127.0.0.1",
        "HOOKCAST_SMTP_PORT": str(smtp),
        "HOOKCAST_CA_BUNDLE": str(ca),
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CONCURRENCY": "64",
        "HOOKCAST_MAX_CONNECTIONS": "64",
    }
    code, lines, err = doctor(**env)
    assert code == 0, lines
    assert err == ""
    assert [line.split(":")[0] for line in lines] == [f"✓ {name}" for name in CHECKS]
    assert f"✓ SMTP: 127.0.0.1:{smtp} answers" in lines
    assert f"✓ CA bundle: HOOKCAST_CA_BUNDLE='{ca}' loads" in lines
    assert "✓ first key: 1 API key(s)" in lines
    clock = next(line for line in lines if line.startswith("✓ clock"))
    assert ("database server's" in clock) == ON_POSTGRES
    code, out, _ = doctor("--json", **env)
    assert code == 0 and [c["name"] for c in json.loads("\n".join(out))] == CHECKS


def test_a_broken_set_up(tmp_path: Path) -> None:
    url = database_url(tmp_path, "nothing-here")  # SQLite: no file; PostgreSQL: empty
    env = {
        "HOOKCAST_DATABASE_URL": url,
        "HOOKCAST_SMTP_HOST": "127.0.0.1",
        "HOOKCAST_SMTP_PORT": str(closed_port()),
        "HOOKCAST_CA_BUNDLE": str(tmp_path / "missing.pem"),
        "HOOKCAST_ALLOW_TARGETS": "0.0.0.0/0",
        "HOOKCAST_CONCURRENCY": str(10**8),
    }
    code, lines, err = doctor(**env)
    assert code == 1
    assert err == "6 check(s) failed.\n"
    marks = {line.split(":")[0][2:]: line[0] for line in lines}
    assert marks == dict.fromkeys(CHECKS, "✗") | {"settings": "✓", "clock": "✓"}
    by_name = {line.split(":")[0][2:]: line for line in lines}
    assert by_name["database"].startswith(f"✗ database: no hookcast database at {url}")
    assert by_name["database"].endswith("`hookcast migrate`.")
    assert by_name["first key"] == "✗ first key: not checked: no database — Fix the database first."
    assert by_name["SMTP"].startswith(f"✗ SMTP: 127.0.0.1:{env['HOOKCAST_SMTP_PORT']} (HOOKCAST_SMTP_HOST, HOOKCAST_SMTP_PORT) is not reachable")  # fmt: skip
    assert by_name["CA bundle"].startswith(f"✗ CA bundle: HOOKCAST_CA_BUNDLE='{tmp_path / 'missing.pem'}' cannot be read")  # fmt: skip
    assert "0.0.0.0/0" in by_name["target guard"] and " — List only the networks" in by_name["target guard"]  # fmt: skip
    assert by_name["open files"].startswith("✗ open files: the hard limit is ")
    assert all(" — " in line for line in lines if line.startswith("✗"))  # each says the fix
    if not ON_POSTGRES:
        assert list(tmp_path.iterdir()) == []  # it created nothing


def test_a_migrated_database_without_a_key(tmp_path: Path) -> None:
    code, lines, _ = doctor("--db", migrated_database_url(tmp_path))
    assert code == 1
    assert [line for line in lines if line.startswith("✗")] == [
        "✗ first key: no API key exists — Start `hookcast serve` once (it creates one for "
        "tenant Default) or run `hookcast keys create --tenant NAME --associate-id 1`."
    ]


def test_settings_that_do_not_parse(tmp_path: Path) -> None:
    code, lines, _ = doctor("--db", migrated_database_url(tmp_path), HOOKCAST_CYCLES="many")
    assert code == 1
    assert lines == [
        "✗ settings: HOOKCAST_CYCLES='many' is not valid: Input should be a valid integer, "
        "unable to parse string as an integer — Set HOOKCAST_CYCLES to a whole number, or "
        "unset it for the default (3)."
    ]
