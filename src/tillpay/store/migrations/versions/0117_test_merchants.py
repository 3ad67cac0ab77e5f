"""test merchants: each live merchant may have one test merchant (its test credentials), and a test
merchant has its own clock, moved forward by its owner (docs/sandbox.md)

Revision ID: 0117
Revises: 0116
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0117"
down_revision = "0116"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        # Set on a test merchant: the id of the live merchant whose test credentials it holds.
        batch.add_column(sa.Column("test_of", sa.Integer(), nullable=True))
        # How far a test merchant's clock is ahead of real time, in seconds; always 0 for live ones.
        batch.add_column(
            sa.Column("clock_offset_seconds", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_foreign_key("fk_merchants_test_of", "merchants", ["test_of"], ["id"])
        batch.create_unique_constraint("uq_merchants_test_of", ["test_of"])


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_constraint("uq_merchants_test_of", type_="unique")
        batch.drop_constraint("fk_merchants_test_of", type_="foreignkey")
        batch.drop_column("clock_offset_seconds")
        batch.drop_column("test_of")
