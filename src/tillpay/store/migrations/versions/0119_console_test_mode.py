"""console sessions: a session views its merchant's live data or its test merchant's test data

Revision ID: 0119
Revises: 0121
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0119"
down_revision = "0121"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        # The "Test data / Live data" switch: the session shows the test merchant's data when true.
        batch.add_column(sa.Column("test_mode", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("test_mode")
