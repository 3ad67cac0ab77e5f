"""A till's day reconciles against the gateway's settlement files with zero differences."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from harness import CROISSANT, FLAT_WHITE, Shop, cli, shop

from tillpay.config import Settings
from tillpay.ecr.catalog import Catalog
from tillpay.services import settlement
from tillpay.services.platform import FakeClock, Platform, SystemClock

__all__ = ["shop"]  # the fixture, imported for pytest


def test_a_tills_day_reconciles_with_the_settlement_files_and_an_edit_is_found(
    shop: Shop, tmp_path: Path
) -> None:
    till = shop.till()
    catalog = Catalog.load(shop.dir / "catalog.csv", "USD")
    for code in (FLAT_WHITE, CROISSANT):
        till.scan_item(till.classify(code))
    sale = till.checkout(shop.code())
    assert sale.outcome == "PAID"
    till.scan_item(till.classify(FLAT_WHITE))
    assert till.checkout(shop.code()).outcome == "PAID"
    target = till.find_for_refund(sale.order.trade_no or "")
    croissant = catalog.get(CROISSANT)
    assert croissant is not None
    till.refund(target, croissant.price, reason="stale")
    till.close()

    files = tmp_path / "settlements"

    async def settle() -> None:
        tomorrow = SystemClock().now() + timedelta(days=1, hours=1)
        p = Platform(Settings(database_url=shop.db, settlement_dir=str(files)), clock=FakeClock(tomorrow))
        try:
            await settlement.run_day(p, (tomorrow - timedelta(days=1)).date())
        finally:
            await p.close()

    asyncio.run(settle())
    journal = shop.dir / shop.cfg.journal
    ok = cli(shop.db, "reconcile", "--journal", str(journal), "--files", str(files), check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # The merchant's records say the croissant refund was 3.30, not 3.20: exactly that is reported.
    import sqlite3

    with sqlite3.connect(journal) as db:
        db.execute("UPDATE refunds SET amount = amount + 10")
    diff = cli(shop.db, "reconcile", "--journal", str(journal), "--files", str(files), check=False)
    assert diff.returncode == 1
    assert "amount" in diff.stdout.lower()
