"""The trace context of a signal, kept with its event

With tracing (or trace propagation) on, `signal()` stores the W3C traceparent of its span
(or of the signalling code's) with the event: attempts run later, in another task or
process, and take it from there to join the signal's trace and to send it on. One column on
the event, not on each delivery: every delivery of an event belongs to the same signal.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("traceparent", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("traceparent")
