"""``tillpay ecr report``: the till's counts checked against the gateway, and a difference found."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from harness import CROISSANT, FLAT_WHITE, Shop, shop

from tillpay.ecr.catalog import ScanKind
from tillpay.ecr.till import TillError

__all__ = ["shop"]


def report(shop: Shop) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tillpay.cli", "ecr", "--config", shop.cfg.source, "report"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )


def test_report_matches_the_gateway_and_names_a_difference(shop: Shop) -> None:
    till = shop.till()
    for item in (FLAT_WHITE, CROISSANT):
        scan = till.classify(item)
        assert scan.kind is ScanKind.ITEM
        till.scan_item(scan)
    sale = till.checkout(shop.code())
    assert sale.outcome == "PAID"
    till.scan_item(till.classify(FLAT_WHITE))
    declined = till.checkout("281234567890123456")  # a code no wallet ever showed
    assert declined.outcome == "FAILED" and "valid payment code" in declined.message
    till.close()
    ok = report(shop)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "paid           1            7.70 USD" in ok.stdout
    assert "failed         1            4.50 USD" in ok.stdout
    assert "MATCHES THE GATEWAY (2 orders)" in ok.stdout
    # Someone edits the till's journal: the gateway's records expose it.
    with sqlite3.connect(shop.dir / "ecr-journal.db") as db:
        db.execute("UPDATE orders SET total = 770000 WHERE state = 'paid'")
    bad = report(shop)
    assert bad.returncode == 1
    assert f"{sale.order.partner_trans_id}: amount 7700.00 USD here, 7.70 USD at the gateway" in bad.stdout


def test_a_day_of_full_partial_and_repeated_refunds_matches_the_gateway(shop: Shop) -> None:
    """A sale refunded in full is TRADE_CLOSED at the gateway: that is no difference."""
    till = shop.till()
    sales = []
    for _ in range(2):
        for item in (FLAT_WHITE, CROISSANT):
            till.scan_item(till.classify(item))
        sale = till.checkout(shop.code())
        assert sale.outcome == "PAID"
        sales.append(sale.order)
    full, partial = sales
    target = till.find_for_refund(full.trade_no or "")
    _, slip = till.refund(target, target.left)  # "everything that is left": no items named
    assert "Remaining amount" in slip and "7.70" in slip
    with pytest.raises(TillError, match="already fully refunded"):
        till.find_for_refund(full.trade_no or "")
    for amount in (100, 220):  # 1.00 then 2.20 USD
        till.refund(till.find_for_refund(partial.trade_no or ""), amount)
    assert shop.query(full.partner_trans_id)["alipay_trans_status"] == "TRADE_CLOSED"
    assert shop.query(partial.partner_trans_id)["refund_amount_total"] == "3.20"
    till.close()
    ok = report(shop)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MATCHES THE GATEWAY (2 orders)" in ok.stdout
    assert "refunds        3           10.90 USD" in ok.stdout
