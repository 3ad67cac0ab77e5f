"""Wallet app use cases on SQLite and PostgreSQL: sign-in and devices, sessions, scoping, history."""

from __future__ import annotations

import itertools

import pytest

import factories as f
from tillpay.domain import paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import payments, wallet_app, wallets
from tillpay.services.payments import PayCommand, PrecreateCommand, RefundCommand
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio

_seq = itertools.count(1)
UA = (
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"
)


async def user(p: Platform, balance: int = 100_000) -> f.Customer:
    login = f"app{next(_seq)}@example.test"
    u, d = await wallets.add_user(p, login_id=login, currency="CNY", pin="123456", password="secret-pass")
    if balance:
        u = await wallets.topup(p, login, balance)
    return f.Customer(u, d)


async def pay(
    p: Platform, m: f.NewMerchant, device: wallets.Device, ptid: str, amount: int
) -> payments.PayOutcome:
    return await payments.pay(
        p,
        PayCommand(
            merchant=m.merchant,
            partner_trans_id=ptid,
            code=await wallets.current_code(p, device),
            price_amount=amount,
            price_currency="CNY",
            settle_currency="CNY",
            subject="Tea",
            dialect="mapi",
        ),
    )


async def test_first_sign_in_on_a_browser_registers_a_device_and_the_next_reuses_it(
    platform: Platform,
) -> None:
    c = await user(platform)
    first = await wallet_app.sign_in(
        platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA
    )
    assert first.new_device and first.session.device.name == "Chrome on Android"
    assert first.session.device.id != c.device.id and len(first.session.device.secret) == 20
    again = await wallet_app.sign_in(
        platform, c.user.login_id, "secret-pass", browser_token=first.browser_token, user_agent=UA
    )
    assert not again.new_device and again.session.device.id == first.session.device.id
    assert again.token != first.token and again.session.csrf_token != first.session.csrf_token
    listed = await wallet_app.devices(platform, c.user.id)
    assert [d.id for d in listed] == [first.session.device.id, c.device.id]


async def test_another_users_browser_token_gets_its_own_device(platform: Platform) -> None:
    a, b = await user(platform), await user(platform)
    sa = await wallet_app.sign_in(platform, a.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    sb = await wallet_app.sign_in(
        platform, b.user.login_id, "secret-pass", browser_token=sa.browser_token, user_agent=UA
    )
    assert sb.new_device and sb.session.device.user_id == b.user.id
    assert sb.browser_token != sa.browser_token


async def test_wrong_passwords_are_counted_and_lock_the_login_for_a_while(
    platform: Platform, clock: FakeClock
) -> None:
    c = await user(platform)
    for _ in range(wallet_app.MAX_LOGIN_FAILURES):
        with pytest.raises(wallet_app.SignInRefused) as e:
            await wallet_app.sign_in(platform, c.user.login_id, "wrong", browser_token=None, user_agent=UA)
        assert e.value.reason == "invalid"
    with pytest.raises(wallet_app.SignInRefused) as e:
        await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    assert e.value.reason == "locked"
    clock.advance(wallet_app.LOGIN_FAILURE_WINDOW.total_seconds() + 1)
    ok = await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    assert ok.session.user.id == c.user.id


async def test_unknown_login_and_user_without_password_are_refused_alike(platform: Platform) -> None:
    u, _ = await wallets.add_user(platform, login_id="nopass@example.test", currency="CNY", pin="123456")
    for login in ("nobody@example.test", u.login_id):
        with pytest.raises(wallet_app.SignInRefused) as e:
            await wallet_app.sign_in(platform, login, "anything", browser_token=None, user_agent=UA)
        assert e.value.reason == "invalid"


async def test_sessions_expire_end_on_sign_out_and_on_revoking_their_device(
    platform: Platform, clock: FakeClock
) -> None:
    c = await user(platform)
    s1 = await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    assert await wallet_app.session_for(platform, s1.token) is not None
    assert await wallet_app.session_for(platform, "x" * 43) is None
    await wallet_app.sign_out(platform, s1.token)
    assert await wallet_app.session_for(platform, s1.token) is None

    s2 = await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    await wallet_app.revoke_device(platform, c.user.id, s2.session.device.id)
    assert await wallet_app.session_for(platform, s2.token) is None

    s3 = await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent=UA)
    clock.advance(wallet_app.SESSION_LIFETIME.total_seconds() + 1)
    assert await wallet_app.session_for(platform, s3.token) is None


async def test_a_revoked_device_cannot_pay_and_others_cannot_revoke_it(platform: Platform) -> None:
    m = await f.merchant(platform, "CNY")
    a, b = await user(platform), await user(platform)
    with pytest.raises(TillpayError) as e:
        await wallet_app.revoke_device(platform, b.user.id, a.device.id)
    assert e.value.code is Code.NOT_FOUND
    code = await wallets.current_code(platform, a.device)
    await wallet_app.revoke_device(platform, a.user.id, a.device.id)
    with pytest.raises(TillpayError) as e:
        await payments.pay(
            platform,
            PayCommand(m.merchant, "R-1", code, 100, "CNY", "CNY", "Tea", "mapi"),
        )
    assert e.value.code is Code.INVALID_CODE
    assert [d.status for d in await wallet_app.devices(platform, a.user.id)] == ["revoked"]


async def test_history_shows_both_amounts_and_refunds_against_their_payment_only_to_the_payer(
    platform: Platform,
) -> None:
    await f.rates(platform)
    m = await f.merchant(platform, "USD", name="Cafe")
    a, b = await user(platform, balance=1_000_000), await user(platform)
    out = await payments.pay(
        platform,
        PayCommand(
            m.merchant,
            "H-1",
            await wallets.current_code(platform, a.device),
            500,
            "USD",
            "USD",
            "Lunch",
            "mapi",
        ),
    )
    assert out.code is None
    await payments.refund(
        platform, RefundCommand(m.merchant, "H-1-R", 200, "USD", "mapi", partner_trans_id="H-1")
    )
    items = await wallet_app.history(platform, a.user)
    assert len(items) == 1
    it = items[0]
    assert it.merchant_name.startswith("Cafe")
    assert (it.payment.price_amount, it.payment.price_currency) == (500, "USD")
    assert (it.payment.wallet_amount, it.payment.wallet_currency) == (3551, "CNY")
    assert [(r.price_amount, r.wallet_amount) for r in it.refunds] == [(200, 1420)]
    assert (await wallet_app.item(platform, a.user, it.payment.trade_no)).refunds == it.refunds
    assert await wallet_app.history(platform, b.user) == []
    with pytest.raises(TillpayError) as e:
        await wallet_app.item(platform, b.user, it.payment.trade_no)
    assert e.value.code is Code.NOT_FOUND


async def test_snapshot_lists_waiting_confirmations_and_new_payments(
    platform: Platform, clock: FakeClock
) -> None:
    m = await f.merchant(platform, "CNY")
    c = await user(platform, balance=1_000_000)
    since = await wallet_app.last_payment_id(platform, c.user.id)
    big = await pay(platform, m, c.device, "S-1", 300_000)  # above the 2000.00 CNY confirmation limit
    assert big.code is Code.WAIT_BUYER_CONFIRM
    snap = await wallet_app.snapshot(platform, c.user, since)
    assert [i.payment.trade_no for i in snap.pending] == [big.payment.trade_no]
    assert [i.payment.trade_no for i in snap.recent] == [big.payment.trade_no]
    assert await wallet_app.pin_attempts_left(platform, c.user.id, big.payment.trade_no) == 3
    with pytest.raises(TillpayError):
        await payments.confirm(platform, c.user.id, "000000", big.payment.trade_no)
    assert await wallet_app.pin_attempts_left(platform, c.user.id, big.payment.trade_no) == 2
    clock.advance(platform.settings.payment_timeout_seconds + 1)
    later = await wallet_app.snapshot(platform, c.user, since)
    assert later.pending == [] and later.recent[0].payment.status.value == "TRADE_CLOSED"


async def test_used_slots_are_what_the_server_has_seen(platform: Platform, clock: FakeClock) -> None:
    m = await f.merchant(platform, "CNY")
    c = await user(platform)
    await pay(platform, m, c.device, "U-1", 100)
    await pay(platform, m, c.device, "U-2", 100)
    step = paycode.step_at(int(clock.now().timestamp()))
    assert await wallet_app.used_slots(platform, c.device.id, step - 2) == [(step, 0), (step, 1)]


async def test_qr_order_is_quoted_in_the_visitors_currency_and_shown_paid_only_to_its_payer(
    platform: Platform,
) -> None:
    await f.rates(platform)
    m = await f.merchant(platform, "USD", name="Noodles")
    a, b = await user(platform, balance=1_000_000), await user(platform)
    pre = await payments.precreate(
        platform, PrecreateCommand(m.merchant, "Q-1", 500, "USD", "USD", "Ramen", "mapi")
    )
    anon = await wallet_app.order(platform, pre.trade_no)
    assert anon.merchant_name.startswith("Noodles") and anon.wallet_amount is None
    quoted = await wallet_app.order(platform, pre.trade_no, a.user)
    assert (quoted.wallet_amount, quoted.wallet_currency) == (3551, "CNY")
    await payments.confirm(platform, a.user.id, "123456", pre.trade_no, precreated=True)
    assert (await wallet_app.order(platform, pre.trade_no, a.user)).mine
    assert not (await wallet_app.order(platform, pre.trade_no, b.user)).mine
    with pytest.raises(TillpayError):
        await wallet_app.order(platform, "2026112622000000000000000000")
