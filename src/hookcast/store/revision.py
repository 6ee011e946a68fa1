"""Where a database's schema stands, for the commands that must not create or migrate one
(`hookcast keys list` on a mistyped URL says so instead of making an empty database) and for
`hookcast doctor`; and the database server's clock."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from .database import MIGRATIONS


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no hookcast schema (an empty or a foreign database)
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    newest = ScriptDirectory.from_config(config).get_current_head()
    assert newest is not None
    return newest


def state(conn: Connection) -> SchemaState:
    """The revision the database is at (reads only; creates nothing)."""
    return SchemaState(MigrationContext.configure(conn).get_current_revision(), head())


def server_time(conn: Connection) -> float | None:
    """The database server's clock as a Unix time; None for SQLite (no server of its own)."""
    if conn.dialect.name == "sqlite":
        return None
    return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
