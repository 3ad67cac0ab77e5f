"""One payment, three views: made in one dialect, queried, refunded and cancelled through the others."""

from __future__ import annotations

from decimal import Decimal

from conftest import LiveServer
from dialect_clients import make_shop


def test_a_mapi_payment_seen_and_refunded_through_open_platform_and_antom(live: LiveServer) -> None:
    shop = make_shop(live)
    op, am = shop.open(), shop.antom()
    with shop.mapi() as mapi:
        paid = mapi.pay("V-1", shop.code(), "19.99", "USD", "Coffee")
        assert paid.ok
        q = op.call("alipay.trade.query", {"out_trade_no": "V-1"})
        assert (q["trade_no"], q["trade_status"], q["total_amount"]) == (
            paid.trade_no,
            "TRADE_SUCCESS",
            "19.99",
        )
        assert q["buyer_pay_amount"] == str(paid.trans_amount_cny)
        a = am.call("inquiryPayment", {"paymentRequestId": "V-1"})
        assert (a["paymentId"], a["paymentStatus"]) == (paid.trade_no, "SUCCESS")
        assert a["paymentAmount"] == {"currency": "USD", "value": "1999"}
        assert Decimal(a["actualPaymentAmount"]["value"]) / 100 == paid.trans_amount_cny
        # refunds through two other dialects add up, and every view sees the same totals
        r1 = op.call(
            "alipay.trade.refund", {"out_trade_no": "V-1", "refund_amount": "5.00", "out_request_no": "V-R1"}
        )
        assert r1["refund_fee"] == "5.00"
        r2 = am.call(
            "refund",
            {
                "refundRequestId": "V-R2",
                "paymentId": paid.trade_no,
                "refundAmount": {"currency": "USD", "value": "1499"},
            },
        )
        assert r2.result == ("S", "SUCCESS")
        assert mapi.query("V-1").status == "TRADE_CLOSED"  # fully refunded
        assert op.call("alipay.trade.query", {"out_trade_no": "V-1"})["trade_status"] == "TRADE_CLOSED"
        # Antom reports refunds apart: the payment itself succeeded
        assert am.call("inquiryPayment", {"paymentId": paid.trade_no})["paymentStatus"] == "SUCCESS"
        # the refunds are visible by their ids whichever dialect made them
        assert mapi.refund_query("V-1", "V-R2").ok
        assert am.call("inquiryRefund", {"refundRequestId": "V-R1"})["refundAmount"]["value"] == "500"
        rq = op.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "V-1", "out_request_no": "V-R2"})
        assert rq["refund_amount"] == "14.99"
    assert shop.balance() == 1_000_000


def test_an_antom_payment_cancelled_through_open_platform_and_a_waiting_one_through_mapi(
    live: LiveServer,
) -> None:
    shop = make_shop(live, currency="CNY")
    op, am = shop.open(), shop.antom()
    pay = am.pay("V-2", shop.code(), 1200, "CNY", "Tea")
    assert pay.result[0] == "S"
    cancel = op.call("alipay.trade.cancel", {"trade_no": pay["paymentId"]})
    assert cancel["action"] == "refund" and cancel["out_trade_no"] == "V-2"
    assert am.call("inquiryPayment", {"paymentRequestId": "V-2"})["paymentStatus"] == "CANCELLED"
    waiting = op.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "V-3",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "TV",
            "total_amount": "2500.00",
        },
    )
    assert waiting.code == "10003"
    assert am.call("inquiryPayment", {"paymentRequestId": "V-3"})["paymentStatus"] == "PROCESSING"
    with shop.mapi() as mapi:
        assert mapi.query("V-3").status == "WAIT_BUYER_PAY"
        assert mapi.cancel("V-3").action == "close"
    q = op.call("alipay.trade.query", {"out_trade_no": "V-3"})
    assert q["trade_status"] == "TRADE_CLOSED" and q["receipt_amount"] == "0.00"
    assert am.call("inquiryPayment", {"paymentRequestId": "V-3"})["paymentStatus"] == "CANCELLED"
    assert shop.balance() == 1_000_000
