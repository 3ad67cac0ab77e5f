"""redelivered_at and heartbeat signed_at: when the console last queued a notification again (Redeliver's
rate limits), and the latest heartbeat time a terminal signed (so a replayed heartbeat is not recorded)

Revision ID: 0123
Revises: 0120
Create Date: 2026-12-01 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0123"
down_revision = "0120"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        # None: never redelivered (and every notification made before this revision).
        batch.add_column(sa.Column("redelivered_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("terminal_heartbeats") as batch:
        # The body's reqTime of the latest recorded beat; None: the terminal never signed its time.
        batch.add_column(sa.Column("signed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("terminal_heartbeats") as batch:
        batch.drop_column("signed_at")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("redelivered_at")
