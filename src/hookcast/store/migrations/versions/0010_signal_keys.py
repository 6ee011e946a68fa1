"""signal_keys: idempotency keys of signals

A client that retries a timed-out signal request with the same `Idempotency-Key` gets the
first request's answer and signals nothing twice, across processes (issue 18). Rows older
than HOOKCAST_IDEMPOTENCY_SECONDS are pruned.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signal_keys",
        sa.Column("tenant", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("event_ids", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_signal_keys_created", "signal_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_signal_keys_created", table_name="signal_keys")
    op.drop_table("signal_keys")
