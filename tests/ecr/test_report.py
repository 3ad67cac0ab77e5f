"""``tillpay ecr report``: the till's counts checked against the gateway, and a difference found."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from harness import CROISSANT, FLAT_WHITE, MACHINE, Shop, shop

from tillpay.ecr.catalog import ScanKind
from tillpay.ecr.journal import Order
from tillpay.ecr.report import build_report
from tillpay.ecr.till import Till, TillError

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


def paid_sale(shop: Shop, till: Till, *items: str) -> Order:
    for item in items:
        till.scan_item(till.classify(item))
    sale = till.checkout(shop.code())
    assert sale.outcome == "PAID", sale
    return sale.order


def cancelled_after_the_customer_paid(shop: Shop, till: Till) -> Order:
    """The customer confirms in the wallet, and the cashier aborts before the till's next query sees it:
    the till's cancel finds the payment succeeded and refunds it in full."""
    till.scan_item(till.classify(MACHINE))  # above the confirmation limit: the customer must confirm
    abort = threading.Event()

    def on_state(state: str, order: Order) -> None:
        if state == "waiting":
            shop.confirm()  # paid at the gateway now; the till polls only every 30 s
            abort.set()

    out = till.checkout(shop.code(), on_state=on_state, abort=abort)
    assert out.outcome == "CANCELLED" and out.order.cancel_action == "refund", out
    # A slip says so: the customer's wallet shows the payment and its refund.
    assert (
        out.receipt is not None
        and "CANCELLED" in out.receipt
        and "Paid, then refunded in full" in out.receipt
    )
    assert out.order.partner_trans_id in (shop.dir / "receipts.txt").read_text()
    till.basket.clear()  # the basket stays after a cancel (for a fresh code): this customer is gone
    return out.order


def test_a_sale_paid_after_the_till_cancelled_it_counts_as_cancelled_and_refunded(shop: Shop) -> None:
    till = shop.till(poll_interval=30, merchant_timeout=60)
    late = cancelled_after_the_customer_paid(shop, till)
    q = shop.query(late.partner_trans_id)
    assert (q["alipay_trans_status"], q["refund_amount_total"]) == ("TRADE_CLOSED", "349.00"), q
    assert shop.balance() == "10000.00"  # charged, then given back by the cancel
    sale = paid_sale(shop, till, FLAT_WHITE)
    till.refund(till.find_for_refund(sale.trade_no or ""), 150)  # 1.50 of 4.50 back
    till.close()
    ok = report(shop)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MATCHES THE GATEWAY (2 orders)" in ok.stdout
    assert "cancelled      1          349.00 USD" in ok.stdout
    # The cancelled sale the customer had paid, given back by the cancel: on the till's side and the
    # gateway's, apart from the refunds the till made.
    assert " refunded      1          349.00 USD" in ok.stdout
    assert "refunds        1            1.50 USD" in ok.stdout
    assert "NET                         3.00 USD" in ok.stdout
    assert "refunded                     1.50 USD" in ok.stdout
    assert "cancel-refunded            349.00 USD" in ok.stdout


def test_a_cancelled_sale_the_gateway_still_holds_is_a_difference(shop: Shop) -> None:
    till = shop.till(poll_interval=30, merchant_timeout=60)
    late = cancelled_after_the_customer_paid(shop, till)
    kept = paid_sale(shop, till, CROISSANT)
    till.close()
    # The journal is edited to say the croissant's sale was cancelled: the gateway has the money.
    with sqlite3.connect(shop.dir / "ecr-journal.db") as db:
        db.execute(
            "UPDATE orders SET state = 'cancelled' WHERE partner_trans_id = ?", (kept.partner_trans_id,)
        )
    bad = report(shop)
    assert bad.returncode == 1
    assert "1 DIFFERENCE(S):" in bad.stdout, bad.stdout
    assert f"{kept.partner_trans_id}: cancelled here, TRADE_SUCCESS at the gateway" in bad.stdout
    assert late.partner_trans_id not in bad.stdout.split("DIFFERENCE(S):")[1]
    # And a cancelled-after-paying sale the journal calls paid: the gateway refunded it all.
    with sqlite3.connect(shop.dir / "ecr-journal.db") as db:
        db.execute("UPDATE orders SET state = 'paid' WHERE partner_trans_id = ?", (late.partner_trans_id,))
    worse = report(shop)
    assert f"{late.partner_trans_id}: refunded 0.00 here, 349.00 at the gateway" in worse.stdout


def test_a_till_crash_while_cancelling_a_late_payment_is_a_difference_until_recovery(shop: Shop) -> None:
    """The customer paid just as the till decided to cancel, and the till stopped before the cancel:
    the report says to resolve it; recovery refunds it by the cancel and the report matches."""
    till = shop.till(poll_interval=30, merchant_timeout=60)
    till.scan_item(till.classify(FLAT_WHITE))
    sale = till.checkout(shop.code())
    assert sale.outcome == "PAID"
    ptid = sale.order.partner_trans_id
    till.journal.set_state(ptid, "cancelling", "cashier aborted; the till stopped here")
    till.close()
    bad = report(shop)
    assert bad.returncode == 1
    assert f"{ptid}: still cancelling here (resolve it), TRADE_SUCCESS at the gateway" in bad.stdout
    till = shop.till()
    outs = till.recover()
    assert [o.outcome for o in outs] == ["CANCELLED"] and outs[0].order.cancel_action == "refund"
    till.close()
    ok = report(shop)
    assert ok.returncode == 0, ok.stdout
    assert " refunded      1            4.50 USD" in ok.stdout
    assert "cancel-refunded              4.50 USD" in ok.stdout


def test_a_refund_in_the_next_shift_counts_there_and_the_sale_matches_in_its_own(shop: Shop) -> None:
    till = shop.till()
    sale = paid_sale(shop, till, FLAT_WHITE, CROISSANT)  # 7.70
    closed, _ = till.journal.close_shift()
    for amount in (200, 570):  # 2.00, then the remaining 5.70: refunded in full over two refunds
        till.refund(till.find_for_refund(sale.partner_trans_id), amount)
    assert shop.query(sale.partner_trans_id)["alipay_trans_status"] == "TRADE_CLOSED"
    rep = build_report(till.journal, till.client, shift_id=till.journal.current_shift().id)
    assert rep.matches and rep.checked == 0
    assert rep.refunds == {"USD": [2, 770]} and rep.net() == {"USD": -770}
    old = build_report(till.journal, till.client, shift_id=closed.id)
    assert old.matches, old.differences
    assert old.net() == {"USD": 770} and old.gateway_refunded == {"USD": 770}
    # The journal loses the second refund: the gateway's total shows it.
    with sqlite3.connect(shop.dir / "ecr-journal.db") as db:
        db.execute("UPDATE orders SET refunded = 200 WHERE partner_trans_id = ?", (sale.partner_trans_id,))
    again = build_report(till.journal, till.client, shift_id=closed.id)
    assert again.differences == [f"{sale.partner_trans_id}: refunded 2.00 here, 7.70 at the gateway"]
    till.close()
