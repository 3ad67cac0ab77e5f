"""ECR test harness: a real ``tillpay serve`` process (the gateway) and the ECR driven by Textual's pilot.

The ECR is a MAPI client, so the gateway's own storage is not under test here: it runs on SQLite. Codes
and confirmations come from the ``tillpay wallet`` CLI, as a customer's wallet would give them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from conftest import free_port, make_database, test_settings
from serving import stop_process_group, wait_until_healthy
from tillpay.ecr.config import EcrConfig, PrinterConfig, hash_pin
from tillpay.ecr.till import Till
from tillpay.services import fx, merchants, wallets
from tillpay.services.platform import Platform

TILLPAY = [sys.executable, "-m", "tillpay.cli"]
EXAMPLE_CATALOG = Path(__file__).parents[2] / "src/tillpay/ecr/example_catalog.csv"
LOGIN = "alice@example.test"
PIN = "246810"
OPERATOR_PIN = "4321"

# Items of the example catalog.
FLAT_WHITE = "4006381333931"  # 4.50
CROISSANT = "4006381333948"  # 3.20
MACHINE = "4501234567902"  # 349.00: above the confirmation limit below


class Gateway:
    """A ``tillpay serve`` process on a fixed port, so it can be killed and started again."""

    def __init__(self, db_url: str, *extra: str) -> None:
        self.db = db_url
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "TILLPAY_DATABASE_URL": self.db,
            "TILLPAY_WORKER_POLL_SECONDS": "0.1",
            # Wallet (CNY) amounts above 1000 need the customer's confirmation: the machine, not a coffee.
            "TILLPAY_CONFIRM_ABOVE": "CNY:1000.00",
        }
        self.proc = subprocess.Popen(
            [*TILLPAY, "serve", "--port", str(self.port), *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        wait_until_healthy(self.proc, self.url)

    def kill(self) -> None:
        """SIGKILL the whole process group: no goodbye to anyone."""
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc, signal.SIGKILL)
        self.proc = None


def cli(db_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``tillpay --json ARGS`` against the gateway's database."""
    env = {**os.environ, "TILLPAY_DATABASE_URL": db_url}
    proc = subprocess.run([*TILLPAY, "--json", *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"tillpay {' '.join(args)} failed: {proc.stdout} {proc.stderr}")
    return proc


@dataclass
class Shop:
    """The gateway, the merchant's credentials, and a till configuration in ``dir``."""

    gateway: Gateway
    dir: Path
    cfg: EcrConfig

    @property
    def db(self) -> str:
        return self.gateway.db

    @property
    def receipts(self) -> Path:
        return self.dir / "receipts.bin"

    def till(self, **changes: Any) -> Till:
        return Till(replace(self.cfg, **changes) if changes else self.cfg)

    def code(self) -> str:
        """The customer's current payment code, from ``tillpay wallet code``."""
        return str(json.loads(cli(self.db, "wallet", "code", "--login", LOGIN).stdout)["code"])

    def confirm(self) -> dict[str, Any]:
        """The customer confirms the newest waiting payment with ``tillpay wallet confirm``."""
        out: dict[str, Any] = json.loads(
            cli(self.db, "wallet", "confirm", "--login", LOGIN, "--pin", PIN).stdout
        )
        return out

    def balance(self) -> str:
        return str(json.loads(cli(self.db, "wallet", "show", "--login", LOGIN).stdout)["balance"])

    def query(self, ptid: str) -> dict[str, str]:
        """The gateway's view of an order, through a client of its own."""
        from tillpay.ecr.till import make_client

        with make_client(self.cfg) as c:
            return dict(c.query(ptid).fields)


@pytest.fixture
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    """A merchant (USD) and a funded CNY wallet on a running gateway; a till configured for it."""
    db_gen = make_database("sqlite", request, tmp_path)
    db_url = next(db_gen)

    async def setup() -> tuple[str, str, str]:
        p = Platform(test_settings(db_url))
        try:
            m = await merchants.add_merchant(p, name="Corner Cafe", settlement_currency="USD")
            await fx.set_rate(p, "USD", "CNY", "7.1023")
            await wallets.add_user(p, login_id=LOGIN, currency="CNY", pin=PIN)
            await wallets.topup(p, LOGIN, 1_000_000)  # 10,000.00 CNY
            return m.merchant.partner_id, m.merchant_private_key or "", m.merchant.gateway_public_key
        finally:
            await p.close()

    partner, private_key, public_key = asyncio.run(setup())
    gw = Gateway(db_url)
    gw.start()
    till_dir = tmp_path / "till"
    till_dir.mkdir()
    (till_dir / "catalog.csv").write_bytes(EXAMPLE_CATALOG.read_bytes())
    cfg = EcrConfig(
        gateway_url=gw.url,
        partner=partner,
        merchant_private_key=private_key,
        gateway_public_key=public_key,
        merchant_name="Corner Cafe",
        store_id="S-7",
        store_name="Main Street",
        terminal_id="T3",
        currency="USD",
        printer=PrinterConfig(kind="file", path="receipts.bin", text_copy="receipts.txt"),
        poll_interval=0.2,
        merchant_timeout=20,
        cancel_retry_interval=0.3,
        cancel_max_attempts=100,
        http_timeout=3,
        kiosk_idle_seconds=2,
        operator_pin_hash=hash_pin(OPERATOR_PIN),
        source=str(till_dir / "tillpay-ecr.toml"),
    )
    cfg.save(till_dir / "tillpay-ecr.toml")
    try:
        yield Shop(gw, till_dir, cfg)
    finally:
        gw.kill()
        audit = cli(db_url, "audit", check=False)
        assert audit.returncode == 0, audit.stdout
        for _ in db_gen:
            pass


async def until(pilot: Pilot[Any], cond: Callable[[], bool], within: float = 30) -> None:
    """Let the app run until ``cond()`` holds."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            app = pilot.app
            seen = {
                k: getattr(app, k, None) for k in ("state", "paying", "recovering", "last_outcome", "resets")
            }
            seen["message"] = str(app.query_one("#message").render()) if app.query("#message") else None
            raise AssertionError(f"timed out waiting for the app: {seen}")
        await pilot.pause(0.05)


async def scan(pilot: Pilot[Any], text: str) -> None:
    """What a barcode scanner does: type the characters, then Enter."""
    await pilot.press(*text, "enter")


async def run_in_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking test helpers (CLI calls) without freezing the app's event loop."""
    return await asyncio.to_thread(fn)


def receipt_qr(data: bytes) -> list[str]:
    """The contents of every native QR code (ESC/POS ``GS ( k`` function 80, store data) in ``data``:
    what a scanner would read off the paper."""
    out = []
    for m in re.finditer(rb"\x1d\(k(..)1P0", data, re.DOTALL):
        n = m.group(1)[0] + 256 * m.group(1)[1] - 3
        out.append(data[m.end() : m.end() + n].decode())
    return out


Waiter = Callable[[], Awaitable[None]]
