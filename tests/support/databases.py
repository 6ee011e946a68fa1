"""Which database the tests run on. SQLite by default; with HOOKCAST_TEST_BACKEND=postgres
every test gets a fresh database on the server named by HOOKCAST_TEST_POSTGRES_URL
(`make test` runs the suite once per backend when that variable is set)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("HOOKCAST_TEST_POSTGRES_URL", "")
BACKEND = os.environ.get("HOOKCAST_TEST_BACKEND", "sqlite")
ON_POSTGRES = BACKEND == "postgres"
_created: list[str] = []
_template: str | None = None  # see _migrated_template

if ON_POSTGRES and not POSTGRES_URL:
    raise RuntimeError("HOOKCAST_TEST_BACKEND=postgres needs HOOKCAST_TEST_POSTGRES_URL")

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="PostgreSQL tests need HOOKCAST_TEST_POSTGRES_URL, e.g. "
    "HOOKCAST_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test make test",
)


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )


def new_postgres_url(template: str | None = None) -> str:
    """A fresh database on the test server: empty, or a copy of `template`."""
    name = f"hc_{uuid.uuid4().hex[:16]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    _created.append(name)
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def database_url(tmp_path: Path, name: str = "hookcast") -> str:
    if ON_POSTGRES:
        return new_postgres_url()
    return f"sqlite:///{tmp_path / name}.db"


def migrated_database_url(tmp_path: Path, name: str = "hookcast") -> str:
    """Like `database_url`, with the schema already at the newest revision, for tests that
    do not test migrating: a copy of a database this worker migrated once (a fresh
    migration was most of what starting an API or a Hub cost in a test). `Database.migrate()`
    on it finds nothing to do."""
    global _template
    if _template is None:
        _template = _migrated_template()
    if ON_POSTGRES:
        return new_postgres_url(template=_template)
    path = tmp_path / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)  # as Database does for a new file
    source, copy = sqlite3.connect(_template), sqlite3.connect(path)
    try:
        source.backup(copy)  # a consistent copy, WAL or not
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{path}"


def _migrated_template() -> str:
    """A database at the newest revision, closed: a PostgreSQL database's name (dropped with
    the others at the end), or a SQLite file's path."""
    from hookcast.store.database import Database

    if ON_POSTGRES:
        url = new_postgres_url()
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='hookcast-template-')) / 'template.db'}"
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.close()  # PostgreSQL copies a template only while nobody is connected to it
    database = make_url(url).database
    assert database is not None
    return database


def drop_created() -> None:
    """Remove what this worker made: its PostgreSQL databases, its SQLite template."""
    if _template is not None and not ON_POSTGRES:
        shutil.rmtree(Path(_template).parent, ignore_errors=True)
    if not _created:
        return
    with _admin() as conn:
        for name in _created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created.clear()
