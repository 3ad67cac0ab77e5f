"""Sign-in lockouts that cannot be raced or turned against others, and the per-customer PIN counter
(issue 14, findings 10 and 11), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from itertools import count

import pytest
from click.testing import CliRunner

import factories as f
from tillpay.cli import main
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import console_auth, payments, security, wallet_app, wallets
from tillpay.services.payments import PayCommand, PrecreateCommand
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"
_seq = count(1)


def _count_hashes(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Count the calls of a module's password check (the expensive hash)."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: object) -> bool:
        calls.append(1)
        return bool(real(*args))

    monkeypatch.setattr(module, name, counted)
    return calls


async def _owner(p: Platform, login: str) -> None:
    m = await f.merchant(p)
    await console_auth.add_user(
        p, partner_id=m.merchant.partner_id, login=login, password=PASSWORD, role="owner"
    )


# ------------------------------------------------------------------------------------------ console


async def test_thirty_concurrent_console_attempts_after_four_failures_get_one_more_check(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _owner(platform, "o@x.test")
    for _ in range(console_auth.MAX_FAILURES_PER_LOGIN - 1):
        with pytest.raises(console_auth.SignInRefused):
            await console_auth.sign_in(platform, "o@x.test", "wrong password!", client="9.9.9.9")
    checks = _count_hashes(monkeypatch, console_auth, "verify_password")

    async def attempt(i: int) -> str:
        try:
            await console_auth.sign_in(platform, "o@x.test", f"wrong password {i}", client=f"9.9.9.{i}")
        except console_auth.SignInRefused as e:
            return e.reason
        return "signed-in"

    reasons = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert len(checks) <= 1, f"{len(checks)} password checks after the limit"
    assert reasons.count("invalid") == len(checks)
    assert reasons.count("locked") == 30 - len(checks)


async def test_a_throttled_console_login_waits_and_is_told_how_long(
    platform: Platform, clock: FakeClock
) -> None:
    await _owner(platform, "o@x.test")
    for _ in range(console_auth.MAX_FAILURES_PER_LOGIN):
        with pytest.raises(console_auth.SignInRefused):
            await console_auth.sign_in(platform, "o@x.test", "wrong password!", client="9.9.9.9")
    with pytest.raises(console_auth.SignInRefused) as e:
        await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="8.8.8.8")
    assert e.value.reason == "locked" and 0 < e.value.retry_after <= 30
    clock.advance(e.value.retry_after)
    await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="8.8.8.8")


async def test_another_logins_right_password_still_works_from_a_guessing_address(
    platform: Platform, clock: FakeClock
) -> None:
    await _owner(platform, "owner-b@x.test")
    for i in range(console_auth.MAX_FAILURES_PER_CLIENT):
        with pytest.raises(console_auth.SignInRefused):
            await console_auth.sign_in(platform, f"guess{i}@x.test", "nope-nope-nope", client="6.6.6.6")
    # The address is slowed to one check per CLIENT_SLOWDOWN, not shut: the other merchant's owner
    # behind the same address signs in after at most that wait.
    try:
        await console_auth.sign_in(platform, "owner-b@x.test", PASSWORD, client="6.6.6.6")
    except console_auth.SignInRefused as e:
        assert e.reason == "locked"
        assert e.retry_after <= console_auth.CLIENT_SLOWDOWN.total_seconds()
        clock.advance(e.retry_after)
        await console_auth.sign_in(platform, "owner-b@x.test", PASSWORD, client="6.6.6.6")
    # ... while the guessing address itself gets one check per slowdown, not twenty more.
    with pytest.raises(console_auth.SignInRefused):
        await console_auth.sign_in(platform, "guess-x@x.test", "nope-nope-nope", client="6.6.6.6")
    with pytest.raises(console_auth.SignInRefused) as again:
        await console_auth.sign_in(platform, "guess-y@x.test", "nope-nope-nope", client="6.6.6.6")
    assert again.value.reason == "locked"


# ------------------------------------------------------------------------------------------ wallet


async def _wallet_user(p: Platform, balance: int = 1_000_000) -> f.Customer:
    login = f"sec{next(_seq)}@example.test"
    user, device = await wallets.add_user(
        p, login_id=login, currency="CNY", pin="123456", password="secret-pass"
    )
    if balance:
        user = await wallets.topup(p, login, balance)
    return f.Customer(user, device)


async def test_strangers_cannot_lock_a_wallet_login(platform: Platform, clock: FakeClock) -> None:
    c = await _wallet_user(platform)
    login = c.user.login_id
    mine = await wallet_app.sign_in(platform, login, "secret-pass", browser_token=None, user_agent="UA")
    for i in range(20):  # a stranger's guesses from many addresses, each one waiting out its backoff
        try:
            await wallet_app.sign_in(
                platform, login, f"guess-{i}", browser_token=None, user_agent="x", client=f"7.7.{i}.1"
            )
        except wallet_app.SignInRefused as e:
            assert e.reason in ("invalid", "locked")
            assert e.retry_after <= 60  # backoff, capped: never a lock for the rest of the window
            clock.advance(e.retry_after)
    # The customer's own browser (its device cookie) signs in at once, whatever the stranger does.
    again = await wallet_app.sign_in(
        platform, login, "secret-pass", browser_token=mine.browser_token, user_agent="UA", client="1.2.3.4"
    )
    assert again.session.user.id == c.user.id and not again.new_device
    # A new browser waits at most the capped backoff, then signs in.
    try:
        await wallet_app.sign_in(platform, login, "secret-pass", browser_token=None, user_agent="UA")
    except wallet_app.SignInRefused as e:
        assert e.reason == "locked" and e.retry_after <= 60
        clock.advance(e.retry_after)
        await wallet_app.sign_in(platform, login, "secret-pass", browser_token=None, user_agent="UA")


async def test_concurrent_wallet_guesses_past_the_limit_are_not_checked(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await _wallet_user(platform)
    for _ in range(wallet_app.MAX_LOGIN_FAILURES - 1):
        with pytest.raises(wallet_app.SignInRefused):
            await wallet_app.sign_in(platform, c.user.login_id, "nope", browser_token=None, user_agent="x")
    checks = _count_hashes(monkeypatch, wallet_app, "verify_secret")

    async def attempt(i: int) -> str:
        try:
            await wallet_app.sign_in(
                platform, c.user.login_id, f"nope{i}", browser_token=None, user_agent="x", client=f"5.5.5.{i}"
            )
        except wallet_app.SignInRefused as e:
            return e.reason
        return "signed-in"

    reasons = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert len(checks) <= 1 and reasons.count("locked") >= 19


# --------------------------------------------------------------------------------------------- PIN


def _waiting(m: object, code: str, ptid: str) -> PayCommand:
    return PayCommand(
        merchant=m,  # type: ignore[arg-type]
        partner_trans_id=ptid,
        code=code,
        price_amount=250_000,  # above the confirmation limit: waits for the PIN
        price_currency="CNY",
        settle_currency="CNY",
        subject="TV",
        dialect="mapi",
    )


async def test_wrong_pins_are_counted_per_customer_across_orders_and_unlocked_by_password(
    platform: Platform,
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await _wallet_user(platform)
    wrong = 0
    order = 0
    while wrong < platform.settings.max_pin_failures:
        order += 1
        out = await payments.pay(platform, _waiting(m, await f.code(platform, c), f"PIN-{order}"))
        for _ in range(2):  # two wrong PINs per order, never enough to close one
            if wrong == platform.settings.max_pin_failures:
                break
            with pytest.raises(TillpayError) as e:
                await payments.confirm(platform, c.user.id, "000000", out.payment.trade_no)
            wrong += 1
            expected = Code.PIN_LOCKED if wrong == platform.settings.max_pin_failures else Code.WRONG_PIN
            assert e.value.code is expected
    # The right PIN on a fresh order is refused too: the PIN is locked, not the order.
    out = await payments.pay(platform, _waiting(m, await f.code(platform, c), "PIN-last"))
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456", out.payment.trade_no)
    assert e.value.code is Code.PIN_LOCKED
    assert (await payments.query(platform, m, partner_trans_id="PIN-last")).status is Status.WAIT_BUYER_PAY
    # Signing in again with the password unlocks it.
    await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent="x")
    paid = await payments.confirm(platform, c.user.id, "123456", out.payment.trade_no)
    assert paid.status is Status.TRADE_SUCCESS


async def test_operator_unlocks_a_locked_pin(platform: Platform, db_url: str) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await _wallet_user(platform)
    out = await payments.pay(platform, _waiting(m, await f.code(platform, c), "PIN-A"))
    for _ in range(2):
        with pytest.raises(TillpayError):
            await payments.confirm(platform, c.user.id, "000000", out.payment.trade_no)
    out2 = await payments.pay(platform, _waiting(m, await f.code(platform, c), "PIN-B"))
    for _ in range(platform.settings.max_pin_failures - 2):
        with pytest.raises(TillpayError):
            await payments.confirm(platform, c.user.id, "000000", out2.payment.trade_no)
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456", out2.payment.trade_no)
    assert e.value.code is Code.PIN_LOCKED
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["wallet", "unlock-pin", "--login", c.user.login_id],
        env={"TILLPAY_DATABASE_URL": db_url},
    )
    assert result.exit_code == 0, result.output
    assert "unlocked" in result.output
    paid = await payments.confirm(platform, c.user.id, "123456", out2.payment.trade_no)
    assert paid.status is Status.TRADE_SUCCESS
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["wallet", "unlock-pin", "--login", "nobody@x.test"],
        env={"TILLPAY_DATABASE_URL": db_url},
    )
    assert result.exit_code != 0


async def test_a_stranger_cannot_use_up_a_qr_orders_attempts(platform: Platform) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform, "CNY")).merchant
    stranger, customer = await _wallet_user(platform), await _wallet_user(platform)
    pre = await payments.precreate(platform, PrecreateCommand(m, "QR-1", 500, "CNY", "CNY", "Tea", "mapi"))
    for _ in range(platform.settings.max_pin_attempts + 1):
        with pytest.raises(TillpayError) as e:
            await payments.confirm(platform, stranger.user.id, "000000", pre.trade_no, precreated=True)
        assert e.value.code in (Code.WRONG_PIN, Code.PIN_LOCKED)
    # The order is still open, and its own attempts untouched, for the customer who pays it.
    assert (
        await wallet_app.order_pin_attempts_left(platform, pre.trade_no) == platform.settings.max_pin_attempts
    )
    paid = await payments.confirm(platform, customer.user.id, "123456", pre.trade_no, precreated=True)
    assert paid.status is Status.TRADE_SUCCESS


async def test_pin_checks_run_in_the_hashing_pool_and_a_full_pool_answers_try_again(
    platform: Platform,
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await _wallet_user(platform)
    out = await payments.pay(platform, _waiting(m, await f.code(platform, c), "BUSY-1"))
    platform.hash_pool = security.HashPool(threads=1, queue=0)
    platform.hash_pool._taken = 1  # every slot taken
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, c.user.id, "123456", out.payment.trade_no)
    assert e.value.code is Code.TRY_AGAIN
    platform.hash_pool._taken = 0
    paid = await payments.confirm(platform, c.user.id, "123456", out.payment.trade_no)
    assert paid.status is Status.TRADE_SUCCESS


async def test_a_full_hashing_pool_refuses_sign_ins_at_once_without_counting_them(platform: Platform) -> None:
    c = await _wallet_user(platform)
    await _owner(platform, "o@x.test")
    platform.hash_pool = security.HashPool(threads=1, queue=0)
    platform.hash_pool._taken = 1  # every slot taken
    for _ in range(10):
        with pytest.raises(wallet_app.SignInRefused) as w:
            await wallet_app.sign_in(
                platform, c.user.login_id, "secret-pass", browser_token=None, user_agent="x"
            )
        assert (w.value.reason, w.value.retry_after) == ("busy", 1)
        with pytest.raises(console_auth.SignInRefused) as e:
            await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="9.9.9.9")
        assert (e.value.reason, e.value.retry_after) == ("busy", 1)
    platform.hash_pool._taken = 0
    await wallet_app.sign_in(platform, c.user.login_id, "secret-pass", browser_token=None, user_agent="x")
    await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="9.9.9.9")
