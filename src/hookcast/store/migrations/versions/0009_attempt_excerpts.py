"""The attempt log keeps what an HTTP attempt sent and what came back

`request_excerpt`: the request line, headers (the webhook's own Headers values hidden) and the
start of the body; `response_excerpt`: the status line, headers and the first 4 KiB of the
answer's body. Both bounded by the dispatcher, and pruned with their attempt.
A delivery's attempts are indexed: a delivery search shows each one's latest attempt.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("request_excerpt", sa.Text()))
        batch.add_column(sa.Column("response_excerpt", sa.Text()))
    op.create_index("ix_attempts_delivery", "attempts", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_attempts_delivery", table_name="attempts")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("response_excerpt")
        batch.drop_column("request_excerpt")
