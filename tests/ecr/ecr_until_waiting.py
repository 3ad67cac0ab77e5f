"""Run the ECR in its own process up to "waiting for the customer", say so, then hang until killed.

Used to kill a real ECR process in the middle of a payment: argv is the config file, an item code and
the customer's payment code.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tillpay.ecr.app import EcrApp
from tillpay.ecr.config import EcrConfig
from tillpay.ecr.till import Till


async def main(config: str, item: str, code: str) -> None:
    app = EcrApp(Till(EcrConfig.load(Path(config))))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.recovering:  # an earlier run's orders are resolved before this sale
            await pilot.pause(0.05)
        await pilot.press(*item, "enter")
        await pilot.press(*code, "enter")
        deadline = time.monotonic() + 30
        while app.state != "waiting":
            if time.monotonic() > deadline:
                raise SystemExit(f"never reached waiting: {app.state}")
            await pilot.pause(0.05)
        print("WAITING", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
