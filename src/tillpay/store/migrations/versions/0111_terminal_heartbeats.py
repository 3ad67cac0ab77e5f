"""terminal heartbeats: each terminal's latest beat, one row per terminal

Revision ID: 0111
Revises: 0110
Create Date: 2026-11-30 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0111"
down_revision = "0110"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "terminal_heartbeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=True),
        sa.Column("secondary_merchant_id", sa.String(length=64), nullable=True),
        sa.Column("equipment_type", sa.String(length=32), nullable=True),
        sa.Column("network_type", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.Column("scene_code", sa.String(length=64), nullable=True),
        sa.Column("reported_at", sa.DateTime(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("beats", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_terminal_heartbeats_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_heartbeats")),
        sa.UniqueConstraint("merchant_id", "terminal_id", name="uq_terminal_heartbeats_merchant_terminal"),
    )


def downgrade() -> None:
    op.drop_table("terminal_heartbeats")
