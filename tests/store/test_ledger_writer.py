"""The one ledger writer (store/ledger.py), batch form: what ``simulate``'s bulk days write through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

import factories as f
from tillpay.domain import ledger
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import wallets
from tillpay.services.platform import Platform
from tillpay.store import ledger as ledger_store
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def pay(user_id: int, to_user_id: int, amount: int, ref: str) -> ledger_store.Entry:
    """One wallet pays another (the audit checks each wallet's balance against its postings)."""
    return ledger_store.Entry(
        "adjustment",
        ref,
        ledger.transfer(
            ledger.wallet_account(user_id), amount, "CNY", ledger.wallet_account(to_user_id), amount, "CNY"
        ),
        AT,
    )


async def entries(p: Platform) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.journal_entries))).scalar_one())


async def test_a_batch_writes_every_entry_and_moves_each_wallet_by_its_net_change(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=500)
    c = await f.customer(platform, "CNY", balance=0)
    before = await entries(platform)
    async with platform.engine.begin() as conn:
        ids = await ledger_store.post_entries(
            conn,
            [
                pay(a.user.id, c.user.id, 600, "x:1"),
                pay(a.user.id, c.user.id, 400, "x:2"),
                pay(b.user.id, a.user.id, 50, "x:3"),
            ],
        )
    assert len(ids) == 3 and len(set(ids)) == 3
    assert await entries(platform) == before + 3
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 50
    assert (await wallets.user_by_login(platform, b.user.login_id)).balance == 450
    assert (await wallets.user_by_login(platform, c.user.login_id)).balance == 1000


async def test_a_batch_that_would_overdraw_a_wallet_writes_nothing(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=0)
    before = await entries(platform)
    with pytest.raises(TillpayError) as e:
        async with platform.engine.begin() as conn:
            await ledger_store.post_entries(
                conn, [pay(a.user.id, b.user.id, 600, "y:1"), pay(a.user.id, b.user.id, 401, "y:2")]
            )
    assert e.value.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await entries(platform) == before
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 1000


async def test_an_unbalanced_entry_is_refused_before_anything_is_written(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=0)
    lopsided = ledger_store.Entry(
        "adjustment",
        "z:1",
        [
            ledger.Posting(ledger.wallet_account(a.user.id), "CNY", -5),
            ledger.Posting(ledger.wallet_account(b.user.id), "CNY", 4),
        ],
        AT,
    )
    before = await entries(platform)
    with pytest.raises(ValueError):
        async with platform.engine.begin() as conn:
            await ledger_store.post_entries(conn, [lopsided])
    assert await entries(platform) == before


async def test_an_empty_batch_writes_nothing(platform: Platform) -> None:
    async with platform.engine.begin() as conn:
        assert await ledger_store.post_entries(conn, []) == []
