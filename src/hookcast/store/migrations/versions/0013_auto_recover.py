"""AutoRecover's probe schedule and the probes in the delivery log

A webhook in TooManyErrors with AutoRecover on carries when its next probe is due
(recover_at, NULL when it is not being probed), when it was disabled and how many probes it
has had. A partial index holds only the webhooks being probed, so the prober's one read per
poll interval costs nothing when none is. Each probe is logged as a delivery of the test
event marked `probe`, which redelivery never queues.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_PROBED = sa.text("recover_at IS NOT NULL")


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("recover_at", sa.Float, nullable=True))
    op.add_column("webhooks", sa.Column("recover_since", sa.Float, nullable=True))
    op.add_column(
        "webhooks",
        sa.Column("recover_probes", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_webhooks_recover",
        "webhooks",
        ["recover_at"],
        sqlite_where=_PROBED,
        postgresql_where=_PROBED,
    )
    op.add_column(
        "deliveries", sa.Column("probe", sa.SmallInteger, nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_index("ix_webhooks_recover", table_name="webhooks")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("probe")
    with op.batch_alter_table("webhooks") as batch:
        for column in ("recover_probes", "recover_since", "recover_at"):
            batch.drop_column(column)
