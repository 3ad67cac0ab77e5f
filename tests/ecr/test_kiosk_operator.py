"""The kiosk's start screen, its paid screen and its operator screens: languages by arrow keys, the
operator's screens in the shopper's language and locked when left alone, what was paid shown until
the shopper is done."""

from __future__ import annotations

import pytest
from harness import FLAT_WHITE, OPERATOR_PIN, Shop, run_in_thread, scan, shop, until
from textual.widgets import Button, Digits, Input, Static
from wcwidth import wcswidth

from tillpay.ecr.app import RefundScreen
from tillpay.ecr.kiosk import KioskApp, OperatorScreen, PinScreen

pytestmark = pytest.mark.anyio
__all__ = ["shop"]


def text(app: KioskApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_the_four_languages_are_chosen_with_the_arrow_keys_or_their_numbers(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=600)
    app = KioskApp(till)
    async with app.run_test(size=(80, 24)) as pilot:
        assert [b.id for b in app.query("#languages Button").results(Button)] == [
            "lang-en",
            "lang-ja",
            "lang-ko",
            "lang-zh",
        ]
        assert app.focused is not None and app.focused.id == "lang-en"
        await pilot.press("down", "down")
        assert app.focused is not None and app.focused.id == "lang-ko"
        await pilot.press("enter")
        assert till.language == "ko" and app.query_one("#shop").display
        assert "상품을 스캔하세요" in text(app, "#kiosk-prompt")
        app.reset()
        await pilot.pause()
        await pilot.press("up")  # from the first, round to the last
        assert app.focused is not None and app.focused.id == "lang-zh"
        await pilot.press("up", "enter")
        assert till.language == "ko"
        app.reset()
        await pilot.pause()
        await pilot.press("down", "enter")
        assert till.language == "ja" and "商品をスキャンしてください" in text(app, "#kiosk-prompt")
        # Number keys, as the buttons show them: 4 is Chinese, 1 English; other digits do nothing.
        app.reset()
        await pilot.pause()
        assert str(app.query_one("#lang-zh", Button).label).startswith("4 ")
        await pilot.press("9")
        assert not app.query_one("#shop").display
        await pilot.press("4")
        assert till.language == "zh" and app.query_one("#shop").display
        app.reset()
        await pilot.pause()
        await pilot.press("1")
        assert till.language == "en" and app.query_one("#shop").display
    till.close()


async def test_the_operator_screens_speak_the_shoppers_language(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=600)
    app = KioskApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        app.choose_language("ja")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PinScreen)
        assert "係員PIN" in str(app.screen.query(Static).first().render())
        await pilot.press("9", "9", "9", "9", "enter")
        assert text(app, "#pin-message") == "PINが違います"
        await pilot.press(*OPERATOR_PIN, "enter")
        assert isinstance(app.screen, OperatorScreen)
        labels = [str(b.label) for b in app.screen.query(Button).results(Button)]
        assert labels == ["返金", "レポート", "最後のレシートを再印刷", "設定", "セルフレジを終了", "戻る"]
        await pilot.click("#op-refund")
        assert isinstance(app.screen, RefundScreen)
        assert "返金" in text(app, "#refund-title")
        assert app.screen.query_one("#refund-ref", Input).placeholder == "取引番号"
        app.screen.query_one("#refund-amount", Input).focus()
        await pilot.press("enter")  # a refund of everything, with nothing looked up yet
        await until(pilot, lambda: "先に支払いを検索してください" in text(app, "#refund-result"))
    till.close()


async def test_every_operator_screen_locks_when_left_alone_and_the_pin_is_asked_again(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=1)
    app = KioskApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        opened = []
        for target in ("pin", "menu", "refund", "report"):
            app.choose_language("ko")
            await pilot.press("ctrl+o")
            if target != "pin":
                await pilot.press(*OPERATOR_PIN, "enter")
                assert isinstance(app.screen, OperatorScreen)
            if target in ("refund", "report"):
                await pilot.click(f"#op-{target}")
            opened.append(type(app.screen).__name__)
            locks = app.locks
            await until(pilot, lambda n=locks: app.locks == n + 1, within=15)  # nobody touches it
            assert len(app.screen_stack) == 1 and app.query_one("#choose").display
            assert till.language == "en"  # the start, in the kiosk's own language
        assert opened == ["PinScreen", "OperatorScreen", "RefundScreen", "ReportScreen"]
        # After the lock the staff key asks for the PIN again.
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PinScreen)
        # Keys keep an operator screen open: only quiet locks it.
        await pilot.press(*OPERATOR_PIN, "enter")
        locks = app.locks
        for _ in range(6):
            await pilot.press("down")
            await pilot.pause(0.3)
        assert app.locks == locks and isinstance(app.screen, OperatorScreen)
    till.close()


async def test_leaving_the_kiosk_needs_the_pin_again(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=600)
    app = KioskApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.press(*OPERATOR_PIN, "enter")
        await pilot.click("#op-exit")
        assert isinstance(app.screen, PinScreen)
        await pilot.press("1", "2", "3", "4", "5", "enter")
        assert isinstance(app.screen, PinScreen) and app.return_code is None
        await pilot.press("escape")
        assert len(app.screen_stack) == 1 and app.return_code is None
        await pilot.press("ctrl+o")
        await pilot.press(*OPERATOR_PIN, "enter")
        await pilot.click("#op-exit")
        await pilot.press(*OPERATOR_PIN, "enter")
        await pilot.pause()
        assert app.return_code == 0
    till.close()


async def test_the_paid_screen_shows_what_was_paid_until_the_shopper_is_done(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=600, after_sale_seconds=1)
    app = KioskApp(till)
    async with app.run_test(size=(80, 24)) as pilot:
        for done_by in ("time", "enter"):
            app.choose_language("zh")
            await scan(pilot, FLAT_WHITE)
            code = await run_in_thread(shop.code)
            resets = app.resets
            await scan(pilot, code)
            await until(pilot, lambda: app.last_outcome is not None)
            out = app.last_outcome
            assert out is not None and out.outcome == "PAID" and till.basket.lines == []
            # The basket is empty, yet the large total and the prompt say what this shopper paid.
            assert app.query_one("#total", Digits).value == "4.50"
            prompt = text(app, "#kiosk-prompt")
            assert "支付成功" in prompt and "4.50 USD" in prompt
            assert f"({out.order.buyer_amount} CNY)" in prompt and out.order.buyer_amount
            # The receipt is in the shopper's language, and every line fits the 42-column paper.
            assert out.receipt is not None and "合计" in out.receipt and "收银台 T3" in out.receipt
            assert max(wcswidth(line) for line in out.receipt.splitlines()) <= 42
            if done_by == "enter":
                await pilot.press("enter")
                assert app.resets == resets + 1
            else:
                await until(pilot, lambda n=resets: app.resets == n + 1, within=15)  # after_sale_seconds
            assert app.query_one("#choose").display and till.language == "en"
            assert app.query_one("#total", Digits).value == "0.00"
    till.close()


async def test_a_shoppers_first_key_closes_the_pin_dialog(shop: Shop) -> None:
    till = shop.till(kiosk_idle_seconds=600)
    app = KioskApp(till)
    async with app.run_test(size=(80, 24)) as pilot:
        app.choose_language("zh")
        await scan(pilot, FLAT_WHITE)
        for first in (["down"], ["a"], ["f5"], [*"4006381333948", "enter"]):  # arrow, letter, key, a scan
            await pilot.press("f7")  # a staff key, pressed by mistake
            assert isinstance(app.screen, PinScreen)
            await pilot.press(*first)
            assert len(app.screen_stack) == 1, first
            # Back where the shopper was, basket and language as they were.
            assert app.query_one("#shop").display and till.language == "zh" and len(till.basket.lines) == 1
        # Digits are a PIN being typed: the dialog stays.
        await pilot.press("f7", "1", "2", "backspace")
        assert isinstance(app.screen, PinScreen)
    till.close()
