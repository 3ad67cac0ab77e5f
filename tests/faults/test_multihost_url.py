"""Multi-host database URLs (libpq's ``h1:p1,h2:p2`` form) reach the first host that answers, through
both drivers: asyncpg (serve, worker) and psycopg (migrations)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import free_port
from sqlalchemy import text
from sqlalchemy.engine import make_url

from conftest import make_database
from tillpay.store.engine import async_url, create_engine, is_multi_host, sync_url
from tillpay.store.migrate import upgrade


def test_the_libpq_host_list_becomes_sqlalchemys_host_parameters() -> None:
    url = "postgresql://tp:secret@db1:5432,db2:6432/tillpay?target_session_attrs=read-write"
    u = make_url(async_url(url))
    assert u.drivername == "postgresql+asyncpg"
    assert u.query["host"] == ("db1:5432", "db2:6432")
    assert u.query["target_session_attrs"] == "read-write"
    assert (u.username, u.password, u.database) == ("tp", "secret", "tillpay")
    assert make_url(sync_url(url)).drivername == "postgresql+psycopg"
    assert is_multi_host(url)
    assert not is_multi_host("postgresql://tp@db1/tillpay")
    assert not is_multi_host("sqlite:///tillpay.db")
    # A single host is left as it was.
    assert async_url("postgresql://tp@db1:5432/tillpay") == "postgresql+asyncpg://tp@db1:5432/tillpay"


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database("postgres", request, tmp_path)


def _with_dead_first_host(single: str) -> str:
    u = make_url(single)
    dead = free_port()  # nothing listens there: a primary that is gone
    return f"postgresql://{u.username}:{u.password}@127.0.0.1:{dead},{u.host}:{u.port}/{u.database}?target_session_attrs=read-write"


@pytest.mark.postgres
def test_a_dead_first_host_is_skipped_by_both_drivers(pg_url: str) -> None:
    url = _with_dead_first_host(pg_url)
    upgrade(url)  # psycopg, through Alembic: would raise if it stopped at the dead host

    async def go() -> tuple[int, bool]:
        engine = create_engine(url, pool_size=2)
        try:
            async with engine.connect() as conn:
                port = (await conn.execute(text("SELECT inet_server_port()"))).scalar_one()
            return int(port), bool(engine.pool._pre_ping)  # type: ignore[attr-defined]  # the setting itself
        finally:
            await engine.dispose()

    port, pre_ping = asyncio.run(go())
    assert port == make_url(pg_url).port
    assert pre_ping  # a failover URL checks each pooled connection before use
