"""The demo system: a merchant, a funded wallet and rates, created once and printed on every start."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tillpay.config import Settings
from tillpay.domain.errors import TillpayError
from tillpay.domain.money import format_amount
from tillpay.services import console, console_auth, fx, merchants, risk, settlement, simulate, wallets
from tillpay.services.platform import Merchant, Platform
from tillpay.store.engine import is_sqlite

DEMO_PARTNER = "2088000000000001"
DEMO_LOGIN = "demo@tillpay.test"
DEMO_PIN = "123456"
DEMO_PASSWORD = "demo1234"  # noqa: S105 - the published demo login, not a secret
#: The demo merchant's console owner (the published demo login, not a secret).
DEMO_CONSOLE_LOGIN = "owner@demo.tillpay.test"
DEMO_CONSOLE_PASSWORD = "demo-owner-1234"  # noqa: S105 - the published demo login, not a secret
#: Payments played for the last closed business day on first start, so the console has a settled day.
DEMO_DAY_PAYMENTS = 24
#: The scheme's demo rules (Alipay's published in-store limits: CNY 50,000 a day, 200,000 a month).
DEMO_RULES = {
    "confirm_above": {"CNY": "2000.00", "USD": "300.00"},
    "per_payment_limit": {"CNY": "50000.00"},
    "daily_limit": {"CNY": "50000.00"},
    "monthly_limit": {"CNY": "200000.00"},
    "velocity_count": 20,
    "velocity_minutes": 10,
    "offline_code_confirm": True,
    "terminal_bad_codes": 10,
}
DEMO_MARGIN_BPS = 30
DEMO_RATES = [
    ("USD", "CNY", "7.1023"),
    ("EUR", "CNY", "7.7461"),
    ("USD", "JPY", "151.37"),
    ("USD", "SGD", "1.3412"),
]


def credentials_path(settings: Settings) -> Path:
    """Where the demo merchant's keys are kept: next to the SQLite file, else in the working directory."""
    if is_sqlite(settings.database_url):
        db = settings.database_url.split("///", 1)[-1]
        if db and db != ":memory:":
            return Path(db).resolve().parent / "tillpay-demo.json"
    return Path("tillpay-demo.json").resolve()


async def ensure_demo(settings: Settings) -> dict[str, Any]:
    """Create the demo data if missing; return the demo credentials."""
    path = credentials_path(settings)
    p = Platform(settings)
    try:
        try:
            m = await p.merchant_by_partner(DEMO_PARTNER, fresh=True)
            info: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except TillpayError:
            new = await merchants.add_merchant(
                p, name="Tillpay Demo Store", settlement_currency="USD", partner_id=DEMO_PARTNER, mcc="5812"
            )
            m = new.merchant
            info = {"merchant_private_key": new.merchant_private_key}
            for base, quote, rate in DEMO_RATES:
                await fx.set_rate(p, base, quote, rate)
            await fx.set_margin(p, "USD", "CNY", DEMO_MARGIN_BPS)
            await risk.set_rules(p, "scheme", "", DEMO_RULES)
        try:
            user = await wallets.user_by_login(p, DEMO_LOGIN)
        except TillpayError:
            await wallets.add_user(
                p,
                login_id=DEMO_LOGIN,
                currency="CNY",
                pin=DEMO_PIN,
                name="Demo Customer",
                password=DEMO_PASSWORD,
            )
            user = await wallets.topup(p, DEMO_LOGIN, 1_000_000, reference="demo-initial-funding")
        await _ensure_console(p, m)
        info.update(
            gateway_url=settings.public_url,
            partner=m.partner_id,
            md5_key=m.md5_key,
            settlement_currency=m.settlement_currency,
            tillpay_public_key=m.gateway_public_key,
            wallet_login=DEMO_LOGIN,
            wallet_pin=DEMO_PIN,
            wallet_password=DEMO_PASSWORD,
            wallet_balance=f"{format_amount(user.balance, user.currency)} {user.currency}",
            console_login=DEMO_CONSOLE_LOGIN,
            console_password=DEMO_CONSOLE_PASSWORD,
            mode=settings.mode,
        )
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)
        info["credentials_file"] = str(path)
        return info
    finally:
        await p.close()


async def _ensure_console(p: Platform, m: Merchant) -> None:
    """The demo's console owner and, once, a settled business day and a few payments of today."""
    try:
        await console_auth.user_by_login(p, DEMO_CONSOLE_LOGIN)
    except TillpayError:
        await console_auth.add_user(
            p,
            partner_id=m.partner_id,
            login=DEMO_CONSOLE_LOGIN,
            password=DEMO_CONSOLE_PASSWORD,
            role="owner",
            name="Demo Owner",
        )
    if await settlement.list_batches(p, partner_id=m.partner_id, limit=1):
        return
    # The last closed business day gets a simulated day of payments and refunds, then is settled, so
    # the console shows a batch and its files; today gets a few test payments for the dashboard.
    day = settlement.last_closed_day(p)
    try:
        await simulate.simulate(p, day, DEMO_DAY_PAYMENTS, n_merchants=0, partners=[m.partner_id], seed=9)
    except TillpayError:
        pass  # that day was simulated already (by an earlier start that stopped before settling)
    await settlement.run_day(p, day)
    for minor in (450, 1280, 2999):
        await console.test_payment(p, m, minor)


def print_demo(info: dict[str, Any], settings: Settings, *, as_json: bool) -> None:
    """Tell the user where everything is."""
    if as_json:
        click.echo(json.dumps(info, indent=2))
        sys.stdout.flush()
        return
    url = settings.public_url
    click.echo(
        f"""
Tillpay demo is starting.

  Mode               {settings.mode}: the wallet's self top-up and the console's test payments are
                     on, and their made-up money is never settled or paid out

  Gateway (MAPI)     {url}/gateway.do
  Health             {url}/health
  Database           {settings.database_url}

  Demo merchant      partner {info["partner"]}  (settles in {info["settlement_currency"]})
  MD5 key            {info["md5_key"]}
  RSA keys           merchant private key and Tillpay public key in {info["credentials_file"]}

  Wallet app         {url}/wallet/  (open it on a phone or a phone-sized browser window)
  Demo wallet        login {info["wallet_login"]}  PIN {info["wallet_pin"]}  password {info["wallet_password"]}
  Balance            {info["wallet_balance"]}
  Payment code       tillpay wallet code --login {info["wallet_login"]}

  Merchant console   {url}/console/
  Console owner      login {info["console_login"]}  password {info["console_password"]}

Stop with Ctrl-C.
""",
    )
    sys.stdout.flush()  # the banner must show before the server's own output, even when piped
