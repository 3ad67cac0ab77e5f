"""sandbox wallets: a flag on wallet users whose money a sandbox feature made up

Revision ID: 0113
Revises: 0112
Create Date: 2026-11-30 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0113"
down_revision = "0112"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallet_users") as batch:
        batch.add_column(sa.Column("sandbox", sa.Boolean(), server_default=sa.false(), nullable=False))
    # The console's test-payment wallets existed before the flag: they are sandbox wallets.
    op.execute("UPDATE wallet_users SET sandbox = TRUE WHERE login_id LIKE 'sandbox-%@sandbox.tillpay.test'")


def downgrade() -> None:
    with op.batch_alter_table("wallet_users") as batch:
        batch.drop_column("sandbox")
