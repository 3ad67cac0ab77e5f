"""The cashier's screen against a running gateway: sell, confirm, time out, abort, refund, report."""

from __future__ import annotations

import pytest
from harness import (
    CROISSANT,
    FLAT_WHITE,
    MACHINE,
    Shop,
    receipt_qr,
    run_in_thread,
    scan,
    shop,
    until,
)
from textual.widgets import DataTable, Input, Static
from textual.widgets._footer import FooterKey

from tillpay.ecr.app import EcrApp, RefundScreen, ReportScreen

pytestmark = pytest.mark.anyio
__all__ = ["shop"]  # the fixture, imported for pytest


def state_text(app: EcrApp) -> str:
    return str(app.query_one("#state", Static).render())


async def test_scanned_items_paid_with_a_wallet_code_print_a_receipt(shop: Shop) -> None:
    till = shop.till()
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, CROISSANT)
        assert [(line.name, line.qty) for line in till.basket.lines] == [("Flat white", 2), ("Croissant", 1)]
        assert app.query_one("#basket", DataTable).row_count == 2
        await scan(pilot, "0000000000000")
        assert "Unknown code" in str(app.query_one("#message", Static).render())
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        await until(pilot, lambda: app.last_outcome is not None)
        out = app.last_outcome
        assert out is not None and out.outcome == "PAID", out
        assert app.state == "paid"
        assert "PAID 12.20 USD" in state_text(app)
        # 12.20 USD at 7.1023 = 86.65 CNY: what the customer paid, in their currency, and the rate.
        assert "86.65 CNY" in state_text(app) and "7.1023" in state_text(app)
        assert till.basket.lines == []
        assert app.last_checkout_seconds is not None and app.last_checkout_seconds < 5
    order = out.order
    assert order.state == "paid" and order.trade_no
    assert till.journal.events(order.partner_trans_id) == ["sending", "paid"]
    data = shop.receipts.read_bytes()
    assert order.trade_no.encode() in data and order.partner_trans_id.encode() in data
    for needle in (
        b"Corner Cafe",
        b"Main Street",
        b"Flat white",
        b"9.00",
        b"3.20",
        b"12.20 USD",
        b"86.65 CNY",
    ):
        assert needle in data, needle
    assert receipt_qr(data) == [order.trade_no]
    assert data.endswith(b"\x1dVA\x00") or b"\x1dV" in data[-8:]  # the cut is the last command
    text = (shop.dir / "receipts.txt").read_text()
    assert "TOTAL" in text and "12.20 USD" in text and order.trade_no in text
    gw = shop.query(order.partner_trans_id)
    assert gw["alipay_trans_status"] == "TRADE_SUCCESS" and gw["trans_amount"] == "12.20"
    assert await run_in_thread(shop.balance) == "9913.35"
    till.close()


async def test_basket_editing_quantity_remove_clear(shop: Shop) -> None:
    till = shop.till()
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, "3*" + FLAT_WHITE)
        await scan(pilot, CROISSANT)
        assert till.basket.total == 3 * 450 + 320
        app.query_one("#basket", DataTable).move_cursor(row=0)
        await pilot.press("5", "f2")
        assert till.basket.lines[0].qty == 5
        await pilot.press("1", "0", "0", "0", "f2")
        assert "quantity must be 1 to 999" in str(app.query_one("#message", Static).render())
        assert till.basket.lines[0].qty == 5
        app.query_one("#scan", Input).value = ""
        await pilot.press("f3")  # removes the selected line (the flat whites)
        assert [line.name for line in till.basket.lines] == ["Croissant"]
        await pilot.press("f4")
        assert till.basket.lines == [] and till.basket.total == 0
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        assert "empty" in str(app.query_one("#message", Static).render())
    assert till.journal.orders() == []
    till.close()


async def test_confirmation_answered_in_time(shop: Shop) -> None:
    till = shop.till()
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, MACHINE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.state == "waiting")
        await pilot.pause(0.3)
        assert "Waiting for the customer" in state_text(app) and "s left" in state_text(app)
        confirmed = await run_in_thread(shop.confirm)
        assert confirmed["status"] == "TRADE_SUCCESS"
        await until(pilot, lambda: app.last_outcome is not None)
    out = app.last_outcome
    assert out is not None and out.outcome == "PAID"
    assert till.journal.events(out.order.partner_trans_id) == ["sending", "waiting", "paid"]
    assert out.order.trade_no and out.order.trade_no.encode() in shop.receipts.read_bytes()
    till.close()


async def test_confirmation_never_answered_so_the_ecr_cancels(shop: Shop) -> None:
    till = shop.till(merchant_timeout=1.5)
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, MACHINE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.last_outcome is not None)
        assert "CANCELLED" in state_text(app)
        assert [line.name for line in till.basket.lines] == ["Espresso machine"]  # kept for another try
    out = app.last_outcome
    assert out is not None and out.outcome == "CANCELLED"
    ptid = out.order.partner_trans_id
    assert till.journal.events(ptid)[-2:] == ["cancelling", "cancelled"]
    assert shop.query(ptid)["alipay_trans_status"] == "TRADE_CLOSED"
    late = await run_in_thread(
        lambda: __import__("harness").cli(shop.db, "wallet", "pending", "--login", "alice@example.test")
    )
    assert '"pending": []' in late.stdout  # the customer can no longer confirm it
    assert shop.balance() == "10000.00"
    assert not shop.receipts.exists()
    till.close()


async def test_the_cashier_aborts_a_waiting_payment(shop: Shop) -> None:
    till = shop.till(merchant_timeout=60)
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, MACHINE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.state == "waiting")
        await pilot.press("escape")
        await until(pilot, lambda: app.last_outcome is not None, within=10)
    out = app.last_outcome
    assert out is not None and out.outcome == "CANCELLED"
    assert out.order.reason == "aborted by the cashier"
    assert shop.query(out.order.partner_trans_id)["alipay_trans_status"] == "TRADE_CLOSED"
    assert shop.balance() == "10000.00"
    till.close()


async def test_refund_one_item_from_the_receipt_qr_then_the_report_matches(shop: Shop) -> None:
    till = shop.till()
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, CROISSANT)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.outcome == "PAID"
        (qr,) = receipt_qr(shop.receipts.read_bytes())
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, RefundScreen)
        await scan(pilot, qr)
        await until(pilot, lambda: screen.target is not None)
        assert screen.target is not None and screen.target.left == 770
        await scan(pilot, CROISSANT)  # refund the croissant only
        await scan(pilot, CROISSANT)  # a second one was never sold
        assert "already selected" in str(screen.query_one("#refund-result", Static).render())
        await pilot.press("enter")
        await until(pilot, lambda: screen.done is not None)
        assert "REFUNDED" in (screen.done or "") and "3.20 USD" in (screen.done or "")
        info = str(screen.query_one("#refund-info", Static).render())
        assert "refunded 3.20 USD" in info and "left 4.50 USD" in info  # the figures after the refund
        await scan(pilot, qr)  # the same receipt again: only the flat white is left
        await until(pilot, lambda: screen.target is not None)
        assert screen.target is not None and screen.target.left == 450
        await scan(pilot, "5.00")
        await until(
            pilot, lambda: "at most 4.50 USD" in str(screen.query_one("#refund-result", Static).render())
        )
        await pilot.press("escape")
        await pilot.press("f7")
        report = app.screen
        assert isinstance(report, ReportScreen)
        await until(pilot, lambda: report.report is not None)
        assert report.report is not None and report.report.matches, report.report.differences
        lines = "\n".join(report.report.lines())
        assert "paid" in lines and "7.70 USD" in lines and "refunds" in lines and "4.50 USD" in lines
        assert "MATCHES THE GATEWAY (1 orders)" in lines
        await pilot.press("p")
    slip = shop.receipts.read_bytes()
    assert b"REFUND" in slip and b"Croissant" in slip and b"MATCHES THE GATEWAY" in slip
    ptid = app.last_outcome.order.partner_trans_id
    assert shop.query(ptid)["refund_amount_total"] == "3.20"
    till.close()


async def test_the_next_sale_never_shows_the_previous_customers_receipt(shop: Shop) -> None:
    app = EcrApp(shop.till())
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.last_outcome is not None)
        assert "Flat white" in str(app.query_one("#receipt", Static).render())
        app.last_outcome = None
        await scan(pilot, FLAT_WHITE)  # the next customer, the same item and total
        await scan(pilot, "281234567890123456")  # a code no wallet showed: declined, nothing charged
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.outcome == "FAILED"
        assert str(app.query_one("#receipt", Static).render()).strip() == ""


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_footer_key_fits_the_screen(shop: Shop, size: tuple[int, int]) -> None:
    app = EcrApp(shop.till())
    async with app.run_test(size=size) as pilot:
        keys: list[FooterKey] = []
        for _ in range(100):  # the footer is composed after the first frames; on a busy machine, later
            await pilot.pause(0.1)
            keys = [k for k in app.query(FooterKey) if k.display]
            # Composed and laid out: a key's region is empty (width 0) until the layout pass after it.
            if {k.key for k in keys} >= {"f2", "f5", "f7", "f8", "f9", "escape"} and all(
                k.region.width > 0 for k in keys
            ):
                break
        assert {k.key for k in keys} >= {"f2", "f5", "f7", "f8", "f9", "escape"}
        assert all(k.region.right <= size[0] and k.region.width > 0 for k in keys), [
            (k.key, k.region) for k in keys
        ]
