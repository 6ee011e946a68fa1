"""The bridge from Django's `migrate` to hookcast's Alembic migrations (one source of truth
for hookcast's schema, which `hookcast serve` also upgrades on start).

`manage.py migrate` applies this app's migration 0001, which runs hookcast's migrations to the
newest revision, and after every `migrate` the post_migrate hook does it again, so a newer
hookcast's tables come with the next `migrate` without a Django migration of their own.
hookcast keeps its revision in `hookcast_alembic_version`, beside Django's own tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine

from ...sqlalchemy import migrate
from .conf import conf, database_url


def run_hookcast_migrations(using: str | None = None) -> None:
    """Create or upgrade hookcast's tables in the database of alias `using` (default:
    HOOKCAST['DATABASE']), on a connection of its own (committed before this returns)."""
    config = conf()
    if (using or config.database) != config.database:
        return  # hookcast's tables live in one database only
    engine = create_engine(database_url(using, schema=""))
    try:
        with engine.connect() as connection:
            if config.schema:
                with connection.begin():
                    migrate(connection, schema=config.schema)
            else:
                migrate(connection)  # SQLite: outside a transaction (see migrate())
                connection.commit()
    finally:
        engine.dispose()


def migration_operation(apps: Any, schema_editor: Any) -> None:
    """RunPython operation of migration 0001."""
    run_hookcast_migrations(schema_editor.connection.alias)


def after_migrate(sender: Any, using: str, **_: Any) -> None:
    """post_migrate: bring hookcast's tables to the newest revision."""
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    applied = MigrationRecorder(connections[using]).applied_migrations()
    if ("hookcast", "0001_hookcast_tables") in applied:
        run_hookcast_migrations(using)
