"""``p.reader(snapshot=True)``: every statement of the read sees one moment, so figures read one after
another add up (a metrics scrape's queue counts, a notification's status beside its attempts). On
PostgreSQL the default, READ COMMITTED, takes a snapshot per statement; the snapshot reader uses
REPEATABLE READ and the pool puts the default back afterwards. SQLite's transaction is one snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text

from tillpay.services.platform import Platform
from tillpay.store import tables as t
from tillpay.store.uow import Reader

pytestmark = pytest.mark.anyio


async def rates(r: Reader) -> int:
    return int((await r.conn.execute(select(func.count()).select_from(t.fx_rates))).scalar_one())


async def add_rate(p: Platform, base: str) -> None:
    now = datetime.now(UTC)
    async with p.engine.begin() as conn:
        await conn.execute(
            insert(t.fx_rates).values(base=base, quote="CNY", rate="7", effective_at=now, created_at=now)
        )


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_snapshot_read_does_not_see_a_commit_made_halfway_and_a_plain_read_does(
    platform: Platform,
) -> None:
    async with platform.reader(snapshot=True) as r:
        before = await rates(r)
        await add_rate(platform, "USD")  # another request commits between the two statements
        assert await rates(r) == before
    async with platform.reader() as r:
        before = await rates(r)
        await add_rate(platform, "EUR")
        assert await rates(r) == before + 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_the_connection_goes_back_to_the_default_isolation(platform: Platform) -> None:
    async with platform.reader(snapshot=True) as r:
        assert (await r.conn.execute(text("SHOW transaction_isolation"))).scalar_one() == "repeatable read"
    for _ in range(3):  # whichever pooled connection comes next
        async with platform.reader() as r:
            assert (await r.conn.execute(text("SHOW transaction_isolation"))).scalar_one() == "read committed"


async def test_a_snapshot_read_reads_as_any_other_on_both_databases(platform: Platform) -> None:
    await add_rate(platform, "USD")
    async with platform.reader(snapshot=True) as r:
        assert await rates(r) == 1
    await add_rate(platform, "EUR")
    async with platform.reader(snapshot=True) as r:
        assert await rates(r) == 2
