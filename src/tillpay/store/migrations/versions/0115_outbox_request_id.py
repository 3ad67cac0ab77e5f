"""outbox request id: a notification remembers the id of the HTTP request whose change it tells of, sends
it as ``X-Request-Id`` and logs its delivery under it

Revision ID: 0115
Revises: 0114
Create Date: 2026-12-01 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0115"
down_revision = "0114"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        # 128: the longest caller-given X-Request-Id the server accepts (web/metrics.py).
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("request_id")
