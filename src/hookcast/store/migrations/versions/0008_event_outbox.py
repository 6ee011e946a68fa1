"""The event outbox: events an application wrote in its own transaction (hookcast.sqlalchemy,
hookcast.contrib.django), waiting for a dispatcher to match them and create their deliveries

A compact row with the event's fields and nothing else: the application's transaction does
one insert, needs no webhook index and takes no lock on hookcast's tables; the dispatcher
moves committed rows into events and deliveries (dispatch/outbox_drain.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("primary_key", sa.BigInteger, nullable=False),
        sa.Column("associate_id", sa.Integer, nullable=False),
        sa.Column("occurred_at", sa.String(32), nullable=False),
        sa.Column("changes", sa.Text),
        sa.Column("change_values", sa.Text),
        sa.Column("row_values", sa.Text),
        sa.Column("field_values", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_outbox")
