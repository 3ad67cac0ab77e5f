"""Receipts laid out by display width: every line of every kind, in every language, on 42- and
32-column paper fits its paper (a CJK character takes two columns), and long ids wrap whole."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wcwidth import wcswidth

from tillpay.ecr.i18n import LANGUAGE_NAMES, MESSAGES
from tillpay.ecr.receipts import render_escpos, render_text
from tillpay.ecr.report import Report
from tillpay.ecr.textwidth import row, width, wrap

LANGUAGES = list(LANGUAGE_NAMES)
KINDS = ["sale", "refund", "refund-all", "cancelled", "report"]
TRADE_NO = "2026120122001004680073956707"  # 28 digits, as Alipay's trade numbers are
PTID = "KIOSK-EAST-WING-02-20261201013806-000002"


def receipt(kind: str, lang: str) -> dict[str, Any]:
    head = {
        "language": lang,
        "merchant": "上海静安寺店 Corner Cafe & Bakery International",
        "store_name": "東京駅八重洲地下街 Main Street 한국어 매장 이름",
        "store_id": "STORE-SHANGHAI-JINGAN-0001",
        "terminal_id": "KIOSK-EAST-02",
        "time": "2026-12-01 09:38:06 +0800",
    }
    items = [
        {"name": "Flat white", "code": "4006381333931", "qty": 2, "price": 450},
        {
            "name": "抹茶ラテ（ホット）大きいサイズ 季節限定 さくら味 with oat milk",
            "code": "1",
            "qty": 12,
            "price": 1_234_500,
        },
        {
            "name": "따뜻한 아메리카노 그란데 사이즈 두 잔 세트와 크루아상",
            "code": "2",
            "qty": 999,
            "price": 99_999_999,
        },
    ]
    if kind == "report":
        rep = Report("SHIFT 12 REPORT")
        rep.by_state = {("paid", "USD"): [123, 12_345_678_90], ("cancelled", "USD"): [3, 104_700]}
        rep.cancel_refunds = {"USD": [1, 34_900]}
        rep.refunds = {"USD": [4, 1_090]}
        rep.gateway = {("TRADE_SUCCESS", "USD"): [122, 12_345_000_00], ("TRADE_CLOSED", "USD"): [4, 35_670]}
        rep.gateway_refunded = {"USD": 1_090}
        rep.gateway_cancel_refunded = {"USD": 34_900}
        rep.checked = 126
        rep.differences = [
            f"{PTID}: amount 7700.00 USD here, 7.70 USD at the gateway",
            f"{PTID}: still cancelling here (resolve it), TRADE_SUCCESS at the gateway",
        ]
        return head | {"kind": "report", "lines": rep.lines(42) + rep.lines(32)}
    money = {
        "partner_trans_id": PTID,
        "trade_no": TRADE_NO,
        "currency": "USD",
        "buyer_amount": "710230000.00",
        "buyer_currency": "CNY",
    }
    if kind == "sale":
        return (
            head
            | money
            | {"kind": "sale", "items": items, "total": 99_999_999_999, "exchange_rate": "7.10230000"}
        )
    if kind == "cancelled":
        return head | money | {"kind": "cancelled", "items": items, "total": 99_999_999_999}
    return (
        head
        | money
        | {
            "kind": "refund",
            "items": items if kind == "refund" else [],
            "amount": 99_999_999_999,
            "refund_id": f"{PTID}-R-000001",
        }
    )


@pytest.mark.parametrize("columns", [42, 32])
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_line_of_every_receipt_fits_its_paper(kind: str, lang: str, columns: int) -> None:
    data = receipt(kind, lang)
    for copy in (False, True):
        text = render_text(data, copy=copy, width=columns)
        lines = text.rstrip("\n").split("\n")
        too_wide = [(wcswidth(line), line) for line in lines if wcswidth(line) > columns]
        assert not too_wide, too_wide
        assert all(wcswidth(line) >= 0 for line in lines)  # nothing unprintable
        assert lines.count("=" * columns) == 1
    # Nothing was cut: the ids and the figures are on the paper whole, each on one line.
    flat = text.split("\n")
    if kind != "report":
        assert any(line.strip() == TRADE_NO or line.endswith(TRADE_NO) for line in flat)
        label = MESSAGES[lang]["transaction"]
        assert any(line.startswith(label) for line in flat), flat
    if kind == "sale":
        assert any(line.endswith("999,999,999.99 USD") or line.endswith("999999999.99 USD") for line in flat)
    assert "上海静安寺店" in text


def test_the_chinese_store_line_fits_the_rule() -> None:
    """It was 47 columns under a 42-column rule: the padding counted characters, not columns."""
    data = receipt("sale", "zh") | {"store_id": "STORE-1", "terminal_id": "T1"}
    line = next(x for x in render_text(data).split("\n") if x.startswith("门店"))
    assert line.endswith("收银台 T1") and wcswidth(line) == 42


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_escpos_receipt_carries_the_same_lines(lang: str) -> None:
    data = receipt("sale", lang)
    out = render_escpos(data, width=32)
    assert TRADE_NO.encode() in out and b"\x1dV" in out  # the QR code's id, then the cut


@given(
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=120),
    st.sampled_from([24, 32, 42]),
)
def test_wrapped_text_never_passes_the_margin(text: str, cols: int) -> None:
    for line in wrap(text, cols, indent="  ") + row(text, text, cols):
        assert width(line) <= cols, (line, width(line))
    # Nothing is lost but the spaces it broke at.
    assert "".join(wrap(text, cols)).replace(" ", "") == text.replace(" ", "").replace("\n", "")
