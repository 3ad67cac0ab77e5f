"""notify attempt request: each delivery attempt keeps the request as it was sent (headers and body, the
body capped), for the console's notification inspector

Revision ID: 0116
Revises: 0115
Create Date: 2026-12-01 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0116"
down_revision = "0115"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notify_attempts") as batch:
        # JSON object of the headers Tillpay set; None for attempts recorded before this revision.
        batch.add_column(sa.Column("request_headers", sa.Text(), nullable=True))
        # The body as sent (UTF-8), cut at outbox.REQUEST_BODY_CHARS.
        batch.add_column(sa.Column("request_body", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notify_attempts") as batch:
        batch.drop_column("request_body")
        batch.drop_column("request_headers")
