"""Schema migrations through Alembic, callable from the CLI, the server and the tests."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tillpay.store.engine import sync_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"', re.M)
_DOWN = re.compile(r'^down_revision\s*=\s*"([^"]+)"', re.M)


async def database_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions the database says it is at (``alembic_version``), read on the server's engine."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        return frozenset(r[0] for r in rows)


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` using the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The packaged head revision, read from the migration files' ``revision``/``down_revision`` lines.

    None when that is not one clear head (then Alembic itself decides).
    """
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text()
        rev = _REVISION.search(text)
        if rev is None:
            return None
        revisions.add(rev.group(1))
        downs.update(m.group(1) for m in _DOWN.finditer(text))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def at_head(database_url: str) -> bool:
    """Whether the database's schema is already at the packaged head (one cheap query, no Alembic)."""
    head = head_revision()
    if head is None:
        return False
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except sa.exc.DBAPIError:
        return False  # a new database (no alembic_version yet) or one Alembic must look at
    finally:
        engine.dispose()
    return list(versions) == [head]


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (synchronous; call before the event loop runs)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def ensure_current(database_url: str) -> None:
    """Upgrade the schema to the head unless it is there already (what every CLI command does first)."""
    if not at_head(database_url):
        upgrade(database_url)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema back to ``revision``."""
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)
