"""sandbox actions: what a magic payment code still has to do after its pay (the customer's answer to a
confirmation at a time on the merchant's clock, notifications to record as failed), docs/sandbox.md

Revision ID: 0120
Revises: 0119
Create Date: 2026-12-01 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0120"
down_revision = "0119"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("payment_id", sa.Integer(), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("payment_id", "action", name="uq_sandbox_actions_payment_action"),
    )
    op.create_index("ix_sandbox_actions_open", "sandbox_actions", ["done_at", "action"])


def downgrade() -> None:
    op.drop_index("ix_sandbox_actions_open", table_name="sandbox_actions")
    op.drop_table("sandbox_actions")
