"""Per-record ordering and burst coalescing: the pending rows of a record, open windows

A claim of a delivery of a webhook with Ordering PerRecord asks whether an earlier one of
its record is still pending: `ix_deliveries_record_pending` answers that with one probe,
whatever the record's history (only pending keyed rows are in it). A coalescing delivery
keeps the end of its burst window (`window_until`, NULL once closed or when it does not
coalesce) and the ids of the signals merged into it (`merged_events`, a JSON array in signal
order; NULL when it carries one signal). Issue 19, docs/delivery-options.md.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PENDING_RECORD_ROWS = sa.text("record IS NOT NULL AND status = 0")


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("window_until", sa.Float, nullable=True))
    op.add_column("deliveries", sa.Column("merged_events", sa.Text, nullable=True))
    op.create_index(
        "ix_deliveries_record_pending",
        "deliveries",
        ["webhook_id", "record", "id"],
        sqlite_where=_PENDING_RECORD_ROWS,
        postgresql_where=_PENDING_RECORD_ROWS,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_record_pending", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("merged_events")
        batch.drop_column("window_until")
