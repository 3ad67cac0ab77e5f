"""The Alembic migrations create exactly the schema the code uses, and go down and up again."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from tillpay.store.engine import async_url, sync_url
from tillpay.store.migrate import alembic_config, at_head, downgrade, ensure_current, head_revision, upgrade
from tillpay.store.tables import metadata


def test_migrated_schema_matches_the_tables(db_url: str) -> None:
    # db_url is already at head (a copy of the migrated template): nothing is left to autogenerate.
    command.check(alembic_config(db_url))


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    downgrade(db_url, "base")
    engine = create_engine(sync_url(db_url))
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(db_url)
    engine = create_engine(sync_url(db_url))
    try:
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_database_urls_map_to_the_right_drivers() -> None:
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert sync_url("postgresql+asyncpg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert sync_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"


def test_the_cheap_head_check_agrees_with_alembic(db_url: str) -> None:
    assert head_revision() == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert at_head(db_url)  # the test database is migrated
    downgrade(db_url, "-1")
    assert not at_head(db_url)  # one behind: the CLI must upgrade
    ensure_current(db_url)
    assert at_head(db_url)
    downgrade(db_url, "base")
    assert not at_head(db_url)
    ensure_current(db_url)
    assert at_head(db_url)
