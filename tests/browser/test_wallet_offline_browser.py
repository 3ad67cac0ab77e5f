"""The wallet as an installed app in a real browser: it opens offline on a code that pays, the code screen
fits a phone, kept pages say they are the last known, sign-out forgets them, and times are the phone's."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import test_wallet_browser as wallet_browser
from babel.dates import format_datetime
from browserkit import Served, shot, sign_in
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page
from test_wallet_browser import Phone, _serve, browser_device, scanned, wait_url

from tillpay.domain import paycode
from tillpay.services import wallet_app, wallets
from tillpay.web.wallet import i18n

pytestmark = pytest.mark.slow
PAGES_CACHE = "tillpay-wallet-pages"
# The browser fixtures of the other wallet tests, found by pytest under these names.
playwright = wallet_browser.playwright
chromium = wallet_browser.chromium
phone = wallet_browser.phone


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One sandbox server for this module (the sandbox banner is on every page, as in a demo)."""
    yield from _serve(request, tmp_path_factory.mktemp("offline"), request.param, TILLPAY_MODE="sandbox")


def installed(page: Page) -> None:
    """Wait until the service worker controls the page and has kept the payment code page."""
    page.wait_for_function("navigator.serviceWorker && navigator.serviceWorker.controller !== null")
    page.wait_for_function(f"caches.open({PAGES_CACHE!r}).then(c => c.match('/wallet/code')).then(Boolean)")


def kept(page: Page, path: str) -> bool:
    """Whether the service worker keeps a copy of a page."""
    return bool(
        page.evaluate("async ([c, p]) => !!(await (await caches.open(c)).match(p))", [PAGES_CACHE, path])
    )


def kept_text(page: Page) -> str:
    """Every page the service worker keeps, as one text."""
    return str(
        page.evaluate(
            """async (c) => {
                const cache = await caches.open(c);
                const out = [];
                for (const k of await cache.keys()) out.push(k.url, await (await cache.match(k)).text());
                return out.join("\\n");
            }""",
            PAGES_CACHE,
        )
    )


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("lang", sorted(i18n.LANGUAGES))
def test_the_code_screen_fits_a_phone_with_the_offline_notice(
    app: Served, phone: Callable[..., Phone], lang: str
) -> None:
    u = app.user()
    ph = phone(locale={"zh_Hans": "zh-CN", "en": "en-US", "ja": "ja-JP", "ko": "ko-KR"}[lang])
    page = ph.page
    sign_in(page, app.url, u.login_id)
    page.goto(app.url + "/wallet/code")
    page.locator("#paycode[data-code]").wait_for()
    assert page.get_attribute("html", "lang") == i18n.html_lang(lang)
    ph.context.set_offline(True)
    page.locator("#offline").wait_for(state="visible")
    height = page.evaluate("document.scrollingElement.scrollHeight")
    shot(page, f"21-code-offline-{lang}")
    assert height <= 844, f"{lang}: the code screen is {height} px high"
    # Everything that matters is inside the screen: the button and the notice too.
    for sel in ("#qr", "#barcode", "#digits", "#new-code", "#offline"):
        box = page.locator(sel).bounding_box()
        assert box and box["y"] + box["height"] <= 844, (lang, sel, box)
    ph.context.set_offline(False)


def test_the_installed_app_opens_offline_on_a_code_that_pays(
    app: Served, phone: Callable[..., Phone]
) -> None:
    u = app.user()
    shop = app.merchant("CNY", name="Ferry Kiosk")
    ph = phone()
    page = ph.page
    sign_in(page, app.url, u.login_id)
    page.goto(app.url + "/wallet/code")
    page.locator("#paycode[data-code]").wait_for()
    installed(page)
    page.goto(app.url + "/wallet/")  # now through the service worker, which keeps it
    page.wait_for_function(f"caches.open({PAGES_CACHE!r}).then(c => c.match('/wallet/')).then(Boolean)")
    manifest = page.evaluate("fetch('/wallet/manifest.webmanifest').then(r => r.json())")
    assert manifest["display"] == "standalone"
    assert not kept(page, "/wallet/login")

    # No network; the app is closed and opened again from the home screen.
    ph.context.set_offline(True)
    page.close()
    again = ph.context.new_page()
    again.on("pageerror", lambda e: ph.errors.append(str(e)))
    again.goto(app.url + manifest["start_url"])
    again.locator("#paycode[data-code]").wait_for()
    again.locator("#offline").wait_for(state="visible")
    assert (
        again.evaluate("navigator.onLine") is False and again.evaluate("document.body.dataset.fresh") == "0"
    )
    code = scanned(again, "22-offline-app-code")
    device = browser_device(app, u.login_id)
    parsed = paycode.parse(code)
    assert parsed.device_no == device.device_no
    assert paycode.match_step(device.secret, parsed, int(time.time())) is not None

    # The kept home page says it is the last known one, and when it was made.
    home = ph.context.new_page()
    home.goto(app.url + "/wallet/")
    home.locator("#last-known").wait_for(state="visible")
    assert home.inner_text("#last-known").startswith("Offline: last known as of ")
    assert home.inner_text("#balance") == "CN¥10,000.00"
    shot(home, "23-offline-home-last-known")

    # The till is online: it charges the code read off the offline phone.
    with shop:
        paid = shop.pay("OFF-1", code, "6.50", "CNY", "Ferry ticket")
        assert paid.ok and paid.status == "TRADE_SUCCESS", paid
        assert shop.query("OFF-1").status == "TRADE_SUCCESS"
    # Back online, the opened app learns of the payment and shows it, fresh from the server.
    ph.context.set_offline(False)
    wait_url(again, rf"/wallet/payments/{paid.trade_no}$", timeout=40)
    assert again.inner_text("#result-title") == "Payment successful"
    assert again.evaluate("document.body.dataset.fresh") == "1"
    assert again.locator("#last-known").is_hidden()
    # The kept home page updates itself too: the server's page, with the new payment and balance.
    home.wait_for_function("document.body.dataset.fresh === '1'")
    home.locator(f'li.payment[data-trade-no="{paid.trade_no}"]').wait_for()
    assert home.inner_text("#balance") == "CN¥9,993.50" and home.locator("#last-known").is_hidden()


def test_signing_out_forgets_the_kept_pages_before_anyone_else_signs_in(
    app: Served, phone: Callable[..., Phone]
) -> None:
    first, second = app.user(), app.user()
    ph = phone()
    page = ph.page
    sign_in(page, app.url, first.login_id)
    page.goto(app.url + "/wallet/code")
    installed(page)
    page.goto(app.url + "/wallet/history")
    page.wait_for_function(
        f"caches.open({PAGES_CACHE!r}).then(c => c.match('/wallet/history')).then(Boolean)"
    )
    assert first.login_id in kept_text(page)

    page.click("#logout button[type=submit]")
    page.wait_for_url(re.compile(r"/wallet/login$"))
    assert kept_text(page) == ""
    assert page.evaluate("localStorage.getItem('tillpay.device')") is None

    sign_in(page, app.url, second.login_id, start="/wallet/login")
    page.goto(app.url + "/wallet/code")
    page.wait_for_function(f"caches.open({PAGES_CACHE!r}).then(c => c.match('/wallet/code')).then(Boolean)")
    text = kept_text(page)
    assert second.login_id in text and first.login_id not in text
    assert "/wallet/login" not in text
    # Offline, the first customer's history is gone from this browser.
    ph.context.set_offline(True)
    with pytest.raises(PlaywrightError, match=r"ERR_INTERNET_DISCONNECTED|ERR_FAILED"):
        page.goto(app.url + "/wallet/history")
    ph.context.set_offline(False)


def test_every_wallet_time_is_in_the_phones_zone(app: Served, phone: Callable[..., Phone]) -> None:
    # A zone whose date differs from UTC's while the test runs: 14 hours ahead from 10:00 UTC to midnight,
    # 11 hours behind from midnight to 11:00. Within two minutes of midnight neither holds for long
    # enough, so the test starts just after it.
    now = datetime.now(UTC)
    if now.hour == 23 and now.minute >= 58:
        time.sleep((60 - now.minute) * 60 - now.second + 5)
        now = datetime.now(UTC)
    zone_name = "Pacific/Kiritimati" if now.hour >= 10 else "Pacific/Pago_Pago"
    zone = ZoneInfo(zone_name)
    u = app.user()
    shop = app.merchant("CNY", name="Far Away Books")
    ph = phone(timezone=zone_name)
    page = ph.page
    sign_in(page, app.url, u.login_id)
    page.goto(app.url + "/wallet/code")
    page.locator("#paycode[data-code]").wait_for()
    code = str(page.get_attribute("#paycode", "data-code"))
    with shop:
        paid = shop.pay("TZ-1", code, "20.00", "CNY", "Atlas")
        assert paid.ok
        wait_url(page, rf"/wallet/payments/{paid.trade_no}$")
        assert shop.refund("TZ-1", "TZ-1-R1", "5.00", "CNY").ok

    async def stored(p: Any) -> wallet_app.Item:
        return await wallet_app.item(p, await wallets.user_by_login(p, u.login_id), paid.trade_no)

    it: wallet_app.Item = app.run(stored)
    assert it.payment.paid_at and it.refunds

    def local(when: datetime, fmt: str) -> str:
        return format_datetime(when.astimezone(UTC), fmt, tzinfo=zone, locale="en")

    def utc(when: datetime, fmt: str) -> str:
        return format_datetime(when.astimezone(UTC), fmt, tzinfo=ZoneInfo("UTC"), locale="en")

    assert when_differs(it.payment.created_at, zone), "the test's zone must change the date"
    page.reload()
    facts = page.inner_text(".facts")
    assert local(it.payment.paid_at, "medium") in facts and utc(it.payment.paid_at, "medium") not in facts
    refund_line = page.inner_text("ul.refunds li.refund")
    assert refund_line.endswith(local(it.refunds[0].created_at, "medium"))
    for path in ("/wallet/history", "/wallet/"):
        page.goto(app.url + path)
        item = page.locator(f'li.payment[data-trade-no="{paid.trade_no}"]')
        assert item.locator(".when").inner_text() == local(it.payment.created_at, "short"), path
        refund = item.locator("li.refund").inner_text()
        assert refund.endswith(local(it.refunds[0].created_at, "short")), (path, refund)
        assert utc(it.payment.created_at, "short") not in item.inner_text()
    shot(page, "24-home-far-zone")


def when_differs(when: datetime, zone: ZoneInfo) -> bool:
    """Whether a moment falls on another date in ``zone`` than in UTC."""
    return when.astimezone(zone).date() != when.astimezone(UTC).date()
