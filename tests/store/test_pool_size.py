"""``TILLPAY_DB_POOL_SIZE``: how many PostgreSQL connections each process keeps (and may open as many more
of for a moment); SQLite keeps its one connection per process whatever it says."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from conftest import test_settings
from tillpay.config import Settings
from tillpay.services.platform import Platform
from tillpay.store.engine import is_sqlite

pytestmark = pytest.mark.anyio


async def test_the_pool_keeps_the_size_it_is_given(db_url: str) -> None:
    p = Platform(test_settings(db_url, db_pool_size=3))
    try:
        pool = p.engine.pool
        if is_sqlite(db_url):
            assert pool.size() == 1  # type: ignore[attr-defined]
            return
        assert pool.size() == 3  # type: ignore[attr-defined]
        # Six at once: the three it keeps and three more for the moment; once returned, three stay open.
        conns = [await p.engine.connect() for _ in range(6)]
        try:
            await asyncio.gather(*(c.execute(text("SELECT 1")) for c in conns))
            assert pool.checkedout() == 6  # type: ignore[attr-defined]
        finally:
            for c in conns:
                await c.close()
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
