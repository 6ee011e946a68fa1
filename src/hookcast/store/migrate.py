"""Running hookcast's Alembic migrations on a connection, in the caller's transaction: from
`Database.migrate`, and from an application whose database holds hookcast's tables
(hookcast.sqlalchemy.migrate, the Django app).

hookcast records its revision in its own version table, `hookcast_alembic_version`, so that
an application's Alembic history in the same database (`alembic_version`) is never touched.
A database that hookcast migrated before it had that table keeps using `alembic_version`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "hookcast_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"


def version_table(conn: Connection) -> str:
    """Where this database keeps hookcast's revision (see the module's docstring)."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables or LEGACY_VERSION_TABLE not in tables or "webhooks" not in tables:
        return VERSION_TABLE
    ours = {path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}
    stamped = {
        row[0] for row in conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}"))
    }
    return LEGACY_VERSION_TABLE if stamped and stamped <= ours else VERSION_TABLE


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Bring hookcast's tables to `revision` on `conn`, inside its current transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    config.attributes["version_table"] = version_table(conn)
    command.upgrade(config, revision)
