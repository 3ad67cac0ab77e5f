"""The wallet app over real HTTP (a running server on SQLite and PostgreSQL): security rules and pages."""

from __future__ import annotations

import re
from typing import Any

import httpx

import factories as f
from conftest import LiveServer
from tillpay.client import MapiClient
from tillpay.services import wallets

PASSWORD = "open-sesame"


def make_user(live: LiveServer, balance: int = 100_000, currency: str = "CNY") -> wallets.WalletUser:
    async def go(p: Any) -> wallets.WalletUser:
        login = f"web{next(f._seq)}@example.test"
        u, _ = await wallets.add_user(p, login_id=login, currency=currency, pin="123456", password=PASSWORD)
        return await wallets.topup(p, login, balance) if balance else u

    return live.run(go)  # type: ignore[no-any-return]


def balance(live: LiveServer, login: str) -> int:
    async def go(p: Any) -> int:
        return (await wallets.user_by_login(p, login)).balance

    return live.run(go)  # type: ignore[no-any-return]


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def browser(live: LiveServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"user-agent": "test-browser", **headers}, timeout=20)


def sign_in(live: LiveServer, login: str, client: httpx.Client | None = None) -> httpx.Client:
    c = client or browser(live)
    page = c.get("/wallet/login")
    r = c.post("/wallet/login", data={"login": login, "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/wallet/", r.text
    return c


def shop(live: LiveServer, currency: str = "CNY") -> tuple[f.NewMerchant, MapiClient]:
    async def go(p: Any) -> f.NewMerchant:
        await f.rates(p)
        return await f.merchant(p, currency, name="Web Shop")

    m: f.NewMerchant = live.run(go)
    client = MapiClient(
        live.url,
        m.merchant.partner_id,
        private_key=m.merchant_private_key or "",
        gateway_public_key=m.merchant.gateway_public_key,
    )
    return m, client


def test_cookies_are_http_only_same_site_and_pages_allow_only_own_assets(live: LiveServer) -> None:
    u = make_user(live)
    with browser(live) as c:
        page = c.get("/wallet/login")
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'")
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        assert not re.search(r'(src|href)="(https?:)?//', page.text), "a page refers to another host"
        r = c.post(
            "/wallet/login", data={"login": u.login_id, "password": PASSWORD, "csrf": csrf_of(page.text)}
        )
        cookies = r.headers.get_list("set-cookie")
        session = next(h for h in cookies if h.startswith("tp_session="))
        assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/wallet" in session
        assert "Secure" not in session  # plain http here; see the https test below
    for asset in ("wallet.js", "paycode.js", "code128.js", "wallet.css", "vendor/qrcode-generator-2.0.4.js"):
        assert httpx.get(f"{live.url}/wallet/static/{asset}").status_code == 200


def test_cookies_are_secure_when_served_over_https(live: LiveServer) -> None:
    u = make_user(live)
    # uvicorn trusts X-Forwarded-Proto from loopback, as from a TLS-terminating proxy in front of it.
    with browser(live, **{"x-forwarded-proto": "https"}) as c:
        page = c.get("/wallet/login")
        assert "Secure" in page.headers["set-cookie"]
        r = c.post(
            "/wallet/login", data={"login": u.login_id, "password": PASSWORD, "csrf": csrf_of(page.text)}
        )
        assert all(
            "Secure" in h for h in r.headers.get_list("set-cookie") if "=;" not in h and '=""' not in h
        )


def test_every_state_change_needs_the_csrf_token_and_our_origin(live_sandbox: LiveServer) -> None:
    live = live_sandbox  # self top-up, the state change tried here, exists only in a sandbox
    u = make_user(live, balance=0)
    with browser(live) as anon:
        # Sign-in without the token from the form (login CSRF) is refused.
        r = anon.post("/wallet/login", data={"login": u.login_id, "password": PASSWORD})
        assert r.status_code == 403
    c = sign_in(live, u.login_id)
    form = c.get("/wallet/topup").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)
    assert nonce
    data = {"amount": "50.00", "nonce": nonce.group(1)}
    assert c.post("/wallet/topup", data={**data, "csrf": "forged-token-forged-token"}).status_code == 403
    assert c.post("/wallet/topup", data=data).status_code == 403
    evil = c.post(
        "/wallet/topup", data={**data, "csrf": csrf_of(form)}, headers={"origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert balance(live, u.login_id) == 0
    ok = c.post("/wallet/topup", data={**data, "csrf": csrf_of(form)})
    assert ok.status_code == 303 and ok.headers["location"] == "/wallet/?topped=1"
    # The same form sent twice funds once.
    assert c.post("/wallet/topup", data={**data, "csrf": csrf_of(form)}).status_code == 303
    assert balance(live, u.login_id) == 5000
    bad = c.post(
        "/wallet/topup", data={"amount": "1.234", "nonce": nonce.group(1) + "x", "csrf": csrf_of(form)}
    )
    assert bad.status_code == 400 and balance(live, u.login_id) == 5000
    c.close()


def test_no_data_of_another_user_by_changing_an_id(live: LiveServer) -> None:
    _, mapi = shop(live)
    alice, bob = make_user(live), make_user(live)

    async def code(p: Any) -> str:
        return await wallets.current_code(p, (await wallets.devices_of(p, alice.id))[0])

    with mapi:
        paid = mapi.pay("ID-1", live.run(code), "12.00", "CNY", "Soup")
    assert paid.ok and paid.trade_no
    a, b = sign_in(live, alice.login_id), sign_in(live, bob.login_id)
    assert a.get(f"/wallet/payments/{paid.trade_no}").status_code == 200
    assert b.get(f"/wallet/payments/{paid.trade_no}").status_code == 404
    assert b.get(f"/wallet/confirm/{paid.trade_no}").status_code == 404
    assert "Soup" not in b.get("/wallet/history").text
    assert "Soup" in a.get("/wallet/history").text
    alice_devices = a.get("/wallet/devices").text
    ids = re.findall(r"/wallet/devices/(\d+)/revoke", alice_devices)
    csrf_b = csrf_of(b.get("/wallet/devices").text)
    for device_id in ids:
        assert b.post(f"/wallet/devices/{device_id}/revoke", data={"csrf": csrf_b}).status_code == 404
    assert a.get("/wallet/api/device").json()["device_no"] != b.get("/wallet/api/device").json()["device_no"]
    a.close()
    b.close()


def test_anonymous_visitor_sees_a_qr_order_and_a_sign_in_prompt(live: LiveServer) -> None:
    _, mapi = shop(live, "USD")
    with mapi:
        pre = mapi.precreate("QR-1", "5.00", "USD", "Lunch set")
    assert pre.qr_code
    page = httpx.get(pre.qr_code, headers={"accept-language": "en"})
    assert page.status_code == 200 and "Lunch set" in page.text and "Web Shop" in page.text
    assert "$5.00" in page.text
    assert f"/wallet/login?next=%2Fwallet%2Fqr%2F{pre.trade_no}" in page.text
    assert httpx.get(f"{live.url}/wallet/qr/2026112622999999999999999999").status_code == 404


def test_pages_need_a_session_and_the_api_says_so(live: LiveServer) -> None:
    with browser(live) as c:
        r = c.get("/wallet/history")
        assert r.status_code == 303 and r.headers["location"] == "/wallet/login?next=%2Fwallet%2Fhistory"
        assert c.get("/wallet/api/device").status_code == 401
        assert c.get("/wallet/api/state").status_code == 401
        # After sign-in only wallet paths are followed (no open redirect).
        u = make_user(live)
        page = c.get("/wallet/login")
        r = c.post(
            "/wallet/login",
            data={
                "login": u.login_id,
                "password": PASSWORD,
                "csrf": csrf_of(page.text),
                "next": "https://evil.example/",
            },
        )
        assert r.headers["location"] == "/wallet/"


def test_language_follows_the_browser_and_the_switch(live: LiveServer) -> None:
    u = make_user(live, balance=123_456)
    expected = {
        "zh-CN,zh;q=0.9": ("zh-Hans", "登录", "¥1,234.56"),
        "ja-JP,ja;q=0.9,en;q=0.5": ("ja", "ログイン", "元1,234.56"),
        "ko-KR": ("ko", "로그인", "CN¥1,234.56"),
        "fr-FR,en;q=0.5": ("en", "Sign in", "CN¥1,234.56"),
        "zh-TW,ja;q=0.5": ("ja", "ログイン", "元1,234.56"),
    }
    for header, (lang, sign_in_text, money) in expected.items():
        with browser(live, **{"accept-language": header}) as c:
            page = c.get("/wallet/login").text
            assert f'<html lang="{lang}">' in page and sign_in_text in page, header
            sign_in(live, u.login_id, c)
            assert money in c.get("/wallet/").text, header
    with browser(live, **{"accept-language": "en"}) as c:
        sign_in(live, u.login_id, c)
        home = c.get("/wallet/").text
        r = c.post("/wallet/lang", data={"lang": "ko", "next": "/wallet/history", "csrf": csrf_of(home)})
        assert r.status_code == 303 and r.headers["location"] == "/wallet/history"
        assert '<html lang="ko">' in c.get("/wallet/history").text


def test_live_state_reports_waiting_confirmations(live: LiveServer) -> None:
    _, mapi = shop(live)
    u = make_user(live, balance=1_000_000)
    c = sign_in(live, u.login_id)
    since = re.search(r'data-since="(\d+)"', c.get("/wallet/code").text)
    assert since
    device = c.get("/wallet/api/device").json()
    assert len(bytes.fromhex(device["secret"])) == 20 and device["used"] == []
    from tillpay.domain import paycode

    code = paycode.generate(bytes.fromhex(device["secret"]), device["device_no"], int(device["server_time"]))
    with mapi:
        big = mapi.pay("LIVE-1", code, "2500.00", "CNY", "Television")
    assert big.status == "WAIT_BUYER_PAY"
    state = c.get(f"/wallet/api/state?since={since.group(1)}").json()
    assert [p["trade_no"] for p in state["pending"]] == [big.trade_no]
    assert c.get("/wallet/api/device").json()["used"][0][1] == 0
    with c.stream("GET", f"/wallet/api/events?since={since.group(1)}") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        first = [next(lines) for _ in range(4)]
    assert first[0] == "retry: 1000" and first[2] == "event: state" and big.trade_no in first[3]
    c.close()
