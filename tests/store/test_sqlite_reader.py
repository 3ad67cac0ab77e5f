"""On SQLite, a use case's read phase (``p.reader()``) begins its transaction deferred: it takes neither
the write lock nor the writers' turn (store/sqlite_inline.py), so another process's write does not wait
for it and it does not wait for that write; in WAL mode it reads one snapshot meanwhile. A write after it
(``then_write``), and every unit of work, begins with ``BEGIN IMMEDIATE`` as before."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from sqlite_turn import turn_is_free
from tillpay.services.platform import Platform
from tillpay.store import sqlite_inline
from tillpay.store import tables as t
from tillpay.store.uow import Reader

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def path_of(p: Platform) -> Path:
    return Path(str(make_url(p.settings.database_url).database))


def another_process(p: Platform) -> sqlite3.Connection:
    """A connection as another program has it: waits for no lock (fails at once with "locked")."""
    conn = sqlite3.connect(path_of(p), isolation_level=None)
    conn.execute("PRAGMA busy_timeout=0")
    return conn


RATE = "INSERT INTO fx_rates (base, quote, rate, effective_at, created_at) VALUES (?, 'CNY', '7', ?, ?)"


def add_rate(conn: sqlite3.Connection, base: str) -> None:
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    conn.execute(RATE, (base, now, now))


async def rates(r: Reader) -> int:
    return int((await r.conn.execute(select(func.count()).select_from(t.fx_rates))).scalar_one())


def holds_the_write_lock_now(p: Platform) -> bool:
    """Whether somebody holds SQLite's write lock (another program's BEGIN IMMEDIATE fails at once)."""
    probe = another_process(p)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        assert "locked" in str(e)
        return True
    finally:
        probe.close()
    return False


async def test_a_read_does_not_wait_for_another_process_s_write_nor_hold_it_up(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the read to take the write lock, it would wait for the writer below and give up after this.
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 500)
    async with platform.reader() as r:  # the process's connection is open before the writer begins
        assert await rates(r) == 0
    writer = another_process(platform)
    writer.execute("BEGIN IMMEDIATE")
    add_rate(writer, "USD")  # not committed yet
    async with platform.reader() as r:
        assert await rates(r) == 0  # at once, and without the uncommitted row
        writer.execute("COMMIT")  # the other process commits while the read is open
        assert await rates(r) == 0  # the read keeps its snapshot
        assert not holds_the_write_lock_now(platform)
        assert turn_is_free(path_of(platform))
        writer.execute("BEGIN IMMEDIATE")  # and another write can begin and commit meanwhile
        add_rate(writer, "EUR")
        writer.execute("COMMIT")
    async with platform.reader() as r:
        assert await rates(r) == 2
    writer.close()


async def test_a_write_after_the_read_begins_with_the_write_lock(platform: Platform) -> None:
    async with platform.reader() as r:
        assert await rates(r) == 0
        async with r.then_write() as uow:
            now = datetime.now(UTC)
            row = {"base": "USD", "quote": "CNY", "rate": "7", "effective_at": now, "created_at": now}
            await uow.conn.execute(insert(t.fx_rates).values(**row))
            assert holds_the_write_lock_now(platform)
            assert not turn_is_free(path_of(platform))
            await uow.commit()
        assert turn_is_free(path_of(platform))
        assert await rates(r) == 1  # reading on, on the same connection


async def test_a_unit_of_work_after_a_read_on_the_pooled_connection_begins_with_the_write_lock(
    platform: Platform,
) -> None:
    for _ in range(2):
        async with platform.reader() as r:
            await rates(r)
        async with platform.unit_of_work() as uow:
            await uow.conn.execute(select(func.count()).select_from(t.fx_rates))
            assert holds_the_write_lock_now(platform), "a unit of work began without the write lock"
            await uow.commit()
