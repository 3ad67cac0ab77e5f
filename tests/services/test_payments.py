"""The payment use cases on SQLite and PostgreSQL; every test ends with a clean ledger audit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

import factories as f
from tillpay.domain import paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import payments, wallets
from tillpay.services import risk as risk_service
from tillpay.services.payments import PayCommand, PrecreateCommand, RefundCommand
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.services.views import PayOutcome, mask_login
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio


def pay_cmd(m: Merchant, code: str, amount: int = 1250, ptid: str = "ORDER-1", **kw: object) -> PayCommand:
    args: dict[str, object] = dict(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=amount,
        price_currency=m.settlement_currency,
        settle_currency=m.settlement_currency,
        subject="Coffee",
        dialect="mapi",
    )
    args.update(kw)
    return PayCommand(**args)  # type: ignore[arg-type]


async def balance(p: Platform, c: f.Customer) -> int:
    return (await wallets.user_by_login(p, c.user.login_id)).balance


async def count(p: Platform, table: t.Table) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_pay_in_the_wallet_currency_charges_the_wallet_once(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert out.code is None
    assert out.payment.status is Status.TRADE_SUCCESS
    assert out.payment.wallet_amount == 1250
    assert await balance(platform, c) == 10_000 - 1250


async def test_second_pay_with_same_id_returns_first_result_without_charging_again(
    platform: Platform,
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    code = await f.code(platform, c)
    first = await payments.pay(platform, pay_cmd(m, code))
    again = await payments.pay(platform, pay_cmd(m, code))
    assert again.replayed and again.payment.trade_no == first.payment.trade_no
    assert await balance(platform, c) == 10_000 - 1250


async def test_same_id_with_different_amount_is_repeat_req_inconsistent(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    code = await f.code(platform, c)
    await payments.pay(platform, pay_cmd(m, code))
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, code, amount=1251))
    assert e.value.code is Code.REPEAT_REQ_INCONSISTENT
    assert await balance(platform, c) == 10_000 - 1250


async def test_a_code_pays_only_once(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    code = await f.code(platform, c)
    await payments.pay(platform, pay_cmd(m, code, ptid="A"))
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, code, ptid="B"))
    assert e.value.code is Code.CODE_USED
    assert await payments.count_payments(platform, m.id) == 1


async def test_the_next_code_of_the_same_minute_uses_the_next_slot(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    first = await f.code(platform, c)
    await payments.pay(platform, pay_cmd(m, first, ptid="A"))
    second = await f.code(platform, c)
    assert second != first and paycode.parse(second).slot == paycode.parse(first).slot + 1
    out = await payments.pay(platform, pay_cmd(m, second, ptid="B"))
    assert out.code is None


async def test_an_old_code_is_expired_and_a_made_up_one_is_invalid(
    platform: Platform, clock: FakeClock
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    code = await f.code(platform, c)
    clock.advance(60 * 5)
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, code, ptid="A"))
    assert e.value.code is Code.EXPIRED_CODE
    made_up = code[:-7] + f"{(int(code[-7:]) + 1) % 10**7:07d}"
    for bad in (made_up, "281234567800000000", "12345", "2" * 18):
        with pytest.raises(TillpayError) as e:
            await payments.pay(platform, pay_cmd(m, bad, ptid="B"))
        assert e.value.code is Code.INVALID_CODE
    assert await balance(platform, c) == 10_000
    assert await payments.count_payments(platform, m.id) == 0


async def test_too_many_bad_codes_for_a_device_blocks_even_a_good_one(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    good = await f.code(platform, c)
    bad = good[:-7] + f"{(int(good[-7:]) + 1) % 10**7:07d}"
    for _ in range(platform.settings.max_bad_codes_per_device):
        with pytest.raises(TillpayError):
            await payments.pay(platform, pay_cmd(m, bad, ptid="X"))
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, good, ptid="Y"))
    assert e.value.code is Code.CODE_ATTEMPTS_EXCEEDED
    assert await balance(platform, c) == 10_000


async def assert_refused_for_balance(
    p: Platform, c: f.Customer, out: PayOutcome, code: str, left: int
) -> None:
    """Closed with the balance failure at once: never waiting for the customer, nothing charged, nothing
    posted, nothing notified, and the code still unused (the customer's next code is the same one)."""
    assert out.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert out.payment.status is Status.TRADE_CLOSED and out.payment.paid_at is None
    assert out.payment.result_code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await payments.pending_for_user(p, c.user.id) == []
    assert await balance(p, c) == left
    assert await count(p, t.code_uses) == 0 and await f.code(p, c) == code
    async with p.engine.connect() as conn:
        paid_entries = select(func.count()).where(t.journal_entries.c.payment_id == out.payment.id)
        assert (await conn.execute(paid_entries)).scalar_one() == 0
    explained = await risk_service.explain(p, out.payment.trade_no)
    assert (explained.verdict, explained.rule) == ("DECLINE", "balance")


async def test_insufficient_balance_closes_the_payment_and_charges_nothing(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1000)
    code = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, code))
    await assert_refused_for_balance(platform, c, out, code, 1000)
    # The same request again answers the same failure; after a top-up the same code pays a new order.
    again = await payments.pay(platform, pay_cmd(m, code))
    assert again.replayed and again.code is Code.BUYER_BALANCE_NOT_ENOUGH
    await wallets.topup(platform, c.user.login_id, 1000)
    paid = await payments.pay(platform, pay_cmd(m, code, ptid="ORDER-2"))
    assert paid.code is None and await balance(platform, c) == 2000 - 1250


async def test_over_balance_above_the_confirm_limit_is_refused_at_once_not_sent_to_confirm(
    platform: Platform,
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)  # 1000.00 CNY; the confirm limit is 2000.00
    code = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, code, amount=250_000))
    await assert_refused_for_balance(platform, c, out, code, 100_000)
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, c.pin)
    assert e.value.code is Code.CONFIRMATION_NOT_FOUND
    assert await balance(platform, c) == 100_000


async def test_over_balance_compares_the_converted_wallet_amount(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "USD")).merchant
    # 19.99 USD is 141.97 CNY: 100.00 CNY is more than 1999 but not enough.
    c = await f.customer(platform, "CNY", balance=10_000)
    code = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, code, amount=1999))
    assert out.payment.wallet_amount == 14197 and out.payment.wallet_currency == "CNY"
    await assert_refused_for_balance(platform, c, out, code, 10_000)
    # 300.00 USD is 2130.69 CNY, above the 2000.00 CNY confirm limit: refused, not sent to confirm.
    big = await payments.pay(platform, pay_cmd(m, code, amount=30_000, ptid="ORDER-2"))
    await assert_refused_for_balance(platform, c, big, code, 10_000)
    # Exactly enough pays.
    await wallets.topup(platform, c.user.login_id, 14197 - 10_000)
    paid = await payments.pay(platform, pay_cmd(m, code, amount=1999, ptid="ORDER-3"))
    assert paid.code is None and await balance(platform, c) == 0


async def test_over_balance_is_refused_on_the_careful_path_too(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1000)
    # A wrong code from this terminal within the rule's window sends its next pay down the careful path.
    await risk_service.set_rules(platform, "scheme", "", {"terminal_bad_codes": 5})
    with pytest.raises(TillpayError):
        await payments.pay(platform, pay_cmd(m, "281234567800000000", ptid="BAD", terminal_id="T1"))
    code = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, code, amount=250_000, terminal_id="T1"))
    await assert_refused_for_balance(platform, c, out, code, 1000)


async def test_other_declines_are_reported_before_the_balance_and_spend_the_code(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1000)
    await risk_service.set_rules(platform, "scheme", "", {"per_payment_limit": {"CNY": "10.00"}})
    code = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, code, amount=1250))
    assert out.code is Code.PAYMENT_AMOUNT_EXCEED_LIMIT
    assert await count(platform, t.code_uses) == 1 and await f.code(platform, c) != code


async def test_balance_that_drops_before_the_confirm_closes_the_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=300_000)
    waiting = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    assert waiting.code is Code.WAIT_BUYER_CONFIRM
    small = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=100_000, ptid="B"))
    assert small.code is None and await balance(platform, c) == 200_000
    closed = await payments.confirm(platform, c.user.id, c.pin)
    assert closed.status is Status.TRADE_CLOSED and closed.result_code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await balance(platform, c) == 200_000
    assert await payments.pending_for_user(platform, c.user.id) == []


async def test_amount_over_the_limit_waits_for_the_customer_then_pays_on_confirm(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    assert out.code is Code.WAIT_BUYER_CONFIRM and out.payment.status is Status.WAIT_BUYER_PAY
    assert await balance(platform, c) == 1_000_000
    pending = await payments.pending_for_user(platform, c.user.id)
    assert [v.trade_no for v in pending] == [out.payment.trade_no]
    paid = await payments.confirm(platform, c.user.id, "123456")
    assert paid.status is Status.TRADE_SUCCESS
    assert await balance(platform, c) == 1_000_000 - 250_000
    assert (await payments.query(platform, m, partner_trans_id="ORDER-1")).status is Status.TRADE_SUCCESS


async def test_three_wrong_pins_close_the_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    for _ in range(2):
        with pytest.raises(TillpayError) as e:
            await payments.confirm(platform, c.user.id, "000000")
        assert e.value.code is Code.WRONG_PIN
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "000000")
    assert e.value.code is Code.USER_PAYMENT_VERIFICATION_FAILED
    v = await payments.query(platform, m, partner_trans_id="ORDER-1")
    assert v.status is Status.TRADE_CLOSED and v.result_code is Code.USER_PAYMENT_VERIFICATION_FAILED
    assert await balance(platform, c) == 1_000_000


async def test_customer_rejects_and_nothing_is_charged(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    v = await payments.reject(platform, c.user.id)
    assert v.status is Status.TRADE_CLOSED and v.result_code is Code.USER_REJECTED
    assert await balance(platform, c) == 1_000_000


async def test_unconfirmed_payment_closes_after_its_timeout(platform: Platform, clock: FakeClock) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    clock.advance(platform.settings.payment_timeout_seconds - 1)
    assert await payments.expire_due(platform) == 0
    clock.advance(2)
    assert await payments.expire_due(platform) == 1
    v = await payments.query(platform, m, partner_trans_id="ORDER-1")
    assert v.status is Status.TRADE_CLOSED and v.result_code is Code.PAYMENT_TIMEOUT
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456")
    assert e.value.code is Code.CONFIRMATION_NOT_FOUND
    assert await balance(platform, c) == 1_000_000


async def test_fx_payment_locks_the_quote_and_posts_both_currencies(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1999))  # 19.99 USD
    v = out.payment
    assert v.settle_amount == 1999 and v.settle_currency == "USD"
    assert v.wallet_currency == "CNY" and v.wallet_rate == Decimal("7.1023")
    assert v.wallet_amount == 14197  # 19.99 * 7.1023 = 141.974977 -> 141.97 (half up)
    assert await balance(platform, c) == 1_000_000 - 14197


async def test_price_in_another_currency_is_converted_to_settlement(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    out = await payments.pay(
        platform, pay_cmd(m, await f.code(platform, c), amount=1000, price_currency="JPY")
    )
    v = out.payment
    assert (v.price_amount, v.price_currency) == (1000, "JPY")
    assert v.settle_amount == 661  # 1000 JPY / 151.37 = 6.6063 USD
    assert v.wallet_currency == "CNY" and v.wallet_amount == 4692  # crossed through USD


async def test_missing_rate_refuses_the_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "KRW", balance=1_000_000)
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert e.value.code is Code.NO_EXCHANGE_RATE
    assert await count(platform, t.payments) == 0


async def test_wrong_settlement_currency_and_bad_amounts_are_refused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY")
    code = await f.code(platform, c)
    cases = [
        (pay_cmd(m, code, settle_currency="USD", price_currency="USD"), Code.CURRENCY_NOT_SUPPORT),
        (pay_cmd(m, code, amount=0), Code.AMOUNT_OUT_OF_RANGE),
        (pay_cmd(m, code, amount=-1), Code.AMOUNT_OUT_OF_RANGE),
        (pay_cmd(m, code, amount=10_000_000_001), Code.AMOUNT_OUT_OF_RANGE),
        (pay_cmd(m, code, price_currency="XXX"), Code.CURRENCY_NOT_SUPPORT),
    ]
    for cmd, expected in cases:
        with pytest.raises(TillpayError) as e:
            await payments.pay(platform, cmd)
        assert e.value.code is expected
    assert await count(platform, t.payments) == 0 and await count(platform, t.code_uses) == 0


async def test_frozen_merchant_is_declined(platform: Platform) -> None:
    from tillpay.services.merchants import set_merchant_status

    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY")
    m = await set_merchant_status(platform, m.partner_id, "frozen")
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert out.code is Code.MERCHANT_FROZEN and out.payment.status is Status.TRADE_CLOSED


async def test_several_partial_refunds_then_the_order_closes(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))  # 10.00 USD = 71.02 CNY
    paid_cny = 1_000_000 - await balance(platform, c)
    refunds = []
    for i, amount in enumerate((333, 333, 334)):
        r = await payments.refund(
            platform, RefundCommand(m, f"R{i}", amount, "USD", "mapi", partner_trans_id="ORDER-1")
        )
        refunds.append(r)
    assert sum(r.wallet_amount for r in refunds) == paid_cny
    assert sum(r.settle_amount for r in refunds) == 1000
    assert await balance(platform, c) == 1_000_000
    v = await payments.query(platform, m, partner_trans_id="ORDER-1")
    assert v.status is Status.TRADE_CLOSED and v.refunded_price == 1000


async def test_a_payment_s_refunds_are_read_in_three_statements_however_many(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    paid = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))
    assert await payments.refunds_of(platform, paid.payment.id) == []
    for i in range(4):
        await payments.refund(
            platform, RefundCommand(m, f"R{i}", 100 + i, "CNY", "mapi", partner_trans_id="ORDER-1")
        )
    selects: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(platform.engine.sync_engine, "before_cursor_execute", seen)
    try:
        found = await payments.refunds_of(platform, paid.payment.id)
    finally:
        event.remove(platform.engine.sync_engine, "before_cursor_execute", seen)
    assert [(r.partner_refund_id, r.price_amount) for r in found] == [(f"R{i}", 100 + i) for i in range(4)]
    # Each refund carries its payment as it is now: refunded by all four.
    assert all(r.payment.trade_no == paid.payment.trade_no for r in found)
    assert {r.payment.refunded_price for r in found} == {100 + 101 + 102 + 103}
    assert all(r.payment.buyer_login == mask_login(c.user.login_id) for r in found)
    assert len(selects) == 3, selects  # the refunds, their payment, the customer's login


async def test_refund_over_the_amount_left_is_refused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY")
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))
    await payments.refund(platform, RefundCommand(m, "R1", 600, "CNY", "mapi", partner_trans_id="ORDER-1"))
    with pytest.raises(TillpayError) as e:
        await payments.refund(
            platform, RefundCommand(m, "R2", 401, "CNY", "mapi", partner_trans_id="ORDER-1")
        )
    assert e.value.code is Code.REFUND_AMOUNT_EXCEED
    assert await count(platform, t.refunds) == 1


async def test_same_refund_id_refunds_once_and_with_other_amount_is_inconsistent(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=5000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))
    r1 = await payments.refund(
        platform, RefundCommand(m, "R1", 300, "CNY", "mapi", partner_trans_id="ORDER-1")
    )
    r2 = await payments.refund(
        platform, RefundCommand(m, "R1", 300, "CNY", "mapi", partner_trans_id="ORDER-1")
    )
    assert r1.refund_no == r2.refund_no
    assert await balance(platform, c) == 5000 - 1000 + 300
    with pytest.raises(TillpayError) as e:
        await payments.refund(
            platform, RefundCommand(m, "R1", 301, "CNY", "mapi", partner_trans_id="ORDER-1")
        )
    assert e.value.code is Code.REPEAT_REQ_INCONSISTENT


async def test_a_merchant_cannot_refund_query_or_cancel_another_merchants_order(platform: Platform) -> None:
    a = (await f.merchant(platform, "CNY")).merchant
    b = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=5000)
    paid = await payments.pay(platform, pay_cmd(a, await f.code(platform, c), amount=1000))
    for call in (
        payments.refund(platform, RefundCommand(b, "R1", 100, "CNY", "mapi", partner_trans_id="ORDER-1")),
        payments.refund(platform, RefundCommand(b, "R2", 100, "CNY", "mapi", trade_no=paid.payment.trade_no)),
        payments.query(platform, b, trade_no=paid.payment.trade_no),
        payments.cancel(platform, b, trade_no=paid.payment.trade_no),
    ):
        with pytest.raises(TillpayError) as e:
            await call
        assert e.value.code is Code.TRADE_NOT_EXIST
    # Cancelling B's own (unused) id leaves A's payment alone.
    out = await payments.cancel(platform, b, partner_trans_id="ORDER-1")
    assert out.action == "none"
    assert (await payments.query(platform, a, partner_trans_id="ORDER-1")).status is Status.TRADE_SUCCESS
    assert await balance(platform, c) == 4000


async def test_cancel_of_a_paid_order_refunds_it_in_full(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=5000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))
    await payments.refund(platform, RefundCommand(m, "R1", 300, "CNY", "mapi", partner_trans_id="ORDER-1"))
    out = await payments.cancel(platform, m, partner_trans_id="ORDER-1")
    assert out.action == "refund" and out.payment.status is Status.TRADE_CLOSED
    assert await balance(platform, c) == 5000
    again = await payments.cancel(platform, m, partner_trans_id="ORDER-1")
    assert again.action == "none"
    assert await balance(platform, c) == 5000


async def test_cancel_of_a_waiting_order_closes_it_so_it_cannot_be_confirmed(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    out = await payments.cancel(platform, m, partner_trans_id="ORDER-1")
    assert out.action == "close"
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456")
    assert e.value.code is Code.CONFIRMATION_NOT_FOUND
    assert await balance(platform, c) == 1_000_000


async def test_cancel_before_the_pay_arrives_stops_a_late_pay_from_charging(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=5000)
    out = await payments.cancel(platform, m, partner_trans_id="ORDER-1")
    assert out.action == "none"
    late = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert late.payment.status is Status.TRADE_CLOSED and late.code is Code.TRADE_HAS_CLOSE
    assert await balance(platform, c) == 5000
    with pytest.raises(TillpayError) as e:
        await payments.query(platform, m, partner_trans_id="ORDER-1")
    assert e.value.code is Code.TRADE_NOT_EXIST


async def test_refund_of_an_unpaid_or_closed_order_is_refused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=250_000))
    with pytest.raises(TillpayError) as e:
        await payments.refund(
            platform, RefundCommand(m, "R1", 100, "CNY", "mapi", partner_trans_id="ORDER-1")
        )
    assert e.value.code is Code.TRADE_STATUS_ERROR
    with pytest.raises(TillpayError) as e:
        await payments.refund(platform, RefundCommand(m, "R1", 100, "CNY", "mapi", partner_trans_id="NOPE"))
    assert e.value.code is Code.TRADE_NOT_EXIST


async def test_refund_after_the_window_is_refused(platform: Platform, clock: FakeClock) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=5000)
    await payments.pay(platform, pay_cmd(m, await f.code(platform, c), amount=1000))
    clock.advance(86400 * (platform.settings.refund_window_days + 1))
    with pytest.raises(TillpayError) as e:
        await payments.refund(
            platform, RefundCommand(m, "R1", 100, "CNY", "mapi", partner_trans_id="ORDER-1")
        )
    assert e.value.code is Code.REFUND_WINDOW_EXCEED


async def test_precreated_order_is_paid_from_the_wallet(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "CNY", balance=1_000_000)
    v = await payments.precreate(platform, PrecreateCommand(m, "QR-1", 500, "USD", "USD", "Lunch", "mapi"))
    assert v.status is Status.WAIT_BUYER_PAY
    assert payments.qr_url(platform, v.trade_no) == f"http://testserver/wallet/qr/{v.trade_no}"
    paid = await payments.confirm(platform, c.user.id, "123456", v.trade_no, precreated=True)
    assert paid.status is Status.TRADE_SUCCESS and paid.wallet_amount == 3551  # 5.00 * 7.1023
    assert await balance(platform, c) == 1_000_000 - 3551
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456", v.trade_no, precreated=True)
    assert e.value.code is Code.CONFIRMATION_NOT_FOUND


async def test_topup_with_the_same_reference_funds_once(platform: Platform) -> None:
    c = await f.customer(platform, "CNY", balance=0)
    await wallets.topup(platform, c.user.login_id, 500, reference="bank-1")
    await wallets.topup(platform, c.user.login_id, 500, reference="bank-1")
    assert await balance(platform, c) == 500
