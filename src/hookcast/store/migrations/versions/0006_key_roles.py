"""API keys carry a role (§7 key rights)

api_keys gains `role` (admin, manage, signal, read); every existing key becomes `admin`, which
is what it could do before.

SQLite: adding a column is an ALTER TABLE, but batch mode may rebuild the table; the
AUTOINCREMENT counter is carried over either way, so the ids of revoked-and-deleted keys
are not handed out again.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _sqlite_sequence(conn: sa.Connection) -> int | None:
    if conn.dialect.name != "sqlite":
        return None
    row = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'api_keys'")).first()
    return None if row is None else int(row[0])


def _restore_sqlite_sequence(conn: sa.Connection, seq: int | None) -> None:
    if seq is not None:
        conn.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'api_keys'"),
            {"seq": seq},
        )


def upgrade() -> None:
    conn = op.get_bind()
    seq = _sqlite_sequence(conn)
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), server_default="admin", nullable=False)
        )
    _restore_sqlite_sequence(conn, seq)


def downgrade() -> None:
    conn = op.get_bind()
    seq = _sqlite_sequence(conn)
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("role")
    _restore_sqlite_sequence(conn, seq)
