"""outbox redelivered_at: when the console last queued a notification again, so Redeliver can be rate
limited per notification and per merchant

Revision ID: 0123
Revises: 0116
Create Date: 2026-12-01 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0123"
down_revision = "0116"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        # None: never redelivered (and every notification made before this revision).
        batch.add_column(sa.Column("redelivered_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("redelivered_at")
