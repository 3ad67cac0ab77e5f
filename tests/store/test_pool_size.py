"""``TILLPAY_DB_POOL_SIZE``: how many PostgreSQL connections each process opens at most and keeps open (a
request that finds them all in use waits for one); SQLite keeps its one connection per process whatever it
says."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from sqlalchemy import event, text

from conftest import test_settings
from tillpay.config import Settings
from tillpay.services.platform import Platform
from tillpay.store.engine import is_sqlite

pytestmark = pytest.mark.anyio


async def test_the_pool_keeps_the_size_it_is_given_and_never_opens_more(db_url: str) -> None:
    p = Platform(test_settings(db_url, db_pool_size=3))
    try:
        pool = p.engine.pool
        if is_sqlite(db_url):
            assert pool.size() == 1  # type: ignore[attr-defined]
            return
        assert pool.size() == 3  # type: ignore[attr-defined]
        opened = 0

        def count(*_: object) -> None:
            nonlocal opened
            opened += 1

        event.listen(p.engine.sync_engine, "connect", count)
        # Three at once: the three it keeps. A fourth waits for one of them instead of opening another
        # (an extra connection closed again on its return cost a new PostgreSQL backend every time).
        conns = [await p.engine.connect() for _ in range(3)]
        fourth = asyncio.ensure_future(p.engine.connect())
        await asyncio.sleep(0.3)
        assert not fourth.done(), "a fourth connection was opened beside the pool's three"
        await conns.pop().close()
        conns.append(await asyncio.wait_for(fourth, 5))
        await asyncio.gather(*(c.execute(text("SELECT 1")) for c in conns))
        assert pool.checkedout() == 3  # type: ignore[attr-defined]
        for c in conns:
            await c.close()
        assert pool.checkedin() == 3  # type: ignore[attr-defined]

        # A burst of twelve short transactions shares the three: nothing more is opened, nor closed.
        async def one() -> None:
            async with p.engine.connect() as c:
                await c.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(*(one() for _ in range(12)))
        assert opened == 3
        assert pool.checkedin() == 3  # type: ignore[attr-defined]
    finally:
        await p.close()


def test_the_size_comes_from_the_environment_and_must_be_sensible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLPAY_DB_POOL_SIZE", "25")
    assert Settings().db_pool_size == 25
    for wrong in ("0", "-1", "many", "1001"):
        monkeypatch.setenv("TILLPAY_DB_POOL_SIZE", wrong)
        with pytest.raises(ValidationError, match="db_pool_size"):
            Settings()
    monkeypatch.delenv("TILLPAY_DB_POOL_SIZE")
    assert Settings().db_pool_size == 10
