"""notify requests: each sample batch and each redelivery a merchant asks for, counted for the
per-merchant rate limit (docs/console.md)

Revision ID: 0121
Revises: 0117
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0121"
down_revision = "0117"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
        # samples | redeliver
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_notify_requests_recent", "notify_requests", ["merchant_id", "action", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_notify_requests_recent", table_name="notify_requests")
    op.drop_table("notify_requests")
