"""Magic codes in the services, with a fake clock: repeats, many in one minute, the answers on the
merchant's clock, and the places where they are not honoured (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, update

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.magic import Magic, Wallet, code_for
from tillpay.domain.payment import Status
from tillpay.services import magic, merchants, payments, wallets
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio


async def test_merchant(p: Platform) -> Merchant:
    live = await f.merchant(p, "USD")
    return (await merchants.test_merchant_of(p, live.merchant.partner_id)).merchant


test_merchant.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def cmd(m: Merchant, ptid: str, code: str, amount: int = 1250) -> payments.PayCommand:
    return payments.PayCommand(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=amount,
        price_currency="USD",
        settle_currency="USD",
        subject="Magic",
        dialect="mapi",
    )


async def test_a_repeat_answers_the_first_result_and_another_code_under_the_same_id_is_refused(
    platform: Platform,
) -> None:
    m = await test_merchant(platform)
    first = await payments.pay(platform, cmd(m, "R-1", code_for(Magic.SUCCESS)))
    again = await payments.pay(platform, cmd(m, "R-1", code_for(Magic.SUCCESS)))
    assert again.replayed and again.payment.trade_no == first.payment.trade_no and again.code is None
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, cmd(m, "R-1", code_for(Magic.BALANCE_NOT_ENOUGH)))
    assert e.value.code is Code.REPEAT_REQ_INCONSISTENT
    assert await payments.count_payments(platform, m.id) == 1


async def test_more_magic_payments_in_a_minute_than_a_device_has_codes_all_succeed(
    platform: Platform,
) -> None:
    m = await test_merchant(platform)
    for i in range(25):
        outcome = await payments.pay(platform, cmd(m, f"B-{i}", code_for(Magic.SUCCESS)))
        assert outcome.code is None, i
    user = await wallets.user_by_login(platform, magic.login_of(m, Wallet.FUNDED))
    assert len(await wallets.devices_of(platform, user.id)) == 3  # 10 codes a minute each
    assert user.sandbox


async def test_concurrent_magic_payments_all_succeed(platform: Platform) -> None:
    m = await test_merchant(platform)
    await payments.pay(platform, cmd(m, "C-0", code_for(Magic.SUCCESS)))  # the wallet exists
    outcomes = await asyncio.gather(
        *(payments.pay(platform, cmd(m, f"C-{i}", code_for(Magic.SUCCESS))) for i in range(1, 7))
    )
    assert [o.code for o in outcomes] == [None] * 6


async def test_the_customer_answers_on_the_merchants_clock(platform: Platform, clock: FakeClock) -> None:
    m = await test_merchant(platform)
    waiting = await payments.pay(platform, cmd(m, "K-1", code_for(Magic.CONFIRM_THEN_CONFIRMED, 90)))
    rejected = await payments.pay(platform, cmd(m, "K-2", code_for(Magic.CONFIRM_THEN_REJECTED, 30)))
    assert waiting.code is rejected.code is Code.WAIT_BUYER_CONFIRM
    assert await magic.answer_due(platform) == 0
    clock.advance(30)  # the platform's time: K-2 is due
    assert await magic.answer_due(platform) == 1
    assert (await payments.query(platform, m, partner_trans_id="K-2")).result_code is Code.USER_REJECTED
    # the merchant's own clock moved forward by a minute: K-1 is due although real time is not there yet
    async with platform.engine.begin() as conn:
        await conn.execute(
            update(t.merchants).where(t.merchants.c.id == m.id).values(clock_offset_seconds=60)
        )
    assert await magic.answer_due(platform) == 1
    assert (await payments.query(platform, m, partner_trans_id="K-1")).status is Status.TRADE_SUCCESS
    assert await magic.answer_due(platform) == 0  # each answered once


async def test_an_answer_too_late_finds_the_payment_cancelled_and_changes_nothing(platform: Platform) -> None:
    m = await test_merchant(platform)
    await payments.pay(platform, cmd(m, "L-1", code_for(Magic.CONFIRM_THEN_CONFIRMED, 5)))
    cancelled = await payments.cancel(platform, m, partner_trans_id="L-1", dialect="mapi")
    assert cancelled.action == "close"
    platform.clock.advance(5)  # type: ignore[attr-defined]
    assert await magic.answer_due(platform) == 0
    view = await payments.query(platform, m, partner_trans_id="L-1")
    assert view.status is Status.TRADE_CLOSED and view.paid_at is None


async def test_a_live_merchant_on_a_production_server_gets_no_magic(platform: Platform) -> None:
    live = (await f.merchant(platform, "USD")).merchant
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, cmd(live, "N-1", code_for(Magic.SUCCESS)))
    assert e.value.code is Code.INVALID_CODE
    assert magic.honoured(platform, live, code_for(Magic.SUCCESS)) is None
    async with platform.engine.connect() as conn:
        users = (await conn.execute(select(func.count()).select_from(t.wallet_users))).scalar_one()
    assert users == 0
    row: Any = type("Row", (), {"payment_id": 1, "refund_id": None})()
    assert await magic.fails_delivery(platform, live, row) is False


async def test_a_sandbox_server_honours_magic_codes_for_live_merchants(sandbox_platform: Platform) -> None:
    live = (await f.merchant(sandbox_platform, "USD")).merchant
    assert magic.honoured(sandbox_platform, live, code_for(Magic.SUCCESS)) is not None
    assert (await payments.pay(sandbox_platform, cmd(live, "S-1", code_for(Magic.SUCCESS)))).code is None


async def test_concurrent_first_uses_find_the_wallet_set_up(platform: Platform) -> None:
    m = await test_merchant(platform)
    outcomes = await asyncio.gather(
        *(
            payments.pay(platform, cmd(m, f"W-{i}", code_for(Magic.CONFIRM_THEN_CONFIRMED, 99)))
            for i in range(4)
        ),
        *(payments.pay(platform, cmd(m, f"F-{i}", code_for(Magic.BUYER_FROZEN))) for i in range(4)),
    )
    assert [o.code for o in outcomes] == [Code.WAIT_BUYER_CONFIRM] * 4 + [Code.BUYER_FROZEN] * 4
    confirms = await wallets.user_by_login(platform, magic.login_of(m, Wallet.CONFIRMS))
    assert confirms.balance == 100_000_000 * 100  # topped up once
