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
from .migrate import version_table


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no hookcast schema (an empty or a foreign database)
    head: str
    known: bool  # False: a revision of a newer hookcast than this one

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head() -> str:
    newest = _scripts().get_current_head()
    assert newest is not None
    return newest


def state(conn: Connection) -> SchemaState:
    """The revision the database is at (reads only; creates nothing)."""
    scripts = _scripts()
    # hookcast's own version table (store/migrate.py), not Alembic's default
    context = MigrationContext.configure(conn, opts={"version_table": version_table(conn)})
    current = context.get_current_revision()
    newest = scripts.get_current_head()
    assert newest is not None
    known = current is None or current in {s.revision for s in scripts.walk_revisions()}
    return SchemaState(current, newest, known)


def server_time(conn: Connection) -> float | None:
    """The database server's clock as a Unix time; None for SQLite (no server of its own)."""
    if conn.dialect.name == "sqlite":
        return None
    return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
