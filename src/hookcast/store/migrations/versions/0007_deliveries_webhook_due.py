"""A webhook's deliveries indexed by (webhook_id, status, next_at)

The dispatcher parks the due backlog of a stuck webhook (a hanging receiver) out of the due
range, so that claims do not step over all of it; with next_at in the index that update is
a range over the newly due rows only. The old (webhook_id, status) index is its prefix.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_webhook", table_name="deliveries")
    op.create_index("ix_deliveries_webhook", "deliveries", ["webhook_id", "status", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_webhook", table_name="deliveries")
    op.create_index("ix_deliveries_webhook", "deliveries", ["webhook_id", "status"])
