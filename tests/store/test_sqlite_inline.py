"""The SQLite connection that runs statements on the loop: it waits for another process's write lock
without blocking the loop, and commits and rolls back like the driver it replaces."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from conftest import test_settings
from tillpay.services.platform import Platform
from tillpay.store import tables as t
from tillpay.store.migrate import upgrade


def _rate_row(base: str) -> dict[str, object]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {"base": base, "quote": "CNY", "rate": "7", "effective_at": now, "created_at": now}


def test_a_write_waits_for_another_process_lock_while_the_loop_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    upgrade(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")  # as Tillpay leaves every database it has opened
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    released = threading.Event()

    def release() -> None:
        time.sleep(0.6)
        other.execute("COMMIT")
        released.set()

    async def scenario() -> tuple[int, float]:  # float-ok: seconds
        p = Platform(test_settings(f"sqlite:///{path}"))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not released.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        start = time.monotonic()
        try:
            async with p.engine.begin() as conn:
                await conn.execute(insert(t.fx_rates).values(**_rate_row("USD")))
            waited = time.monotonic() - start
            await tick_task
            return ticks, waited
        finally:
            await p.close()

    threading.Thread(target=release).start()
    ticks, waited = asyncio.run(scenario())
    assert waited >= 0.5  # it waited for the lock instead of failing with "database is locked"
    assert ticks >= 20  # and the event loop ran other work meanwhile
    assert sqlite3.connect(path).execute("SELECT count(*) FROM fx_rates").fetchone() == (1,)


def test_commit_persists_and_rollback_discards(tmp_path: Path) -> None:
    path = tmp_path / "y.db"
    upgrade(f"sqlite:///{path}")

    async def scenario() -> int:
        p = Platform(test_settings(f"sqlite:///{path}"))
        try:
            async with p.engine.begin() as conn:
                await conn.execute(insert(t.fx_rates).values(**_rate_row("USD")))
            async with p.engine.connect() as conn:
                async with conn.begin() as tx:
                    await conn.execute(insert(t.fx_rates).values(**_rate_row("EUR")))
                    await tx.rollback()
            async with p.engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(t.fx_rates))).scalar_one())
        finally:
            await p.close()

    assert asyncio.run(scenario()) == 1
    # Another connection (another process) sees exactly the committed row.
    assert sqlite3.connect(path).execute("SELECT base FROM fx_rates").fetchall() == [("USD",)]
