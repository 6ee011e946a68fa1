"""ids never reused: AUTOINCREMENT for webhooks, scripts and API keys on SQLite

Without it SQLite hands a deleted row's id (the highest) to the next insert, so a client
holding WebhookId 7 of a deleted webhook would reach another one. PostgreSQL's sequences
never reuse an id: nothing to do there.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("api_keys", "webhooks", "scripts")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Rebuilt with AUTOINCREMENT; the copied rows set sqlite_sequence to the highest id kept.
    # Database.migrate turns foreign keys off meanwhile, so dropping the old table deletes
    # none of its children's rows.
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
