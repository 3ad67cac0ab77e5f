"""Open Platform app ids, Antom client ids and key versions for merchants

Revision ID: 0103
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0103"
down_revision = "0106"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_merchants_app_id"), ["app_id"])
        batch_op.create_unique_constraint(batch_op.f("uq_merchants_client_id"), ["client_id"])
    op.create_table(
        "merchant_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_merchant_keys_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_keys")),
        sa.UniqueConstraint("merchant_id", "key_version", name="uq_merchant_keys_merchant_version"),
    )
    # Existing merchants get credentials derived from their unique partner id (2088 + 12 digits), so
    # they can use the new dialects at once; new merchants get random ones at onboarding.
    op.execute(
        "UPDATE merchants SET app_id = '2021' || substr(partner_id, 5), "
        "client_id = 'TP' || substr(partner_id, 5)"
    )
    op.execute(
        "INSERT INTO merchant_keys (merchant_id, key_version, public_key, created_at) "
        "SELECT id, 1, public_key, created_at FROM merchants WHERE public_key IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("merchant_keys")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_merchants_client_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_merchants_app_id"), type_="unique")
        batch_op.drop_column("client_id")
        batch_op.drop_column("app_id")
