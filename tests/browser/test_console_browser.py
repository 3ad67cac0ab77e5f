"""The merchant console in a real browser (Debian's Chromium via Playwright) against ``tillpay serve``.

A merchant's staff signs in, finds a payment by id, refunds part of it (a double submit refunds once),
downloads a settlement file (the same bytes ``tillpay settle files`` lists), rotates its key and pays
with the new one, redelivers a notification; another merchant's payment, file and refund stay out of
reach by URL and by API; a ``<script>`` subject is shown as text. Screenshots go to
``docs/screenshots/console/`` (or ``$TILLPAY_CONSOLE_SCREENSHOTS``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import CHROMIUM, CHROMIUM_ARGS, ROOT, Served
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from conftest import LOOPBACK_RECEIVERS_ENV, make_database
from notify_receivers import FormReceiver as Receiver
from tillpay import signing
from tillpay.client import GatewayRejected, MapiClient
from tillpay.services import console_auth, settlement, simulate, wallets
from tillpay.services.platform import Platform

pytestmark = pytest.mark.slow
SHOTS = Path(os.environ.get("TILLPAY_CONSOLE_SCREENSHOTS") or ROOT / "docs" / "screenshots" / "console")
PASSWORD = "console-pass-123"
_seq = itertools.count(1)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{name}.png").write_bytes(page.screenshot(full_page=True, animations="disabled"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``tillpay serve`` for the module; its working directory holds the settlement files."""
    tmp = tmp_path_factory.mktemp("console")
    dbs = make_database(request.param, request, tmp)
    # Its test payment needs a sandbox, and notifies a receiver on loopback: the operator's allow-list.
    server = Served(next(dbs), tmp, TILLPAY_MODE="sandbox", **LOOPBACK_RECEIVERS_ENV)
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


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Any]:
    """Make desktop-sized pages, each in its own context (its own cookies); JS errors fail the test."""
    made: list[tuple[Any, list[str]]] = []

    def make() -> Page:
        ctx = chromium.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        ctx.set_default_timeout(15_000)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        made.append((ctx, errors))
        return page

    yield make
    for ctx, errors in made:
        ctx.close()
        assert not errors, f"JavaScript errors: {errors}"


class Shop:
    """A merchant on the served gateway: its MAPI client (RSA key) and a console login."""

    def __init__(self, served: Served, *, notify_url: str | None = None, role: str = "owner") -> None:
        self.served = served
        self.client: MapiClient = served.merchant(name=f"Harbour Noodle Bar {next(_seq)}")
        self.partner = self.client.partner
        self.login = f"staff{next(_seq)}-{os.getpid()}@shop.test"

        async def go(p: Platform) -> None:
            if notify_url:
                from tillpay.services import console

                await console.set_notify_url(p, await p.merchant_by_partner(self.partner), notify_url)
            await console_auth.add_user(
                p, partner_id=self.partner, login=self.login, password=PASSWORD, role=role
            )

        served.run(go)
        self.customer = served.user()

    def add_user(self, role: str) -> str:
        login = f"{role}{next(_seq)}-{os.getpid()}@shop.test"
        self.served.run(
            lambda p: console_auth.add_user(
                p, partner_id=self.partner, login=login, password=PASSWORD, role=role
            )
        )
        return login

    def code(self) -> str:
        async def go(p: Platform) -> str:
            device = (await wallets.devices_of(p, self.customer.id))[-1]
            return await wallets.current_code(p, device)

        return self.served.run(go)  # type: ignore[no-any-return]

    def pay(self, amount: str = "25.00", subject: str = "Beef noodles", **kw: Any) -> str:
        order = f"ORD-{next(_seq)}-{time.monotonic_ns()}"
        r = self.client.pay(order, self.code(), amount, "USD", subject, **kw)
        assert r.ok and r.status == "TRADE_SUCCESS", r
        assert r.trade_no
        return r.trade_no


def sign_in(page: Page, base: str, login: str, password: str = PASSWORD) -> None:
    page.goto(base + "/console/")
    page.wait_for_url("**/console/login**")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda u: "/console/login" not in u)


def csrf(page: Page) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def cli(served: Served, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "tillpay.cli", "--json", *args],
        cwd=served.cwd,  # type: ignore[attr-defined]
        env={**os.environ, "TILLPAY_DATABASE_URL": served.db_url},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def settled(served: Served) -> tuple[str, Shop, Shop]:
    """Two merchants with a played and settled business day (``tillpay settle run``): a day closes once,
    so every merchant that needs files in this module is in it."""
    x, y = Shop(served), Shop(served)

    async def go(p: Platform) -> str:
        day = settlement.last_closed_day(p)
        await simulate.simulate(p, day, 12, n_merchants=0, partners=[x.partner, y.partner], seed=7)
        return day.isoformat()

    day: str = served.run(go)
    cli(served, "settle", "run", "--date", day)
    return day, x, y


# --------------------------------------------------------------------------------------------- tests


def test_sign_in_find_a_payment_and_refund_part_of_it_once(served: Served, browser_page: Any) -> None:
    shop = Shop(served)
    trade_no = shop.pay("25.00", store_id="S-HARBOUR", terminal_id="TILL-1")
    shop.pay("9.90")
    page = browser_page()

    page.goto(served.url + "/console/login")
    page.fill("#login", shop.login)
    page.fill("#password", "not the password")
    page.click("#login-form button[type=submit]")
    assert "Wrong login or password" in page.locator(".error").inner_text()
    shot(page, "01-sign-in-refused")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(served.url + "/console/")
    assert page.locator("#merchant-name").inner_text().startswith("Harbour Noodle Bar")
    assert "$34.90" in page.locator("#totals-today").inner_text()
    assert page.locator("svg.chart rect.bar").count() > 0
    shot(page, "02-dashboard")

    page.click("text=Transactions")
    expect(page.locator("#payments tbody tr")).to_have_count(2)  # waits for the page to load
    shot(page, "03-transactions")
    page.fill("#q", trade_no)
    page.click("#apply")
    page.wait_for_url(f"**/console/payments/{trade_no}")
    assert page.locator("#trade-no").inner_text() == trade_no
    assert (
        "US$25.00" in page.locator("#price").inner_text() or "$25.00" in page.locator("#price").inner_text()
    )
    assert "CNY" in page.locator("#wallet").inner_text()
    timeline = page.locator("#timeline").inner_text()
    assert "created through mapi" in timeline and "risk decision" in timeline and "paid" in timeline

    # The form as rendered, kept to submit it a second time later (a double click, a resent form).
    form = {
        "csrf": csrf(page),
        "refund_id": str(page.locator("#refund-form input[name=refund_id]").get_attribute("value")),
        "amount": "10.00",
    }
    page.fill("#refund-amount", "10.00")
    page.fill("#refund-reason", "one bowl was cold")
    page.click("#refund-submit")
    page.wait_for_selector("#refund-done")
    shot(page, "04-payment-refunded")
    again = page.request.post(served.url + f"/console/payments/{trade_no}/refund", form=form, max_redirects=0)
    assert again.status == 303
    page.reload()
    assert page.locator("#refunds tbody tr").count() == 1
    assert "$10.00" in page.locator("#refunded").inner_text()
    assert "$15.00" in page.locator("#refundable").inner_text()
    api = page.request.get(served.url + f"/console/api/payments/{trade_no}").json()
    assert api["refunded_price"] == 1000 and len(api["refunds"]) == 1

    # Filters: by terminal, and the CSV export of the same filter.
    page.goto(served.url + "/console/payments?terminal=TILL-1")
    assert page.locator("#payments tbody tr").count() == 1
    with page.expect_download() as dl:
        page.click("#csv")
    rows = Path(dl.value.path()).read_text().strip().splitlines()
    assert len(rows) == 2 and trade_no in rows[1] and "TILL-1" in rows[1]


def test_download_a_settlement_file_identical_to_tillpay_settle_files(
    served: Served, settled: tuple[str, Shop, Shop], browser_page: Any
) -> None:
    day, shop, _ = settled
    listed = cli(served, "settle", "files", "--date", day, "--partner", shop.partner)["files"]
    wanted = next(f for f in listed if f["kind"] == "settlement")
    on_disk = (served.cwd / "settlements" / wanted["name"]).read_bytes()  # type: ignore[attr-defined]

    page = browser_page()
    sign_in(page, served.url, shop.login)
    page.click("text=Settlements")
    expect(page.locator("#batches tbody tr")).to_have_count(1)  # waits for the page to load
    assert day in page.locator("#batches").inner_text()
    shot(page, "05-settlements")
    row = page.locator(f"#files tr[data-name='{wanted['name']}']")
    assert row.locator(".digest").inner_text() == wanted["sha256"]
    with page.expect_download() as dl:
        row.locator("a.download").click()
    got = Path(dl.value.path()).read_bytes()
    assert dl.value.suggested_filename == wanted["name"].rsplit("/", 1)[-1]
    assert got == on_disk
    import hashlib

    assert hashlib.sha256(got).hexdigest() == wanted["sha256"]
    with page.expect_download() as dl2:
        row.locator("a", has_text=".sha256").click()
    assert Path(dl2.value.path()).read_text().split()[0] == wanted["sha256"]


def test_rotate_the_key_and_pay_with_the_new_one(served: Served, browser_page: Any) -> None:
    shop = Shop(served)
    key = signing.generate_private_key()
    new_private = signing.private_key_pem(key, pkcs1=True)
    page = browser_page()
    sign_in(page, served.url, shop.login)
    page.click("text=Integration")
    assert page.locator("#partner-id").inner_text() == shop.partner
    assert page.locator("#keys tbody tr").count() == 1
    with page.expect_download() as dl:
        page.click("#gateway-key")
    assert "BEGIN PUBLIC KEY" in Path(dl.value.path()).read_text()
    page.fill("#public-key", signing.public_key_pem(key.public_key()))
    page.click("#key-submit")
    page.wait_for_selector("#done")
    assert "key version 2 is now current" in page.locator("#done").inner_text()
    assert page.locator("#keys tbody tr").count() == 2
    shot(page, "06-integration-key-rotated")

    rotated = MapiClient(
        served.url, shop.partner, private_key=new_private, gateway_public_key=shop.client.gateway_public_key
    )
    time.sleep(0.1)
    r = rotated.pay(f"NEWKEY-{time.monotonic_ns()}", shop.code(), "3.00", "USD", "Tea")
    assert r.ok and r.status == "TRADE_SUCCESS", r
    with pytest.raises(GatewayRejected) as rejected:  # MAPI verifies with the current key only
        shop.client.pay(f"OLDKEY-{time.monotonic_ns()}", shop.code(), "3.00", "USD", "Tea")
    assert rejected.value.error == "ILLEGAL_SIGN"

    page.fill("#public-key", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")
    page.click("#key-submit")
    page.wait_for_selector("#error")
    assert page.locator("#keys tbody tr").count() == 2


def test_test_payment_notifies_and_a_notification_is_redelivered(served: Served, browser_page: Any) -> None:
    receiver = Receiver()
    try:
        shop = Shop(served, notify_url=receiver.url)
        page = browser_page()
        sign_in(page, served.url, shop.login)
        page.goto(served.url + "/console/integration")
        page.fill("#test-amount", "2.50")
        page.click("#test-submit")
        page.wait_for_url("**/console/payments/2*")
        trade_no = page.locator("#trade-no").inner_text()
        assert page.locator("#state").inner_text() == "TRADE_SUCCESS"
        receiver.wait(1, timeout=20)
        first = receiver.received[0]
        assert first.get("trade_no") == trade_no or trade_no in json.dumps(first)

        page.goto(served.url + "/console/notifications")
        row = page.locator("#notifications tbody tr").first
        notify_id = str(row.get_attribute("data-notify-id"))
        deadline = time.monotonic() + 15
        while "delivered" not in row.inner_text() and time.monotonic() < deadline:
            time.sleep(0.2)
            page.reload()
            row = page.locator("#notifications tbody tr").first
        assert "delivered" in row.inner_text() and "HTTP 200" in row.inner_text()
        row.locator("button.redeliver").click()
        page.wait_for_selector("#redelivered")
        receiver.wait(2, timeout=20)
        assert receiver.received[1].get("notify_id") == receiver.received[0].get("notify_id") == notify_id
        page.reload()
        deadline = time.monotonic() + 15
        while page.locator("#notifications tbody tr").first.locator(".attempts li").count() < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            page.reload()
        shot(page, "07-notifications-redelivered")

        # The inspector, from the log's link: both attempts with the request as the merchant received it.
        page.locator(f'#notifications a[href="/console/notifications/{notify_id}"]').click()
        page.wait_for_url(f"**/console/notifications/{notify_id}")
        assert page.locator("#notify-id").inner_text() == notify_id
        assert page.locator("#state").inner_text() == "delivered"
        attempts = page.locator("#attempts li.attempt")
        assert attempts.count() == 2
        first_attempt = attempts.first
        # MAPI: the form fields as posted, the signature marked, and the merchant's answer.
        fields = dict(
            zip(
                first_attempt.locator("table.fields td:first-child").all_inner_texts(),
                first_attempt.locator("table.fields td:last-child").all_inner_texts(),
                strict=True,
            )
        )
        assert fields["notify_id"] == notify_id and fields["trade_no"] == trade_no
        assert fields["sign"] == receiver.received[0]["sign"]
        assert first_attempt.locator("code.signature mark").inner_text() == receiver.received[0]["sign"]
        assert first_attempt.locator(".http-status").inner_text() == "200"
        assert "success" in first_attempt.locator(".answer").inner_text()
        shot(page, "11-notification-inspector")
    finally:
        receiver.httpd.shutdown()


def test_merchant_a_cannot_reach_merchant_b_by_url_or_api(
    served: Served, settled: tuple[str, Shop, Shop], browser_page: Any
) -> None:
    day, _, b = settled
    a = Shop(served)
    b_trade = b.pay("40.00")
    b_file = next(f for f in cli(served, "settle", "files", "--date", day, "--partner", b.partner)["files"])
    page = browser_page()
    sign_in(page, served.url, a.login)
    token = csrf(page)
    base = served.url

    page.goto(base + f"/console/payments/{b_trade}")
    assert page.locator("#error h1").inner_text() == "Not found"
    shot(page, "08-other-merchant-not-found")
    assert page.request.get(base + f"/console/payments/{b_trade}").status == 404
    assert page.request.get(base + f"/console/api/payments/{b_trade}").status == 404
    name = urllib.parse.quote(b_file["name"])
    assert page.request.get(base + f"/console/settlements/download?name={name}").status == 404
    assert page.request.get(base + f"/console/settlements/digest?name={name}").status == 404
    refund = page.request.post(
        base + f"/console/payments/{b_trade}/refund",
        form={"csrf": token, "refund_id": "console-AAAAAAAAAAAAAAAA", "amount": "40.00"},
        max_redirects=0,
    )
    assert refund.status == 404
    api_refund = page.request.post(
        base + f"/console/api/payments/{b_trade}/refund",
        data=json.dumps({"amount": "40.00", "refund_id": "console-BBBBBBBBBBBBBBBB"}),
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert api_refund.status == 404
    listed = page.request.get(base + f"/console/api/payments?q={b_trade}").json()
    assert listed["payments"] == []
    page.goto(base + f"/console/payments?q={b_trade}")
    assert page.locator("#no-payments").count() == 1
    # A form without this session's CSRF token is refused, even for A's own payment.
    a_trade = a.pay("5.00")
    forged = page.request.post(
        base + f"/console/payments/{a_trade}/refund",
        form={"csrf": "forged-token-forged-token", "refund_id": "console-CCCCCCCCCCCCCCCC", "amount": "1.00"},
        max_redirects=0,
    )
    assert forged.status == 403
    # B's payment is untouched.
    assert b.client.query(trade_no=b_trade).status == "TRADE_SUCCESS"
    assert a.client.query(trade_no=a_trade).status == "TRADE_SUCCESS"

    # A read-only user of A sees no refund form and is refused by the server too.
    reader = a.add_user("read-only")
    page2 = browser_page()
    sign_in(page2, base, reader)
    page2.goto(base + f"/console/payments/{a_trade}")
    assert page2.locator("#refund-form").count() == 0
    denied = page2.request.post(
        base + f"/console/payments/{a_trade}/refund",
        form={"csrf": csrf(page2), "refund_id": "console-DDDDDDDDDDDDDDDD", "amount": "1.00"},
        max_redirects=0,
    )
    assert denied.status == 403
    assert page2.request.get(base + "/console/integration").status == 403


def test_a_script_in_a_subject_or_store_name_is_shown_as_text(served: Served, browser_page: Any) -> None:
    shop = Shop(served)
    evil = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"  # MAPI refuses quotes
    trade_no = shop.pay("7.00", subject=evil, store_id="S-1")
    page = browser_page()
    sign_in(page, served.url, shop.login)
    resp = page.goto(served.url + f"/console/payments/{trade_no}")
    assert resp is not None
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.locator("#subject").inner_text() == evil
    assert "<script>window.__xss" not in page.content().split("<body", 1)[1].replace("&lt;script&gt;", "")
    assert page.evaluate("window.__xss") is None
    page.goto(served.url + "/console/payments")
    assert evil in page.locator("#payments").inner_text()
    assert page.evaluate("window.__xss") is None

    page.goto(served.url + "/console/stores")
    page.fill("#store-ident", "S-1")
    page.fill("#store-name", evil)
    page.click("#store-form button[type=submit]")
    page.wait_for_selector("#stores tbody tr >> text=S-1")
    assert evil in page.locator("#stores").inner_text()
    assert page.evaluate("window.__xss") is None
    # No page carries an inline script: every <script> has a src on this server.
    for path in ("/console/", "/console/payments", "/console/stores", f"/console/payments/{trade_no}"):
        page.goto(served.url + path)
        assert page.locator("script:not([src])").count() == 0
    shot(page, "09-stores")


def test_a_disabled_terminal_is_refused_at_the_till(served: Served, browser_page: Any) -> None:
    shop = Shop(served)
    page = browser_page()
    sign_in(page, served.url, shop.login)
    page.goto(served.url + "/console/stores")
    page.fill("#terminal-ident", "TILL-9")
    page.fill("#terminal-name", "Front till")
    page.click("#terminal-form button[type=submit]")
    page.wait_for_selector("#terminals >> text=TILL-9")
    shop.pay("4.00", terminal_id="TILL-9")
    page.click("[data-toggle='terminal-TILL-9']")
    page.wait_for_selector("#terminals >> text=disabled")
    with pytest.raises(GatewayRejected) as refused:
        shop.client.pay(f"T9-{time.monotonic_ns()}", shop.code(), "4.00", "USD", "Tea", terminal_id="TILL-9")
    assert refused.value.error == "ILLEGAL_ARGUMENT" and "TILL-9 is disabled" in str(refused.value.detail)
    page.click("#terminals a >> text=TILL-9")
    page.wait_for_url("**/console/payments?terminal=TILL-9")
    page.wait_for_load_state()
    # expect() retries until the list has loaded: a count taken at once can see the page half-drawn.
    expect(page.locator("#payments tbody tr")).to_have_count(1)
