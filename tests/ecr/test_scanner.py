"""Scans as a USB (HID) barcode scanner types them: a whole code and Enter within milliseconds, the next
scan right behind, bursts of several codes and stray Enters, while the till is busy. Every item once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from harness import CROISSANT, FLAT_WHITE, Shop, shop, until
from textual import events
from textual.pilot import Pilot

from tillpay.ecr.app import EcrApp

pytestmark = pytest.mark.anyio
__all__ = ["shop"]

MILK = "5901234123457"  # bottled water, 1.80 in the example catalog


def hid(pilot: Pilot[Any], *lines: str) -> None:
    """Queue every keystroke of ``lines`` (each followed by Enter) at once, as a scanner burst does:
    nothing waits for the screen to handle a key before the next one arrives."""
    app = pilot.app
    driver = app._driver
    assert driver is not None
    keys = [(ch, ch) for line in lines for ch in [*line, None]]
    for key, char in keys:
        event = events.Key(key or "enter", char)  # Enter carries no character, as Textual's pilot sends it
        event.set_sender(app)
        driver.send_message(event)


def slow_till(app: EcrApp, seconds: float) -> None:
    """Make handling a scan take ``seconds`` on the screen's thread: a busy or slow till."""
    original = app.till.scan_item

    def scan_item(scan: Any) -> int:
        time.sleep(seconds)
        return original(scan)

    app.till.scan_item = scan_item  # type: ignore[method-assign]


def basket(app: EcrApp) -> list[tuple[str, int]]:
    return [(line.code, line.qty) for line in app.till.basket.lines]


async def test_a_burst_of_scans_on_a_busy_till_adds_each_item_once_in_order(shop: Shop) -> None:
    app = EcrApp(shop.till())
    async with app.run_test(size=(120, 40)) as pilot:
        slow_till(app, 0.05)
        hid(pilot, FLAT_WHITE, CROISSANT, MILK, FLAT_WHITE, CROISSANT, MILK)
        await until(pilot, lambda: sum(q for _, q in basket(app)) >= 6, within=20)
        await pilot.pause(0.3)
        assert basket(app) == [(FLAT_WHITE, 2), (CROISSANT, 2), (MILK, 2)]
        assert "Unknown code" not in str(app.query_one("#message").render())


async def test_stray_enters_between_and_after_scans_add_nothing(shop: Shop) -> None:
    app = EcrApp(shop.till())
    async with app.run_test(size=(120, 40)) as pilot:
        slow_till(app, 0.02)
        hid(pilot, FLAT_WHITE, "", "", CROISSANT, "")
        await until(pilot, lambda: len(basket(app)) >= 2, within=20)
        await pilot.pause(0.3)
        assert basket(app) == [(FLAT_WHITE, 1), (CROISSANT, 1)]


async def test_scans_twenty_milliseconds_apart_are_all_kept(shop: Shop) -> None:
    app = EcrApp(shop.till())
    async with app.run_test(size=(120, 40)) as pilot:
        slow_till(app, 0.03)  # slower than the scans come: they queue behind each other
        for code in (FLAT_WHITE, CROISSANT, MILK, FLAT_WHITE, CROISSANT, MILK):
            hid(pilot, code)
            await asyncio.sleep(0.02)
        await until(pilot, lambda: sum(q for _, q in basket(app)) >= 6, within=20)
        await pilot.pause(0.3)
        assert basket(app) == [(FLAT_WHITE, 2), (CROISSANT, 2), (MILK, 2)]
