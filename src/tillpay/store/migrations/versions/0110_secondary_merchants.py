"""secondary merchants and their stores; the secondary merchant and store name on payments

Revision ID: 0110
Revises: 0109
Create Date: 2026-11-30 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0110"
down_revision = "0109"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secondary_merchants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("secondary_merchant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("merchant_type", sa.String(length=16), nullable=True),
        sa.Column("registration_no", sa.String(length=64), nullable=True),
        sa.Column("register_country", sa.String(length=2), nullable=True),
        sa.Column("register_address", sa.String(length=256), nullable=True),
        sa.Column("shareholder_name", sa.String(length=64), nullable=True),
        sa.Column("shareholder_id", sa.String(length=64), nullable=True),
        sa.Column("representative_name", sa.String(length=64), nullable=True),
        sa.Column("representative_id", sa.String(length=64), nullable=True),
        sa.Column("settlement_no", sa.String(length=64), nullable=True),
        sa.Column("contact_no", sa.String(length=64), nullable=True),
        sa.Column("contact_email", sa.String(length=128), nullable=True),
        sa.Column("cs_no", sa.String(length=64), nullable=True),
        sa.Column("cs_email", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("reject_reason", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_secondary_merchants_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secondary_merchants")),
        sa.UniqueConstraint(
            "merchant_id", "secondary_merchant_id", name="uq_secondary_merchants_merchant_smid"
        ),
    )
    op.create_table(
        "secondary_stores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("secondary_merchant_id", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("store_name", sa.String(length=256), nullable=False),
        sa.Column("store_country", sa.String(length=2), nullable=False),
        sa.Column("store_address", sa.String(length=256), nullable=False),
        sa.Column("store_industry", sa.String(length=4), nullable=False),
        sa.Column("internal_store_photo", sa.String(length=512), nullable=True),
        sa.Column("external_storefront_photo", sa.String(length=512), nullable=True),
        sa.Column("extend_params", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("reject_reason", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_secondary_stores_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secondary_stores")),
        sa.UniqueConstraint(
            "merchant_id",
            "secondary_merchant_id",
            "store_id",
            name="uq_secondary_stores_merchant_smid_store",
        ),
    )
    op.add_column("payments", sa.Column("secondary_merchant_id", sa.String(length=64), nullable=True))
    op.add_column("payments", sa.Column("secondary_merchant_name", sa.String(length=128), nullable=True))
    op.add_column("payments", sa.Column("secondary_merchant_industry", sa.String(length=4), nullable=True))
    op.add_column("payments", sa.Column("store_name", sa.String(length=256), nullable=True))


def downgrade() -> None:
    # SQLite drops columns by copying the table; batch mode does that on SQLite and plain ALTERs elsewhere.
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("store_name")
        batch.drop_column("secondary_merchant_industry")
        batch.drop_column("secondary_merchant_name")
        batch.drop_column("secondary_merchant_id")
    op.drop_table("secondary_stores")
    op.drop_table("secondary_merchants")
