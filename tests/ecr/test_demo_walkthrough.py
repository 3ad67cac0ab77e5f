"""The README's walk-through: the demo gateway, `tillpay ecr init` from its credentials, two catalog
items sold to the demo wallet, the receipt in a file, one item refunded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import CROISSANT, FLAT_WHITE, Gateway, cli, receipt_qr, run_in_thread, scan, until

from conftest import make_database
from tillpay.ecr.app import EcrApp, RefundScreen
from tillpay.ecr.config import EcrConfig
from tillpay.ecr.till import Till

pytestmark = pytest.mark.anyio


@pytest.fixture
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gateway, Path]]:
    gen = make_database("sqlite", request, tmp_path)
    db = next(gen)
    gw = Gateway(db, "--demo")
    gw.start()
    try:
        yield gw, Path(db.split("///", 1)[1]).parent / "tillpay-demo.json"
    finally:
        gw.kill()
        assert cli(db, "audit", check=False).returncode == 0
        for _ in gen:
            pass


async def test_readme_walkthrough(demo: tuple[Gateway, Path], tmp_path: Path) -> None:
    gw, creds_file = demo
    creds = json.loads(creds_file.read_text())
    # The demo writes the URL it was told to serve on; this test's server listens on its own port.
    creds["gateway_url"] = gw.url
    creds_file.write_text(json.dumps(creds))
    till_dir = tmp_path / "till"
    till_dir.mkdir()
    init = await run_in_thread(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "tillpay.cli",
                "ecr",
                "init",
                "--demo-credentials",
                str(creds_file),
                "--printer",
                "file:receipts.bin",
                "--text-copy",
                "receipts.txt",
            ],
            cwd=till_dir,
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
    )
    assert init.returncode == 0, init.stderr
    till = Till(EcrConfig.load(till_dir / "tillpay-ecr.toml"))
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, CROISSANT)
        # The demo asks the customer to confirm a code from an earlier minute (an offline phone's):
        # take the code well inside a minute, just before the scan, so it pays at once.
        if time.time() % 60 > 45:
            await asyncio.sleep(61 - time.time() % 60)
        code = str(json.loads(cli(gw.db, "wallet", "code", "--login", creds["wallet_login"]).stdout)["code"])
        await scan(pilot, code)
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.outcome == "PAID"
        (qr,) = receipt_qr((till_dir / "receipts.bin").read_bytes())
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, RefundScreen)
        await scan(pilot, qr)
        await until(pilot, lambda: screen.target is not None)
        await scan(pilot, CROISSANT)
        await pilot.press("enter")
        await until(pilot, lambda: screen.done is not None)
    text = (till_dir / "receipts.txt").read_text()
    assert "Tillpay Demo Store" in text and "TOTAL" in text and "7.70 USD" in text and "REFUNDED" in text
    assert "3.20 USD" in text and qr in text
    balance = json.loads(cli(gw.db, "wallet", "show", "--login", creds["wallet_login"]).stdout)["balance"]
    # The demo's USD/CNY rate 7.1023 plus its 0.30% margin is 7.1236069 CNY per USD:
    # 10,000.00 - 54.85 (7.70 USD) + 22.79 (3.20/7.70 of 54.85 back) CNY.
    assert balance == "9967.94"
    till.close()
