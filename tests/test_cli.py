"""The `hookcast` command line: keys, webhooks list, and `serve` as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from support.databases import database_url, migrated_database_url
from typer.testing import CliRunner

from hookcast.cli import app
from hookcast.store.database import Database
from hookcast.store.schema import api_keys

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A database that exists: only serve, worker and migrate create one."""
    return migrated_database_url(tmp_path, "cli")


@pytest.fixture
def new_db_url(tmp_path: Path) -> str:
    """A database URL with no database behind it yet (SQLite) or an empty one (PostgreSQL)."""
    return database_url(tmp_path, "cli")


def test_help_explains_every_command() -> None:
    top = invoke("--help")
    for command in ("serve", "keys", "webhooks"):
        assert command in top
    assert "--associate-id" in invoke("keys", "create", "--help")
    assert "--db" in invoke("serve", "--help")


def test_keys_create_list_revoke(db_url: str) -> None:
    output = invoke(
        "keys",
        "create",
        "--tenant",
        "Cust1234",
        "--associate-id",
        "5",
        "--name",
        "tony",
        "--db",
        db_url,
    )
    key = output.strip().splitlines()[-1]
    assert key.startswith("hc_") and len(key) > 40
    listing = invoke("keys", "list", "--db", db_url)
    assert "Cust1234" in listing and key[:9] in listing
    assert key not in listing  # only the prefix is ever shown
    revoked = invoke("keys", "revoke", "1", "--db", db_url)
    assert "Revoked key 1" in revoked
    again = runner.invoke(app, ["keys", "revoke", "1", "--db", db_url])
    assert again.exit_code == 1
    # The key is stored hashed: its text appears nowhere in the database.
    db = Database(db_url)
    rows = db.run_sync(lambda conn: [tuple(r) for r in conn.execute(select(api_keys))])
    db.close()
    assert rows and all(key not in str(value) for row in rows for value in row)
    if db_url.startswith("sqlite"):
        assert key.encode() not in Path(db_url.removeprefix("sqlite:///")).read_bytes()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # starts a real `hookcast serve` process
def test_serve_prints_a_first_key_once_and_serves_with_it(tmp_path: Path, new_db_url: str) -> None:
    db_url = new_db_url
    port = _free_port()
    env = {**os.environ, "HOOKCAST_DATABASE_URL": db_url}
    command = [sys.executable, "-m", "hookcast", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    try:
        key = ""
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while not key and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("hc_"):
                key = line.strip()
        assert key, "serve printed no key"
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/Webhook",
                    headers={"Authorization": f"Bearer {key}"},
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response is not None and response.status_code == 200 and response.json() == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    # A second start finds a key and prints none.
    listing = invoke("keys", "list", "--db", db_url)
    assert "Default" in listing
    assert len([line for line in listing.splitlines() if "Default" in line]) == 1


def test_webhooks_list_shows_a_table(db_url: str, tmp_path: Path) -> None:
    from hookcast.keys import create_key
    from hookcast.model import State
    from hookcast.store import queries
    from hookcast.store.database import Database

    db = Database(db_url)
    create_key(db, tenant="Cust1234", associate_id=5)
    db.run_sync(
        queries.insert_webhook,
        "Cust1234",
        5,
        time.time(),
        {
            "name": "Contact handler",
            "events": ["contact.created"],
            "target_url": "https://example.com/h",
            "secret": None,
            "state": State.Stopped,
            "type": "webhook",
            "headers": None,
            "properties": None,
        },
    )
    db.close()
    output = invoke("webhooks", "list", "--db", db_url)
    assert "Contact handler" in output and "Stopped" in output and "contact.created" in output
    listed = json.loads(invoke("webhooks", "list", "--db", db_url, "--json"))
    assert listed == [
        {
            "id": 1,
            "tenant": "Cust1234",
            "name": "Contact handler",
            "state": "Stopped",
            "type": "webhook",
            "events": ["contact.created"],
            "target": "https://example.com/h",
        }
    ]


def test_keys_and_workers_list_as_json(db_url: str) -> None:
    key = invoke(
        "keys", "create", "--tenant", "Cust1234", "--associate-id", "5", "--db", db_url
    ).splitlines()[-1]
    [listed] = json.loads(invoke("keys", "list", "--db", db_url, "--json"))
    assert listed["prefix"] == key[: len(listed["prefix"])] and key not in json.dumps(listed)
    assert listed | {"prefix": "", "created": ""} == {
        "id": 1,
        "prefix": "",
        "tenant": "Cust1234",
        "associate_id": 5,
        "role": "admin",
        "name": "",
        "created": "",
        "revoked": None,
    }
    assert json.loads(invoke("workers", "--db", db_url, "--json")) == []


def test_migrate_creates_then_finds_nothing_to_do(new_db_url: str) -> None:
    first = invoke("migrate", "--db", new_db_url)
    assert first.startswith("The database at ") and "is at schema" in first
    assert invoke("migrate", "--db", new_db_url) == first
    assert json.loads(invoke("keys", "list", "--db", new_db_url, "--json")) == []
