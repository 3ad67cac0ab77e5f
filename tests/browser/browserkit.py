"""Helpers of the browser tests: a ``tillpay serve`` process, phone-sized pages, screenshots, decoding.

Screenshots of every screen go to ``docs/screenshots/wallet/`` (or ``$TILLPAY_WALLET_SCREENSHOTS``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image
from playwright.sync_api import Page

import factories as f
from conftest import free_port, test_settings
from serving import stop_process_group, wait_until_healthy
from tillpay.client import MapiClient
from tillpay.services import wallets
from tillpay.services.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("TILLPAY_WALLET_SCREENSHOTS") or ROOT / "docs" / "screenshots" / "wallet")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "phone-pass-1"
PIN = "135790"
_seq = itertools.count(1)


class Served:
    """A ``tillpay serve`` process on its own port, with extra ``TILLPAY_*`` settings."""

    def __init__(self, db_url: str, cwd: Path, **env: str) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "TILLPAY_DATABASE_URL": db_url,
            "TILLPAY_WORKER_POLL_SECONDS": "0.2",
            "TILLPAY_LOG_LEVEL": "warning",
            **env,
        }
        # The server's own settings, for the set-up and checks this process runs on its database.
        self.settings = test_settings(
            db_url, public_url=self.url, **{k.removeprefix("TILLPAY_").lower(): v for k, v in env.items()}
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tillpay.cli", "serve", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        wait_until_healthy(self.proc, self.url)

    def run(self, fn: Callable[[Platform], Any]) -> Any:
        """Run ``await fn(platform)`` against the server's database (set-up and checks)."""

        async def go() -> Any:
            p = Platform(self.settings)
            try:
                return await fn(p)
            finally:
                await p.close()

        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def user(self, *, currency: str = "CNY", balance: int = 1_000_000) -> wallets.WalletUser:
        """A wallet user with a password and a PIN, funded."""

        async def go(p: Platform) -> wallets.WalletUser:
            login = f"phone{next(_seq)}-{os.getpid()}@example.test"
            await wallets.add_user(
                p, login_id=login, currency=currency, pin=PIN, password=PASSWORD, name="Mei Ling"
            )
            return await wallets.topup(p, login, balance)

        return self.run(go)  # type: ignore[no-any-return]

    def merchant(self, currency: str = "USD", name: str = "Harbour Noodle Bar") -> MapiClient:
        """A merchant (and the rates) with a MAPI client signed with its RSA key."""

        async def go(p: Platform) -> f.NewMerchant:
            await f.rates(p)
            return await f.merchant(p, currency, name=name)

        m: f.NewMerchant = self.run(go)
        return MapiClient(
            self.url,
            m.merchant.partner_id,
            private_key=m.merchant_private_key or "",
            gateway_public_key=m.merchant.gateway_public_key,
        )

    def stop(self) -> None:
        """Stop the server; if it had ended by itself meanwhile (a crash), say so with what it wrote."""
        ended = self.proc.poll()
        out = stop_process_group(self.proc)
        if ended is not None:
            raise RuntimeError(
                f"tillpay serve at {self.url} ended by itself (exit status {ended}): {out[-4000:]}"
            )


def shot(page: Page, name: str) -> bytes:
    """Screenshot the page (whole length), keep it under SHOTS as ``name``.png, and return the PNG."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = page.screenshot(full_page=True, animations="disabled")
    (SHOTS / f"{name}.png").write_bytes(png)
    return png


def decode(png: bytes) -> dict[str, str]:
    """The barcodes zxing-cpp finds in a screenshot, by format name (e.g. ``QRCode``, ``Code128``)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    found: dict[str, str] = {}
    for r in zxingcpp.read_barcodes(image):
        found[str(r.format).replace(" ", "").split(".")[-1]] = r.text
    return found


def sign_in(page: Page, base: str, login: str, start: str = "/wallet/") -> None:
    """Sign in through the form (the first time on a browser, this registers it as a device)."""
    page.goto(base + start)
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda u: "/wallet/login" not in u)
