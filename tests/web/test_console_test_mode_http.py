"""The console's "Test data / Live data" switch over real HTTP: every page scoped by the mode's merchant."""

from __future__ import annotations

import re
from typing import Any

import httpx

import factories as f
from conftest import LiveServer
from tillpay.services import console_auth, merchants, payments, wallets
from tillpay.services.payments import PayCommand
from tillpay.services.platform import Platform
from web.test_wallet_http import csrf_of

PASSWORD = "console-password-1234"
PAGES = (
    "/console/",
    "/console/payments",
    "/console/settlements",
    "/console/integration",
    "/console/notifications",
)


def _shop(live: LiveServer, *roles: str) -> dict[str, Any]:
    """A live merchant with one paid payment and console users of the given roles."""

    async def go(p: Platform) -> dict[str, Any]:
        m = (await f.merchant(p, "USD")).merchant
        for role in roles:
            await console_auth.add_user(
                p,
                partner_id=m.partner_id,
                login=f"{role}-{m.partner_id}@shop.test",
                password=PASSWORD,
                role=role,
            )
        c = await f.customer(p, "USD", 100_000)
        out = await payments.pay(p, _cmd(m, await f.code(p, c), "LIVE-1"))
        return {"merchant": m, "live_trade": out.payment.trade_no}

    return live.run(go)  # type: ignore[no-any-return]


def _cmd(m: Any, code: str, ptid: str, amount: int = 1234) -> PayCommand:
    return PayCommand(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=amount,
        price_currency="USD",
        settle_currency="USD",
        subject="Goods",
        dialect="mapi",
    )


def _test_payment(live: LiveServer, live_partner: str, n: int = 1, amount: int = 1234) -> str:
    async def go(p: Platform) -> str:
        test = (await merchants.test_merchant_of(p, live_partner)).merchant
        login = f"dev{n}@sandbox.test"
        _, device = await wallets.add_user(p, login_id=login, currency="USD", pin="123456", sandbox=True)
        await wallets.fund(p, login, 100_000, f"sbx-{n}", sandbox=True)
        out = await payments.pay(p, _cmd(test, await wallets.current_code(p, device), f"TEST-{n}", amount))
        return out.payment.trade_no

    return live.run(go)  # type: ignore[no-any-return]


def _sign_in(live: LiveServer, login: str) -> httpx.Client:
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post("/console/login", data={"login": login, "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert r.status_code == 303, r.text
    return c


def _switch(c: httpx.Client, mode: str) -> httpx.Response:
    page = c.get("/console/")
    return c.post(
        "/console/mode", data={"mode": mode, "next": "/console/payments", "csrf": csrf_of(page.text)}
    )


def test_the_owner_switches_to_test_data_and_every_page_shows_the_test_merchant_only(
    live: LiveServer,
) -> None:
    shop = _shop(live, "owner")
    pid = shop["merchant"].partner_id
    c = _sign_in(live, f"owner-{pid}@shop.test")
    integration = c.get("/console/integration").text
    assert 'id="test-credentials"' in integration and 'id="test-partner-id"' not in integration

    made = _switch(c, "test")
    assert made.status_code == 200 and 'id="test-private-key"' in made.text and "BEGIN" in made.text
    assert 'id="test-banner"' in made.text and 'id="test-md5-key"' in made.text
    test_pid = re.search(r'id="partner-id">(\d+)<', made.text).group(1)  # type: ignore[union-attr]
    assert test_pid != pid
    # The private key is shown once: the Integration page never shows it again.
    assert "BEGIN RSA PRIVATE KEY" not in c.get("/console/integration").text
    assert "BEGIN PRIVATE KEY" not in c.get("/console/integration").text

    test_trade = _test_payment(live, pid)
    for path in PAGES:
        page = c.get(path)
        assert page.status_code == 200 and 'id="test-banner"' in page.text, path
    listed = c.get("/console/payments").text
    assert test_trade in listed and shop["live_trade"] not in listed
    assert c.get(f"/console/payments/{shop['live_trade']}").status_code == 404
    assert c.get(f"/console/api/payments/{shop['live_trade']}").status_code == 404
    assert c.get(f"/console/payments/{test_trade}").status_code == 200
    assert c.get("/console/users").status_code == 403  # users are managed in live data only

    back = _switch(c, "live")
    assert back.status_code == 303 and back.headers["location"].endswith("/console/payments")
    listed = c.get("/console/payments").text
    assert shop["live_trade"] in listed and test_trade not in listed and 'id="test-banner"' not in listed
    assert c.get(f"/console/payments/{test_trade}").status_code == 404
    integration = c.get("/console/integration").text
    assert f'id="test-partner-id">{test_pid}<' in integration and 'id="test-md5-key"' not in integration
    c.close()


def test_the_test_clock_moves_from_the_console_and_its_files_are_in_test_settlements(
    live: LiveServer, tmp_path: Any
) -> None:
    live.server.config.app.state.platform.settings.settlement_dir = str(tmp_path / "settlements")
    live.settings.settlement_dir = str(tmp_path / "settlements")
    shop = _shop(live, "owner", "manager", "read-only")
    pid = shop["merchant"].partner_id
    owner = _sign_in(live, f"owner-{pid}@shop.test")
    _switch(owner, "test")
    test_trade = _test_payment(live, pid)

    manager = _sign_in(live, f"manager-{pid}@shop.test")
    assert _switch(manager, "test").status_code == 303
    page = manager.get("/console/integration")
    assert 'id="clock-form"' in page.text and 'id="test-md5-key"' not in page.text  # secrets: owner only
    moved = manager.post("/console/integration/clock", data={"advance": "3d", "csrf": csrf_of(page.text)})
    assert moved.status_code == 303 and "expired" in moved.headers["location"]
    assert 'id="clock-offset">259200<' in manager.get("/console/integration").text
    # A payment made now is stamped with the test clock, and the dashboard's "today" is the test day.
    _test_payment(live, pid, 2, 5678)
    today = re.search(r'id="totals-today".*?</table>', manager.get("/console/").text, re.S)
    assert today is not None and "56.78" in today.group(0) and "12.34" not in today.group(0)

    settled = manager.get("/console/settlements").text
    assert 'id="test-files"' in settled and "TEST_" in settled
    name = re.search(r'data-name="([^"]+_transaction_[^"]+)"', settled).group(1)  # type: ignore[union-attr]
    got = manager.get("/console/settlements/test-download", params={"name": name})
    assert got.status_code == 200 and test_trade in got.text

    # In live data: no test files, no clock, and the test file is not there to download.
    _switch(manager, "live")
    live_page = manager.get("/console/settlements").text
    assert "TEST_" not in live_page and 'id="test-files"' not in live_page
    assert manager.get("/console/settlements/test-download", params={"name": name}).status_code == 404
    assert 'id="clock-form"' not in manager.get("/console/integration").text
    page = manager.get("/console/integration")
    refused = manager.post("/console/integration/clock", data={"advance": "1d", "csrf": csrf_of(page.text)})
    assert refused.status_code == 303 and "real+time" in refused.headers["location"]

    reader = _sign_in(live, f"read-only-{pid}@shop.test")
    _switch(reader, "test")
    page = reader.get("/console/")
    assert 'id="test-banner"' in page.text
    assert (
        reader.post(
            "/console/integration/clock", data={"advance": "1d", "csrf": csrf_of(page.text)}
        ).status_code
        == 403
    )
    for c in (owner, manager, reader):
        c.close()


def test_only_the_owner_makes_the_test_credentials(live: LiveServer) -> None:
    shop = _shop(live, "owner", "manager")
    pid = shop["merchant"].partner_id
    manager = _sign_in(live, f"manager-{pid}@shop.test")
    refused = _switch(manager, "test")
    assert refused.status_code == 403 and "owner" in refused.text
    assert 'id="test-banner"' not in manager.get("/console/").text
    manager.close()
