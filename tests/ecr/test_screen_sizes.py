"""Every screen of the till and the kiosk fits an 80x24 terminal as well as 120x40: keys, totals,
buttons and prompts inside the screen, nothing clipped, no horizontal scrollbar."""

from __future__ import annotations

import pytest
from harness import (
    CROISSANT,
    FLAT_WHITE,
    MACHINE,
    OPERATOR_PIN,
    Shop,
    run_in_thread,
    scan,
    shop,
    until,
)
from screen_fit import assert_fits, problems
from textual.app import App
from textual.widgets import Button, Static

from tillpay.ecr.app import EcrApp, RefundScreen, ReportScreen
from tillpay.ecr.kiosk import KioskApp, OperatorScreen, PinScreen

pytestmark = pytest.mark.anyio
__all__ = ["shop"]

SIZES = [(80, 24), (120, 40)]


async def test_the_fit_check_sees_a_button_pushed_off_the_screen() -> None:
    class TooTall(App[None]):
        CSS = "Button { height: 30; }"

        def compose(self):  # type: ignore[no-untyped-def]
            yield Static("top")
            yield Button("Pay", id="pay")

    app = TooTall()
    async with app.run_test(size=(80, 24)):
        assert any("Button#pay" in p for p in problems(app))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_screen_of_the_till_fits(shop: Shop, size: tuple[int, int]) -> None:
    till = shop.till(merchant_timeout=60)
    app = EcrApp(till)
    async with app.run_test(size=size) as pilot:
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, "3*" + CROISSANT)
        assert_fits(app, "the main screen with a basket")
        # Waiting for the customer (the machine needs a confirmation), then aborted.
        await pilot.press("f4")
        await scan(pilot, MACHINE)
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        await until(pilot, lambda: app.state == "waiting")
        await pilot.pause(0.3)  # the countdown line
        assert_fits(app, "waiting for the customer")
        await pilot.press("escape")
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.state == "cancelled"
        assert_fits(app, "cancelled")
        # Paid, with its receipt on screen.
        await pilot.press("f4")
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, CROISSANT)
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        await until(pilot, lambda: app.last_outcome is not None and app.last_outcome.outcome == "PAID")
        assert_fits(app, "paid, with the receipt")
        trade_no = app.last_outcome.order.trade_no or ""
        # The refund dialog: empty, with the payment found, after the refund.
        await pilot.press("f5")
        refund = app.screen
        assert isinstance(refund, RefundScreen)
        assert_fits(app, "the refund dialog")
        await scan(pilot, trade_no)
        await until(pilot, lambda: refund.target is not None)
        assert_fits(app, "the refund dialog with the payment")
        await scan(pilot, FLAT_WHITE)
        await pilot.press("enter")
        await until(pilot, lambda: refund.done is not None)
        assert_fits(app, "the refund dialog after the refund")
        await pilot.press("escape")
        # Reports: the shift's (F7), the day's (d), and the shift closed (F8).
        await pilot.press("f7")
        report = app.screen
        assert isinstance(report, ReportScreen)
        await until(pilot, lambda: report.report is not None)
        assert_fits(app, "the shift report")
        report.report = None
        await pilot.press("d")
        await until(pilot, lambda: report.report is not None)
        assert_fits(app, "the day report")
        await pilot.press("escape")
        await pilot.press("f8")
        closing = app.screen
        assert isinstance(closing, ReportScreen)
        await until(pilot, lambda: closing.report is not None)
        assert_fits(app, "closing the shift")
        await pilot.press("escape")
    till.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_screen_of_the_kiosk_fits(shop: Shop, size: tuple[int, int]) -> None:
    till = shop.till(kiosk_idle_seconds=600, merchant_timeout=60)
    app = KioskApp(till)
    async with app.run_test(size=size) as pilot:
        assert_fits(app, "the language choice")
        for lang in ("ja", "ko", "zh", "en"):
            app.choose_language(lang)
            await scan(pilot, FLAT_WHITE)
            await scan(pilot, CROISSANT)
            assert_fits(app, f"the shop in {lang}")
            app.reset()
            await pilot.pause()
        app.choose_language("ko")
        await scan(pilot, MACHINE)
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        await until(pilot, lambda: app.state == "waiting")
        await pilot.pause(0.3)
        assert_fits(app, "waiting for the customer")
        await pilot.press("escape")
        await until(pilot, lambda: app.last_outcome is not None)
        assert_fits(app, "cancelled")
        await pilot.press("f4")
        await scan(pilot, FLAT_WHITE)
        code = await run_in_thread(shop.code)
        await scan(pilot, code)
        await until(pilot, lambda: app.last_outcome is not None and app.last_outcome.outcome == "PAID")
        assert_fits(app, "paid")
        trade_no = app.last_outcome.order.trade_no or ""
        # The operator's screens.
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PinScreen)
        assert_fits(app, "the PIN dialog")
        await pilot.press("1", "enter")
        assert_fits(app, "the PIN dialog saying the PIN is wrong")
        await pilot.press(*OPERATOR_PIN, "enter")
        assert isinstance(app.screen, OperatorScreen)
        assert_fits(app, "the operator menu")
        await pilot.click("#op-settings")
        assert_fits(app, "the operator menu with the settings")
        await pilot.click("#op-refund")
        refund = app.screen
        assert isinstance(refund, RefundScreen)
        await scan(pilot, trade_no)
        await until(pilot, lambda: refund.target is not None)
        await pilot.press("enter")
        await until(pilot, lambda: refund.done is not None)
        assert_fits(app, "the kiosk's refund screen")
        await pilot.press("escape")
        await pilot.press("ctrl+o")
        await pilot.press(*OPERATOR_PIN, "enter")
        await pilot.click("#op-report")
        report = app.screen
        assert isinstance(report, ReportScreen)
        await until(pilot, lambda: report.report is not None)
        assert_fits(app, "the kiosk's report")
    till.close()
