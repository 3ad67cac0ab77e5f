"""Production and sandbox modes: no made-up money outside a sandbox, none of it ever settled or paid out,
operator top-ups only with a reference used once (issue 14, finding 1)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

import factories as f
from conftest import LiveServer
from tillpay import __version__
from tillpay.cli import main
from tillpay.domain.errors import TillpayError
from tillpay.services import console, console_auth, settlement, wallets
from tillpay.services.audit import audit
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import tables as t
from web.test_wallet_http import balance, csrf_of, make_user, sign_in

DAY = date(2026, 11, 25)
IBAN = "DE89370400440532013000"
OWNER_PASSWORD = "owner-password-1234"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))


def _console(live: LiveServer) -> tuple[httpx.Client, str]:
    """An owner signed in to the console of a new USD merchant: the client and the partner id."""

    async def go(p: Platform) -> str:
        m = await f.merchant(p, "USD")
        await console_auth.add_user(
            p,
            partner_id=m.merchant.partner_id,
            login=f"owner-{m.merchant.partner_id}@shop.test",
            password=OWNER_PASSWORD,
            role="owner",
        )
        return m.merchant.partner_id

    partner = live.run(go)
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post(
        "/console/login",
        data={"login": f"owner-{partner}@shop.test", "password": OWNER_PASSWORD, "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303, r.text
    return c, partner


def _payment_count(live: LiveServer) -> int:
    async def go(p: Platform) -> int:
        async with p.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.payments))).scalar_one())

    return live.run(go)


# ----------------------------------------------------------------------------------------- production


def test_production_is_the_default_and_health_says_so(live: LiveServer) -> None:
    assert live.settings.mode == "production"
    assert httpx.get(live.url + "/health").json()["mode"] == "production"


def test_sandbox_health_says_sandbox(live_sandbox: LiveServer) -> None:
    assert httpx.get(live_sandbox.url + "/health").json()["mode"] == "sandbox"


def test_production_wallet_has_no_self_top_up(live: LiveServer) -> None:
    u = make_user(live, balance=0)
    c = sign_in(live, u.login_id)
    home = c.get("/wallet/")
    assert home.status_code == 200
    assert "/wallet/topup" not in home.text and "sandbox-banner" not in home.text
    assert c.get("/wallet/topup").status_code == 404
    r = c.post(
        "/wallet/topup", data={"amount": "100000000.00", "nonce": "n" * 24, "csrf": csrf_of(home.text)}
    )
    assert r.status_code in (404, 405)
    assert balance(live, u.login_id) == 0
    c.close()


def test_production_console_offers_no_test_payment_and_refuses_one(live: LiveServer) -> None:
    c, _ = _console(live)
    page = c.get("/console/integration")
    assert page.status_code == 200
    assert "test-form" not in page.text and "test-payment" not in page.text
    assert "sandbox-banner" not in page.text
    r = c.post("/console/integration/test-payment", data={"amount": "1000000.00", "csrf": csrf_of(page.text)})
    assert r.status_code in (404, 405)
    assert _payment_count(live) == 0
    c.close()


@pytest.mark.anyio
async def test_the_test_payment_service_refuses_in_production(platform: Platform) -> None:
    m = await f.merchant(platform, "USD")
    with pytest.raises(TillpayError, match="sandbox"):
        await console.test_payment(platform, m.merchant, 100_000_000)
    async with platform.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.payments))).scalar_one() == 0
        assert (await conn.execute(select(func.count()).select_from(t.journal_entries))).scalar_one() == 0


# -------------------------------------------------------------------------------------------- sandbox


def test_sandbox_pages_show_a_banner_and_self_top_up_makes_a_sandbox_wallet(live_sandbox: LiveServer) -> None:
    live = live_sandbox
    u = make_user(live, balance=0)
    c = sign_in(live, u.login_id)
    form = c.get("/wallet/topup").text
    assert "sandbox-banner" in form
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)
    assert nonce
    r = c.post("/wallet/topup", data={"amount": "10.00", "nonce": nonce.group(1), "csrf": csrf_of(form)})
    assert r.status_code == 303
    assert live.run(lambda p: wallets.user_by_login(p, u.login_id)).sandbox is True
    c.close()
    cc, _ = _console(live)
    page = cc.get("/console/integration").text
    assert "sandbox-banner" in page and 'id="test-form"' in page
    cc.close()


@pytest.mark.anyio
async def test_sandbox_test_payments_are_never_settled_or_paid_out(
    sandbox_platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    p = sandbox_platform
    p.settings.settlement_dir = str(tmp_path)
    m = (await f.merchant(p, "USD")).merchant
    await settlement.set_fee(p, m.partner_id, 0)
    await settlement.set_account(p, m.partner_id, iban=IBAN, bic="COBADEFFXXX", name="Shop Ltd")
    real = await f.customer(p, "USD", balance=100_000)
    from services.test_settlement import pay

    await pay(p, m, real, 1234, "REAL-1")
    test = await console.test_payment(p, m, 100_000_000)  # USD 1,000,000.00
    user = await wallets.user_by_login(p, console.sandbox_login(m))
    assert user.sandbox is True
    clock.advance(3600 * 16)  # past the day's cut-off
    run = await settlement.run_day(p, DAY)
    [b] = run.batches
    assert (b.payment_count, b.payments_amount) == (1, 1234)
    async with p.engine.connect() as conn:
        refs = set((await conn.execute(select(t.settlement_items.c.ref))).scalars())
        test_id = (
            await conn.execute(select(t.payments.c.id).where(t.payments.c.trade_no == test.trade_no))
        ).scalar()
    assert refs == {r for r in refs if r != f"payment:{test_id}"} and len(refs) == 1
    clock.advance(3600 * 24)
    nxt = await settlement.run_day(p, date(2026, 11, 26))
    [po] = nxt.payouts
    assert po.payout_amount == 1234
    [pain] = [x for x in nxt.files if x.kind == "pain001"]
    xml = (tmp_path / pain.name).read_text()
    assert '<InstdAmt Ccy="USD">12.34</InstdAmt>' in xml and "1000000.00" not in xml
    assert await audit(p) == []


@pytest.mark.anyio
async def test_the_audit_flags_a_sandbox_payment_inside_a_settlement(
    platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    platform.settings.settlement_dir = str(tmp_path)
    m = (await f.merchant(platform, "USD")).merchant
    c = await f.customer(platform, "USD", balance=100_000)
    from services.test_settlement import pay

    await pay(platform, m, c, 500, "P-1")
    clock.advance(3600 * 16)
    await settlement.run_day(platform, DAY)
    assert await audit(platform) == []
    # The settled payment's wallet turns out to be a sandbox wallet (e.g. flagged by hand, or settled by
    # an older version): made-up money inside a batch is what the audit must name.
    async with platform.engine.begin() as conn:
        await conn.execute(
            update(t.wallet_users).where(t.wallet_users.c.id == c.user.id).values(sandbox=True)
        )
    findings = {x.check for x in await audit(platform)}
    assert "sandbox_never_settled" in findings
    async with platform.engine.begin() as conn:  # put it back: the fixture audits afterwards
        await conn.execute(
            update(t.wallet_users).where(t.wallet_users.c.id == c.user.id).values(sandbox=False)
        )


# -------------------------------------------------------------------------------- operator top-ups


def _cli(db_url: str, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--database-url", db_url, "--json", *args], catch_exceptions=False)
    return r.exit_code, r.output


def test_operator_top_up_needs_a_reference_used_once(db_url: str) -> None:
    code, _ = _cli(
        db_url, "wallet", "add", "--login", "ops@example.test", "--currency", "USD", "--pin", "123456"
    )
    assert code == 0
    code, out = _cli(db_url, "wallet", "topup", "--login", "ops@example.test", "--amount", "50.00")
    assert code == 2 and "--reference" in out
    code, out = _cli(
        db_url, "wallet", "topup", "--login", "ops@example.test", "--amount", "50.00", "--reference", "WIRE-1"
    )
    assert code == 0 and '"added": true' in out and '"reference": "WIRE-1"' in out
    code, out = _cli(
        db_url, "wallet", "topup", "--login", "ops@example.test", "--amount", "50.00", "--reference", "WIRE-1"
    )
    assert code == 0 and '"added": false' in out and '"balance_minor": 5000' in out
    code, out = _cli(
        db_url, "wallet", "topup", "--login", "ops@example.test", "--amount", "70.00", "--reference", "WIRE-1"
    )
    assert code == 1 and "REPEAT_REQ_INCONSISTENT" in out
    for bad in ("", "has space", "x" * 65):
        code, out = _cli(
            db_url, "wallet", "topup", "--login", "ops@example.test", "--amount", "1.00", "--reference", bad
        )
        assert code == 1 and "ILLEGAL_ARGUMENT" in out
    code, out = _cli(db_url, "wallet", "show", "--login", "ops@example.test")
    shown = json.loads(out)
    assert shown["balance_minor"] == 5000 and shown["sandbox"] is False
    assert [(x["reference"], x["amount"]) for x in shown["topups"]] == [("WIRE-1", "50.00")]
    code, out = _cli(db_url, "audit")
    assert code == 0, out


@pytest.mark.anyio
async def test_concurrent_top_ups_with_one_reference_fund_once(platform: Platform) -> None:
    import asyncio

    c = await f.customer(platform, "USD", balance=0)
    results = await asyncio.gather(
        *(wallets.fund(platform, c.user.login_id, 2500, "WIRE-RACE") for _ in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(r, wallets.TopUp) for r in results), results
    assert sum(1 for r in results if isinstance(r, wallets.TopUp) and r.added) == 1
    assert (await wallets.user_by_login(platform, c.user.login_id)).balance == 2500


# ------------------------------------------------------------------------------- the start-up banner


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        ((), "mode production\n"),
        (("--sandbox",), "mode sandbox: self top-up and test payments on, never settled\n"),
        (("--demo",), "mode sandbox: self top-up and test payments on, never settled\n"),
    ],
)
def test_serve_says_its_mode_when_it_starts(tmp_path: Path, flags: tuple[str, ...], line: str) -> None:
    import os
    import subprocess
    import sys

    from conftest import free_port
    from serving import stop_process_group, wait_until_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tillpay.cli", "serve", "--port", str(port), "--no-worker", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TILLPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'banner.db'}"},
        start_new_session=True,
    )
    wait_until_healthy(proc, url)
    mode = line.split()[1].rstrip(":")
    assert httpx.get(url + "/health").json()["mode"] == mode
    for page in ("/wallet/login", "/console/login"):  # the banner is on every page, signed in or not
        assert ('id="sandbox-banner"' in httpx.get(url + page).text) is (mode == "sandbox")
    out = stop_process_group(proc)
    banner = next(x for x in out.splitlines(keepends=True) if x.startswith(f"Tillpay {__version__} on "))
    assert banner.startswith(f"Tillpay {__version__} on ") and banner.endswith(f", {line}")
