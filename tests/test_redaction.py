"""No secret in any log (issue 13, item 5): a failing database write logs neither the
webhook's Secret, nor its header values, nor the API key or the key's hash."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_support import stopped_hook
from fastapi.testclient import TestClient
from sqlalchemy import text
from support.databases import migrated_database_url, needs_postgres, new_postgres_url

import hookcast
from hookcast import logs
from hookcast.api.app import create_app
from hookcast.keys import create_key, hash_key
from hookcast.settings import Settings
from hookcast.store.database import Database


def test_redact_hides_statement_parameters_rows_and_credentials() -> None:
    key = "hc_" + "A1b2" * 11
    text_ = (
        "(sqlite3.IntegrityError) boom\n[SQL: INSERT INTO webhooks VALUES (?)]\n"
        "[parameters: ('s3cr3t', '{\"Authorization\": \"Basic dXNlcg==\"}')]\n"
        "DETAIL:  Failing row contains (1, s3cr3t).\n"
        f"Authorization: Bearer {key} headers={{'authorization': 'tok en'}} {hash_key(key)}"
    )
    scrubbed = logs.redact(text_)
    for secret in ("s3cr3t", "dXNlcg==", key, hash_key(key), "tok en"):
        assert secret not in scrubbed, scrubbed
    assert "[SQL: INSERT INTO webhooks VALUES (?)]" in scrubbed  # what failed stays readable


def test_every_hookcast_logger_redacts() -> None:
    for module in pkgutil.walk_packages(hookcast.__path__, "hookcast."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    names = [
        name
        for name, logger in logging.Logger.manager.loggerDict.items()
        if (name == "hookcast" or name.startswith("hookcast."))
        and isinstance(logger, logging.Logger)
    ]
    assert names
    for name in names:
        assert any(isinstance(f, logs.Redact) for f in logging.getLogger(name).filters), name


@contextmanager
def _api(url: str) -> Iterator[tuple[TestClient, Database, str]]:
    db = Database(url)
    db.migrate()
    _, key = create_key(db, tenant="Cust1234", associate_id=5, name="tony")
    try:
        app = create_app(Settings(database_url=url), db=db)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, db, key
    finally:
        db.close()


def _fail_writes(db: Database) -> None:
    """Every write of a webhook fails from now on, in the database (not in hookcast)."""
    if db.is_sqlite:
        for op in ("INSERT", "UPDATE"):
            db.run_sync(
                lambda conn, op=op: conn.execute(
                    text(
                        f"CREATE TRIGGER no_{op.lower()} BEFORE {op} ON webhooks "
                        "BEGIN SELECT RAISE(ABORT, 'writes refused'); END"
                    )
                )
            )
    else:  # PostgreSQL then reports the failing row, Secret and Headers included (DETAIL)
        db.run_sync(
            lambda conn: conn.execute(
                text("ALTER TABLE webhooks ADD CONSTRAINT refused CHECK (false) NOT VALID")
            )
        )


def _check_failing_writes_log_no_secret(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret, header_value = f"Secret-{uuid.uuid4().hex[:12]}", f"Basic {uuid.uuid4()}"
    with _api(url) as (client, db, key):
        auth = {"Authorization": f"Bearer {key}"}
        created = client.post("/api/v1/Webhook", json=stopped_hook(), headers=auth)
        assert created.status_code in (200, 201), created.text
        hook_id = created.json()["WebhookId"]
        _fail_writes(db)
        body = stopped_hook(Secret=secret, Headers={"Authorization": header_value})
        answers = [
            client.post("/api/v1/Webhook", json=body, headers=auth),
            client.put(f"/api/v1/Webhook/{hook_id}", json=body, headers=auth),
        ]
        # Then authenticating fails too: the key's lookup (by its hash) cannot run.
        db.run_sync(lambda conn: conn.execute(text("ALTER TABLE api_keys RENAME TO gone")))
        answers.append(client.get("/api/v1/Webhook", headers=auth))
    assert all(a.status_code >= 500 for a in answers), [a.text for a in answers]
    logged = caplog.text
    assert "Traceback" in logged or "unavailable" in logged  # the failures were logged
    for value in (secret, header_value, header_value.split()[1], key, hash_key(key)):
        assert value not in logged, f"{value!r} reached the log:\n{logged}"


def test_failing_writes_log_no_secret_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _check_failing_writes_log_no_secret(migrated_database_url(tmp_path), caplog)


@needs_postgres
def test_failing_writes_log_no_secret_postgres(caplog: pytest.LogCaptureFixture) -> None:
    _check_failing_writes_log_no_secret(new_postgres_url(), caplog)
