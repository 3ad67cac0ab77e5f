"""key lifecycle: key versions that expire or are revoked, allowed sign types, MD5 key rotation

Revision ID: 0112
Revises: 0111
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0112"
down_revision = "0111"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("merchant_keys", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.add_column("merchant_keys", sa.Column("revoked_at", sa.DateTime(), nullable=True))
    op.add_column("merchants", sa.Column("sign_types", sa.String(length=32), nullable=True))
    op.add_column("merchants", sa.Column("md5_key_previous", sa.String(length=64), nullable=True))
    op.add_column("merchants", sa.Column("md5_key_previous_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("md5_key_previous_until")
        batch.drop_column("md5_key_previous")
        batch.drop_column("sign_types")
    with op.batch_alter_table("merchant_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
