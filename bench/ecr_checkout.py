"""Benchmark: the system's part of a checkout, from Enter on the payment code to the receipt's last byte.

Starts a real ``tillpay serve`` (SQLite, in a temporary folder), a merchant and funded wallets, then
drives the cashier's screen (Textual, headless) through N sales: scan an item, scan a payment code,
wait for the receipt. The clock starts in the ECR's Enter handler and stops when the receipt's last
byte has been written to the file printer: pay (signed request, the gateway's risk check, FX quote,
ledger, signed response), the journal's commits, ESC/POS rendering and printing. No confirmation is
asked (the amounts are under the limit). The customer's and cashier's own time is not in it.

    .venv/bin/python bench/ecr_checkout.py [--sales 100]
"""

# The set-up blocks (it starts a server and waits for it) before anything is measured:
# ruff: noqa: ASYNC110, ASYNC210, ASYNC220, ASYNC251, S603
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tillpay.config import Settings
from tillpay.ecr.app import EcrApp
from tillpay.ecr.config import EcrConfig, PrinterConfig
from tillpay.ecr.till import Till
from tillpay.services import fx, merchants, wallets
from tillpay.services.platform import Platform
from tillpay.store.migrate import upgrade

CATALOG = Path(__file__).parents[1] / "src/tillpay/ecr/example_catalog.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(sales: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ecr-bench-"))
    db = f"sqlite:///{tmp / 'gateway.db'}"
    upgrade(db)
    p = Platform(Settings(database_url=db))
    m = await merchants.add_merchant(p, name="Bench Cafe", settlement_currency="USD")
    await fx.set_rate(p, "USD", "CNY", "7.1023")
    devices = []
    for i in range(sales // 8 + 1):  # a device gives 10 codes a minute; use at most 8 of them
        _, dev = await wallets.add_user(p, login_id=f"bench{i}@example.test", currency="CNY", pin="111111")
        await wallets.topup(p, f"bench{i}@example.test", 10_000_000)
        devices.append(dev)
    port = free_port()
    env = {**os.environ, "TILLPAY_DATABASE_URL": db, "TILLPAY_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "tillpay.cli", "serve", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        (tmp / "catalog.csv").write_bytes(CATALOG.read_bytes())
        cfg = EcrConfig(
            gateway_url=url,
            partner=m.merchant.partner_id,
            merchant_private_key=m.merchant_private_key or "",
            gateway_public_key=m.merchant.gateway_public_key,
            printer=PrinterConfig(kind="file", path="receipts.bin"),
            poll_interval=1,
            source=str(tmp / "tillpay-ecr.toml"),
        )
        till = Till(cfg)
        app = EcrApp(till)
        times: list[float] = []
        async with app.run_test(size=(120, 40)) as pilot:
            for i in range(sales):
                code = await wallets.current_code(p, devices[i % len(devices)])
                await pilot.press(*"4006381333931", "enter")
                app.last_outcome = None
                await pilot.press(*code, "enter")
                while app.last_outcome is None:
                    await asyncio.sleep(0.005)
                if app.last_outcome.outcome != "PAID" or app.last_checkout_seconds is None:
                    raise SystemExit(f"sale {i} did not pay: {app.last_outcome}")
                times.append(app.last_checkout_seconds * 1000)
        till.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        await p.close()
    times.sort()
    warm = times[1:] if len(times) > 1 else times  # the first sale opens connections and warms caches

    def pct(q: float) -> float:
        return warm[min(len(warm) - 1, int(q * len(warm)))]

    print(f"ECR checkout, Enter on the payment code -> last receipt byte ({len(warm)} sales after 1 warm-up)")
    print(
        f"  mean {statistics.mean(warm):.1f} ms   p50 {pct(0.50):.1f} ms   p90 {pct(0.90):.1f} ms   "
        f"p99 {pct(0.99):.1f} ms   max {warm[-1]:.1f} ms"
    )
    print(f"  receipts: {(tmp / 'receipts.bin').stat().st_size} bytes in {tmp / 'receipts.bin'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=100)
    asyncio.run(main(ap.parse_args().sales))
