"""hookcast's per-webhook delivery options, and the record key of a delivery

Five webhook columns beside the SuperOffice fields, each off by default (issue 19,
docs/delivery-options.md): Ordering, CoalesceMs, AutoRecover, MaxPerSecond, MaxInFlight.
Deliveries of a webhook that orders or coalesces per record carry the record's key
("contact:994863"); NULL for every other webhook. (0014 indexes the pending ones.)

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("ordering", sa.SmallInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("coalesce_ms", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("auto_recover", sa.SmallInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("max_per_second", sa.Float, nullable=True))
        batch.add_column(sa.Column("max_in_flight", sa.Integer, nullable=True))
    op.add_column("deliveries", sa.Column("record", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("record")
    with op.batch_alter_table("webhooks") as batch:
        for column in (
            "max_in_flight",
            "max_per_second",
            "auto_recover",
            "coalesce_ms",
            "ordering",
        ):
            batch.drop_column(column)
