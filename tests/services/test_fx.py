"""FX payments and refunds through the services: margins, refund policies, rate history, CSV import."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import factories as f
from conftest import test_settings
from services.test_payments import balance, pay_cmd
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent
from tillpay.services import audit, fx, payments
from tillpay.services.payments import RefundCommand
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio


async def test_margin_is_charged_to_the_customer_and_kept_by_the_scheme(platform: Platform) -> None:
    await f.rates(platform)
    await fx.set_margin(platform, "USD", "CNY", 100)  # 1%
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    v = (await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))).payment
    assert v.wallet_mid_rate == Decimal("7.1023") and v.margin_bps == 100
    assert v.wallet_rate == Decimal("7.173323") and v.wallet_amount == 7173 and v.margin_amount == 71
    assert v.settle_amount == 1000
    assert await balance(platform, c) == 1_000_000 - 7173


async def test_full_refund_of_a_margin_payment_returns_every_minor_unit(platform: Platform) -> None:
    await f.rates(platform)
    await fx.set_margin(platform, "CNY", "USD", 75)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=999))
    for i, amount in enumerate((1, 332, 333, 333)):
        await payments.refund(
            platform, RefundCommand(m, f"R{i}", amount, "USD", "mapi", partner_trans_id="ORDER-1")
        )
    assert await balance(platform, c) == 1_000_000


async def test_refund_day_policy_uses_the_days_rate_and_books_the_difference(
    db_url: str, clock: FakeClock
) -> None:
    p = Platform(test_settings(db_url, fx_refund_policy="refund_day"), clock=clock)
    try:
        await fx.set_rate(p, "USD", "CNY", "7.0000")
        m = (await f.merchant(p, "USD")).merchant
        c = await f.customer(p, "CNY", balance=1_000_000)
        await payments.pay(p, pay_cmd(m, await f.code(p, c), amount=1000))  # 70.00 CNY
        clock.advance(3600)
        await fx.set_rate(p, "USD", "CNY", "6.5000")
        r1 = await payments.refund(p, RefundCommand(m, "R1", 400, "USD", "mapi", partner_trans_id="ORDER-1"))
        assert (r1.wallet_amount, r1.settle_amount, r1.fx_gain, r1.rate_policy) == (
            2600,
            400,
            200,
            "refund_day",
        )
        clock.advance(3600)
        await fx.set_rate(p, "USD", "CNY", "8.0000")
        r2 = await payments.refund(p, RefundCommand(m, "R2", 500, "USD", "mapi", partner_trans_id="ORDER-1"))
        assert (r2.wallet_amount, r2.fx_gain) == (4000, -500)  # the customer is never given more than is left
        r3 = await payments.refund(p, RefundCommand(m, "R3", 100, "USD", "mapi", partner_trans_id="ORDER-1"))
        assert r3.wallet_amount == 7000 - 2600 - 4000  # the last refund takes exactly the remainder
        assert await balance(p, c) == 1_000_000
        # cancel never uses the day's rate: it undoes the payment
        assert not await audit.audit(p)
    finally:
        await p.close()


async def test_payment_rates_follow_the_rate_history(platform: Platform, clock: FakeClock) -> None:
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await fx.set_rate(platform, "USD", "CNY", "7.0")
    await fx.set_rate(platform, "USD", "CNY", "7.5", effective_at=clock.now() + timedelta(hours=1))
    v1 = (await payments.pay(platform, pay_cmd(m, await f.code(platform, c), ptid="A", amount=100))).payment
    clock.advance(3601)
    v2 = (await payments.pay(platform, pay_cmd(m, await f.code(platform, c), ptid="B", amount=100))).payment
    assert (v1.wallet_rate, v2.wallet_rate) == (Decimal("7.0"), Decimal("7.5"))
    assert [r.rate for r in await fx.current_rates(platform)] == [Decimal("7.5")]


async def test_rates_csv_import_is_all_or_nothing(platform: Platform) -> None:
    good = "base,quote,rate,effective_at\nUSD,CNY,7.1,\nEUR,CNY,7.7,2026-01-01T00:00:00\n"
    assert await fx.import_rates_csv(platform, good) == 2
    for bad, needle in [
        ("base,quote,rate\nUSD,CNY,7.2\nUSD,XXX,1\n", "line 3"),
        ("base,quote,rate\nUSD,CNY,1e3\n", "line 2"),
        ("base,quote,rate\nUSD,USD,1\n", "line 2"),
        ("a,b\n1,2\n", "header"),
        ("base,quote,rate\n", "no rates"),
    ]:
        with pytest.raises(TillpayError) as e:
            await fx.import_rates_csv(platform, bad)
        assert needle in e.value.detail
    assert {(r.base, r.rate) for r in await fx.current_rates(platform)} == {
        ("USD", Decimal("7.1")),
        ("EUR", Decimal("7.7")),
    }


async def test_margin_bounds_and_amounts_too_small_to_convert(platform: Platform) -> None:
    with pytest.raises(TillpayError):
        await fx.set_margin(platform, "USD", "CNY", -1)
    with pytest.raises(TillpayError):
        await fx.set_margin(platform, "USD", "USD", 10)
    await fx.set_rate(platform, "KRW", "CNY", "0.0040")
    m = (await f.merchant(platform, "KRW")).merchant
    c = await f.customer(platform, "CNY")
    with pytest.raises(TillpayError) as e:
        await payments.pay(
            platform, pay_cmd(m, await f.code(platform, c), amount=1)
        )  # 1 KRW = 0.004 CNY, 0.00 when rounded
    assert e.value.code is Code.AMOUNT_OUT_OF_RANGE


CUR = st.sampled_from(["CNY", "USD", "JPY", "KWD"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=st.integers(100, 10**6),
    settle=CUR,
    wallet=CUR,
    rate=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("400"), places=4),
    margin=st.integers(0, 300),
    cuts=st.lists(st.integers(1, 10**6), min_size=1, max_size=4),
    policy=st.sampled_from(["original", "refund_day"]),
)
def test_any_fx_payment_refunded_in_parts_returns_exactly_what_was_paid(
    db_url: str,
    price: int,
    settle: str,
    wallet: str,
    rate: Decimal,
    margin: int,
    cuts: list[int],
    policy: str,
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        p = Platform(test_settings(db_url, fx_refund_policy=policy, confirm_above=""), clock=clock)
        try:
            for cur in {"CNY", "JPY", "KWD"}:
                await fx.set_rate(p, "USD", cur, str(rate))
            await fx.set_margin(p, settle, wallet, margin) if settle != wallet else None
            m = (await f.merchant(p, settle)).merchant
            funded = 10**8 * 10 ** exponent(wallet)  # the largest top-up
            c = await f.customer(p, wallet, balance=funded)
            try:
                v = (await payments.pay(p, pay_cmd(m, await f.code(p, c), amount=price))).payment
            except TillpayError as e:
                # Less than one minor unit in some currency: refused, never charged as zero.
                assert e.code is Code.AMOUNT_OUT_OF_RANGE
                return
            assert v.wallet_amount and v.settle_amount
            refunded = 0
            for i, cut in enumerate([*cuts, price]):
                part = min(cut, price - refunded)
                if part == 0:
                    break
                clock.advance(60)
                await fx.set_rate(p, "USD", "CNY", str(rate * Decimal("1.1")))
                await payments.refund(
                    p, RefundCommand(m, f"R{i}", part, settle, "mapi", partner_trans_id="ORDER-1")
                )
                refunded += part
                assert await balance(p, c) <= funded  # never more back than was paid
            assert await balance(p, c) == funded and v.wallet_amount
            assert not await audit.audit(p)
        finally:
            await p.close()

    asyncio.run(scenario())
