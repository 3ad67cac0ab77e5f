"""The console's Redeliver is rate limited: once per ``redeliver_interval_seconds`` per notification and
``redeliver_per_minute`` per merchant, counted and checked atomically (issue 14, finding 2's leftover:
Redeliver repeated a delivery at will). SQLite and PostgreSQL; the page against a live server on loopback.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

import factories as f
from conftest import LiveServer
from tillpay.services import attempts, console, console_auth
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import outbox
from tillpay.store import tables as t
from web.test_wallet_http import csrf_of

PASSWORD = "owner-password-1234"


async def _notifications(p: Platform, merchant_id: int, count: int, prefix: str = "ab") -> list[str]:
    """``count`` delivered notifications of the merchant, straight into the outbox."""
    ids = [f"{prefix}{merchant_id:08x}{i:08x}" for i in range(count)]
    async with p.engine.begin() as conn:
        for notify_id in ids:
            await outbox.enqueue(
                conn,
                notify_id=notify_id,
                merchant_id=merchant_id,
                # A literal loopback address: a live server's worker refuses it without a lookup or a
                # connection, so these tests send nothing anywhere.
                url="http://127.0.0.1:9/notify",
                event="payment",
                dialect="mapi",
                payload={"n": notify_id},
                now=p.now(),
            )
        await conn.execute(t.outbox.update().values(status="delivered"))
    return ids


async def _status(p: Platform, notify_id: str) -> str:
    async with p.engine.connect() as conn:
        return str(
            (
                await conn.execute(select(t.outbox.c.status).where(t.outbox.c.notify_id == notify_id))
            ).scalar_one()
        )


@pytest.mark.anyio
async def test_one_notification_is_redelivered_at_most_once_a_minute(
    platform: Platform, clock: FakeClock
) -> None:
    m = await f.merchant(platform)
    (n,) = await _notifications(platform, m.merchant.id, 1)
    assert await console.redeliver(platform, m.merchant.id, n) is True
    async with platform.engine.begin() as conn:  # delivered again
        await conn.execute(t.outbox.update().values(status="delivered"))
    clock.advance(20)
    with pytest.raises(attempts.Throttled) as wait:
        await console.redeliver(platform, m.merchant.id, n)
    assert wait.value.retry_after == 40
    assert await _status(platform, n) == "delivered"  # nothing changed
    clock.advance(40)
    assert await console.redeliver(platform, m.merchant.id, n) is True
    assert await _status(platform, n) == "pending"


@pytest.mark.anyio
async def test_a_merchant_redelivers_at_most_twenty_a_minute_and_another_merchant_is_not_held(
    platform: Platform, clock: FakeClock
) -> None:
    a, b = await f.merchant(platform), await f.merchant(platform, name="Other")
    mine = await _notifications(platform, a.merchant.id, 25)
    theirs = await _notifications(platform, b.merchant.id, 1)
    for n in mine[:20]:
        assert await console.redeliver(platform, a.merchant.id, n) is True
        clock.advance(1)
    with pytest.raises(attempts.Throttled) as wait:
        await console.redeliver(platform, a.merchant.id, mine[20])
    assert wait.value.retry_after == 40  # when the first of the twenty leaves the minute
    assert await _status(platform, mine[20]) == "delivered"
    assert await console.redeliver(platform, b.merchant.id, theirs[0]) is True
    clock.advance(40)
    assert await console.redeliver(platform, a.merchant.id, mine[20]) is True


@pytest.mark.anyio
async def test_concurrent_redelivers_are_counted_atomically(platform: Platform) -> None:
    m = await f.merchant(platform)
    ids = await _notifications(platform, m.merchant.id, 30)

    async def one(n: str) -> bool:
        try:
            return await console.redeliver(platform, m.merchant.id, n)
        except attempts.Throttled:
            return False

    done = await asyncio.gather(*(one(n) for n in ids), *(one(ids[0]) for _ in range(5)))
    assert sum(done) == platform.settings.redeliver_per_minute
    async with platform.engine.connect() as conn:
        pending = (
            await conn.execute(select(t.outbox.c.notify_id).where(t.outbox.c.status == "pending"))
        ).all()
    assert len(pending) == platform.settings.redeliver_per_minute


def test_the_console_says_when_to_redeliver_again(live: LiveServer) -> None:
    async def setup(p: Platform) -> tuple[str, str]:
        m = await f.merchant(p)
        await console_auth.add_user(
            p, partner_id=m.merchant.partner_id, login="owner@shop.test", password=PASSWORD, role="owner"
        )
        (n,) = await _notifications(p, m.merchant.id, 1)
        return m.merchant.partner_id, n

    _, n = live.run(setup)
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post(
        "/console/login", data={"login": "owner@shop.test", "password": PASSWORD, "csrf": csrf_of(page.text)}
    )
    assert r.status_code == 303
    form = {"csrf": csrf_of(c.get("/console/notifications").text)}
    first = c.post(f"/console/notifications/{n}/redeliver", data=form)
    assert first.status_code == 303 and "redelivered=" in first.headers["location"]
    second = c.post(f"/console/notifications/{n}/redeliver", data=form | {"back": "detail"})
    assert second.status_code == 303 and "wait=" in second.headers["location"]
    shown = c.get(second.headers["location"]).text
    assert 'id="redeliver-wait"' in shown and "try again in" in shown
    assert 'id="redelivered"' not in shown
    c.close()
