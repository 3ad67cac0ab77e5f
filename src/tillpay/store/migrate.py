"""Schema migrations through Alembic, callable from the CLI, the server and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from tillpay.store.engine import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` using the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (synchronous; call before the event loop runs)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema back to ``revision``."""
    command.downgrade(alembic_config(database_url), revision)
