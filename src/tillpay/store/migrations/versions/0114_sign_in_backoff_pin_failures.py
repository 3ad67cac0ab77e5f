"""sign-in backoff and per-customer PIN failures: wallet sign-in failures record the client address and
the trusted device; wallet users count wrong PINs across payments

Revision ID: 0114
Revises: 0113
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0114"
down_revision = "0113"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallet_login_failures") as batch:
        batch.add_column(sa.Column("client", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("device_id", sa.Integer(), nullable=True))
    op.create_index("ix_wallet_login_failures_client_time", "wallet_login_failures", ["client", "created_at"])
    with op.batch_alter_table("wallet_users") as batch:
        batch.add_column(sa.Column("pin_failures", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("wallet_users") as batch:
        batch.drop_column("pin_failures")
    op.drop_index("ix_wallet_login_failures_client_time", table_name="wallet_login_failures")
    with op.batch_alter_table("wallet_login_failures") as batch:
        batch.drop_column("device_id")
        batch.drop_column("client")
