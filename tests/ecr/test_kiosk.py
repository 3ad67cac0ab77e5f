"""Self-checkout: language, scanning, one's own code, receipt, idle reset, operator PIN."""

from __future__ import annotations

import pytest
from harness import CROISSANT, FLAT_WHITE, OPERATOR_PIN, Shop, receipt_qr, run_in_thread, scan, shop, until
from textual.widgets import Static

from tillpay.ecr.app import RefundScreen
from tillpay.ecr.kiosk import KioskApp, OperatorScreen, PinScreen

pytestmark = pytest.mark.anyio
__all__ = ["shop"]


async def test_kiosk_sale_in_chinese_reset_when_idle_and_refund_behind_the_pin(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=1.5)
    app = KioskApp(till)
    code = await run_in_thread(shop.code)  # fetched first: the kiosk resets after 1.5 s without input
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.query_one("#choose").display and not app.query_one("#shop").display
        await pilot.click("#lang-zh")
        assert till.language == "zh" and app.query_one("#shop").display
        assert "请扫描您的商品" in str(app.query_one("#kiosk-prompt", Static).render())
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, CROISSANT)
        assert "请出示付款码" in str(app.query_one("#kiosk-prompt", Static).render())
        await scan(pilot, code)
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.outcome == "PAID"
        assert "支付成功" in str(app.query_one("#kiosk-prompt", Static).render())
        trade_no, ptid = app.last_outcome.order.trade_no, app.last_outcome.order.partner_trans_id
        assert trade_no and receipt_qr(shop.receipts.read_bytes()) == [trade_no]
        assert "合计" in (app.last_outcome.receipt or "")  # the receipt is in the customer's language
        # Nobody touches it: back to the language choice, ready for the next customer.
        await until(pilot, lambda: app.resets == 1, within=10)
        assert app.query_one("#choose").display and till.basket.lines == [] and till.language == "en"
        # Customers cannot reach refunds or reports: every such key asks for the operator PIN.
        await pilot.press("f7")
        assert isinstance(app.screen, PinScreen)
        await pilot.press("1", "1", "1", "1", "enter")
        assert "Wrong PIN" in str(app.screen.query_one("#pin-message", Static).render())
        await pilot.press(*OPERATOR_PIN, "enter")
        assert isinstance(app.screen, OperatorScreen)
        await pilot.click("#op-settings")
        assert shop.cfg.partner in str(app.screen.query_one("#op-settings-text", Static).render())
        assert "PRIVATE" not in str(app.screen.query_one("#op-settings-text", Static).render())
        await pilot.click("#op-refund")
        refund = app.screen
        assert isinstance(refund, RefundScreen)
        await scan(pilot, trade_no)
        await until(pilot, lambda: refund.target is not None)
        await pilot.press("enter")  # everything that is left
        await until(pilot, lambda: refund.done is not None)
    q = shop.query(ptid)
    assert q["refund_amount_total"] == "7.70", (q, till.journal.refunds(), till.journal.orders())
    assert shop.balance() == "10000.00"
    till.close()
