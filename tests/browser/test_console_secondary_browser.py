"""The console's Stores page lists the secondary merchants and stores an acquirer registered over MAPI
(``alipay.overseas.secmerchant.offline.maintain``), and the payments that named one show its names, in
Debian's Chromium against ``tillpay serve`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browserkit import Served
from test_console_browser import Shop, browser_page, chromium, served, shot, sign_in

__all__ = ["browser_page", "chromium", "served"]  # fixtures, used by name

pytestmark = pytest.mark.slow


def test_the_stores_page_lists_registered_secondary_merchants_and_payments_show_them(
    served: Served, browser_page: Any
) -> None:
    shop = Shop(served)
    evil = "<img src=x onerror=window.__xss=1>"  # MAPI refuses quotation marks, not angle brackets
    r = shop.client.call(
        "alipay.overseas.secmerchant.offline.maintain",
        {
            "timestamp": (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S"),
            "secondary_merchant_name": "Mika's coffee shop",
            "secondary_merchant_id": "MID_1001",
            "store_id": "SID_2001",
            "store_name": "Mika " + evil,
            "store_country": "US",
            "store_address": "3 Old Concord Rd, Burlington, MA 01803",
            "store_industry": "5499",
        },
    )
    assert r.ok, r
    order = f"SM-{time.monotonic_ns()}"
    paid = shop.client.call(
        "alipay.acquire.overseas.spot.pay",
        {
            "alipay_seller_id": shop.partner,
            "partner_trans_id": order,
            "buyer_identity_code": shop.code(),
            "trans_amount": "4.50",
            "currency": "USD",
            "trans_name": "Latte",
            "extend_info": json.dumps({"secondary_merchant_id": "MID_1001", "store_id": "SID_2001"}),
        },
    )
    assert paid.ok, paid
    trade_no = paid.get("alipay_trans_id")

    page = browser_page()
    sign_in(page, served.url, shop.login)
    page.goto(served.url + "/console/stores")
    row = page.locator("#secondary-merchants tr[data-secondary='MID_1001'][data-store='SID_2001']")
    text = row.inner_text()
    assert "Mika's coffee shop" in text and "5499" in text and "US" in text and "active" in text
    assert evil in text
    assert page.evaluate("window.__xss") is None
    shot(page, "10-secondary-merchants")

    page.goto(served.url + "/console/payments")
    listed = page.locator(f"#payments tr[data-trade-no='{trade_no}']").inner_text()
    assert "Mika's coffee shop (MID_1001, MCC 5499)" in listed
    page.goto(served.url + f"/console/payments/{trade_no}")
    assert page.locator("#secondary-merchant").inner_text() == "Mika's coffee shop (MID_1001), MCC 5499"
    assert page.locator("#store-name").inner_text() == "Mika " + evil
    assert page.evaluate("window.__xss") is None

    # Another merchant's console does not list them.
    other = Shop(served)
    page2 = browser_page()
    sign_in(page2, served.url, other.login)
    page2.goto(served.url + "/console/stores")
    assert page2.locator("#no-secondary").count() == 1
    assert "MID_1001" not in page2.locator("#secondary").inner_text()
