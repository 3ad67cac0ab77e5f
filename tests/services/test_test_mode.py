"""Test merchants' money rules and test clocks, on SQLite and PostgreSQL (docs/sandbox.md)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import merchants, payments, settlement, testmode, wallets
from tillpay.services.audit import audit
from tillpay.services.payments import PayCommand, PrecreateCommand, RefundCommand
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

IBAN = "DE89370400440532013000"
_seq = itertools.count(1)


def cmd(m: Merchant, code: str, amount: int, ptid: str) -> PayCommand:
    return PayCommand(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=amount,
        price_currency=m.settlement_currency,
        settle_currency=m.settlement_currency,
        subject="Goods",
        dialect="mapi",
    )


async def sandbox_customer(p: Platform, balance: int = 10_000_000) -> f.Customer:
    login = f"sbx{next(_seq)}@sandbox.test"
    _, device = await wallets.add_user(p, login_id=login, currency="USD", pin="123456", sandbox=True)
    await wallets.fund(p, login, balance, f"sbx-{login}", sandbox=True)
    return f.Customer(await wallets.user_by_login(p, login), device)


async def pair(p: Platform) -> tuple[Merchant, Merchant]:
    live = (await f.merchant(p, "USD")).merchant
    await settlement.set_account(p, live.partner_id, iban=IBAN, bic="COBADEFFXXX", name="Shop Ltd")
    test = (await merchants.test_merchant_of(p, live.partner_id)).merchant
    return live, test


async def count_payments(p: Platform) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.payments))).scalar_one())


# ----------------------------------------------------------------------------------------- money rules


async def test_a_test_merchant_refuses_a_real_wallet_before_anything_is_recorded(platform: Platform) -> None:
    _, test = await pair(platform)
    real = await f.customer(platform, "USD", balance=100_000)
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, cmd(test, await f.code(platform, real), 1000, "T-1"))
    assert e.value.code is Code.RISK_REJECT and e.value.detail == testmode.SANDBOX_ONLY
    assert await count_payments(platform) == 0
    assert (await wallets.user_by_login(platform, real.user.login_id)).balance == 100_000


async def test_a_test_merchant_takes_a_sandbox_wallet(platform: Platform) -> None:
    _, test = await pair(platform)
    sbx = await sandbox_customer(platform)
    out = await payments.pay(platform, cmd(test, await f.code(platform, sbx), 1000, "T-1"))
    assert out.code is None and out.payment.status is Status.TRADE_SUCCESS


async def test_a_live_merchant_refuses_a_sandbox_wallet_on_a_production_server(platform: Platform) -> None:
    live, _ = await pair(platform)
    sbx = await sandbox_customer(platform)
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, cmd(live, await f.code(platform, sbx), 1000, "L-1"))
    assert e.value.code is Code.RISK_REJECT and e.value.detail == testmode.LIVE_NOT_SANDBOX
    assert await count_payments(platform) == 0


async def test_a_live_merchant_takes_a_sandbox_wallet_on_a_sandbox_server(sandbox_platform: Platform) -> None:
    live, _ = await pair(sandbox_platform)
    sbx = await sandbox_customer(sandbox_platform)
    out = await payments.pay(sandbox_platform, cmd(live, await f.code(sandbox_platform, sbx), 1000, "L-1"))
    assert out.code is None


async def test_a_test_merchants_qr_order_refuses_a_real_wallet(platform: Platform) -> None:
    _, test = await pair(platform)
    real = await f.customer(platform, "USD", balance=100_000)
    order = await payments.precreate(
        platform,
        PrecreateCommand(
            merchant=test,
            partner_trans_id="QR-1",
            price_amount=500,
            price_currency="USD",
            settle_currency="USD",
            subject="QR",
            dialect="mapi",
        ),
    )
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, real.user.id, real.pin, order.trade_no, precreated=True)
    assert e.value.code is Code.RISK_REJECT
    assert (await payments.query(platform, test, trade_no=order.trade_no)).status is Status.WAIT_BUYER_PAY
    assert (await wallets.user_by_login(platform, real.user.login_id)).balance == 100_000
    sbx = await sandbox_customer(platform)
    paid = await payments.confirm(platform, sbx.user.id, sbx.pin, order.trade_no, precreated=True)
    assert paid.status is Status.TRADE_SUCCESS


# --------------------------------------------------------------------------------------------- clock


def test_durations_read_as_seconds_and_only_forward() -> None:
    assert testmode.parse_duration("2h") == 7200
    assert testmode.parse_duration("3d") == 3 * 86400
    assert testmode.parse_duration("1d12h") == 36 * 3600
    assert testmode.parse_duration(" 90S ") == 90
    for bad in ("", "0h", "-2h", "2", "h", "2y", "1.5h"):
        with pytest.raises(TillpayError):
            testmode.parse_duration(bad)


async def test_a_live_merchants_clock_cannot_be_moved(platform: Platform) -> None:
    live, test = await pair(platform)
    with pytest.raises(TillpayError) as e:
        await testmode.advance(platform, live.partner_id, 3600)
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "real time" in (e.value.detail or "")
    with pytest.raises(TillpayError):
        await testmode.show(platform, live.partner_id)
    for seconds in (0, -60):
        with pytest.raises(TillpayError):
            await testmode.advance(platform, test.partner_id, seconds)
    assert (await platform.merchant_by_partner(live.partner_id, fresh=True)).clock_offset_seconds == 0


async def test_moving_the_clock_adds_up_and_shows_the_merchants_time(
    platform: Platform, tmp_path: Path
) -> None:
    _, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    await testmode.advance(platform, test.partner_id, 7200)
    view = await testmode.advance(platform, test.partner_id, 1800)
    assert view.offset_seconds == 9000
    assert view.merchant_time == platform.now() + timedelta(seconds=9000)
    assert (await platform.merchant_by_partner(test.partner_id, fresh=True)).clock_offset_seconds == 9000


async def test_a_waiting_payment_expires_when_the_test_clock_passes_its_timeout(platform: Platform) -> None:
    _, test = await pair(platform)
    sbx = await sandbox_customer(platform)
    # Above the USD 300.00 confirmation limit: waits for the customer.
    out = await payments.pay(platform, cmd(test, await f.code(platform, sbx), 40_000, "WAIT-1"))
    assert out.payment.status is Status.WAIT_BUYER_PAY
    assert await payments.expire_due(platform) == 0  # not due in real time
    view = await testmode.advance(platform, test.partner_id, platform.settings.payment_timeout_seconds + 1)
    assert view.expired == 1
    closed = await payments.query(platform, test, partner_trans_id="WAIT-1")
    assert closed.status is Status.TRADE_CLOSED


async def test_the_expiry_pass_closes_by_each_merchants_own_time(platform: Platform) -> None:
    live, test = await pair(platform)
    sbx = await sandbox_customer(platform)
    real = await f.customer(platform, "USD", balance=10_000_000)
    await payments.pay(platform, cmd(test, await f.code(platform, sbx), 40_000, "WAIT-T"))
    await payments.pay(platform, cmd(live, await f.code(platform, real), 40_000, "WAIT-L"))
    # Moved in the database only: the worker's pass alone must find the test merchant's payment due.
    async with platform.engine.begin() as conn:
        await conn.execute(
            t.merchants.update().where(t.merchants.c.id == test.id).values(clock_offset_seconds=3600)
        )
    assert await payments.expire_due(platform) == 1
    assert (await payments.query(platform, test, partner_trans_id="WAIT-T")).status is Status.TRADE_CLOSED
    assert (await payments.query(platform, live, partner_trans_id="WAIT-L")).status is Status.WAIT_BUYER_PAY


async def test_a_test_merchants_refund_window_closes_as_its_clock_moves(
    platform: Platform, tmp_path: Path
) -> None:
    _, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    sbx = await sandbox_customer(platform)
    await payments.pay(platform, cmd(test, await f.code(platform, sbx), 1000, "R-1"))

    def refund(rid: str) -> RefundCommand:
        return RefundCommand(
            merchant=test,
            partner_refund_id=rid,
            amount=100,
            currency="USD",
            dialect="mapi",
            partner_trans_id="R-1",
        )

    await payments.refund(platform, refund("R-1a"))
    await testmode.advance(platform, test.partner_id, (platform.settings.refund_window_days + 1) * 86400 // 2)
    await testmode.advance(
        platform, test.partner_id, (platform.settings.refund_window_days + 1) * 86400 // 2 + 1
    )
    test = await platform.merchant_by_partner(test.partner_id, fresh=True)
    with pytest.raises(TillpayError) as e:
        await payments.refund(platform, refund("R-1b"))
    assert e.value.code is Code.REFUND_WINDOW_EXCEED


async def test_a_test_payment_is_stamped_with_the_merchants_time(platform: Platform, tmp_path: Path) -> None:
    _, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    await testmode.advance(platform, test.partner_id, 86400)
    test = await platform.merchant_by_partner(test.partner_id, fresh=True)
    sbx = await sandbox_customer(platform)
    out = await payments.pay(platform, cmd(test, await f.code(platform, sbx), 1000, "S-1"))
    assert out.code is None  # the code was judged by real time, though the merchant is a day ahead
    assert out.payment.paid_at == platform.now() + timedelta(days=1)


# ---------------------------------------------------------------------------------------- settlement


async def test_the_clock_drives_expiry_settlement_and_payouts_and_live_files_hold_none_of_it(
    platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    live, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    sbx = await sandbox_customer(platform)
    real = await f.customer(platform, "USD", balance=10_000_000)
    test_trade = (
        await payments.pay(platform, cmd(test, await f.code(platform, sbx), 10_000, "TP-1"))
    ).payment
    await payments.pay(platform, cmd(test, await f.code(platform, sbx), 40_000, "TP-WAIT"))
    live_trade = (
        await payments.pay(platform, cmd(live, await f.code(platform, real), 20_000, "LP-1"))
    ).payment

    # Before its day closes: no test files yet.
    first = await testmode.show(platform, test.partner_id)
    assert first.settlement.batches == [] and first.settlement.files == []

    view = await testmode.advance(platform, test.partner_id, testmode.parse_duration("3d"))
    assert view.expired == 1
    [batch] = view.settlement.batches
    assert batch.totals.payment_count == 1 and batch.totals.payments_amount == 10_000
    assert batch.paid_out and batch.totals.payout_amount > 0
    kinds = sorted(x.kind for x in view.settlement.files)
    assert kinds == ["payouts", "settlement", "transaction"]
    assert all(x.name.startswith("test/") and "/TEST_" in x.name for x in view.settlement.files)
    tx = next(x for x in view.settlement.files if x.kind == "transaction")
    root = tmp_path / "st"
    assert test_trade.trade_no in (root / tx.name).read_text()
    payout = next(x for x in view.settlement.files if x.kind == "payouts")
    assert (root / payout.name).read_text().rstrip().endswith("|TEST")

    # Moving again writes the same bytes for the closed day.
    again = await testmode.advance(platform, test.partner_id, 3600)
    assert {x.name: x.sha256 for x in again.settlement.files if x.settle_date == batch.settle_date} == {
        x.name: x.sha256 for x in view.settlement.files if x.settle_date == batch.settle_date
    }

    # The live runs of the same days, in real time: the live merchant only.
    clock.advance(3 * 86400)
    day = settlement.last_closed_day(platform)
    for d in (day - timedelta(days=2), day - timedelta(days=1), day):
        run = await settlement.run_day(platform, d)
        assert all(b.partner_id == live.partner_id for b in run.batches + run.payouts)
    live_files = [x for x in root.rglob("*") if x.is_file() and x.relative_to(root).parts[0] != "test"]
    assert any(p.name.startswith("pain001") for p in live_files)
    text = "".join(x.read_text() for x in live_files)
    assert live_trade.trade_no in text
    assert test_trade.trade_no not in text and test.partner_id not in text
    assert all(b.partner_id != test.partner_id for b in await settlement.list_batches(platform))


async def test_a_test_merchant_is_left_out_of_live_runs_even_with_real_money(
    platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    """Defence in depth: a payment of a test merchant that did not come from a sandbox wallet (made
    before the money rules, say) is still never settled live."""
    _, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    sbx = await sandbox_customer(platform)
    await payments.pay(platform, cmd(test, await f.code(platform, sbx), 10_000, "TP-1"))
    async with platform.engine.begin() as conn:
        await conn.execute(t.wallet_users.update().values(sandbox=False))
    clock.advance(2 * 86400)
    run = await settlement.run_day(platform, settlement.last_closed_day(platform) - timedelta(days=1))
    assert run.batches == [] and run.payouts == []
    found = {x.check for x in await audit(platform)}
    assert "test_merchant_sandbox_only" in found  # the audit names the payment
    async with platform.engine.begin() as conn:
        await conn.execute(t.wallet_users.update().values(sandbox=True))


async def test_the_audit_finds_a_test_merchant_in_a_live_batch(platform: Platform) -> None:
    _, test = await pair(platform)
    day = datetime(2026, 11, 25).date()
    async with platform.engine.begin() as conn:
        batch_id = (
            await conn.execute(
                insert(t.settlement_batches)
                .values(
                    merchant_id=test.id,
                    currency="USD",
                    settle_date=day,
                    cutoff_at=platform.now(),
                    merchant_name=test.name,
                    mcc=test.mcc,
                    mdr_bps=0,
                    payment_count=0,
                    refund_count=0,
                    reversal_count=0,
                    payments_amount=0,
                    refunds_amount=0,
                    reversals_amount=0,
                    fee=0,
                    net=0,
                    carried_in=0,
                    payout_amount=0,
                    payout_date=day,
                    payout_status="none",
                    created_at=platform.now(),
                )
                .returning(t.settlement_batches.c.id)
            )
        ).scalar_one()
    assert "test_merchant_never_settled" in {x.check for x in await audit(platform)}
    async with platform.engine.begin() as conn:
        await conn.execute(t.settlement_batches.delete().where(t.settlement_batches.c.id == batch_id))


async def test_a_test_merchants_qr_order_is_stamped_and_expires_by_its_clock(
    platform: Platform, tmp_path: Path
) -> None:
    _, test = await pair(platform)
    platform.settings.settlement_dir = str(tmp_path / "st")
    await testmode.advance(platform, test.partner_id, 3600)
    test = await platform.merchant_by_partner(test.partner_id, fresh=True)
    order = await payments.precreate(
        platform,
        PrecreateCommand(
            merchant=test,
            partner_trans_id="QR-T",
            price_amount=500,
            price_currency="USD",
            settle_currency="USD",
            subject="QR",
            dialect="mapi",
        ),
    )
    assert order.created_at == platform.now() + timedelta(hours=1)
    view = await testmode.advance(platform, test.partner_id, platform.settings.payment_timeout_seconds)
    assert view.expired == 1
    test = await platform.merchant_by_partner(test.partner_id, fresh=True)
    assert (await payments.query(platform, test, trade_no=order.trade_no)).status is Status.TRADE_CLOSED


async def test_a_repeated_pay_answers_a_payment_expired_by_the_test_clock(platform: Platform) -> None:
    _, test = await pair(platform)
    sbx = await sandbox_customer(platform)
    code = await f.code(platform, sbx)
    first = await payments.pay(platform, cmd(test, code, 40_000, "REPEAT-1"))
    assert first.payment.status is Status.WAIT_BUYER_PAY
    # Moved by another process; no expiry pass has run since.
    async with platform.engine.begin() as conn:
        await conn.execute(
            t.merchants.update().where(t.merchants.c.id == test.id).values(clock_offset_seconds=3600)
        )
    test = await platform.merchant_by_partner(test.partner_id, fresh=True)
    again = await payments.pay(platform, cmd(test, code, 40_000, "REPEAT-1"))
    assert again.replayed and again.payment.status is Status.TRADE_CLOSED
