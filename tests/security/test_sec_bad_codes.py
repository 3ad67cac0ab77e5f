"""Issue 14, finding 6: wrong-code limits count against who failed, on SQLite and PostgreSQL.

Wrong codes are counted per (merchant, device) and per (merchant, terminal); a merchant's total raises an
alert (log and console) instead of refusing every till; another merchant's failures never refuse a
customer's valid code.
"""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

import factories as f
from conftest import LiveServer
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import console_auth, payments, wallets
from tillpay.services.payments import PayCommand
from tillpay.services.platform import Merchant, Platform
from web.test_wallet_http import csrf_of

pytestmark = pytest.mark.anyio


def pay_cmd(m: Merchant, code: str, ptid: str, terminal_id: str | None = None) -> PayCommand:
    return PayCommand(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=1250,
        price_currency=m.settlement_currency,
        settle_currency=m.settlement_currency,
        subject="Coffee",
        dialect="mapi",
        terminal_id=terminal_id,
    )


def wrong(code: str) -> str:
    """The same device and slot, another OTP: a guess that does not verify."""
    return code[:-7] + f"{(int(code[-7:]) + 1) % 10**7:07d}"


async def balance(p: Platform, c: f.Customer) -> int:
    return (await wallets.user_by_login(p, c.user.login_id)).balance


async def test_wrong_codes_at_one_merchant_do_not_refuse_the_customer_at_another(platform: Platform) -> None:
    a = (await f.merchant(platform, "CNY")).merchant
    b = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    other = await f.customer(platform, "CNY", balance=10_000)
    good = await f.code(platform, c)
    for i in range(platform.settings.max_bad_codes_per_device):
        with pytest.raises(TillpayError) as e:
            await payments.pay(platform, pay_cmd(a, wrong(good), f"A-{i}"))
        assert e.value.code is Code.INVALID_CODE
    # Merchant A is now refused this device's codes, even a valid one: its guesses are bounded.
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(a, good, "A-good"))
    assert e.value.code is Code.CODE_ATTEMPTS_EXCEEDED
    # Merchant A's other customers still pay there; merchant B takes this customer's valid code.
    assert (await payments.pay(platform, pay_cmd(a, await f.code(platform, other), "A-other"))).code is None
    assert (await payments.pay(platform, pay_cmd(b, good, "B-1"))).code is None
    assert await balance(platform, c) == 10_000 - 1250


async def test_malformed_codes_from_rotating_terminals_alert_but_block_no_till(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    threshold = platform.settings.bad_code_alert_threshold
    assert await payments.bad_code_alert(platform, m.id) is None
    with capture_logs() as logs:
        for i in range(threshold + 10):
            with pytest.raises(TillpayError) as e:
                await payments.pay(platform, pay_cmd(m, "12345", f"X-{i}", terminal_id=f"T-{i}"))
            assert e.value.code is Code.INVALID_CODE
    alerts = [x for x in logs if x["event"] == "bad_code_anomaly"]
    assert len(alerts) == 1 and alerts[0]["merchant_id"] == m.id and alerts[0]["count"] == threshold
    assert await payments.bad_code_alert(platform, m.id) == threshold + 10
    # Every till still takes a valid code: the fast path and the careful one.
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), "OK-1", terminal_id="TILL-1"))
    assert out.code is None
    assert await balance(platform, c) == 10_000 - 1250


def test_the_console_dashboard_shows_the_merchant_wide_alert(live: LiveServer) -> None:
    password = "owner-password-1234"

    async def setup(p: Platform) -> Merchant:
        m = (await f.merchant(p, "CNY")).merchant
        await console_auth.add_user(
            p, partner_id=m.partner_id, login="alert-owner@shop.test", password=password, role="owner"
        )
        return m

    m = live.run(setup)
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post(
        "/console/login",
        data={"login": "alert-owner@shop.test", "password": password, "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303

    async def malformed(p: Platform, count: int) -> None:
        for i in range(count):
            with pytest.raises(TillpayError):
                await payments.pay(p, pay_cmd(m, "12345", f"X-{count}-{i}", terminal_id=f"T-{count}-{i}"))

    threshold = live.settings.bad_code_alert_threshold
    live.run(lambda p: malformed(p, threshold - 1))
    assert 'id="bad-code-alert"' not in c.get("/console/").text
    live.run(lambda p: malformed(p, 1))
    shown = c.get("/console/").text
    assert 'id="bad-code-alert"' in shown and f"{threshold} invalid payment codes" in shown
    c.close()
