"""The wallet's answers to throttled sign-ins and locked PINs over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import update

import factories as f
from conftest import LiveServer
from tillpay.services import payments, wallet_app, wallets
from tillpay.services.payments import PayCommand
from tillpay.store import tables as t

PASSWORD = "open-sesame"


def _user(live: LiveServer) -> tuple[wallets.WalletUser, wallets.Device]:
    async def go(p: Any) -> tuple[wallets.WalletUser, wallets.Device]:
        login = f"page{next(f._seq)}@example.test"
        _, d = await wallets.add_user(p, login_id=login, currency="CNY", pin="123456", password=PASSWORD)
        return await wallets.topup(p, login, 1_000_000), d

    return live.run(go)  # type: ignore[no-any-return]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def _post_login(c: httpx.Client, login: str, password: str) -> httpx.Response:
    page = c.get("/wallet/login")
    return c.post("/wallet/login", data={"login": login, "password": password, "csrf": _csrf(page.text)})


def test_a_throttled_sign_in_is_answered_429_with_retry_after(live: LiveServer) -> None:
    u, _ = _user(live)
    with httpx.Client(base_url=live.url, timeout=20) as c:
        for _ in range(wallet_app.MAX_LOGIN_FAILURES):
            assert _post_login(c, u.login_id, "wrong-wrong").status_code == 401
        r = _post_login(c, u.login_id, PASSWORD)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in r.text


def test_a_locked_pin_sends_the_customer_to_sign_in_again_which_unlocks_it(live: LiveServer) -> None:
    u, device = _user(live)

    async def waiting(p: Any) -> str:
        m = await f.merchant(p, "CNY")
        out = await payments.pay(
            p,
            PayCommand(
                merchant=m.merchant,
                partner_trans_id="LOCKED-1",
                code=await wallets.current_code(p, device),
                price_amount=250_000,
                price_currency="CNY",
                settle_currency="CNY",
                subject="TV",
                dialect="mapi",
            ),
        )
        async with p.engine.begin() as conn:
            await conn.execute(
                update(t.wallet_users)
                .where(t.wallet_users.c.id == u.id)
                .values(pin_failures=p.settings.max_pin_failures)
            )
        return out.payment.trade_no

    trade_no: str = live.run(waiting)
    with httpx.Client(base_url=live.url, timeout=20) as c:
        assert _post_login(c, u.login_id, PASSWORD).status_code == 303  # signing in unlocks...
        live.run(
            lambda p: _relock(p, u.id)  # ...so lock it again while the customer is signed in
        )
        page = c.get(f"/wallet/confirm/{trade_no}")
        r = c.post(f"/wallet/confirm/{trade_no}", data={"pin": "123456", "csrf": _csrf(page.text)})
        assert r.status_code == 303 and r.headers["location"].startswith("/wallet/login?next=")
        assert c.get("/wallet/").status_code == 303  # signed out
        assert _post_login(c, u.login_id, PASSWORD).status_code == 303
        page = c.get(f"/wallet/confirm/{trade_no}")
        r = c.post(f"/wallet/confirm/{trade_no}", data={"pin": "123456", "csrf": _csrf(page.text)})
        assert r.status_code == 303 and r.headers["location"] == f"/wallet/payments/{trade_no}"

    async def status(p: Any) -> str:
        view = await payments.payment_by_trade_no(p, trade_no)
        assert view is not None
        return view.status.value

    assert live.run(status) == "TRADE_SUCCESS"


async def _relock(p: Any, user_id: int) -> None:
    async with p.engine.begin() as conn:
        await conn.execute(
            update(t.wallet_users)
            .where(t.wallet_users.c.id == user_id)
            .values(pin_failures=p.settings.max_pin_failures)
        )
