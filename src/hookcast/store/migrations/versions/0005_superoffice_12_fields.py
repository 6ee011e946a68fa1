"""SuperOffice 12 webhook fields, InApp notifications, mail retries

webhooks gain ErrorEmails, ErrorAssociates, Description, NotifyVia and NotifyWhen; the
obsolete ErrorsEmail column goes, its address carried over as the one entry of ErrorEmails
with NotifyVia Email (the default when an address is set); `failed_since_success` keeps
FirstFailure to once per error run. mail_outbox counts its tries.

SQLite rebuilds the table to drop the column; its AUTOINCREMENT counter is carried over, or
the ids of deleted webhooks above the highest kept one would be handed out again.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _sqlite_sequence(conn: sa.Connection) -> int | None:
    if conn.dialect.name != "sqlite":
        return None
    row = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'webhooks'")).first()
    return None if row is None else int(row[0])


def _restore_sqlite_sequence(conn: sa.Connection, seq: int | None) -> None:
    if seq is not None:
        conn.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'webhooks'"),
            {"seq": seq},
        )


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("error_emails", sa.Text(), server_default="[]", nullable=False))
        batch.add_column(
            sa.Column("error_associates", sa.Text(), server_default="[]", nullable=False)
        )
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("notify_via", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("notify_when", sa.SmallInteger(), server_default="2", nullable=False)
        )
        batch.add_column(
            sa.Column("failed_since_success", sa.SmallInteger(), server_default="0", nullable=False)
        )
    conn = op.get_bind()
    seq = _sqlite_sequence(conn)
    hooks = sa.table(
        "webhooks",
        sa.column("id", sa.BigInteger),
        sa.column("errors_email", sa.String),
        sa.column("error_emails", sa.Text),
        sa.column("notify_via", sa.SmallInteger),
    )
    rows = conn.execute(
        sa.select(hooks.c.id, hooks.c.errors_email).where(hooks.c.errors_email.is_not(None))
    ).all()
    for row in rows:
        conn.execute(
            hooks.update()
            .where(hooks.c.id == row.id)
            .values(error_emails=json.dumps([row.errors_email]), notify_via=1)
        )
    # recreate: SQLite cannot drop a column that an older table definition might index
    with op.batch_alter_table("webhooks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("errors_email")
    _restore_sqlite_sequence(conn, seq)
    with op.batch_alter_table("mail_outbox") as batch:
        batch.add_column(sa.Column("tries", sa.SmallInteger(), server_default="0", nullable=False))
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=255), nullable=False),
        sa.Column("associate_id", sa.Integer(), nullable=False),
        sa.Column("associate_name", sa.String(length=255), nullable=False),
        sa.Column(
            "webhook_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("webhook_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notifications_tenant", "notifications", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_tenant", table_name="notifications")
    op.drop_table("notifications")
    with op.batch_alter_table("mail_outbox") as batch:
        batch.drop_column("tries")
    conn = op.get_bind()
    seq = _sqlite_sequence(conn)
    with op.batch_alter_table("webhooks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("errors_email", sa.String(length=320), nullable=True))
    hooks = sa.table(
        "webhooks",
        sa.column("id", sa.BigInteger),
        sa.column("errors_email", sa.String),
        sa.column("error_emails", sa.Text),
    )
    for row in conn.execute(sa.select(hooks.c.id, hooks.c.error_emails)).all():
        first = (json.loads(row.error_emails) or [None])[0]
        conn.execute(hooks.update().where(hooks.c.id == row.id).values(errors_email=first))
    with op.batch_alter_table("webhooks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for name in (
            "failed_since_success",
            "notify_when",
            "notify_via",
            "description",
            "error_associates",
            "error_emails",
        ):
            batch.drop_column(name)
    _restore_sqlite_sequence(conn, seq)
