"""No secret in any log (issue 13, item 5): a failing database write logs neither the
webhook's Secret, nor its header values, nor the API key or the key's hash. Issue 17: a whole
scenario (keys from code and the CLI, a webhook with a Secret and credential headers, its
test, a refused target, an unknown key, deliveries to a real HTTPS receiver that fail and
succeed, tracing on, and on PostgreSQL a URL with a password) logs none of them, nor a
delivery's signatures, through every logger in text and in JSON."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_support import stopped_hook
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.engine import make_url
from support.databases import migrated_database_url, needs_postgres, new_postgres_url
from support.engine import delivery_settings
from support.logcapture import captured_logs
from support.receivers import Receiver
from typer.testing import CliRunner

import hookcast
from hookcast import logs, tracing
from hookcast.api.app import create_app
from hookcast.cli import app as cli
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
        # A key not used yet, so not in the API's key cache: its lookup runs below.
        _, fresh_key = create_key(db, tenant="Cust1234", associate_id=5, name="fresh")
        _fail_writes(db)
        body = stopped_hook(Secret=secret, Headers={"Authorization": header_value})
        answers = [
            client.post("/api/v1/Webhook", json=body, headers=auth),
            client.put(f"/api/v1/Webhook/{hook_id}", json=body, headers=auth),
        ]
        # Then authenticating fails too: the key's lookup (by its hash) cannot run.
        db.run_sync(lambda conn: conn.execute(text("ALTER TABLE api_keys RENAME TO gone")))
        fresh = {"Authorization": f"Bearer {fresh_key}"}
        answers.append(client.get("/api/v1/Webhook", headers=fresh))
    assert all(a.status_code >= 500 for a in answers), [a.text for a in answers]
    logged = caplog.text
    assert "Traceback" in logged or "unavailable" in logged  # the failures were logged
    keys = (key, hash_key(key), fresh_key, hash_key(fresh_key))
    for value in (secret, header_value, header_value.split()[1], *keys):
        assert value not in logged, f"{value!r} reached the log:\n{logged}"


def test_failing_writes_log_no_secret_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _check_failing_writes_log_no_secret(migrated_database_url(tmp_path), caplog)


@needs_postgres
def test_failing_writes_log_no_secret_postgres(caplog: pytest.LogCaptureFixture) -> None:
    _check_failing_writes_log_no_secret(new_postgres_url(), caplog)


# ----- issue 17: a whole scenario, every logger, both formats ------------------------------


def _scenario_logs_no_secret(
    url: str, tmp_path: Path, ca_bundle_path: str, receiver: Receiver, password: str | None
) -> None:
    secret = f"Sec-{uuid.uuid4().hex}"
    header_value = f"Basic {uuid.uuid4().hex}"
    api_key_header = uuid.uuid4().hex
    bad_key = "hc_" + uuid.uuid4().hex + "x" * 11
    settings = delivery_settings(
        tmp_path,
        ca_bundle_path,
        database_url=url,
        tracing=True,
        propagate_trace=True,
        retry_delays=[0.05],
        cycles=1,
    )
    spans = InMemorySpanExporter()  # spans stay in memory: no OTLP export from a test
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.set_tracer_provider(provider)
    try:
        with captured_logs() as captured:
            db = Database(url)
            db.migrate()
            _, key = create_key(db, tenant="Cust1234", associate_id=5, name="tony")
            db.close()
            made = CliRunner().invoke(
                cli, ["keys", "create", "--tenant", "Cust1234", "--associate-id", "6", "--db", url]
            )
            assert made.exit_code == 0, made.output
            cli_key = made.output.strip().splitlines()[-1]
            app = create_app(settings)
            with TestClient(app, raise_server_exceptions=False) as client:
                auth = {"Authorization": f"Bearer {key}"}
                carrier = {
                    "Name": "h",
                    "Events": ["contact.changed"],
                    "TargetUrl": receiver.url,
                    "Secret": secret,
                    "Headers": {"Authorization": header_value, "X-Api-Key": api_key_header},
                }
                created = client.post("/api/v1/Webhook", json=carrier, headers=auth)
                assert created.status_code == 200, created.text
                whsec = created.json()["StandardWebhooksSecret"]
                tested = client.post("/api/v1/Webhook/Test", json=carrier, headers=auth)
                assert tested.status_code == 200, tested.text
                refused = client.post(
                    "/api/v1/Webhook",
                    json={**carrier, "TargetUrl": "https://10.0.0.1/x"},
                    headers=auth,
                )
                assert refused.status_code == 400
                assert (
                    client.get(
                        "/api/v1/Webhook", headers={"Authorization": f"Bearer {bad_key}"}
                    ).status_code
                    == 401
                )
                receiver.respond(statuses=(500, 302), location="https://127.0.0.1/elsewhere")
                for pk in (1, 2):
                    answer = client.post(
                        f"/api/v1/Webhook/contact.changed/{pk}",
                        headers={"Authorization": f"Bearer {cli_key}"},
                    )
                    assert answer.status_code == 204, answer.text
                deadline = time.monotonic() + 15
                while len(captured.lines("json", "hookcast.attempts")) < 3:
                    assert time.monotonic() < deadline, captured.text("text")
                    time.sleep(0.02)
                assert client.get("/metrics").status_code == 200
    finally:
        tracing.set_tracer_provider(None)
    assert spans.get_finished_spans()  # traced, and the spans' texts are not logs
    sent = [r for r in receiver.requests if r.header("X-Hook-Test") is None]
    signatures = [
        value
        for r in receiver.requests
        for value in (r.header("X-SuperOffice-Signature"), r.header("webhook-signature"))
        if value
    ]
    assert len(sent) >= 3 and signatures
    secrets = {
        "Secret": secret,
        "StandardWebhooksSecret": whsec,
        "its key": whsec.removeprefix("whsec_"),
        "a header value": header_value,
        "a header's credential": header_value.split()[1],
        "an X-Api-Key header": api_key_header,
        "the API key": key,
        "the API key from the CLI": cli_key,
        "its hash": hash_key(key),
        "an unknown key": bad_key,
        **{f"signature {i}": s for i, s in enumerate(signatures)},
        **({"the database password": password} if password else {}),
    }
    for fmt in ("text", "json"):
        logged = captured.text(fmt)
        # the scenario was logged: requests, and attempts that failed and succeeded
        assert captured.lines(fmt, "hookcast.access")
        outcomes = {line["outcome"] for line in captured.lines(fmt, "hookcast.attempts")}
        assert outcomes == {"success", "failure"}, logged
        for what, value in secrets.items():
            assert value not in logged, f"{what} ({value!r}) reached the {fmt} log:\n{logged}"


def test_a_whole_scenario_logs_no_secret_sqlite(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    url = migrated_database_url(tmp_path)
    _scenario_logs_no_secret(url, tmp_path, ca_bundle_path, receiver, None)


@needs_postgres
def test_a_whole_scenario_logs_no_secret_postgres(
    tmp_path: Path, ca_bundle_path: str, receiver: Receiver
) -> None:
    password = f"pw-{uuid.uuid4().hex}"  # the server trusts local connections: any password
    url = make_url(new_postgres_url()).set(password=password).render_as_string(hide_password=False)
    _scenario_logs_no_secret(url, tmp_path, ca_bundle_path, receiver, password)
