"""The console's Test data / Live data switch in a real browser (Debian's Chromium via Playwright)
against ``tillpay serve --sandbox``: the owner makes the test credentials, pays a test payment in test
data, moves the test clock and downloads the test settlement file, then switches back to live data.
Screenshots go to ``docs/screenshots/console/`` (``test-data-*.png``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, Served
from playwright.sync_api import Browser, Playwright, expect, sync_playwright
from test_console_browser import Shop, shot, sign_in

from conftest import make_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("console-test-mode")
    dbs = make_database(request.param, request, tmp)
    server = Served(next(dbs), tmp, TILLPAY_MODE="sandbox", TILLPAY_SETTLEMENT_DIR=str(tmp / "settlements"))
    server.cwd = tmp  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        for _ in dbs:
            pass


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/test installs it"
    pw: Playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_owner_works_in_test_data_and_back_in_live_data(served: Served, chromium: Browser) -> None:
    shop = Shop(served)
    live_trade = shop.pay("12.00")
    ctx = chromium.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, served.url, shop.login)
    assert page.locator("#test-banner").count() == 0
    assert page.locator("#mode-live").get_attribute("aria-pressed") == "true"

    page.click("#mode-test")
    page.wait_for_selector("#test-private-key")
    assert "PRIVATE KEY" in page.locator("#test-private-key").inner_text()
    assert page.locator("#test-banner").is_visible()
    assert page.locator("#mode-test").get_attribute("aria-pressed") == "true"
    test_partner = page.locator("#partner-id").inner_text()
    assert test_partner != shop.partner and page.locator("#client-id").inner_text().startswith("SANDBOX_")
    shot(page, "test-data-01-credentials")

    page.goto(served.url + "/console/integration")
    assert page.locator("#test-private-key").count() == 0  # shown once
    page.fill("#test-amount", "7.50")
    page.click("#test-submit")
    page.wait_for_url("**/console/payments/*")
    test_trade = page.url.rsplit("/", 1)[-1]
    assert page.locator("#test-banner").is_visible()

    page.goto(served.url + "/console/payments")
    listed = page.content()
    assert test_trade in listed and live_trade not in listed
    shot(page, "test-data-02-transactions")

    page.goto(served.url + "/console/integration")
    page.fill("#clock-advance", "3d")
    page.click("#clock-submit")
    page.wait_for_selector("#done")
    assert "test clock at" in page.locator("#done").inner_text()
    assert page.locator("#clock-offset").inner_text() == str(3 * 86400)
    shot(page, "test-data-03-clock")

    page.goto(served.url + "/console/settlements")
    assert page.locator("#test-files tr[data-name]").count() == 3
    with page.expect_download() as got:
        page.locator("#test-files a.download").first.click()
    body = Path(got.value.path()).read_text()
    assert test_trade in body
    shot(page, "test-data-04-settlements")

    page.click("#mode-live")
    # Back to the same URL: expect() retries until the new page has replaced the test-mode one.
    expect(page.locator("#mode-live")).to_have_attribute("aria-pressed", "true")
    page.wait_for_url("**/console/settlements")
    expect(page.locator("#test-banner")).to_have_count(0)
    expect(page.locator("#test-files")).to_have_count(0)
    page.goto(served.url + "/console/payments")
    listed = page.content()
    assert live_trade in listed and test_trade not in listed
    page.goto(served.url + "/console/integration")
    assert page.locator("#test-partner-id").inner_text() == test_partner
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"
