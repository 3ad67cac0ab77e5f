"""The Open Platform face-to-face dialect over real HTTP: signatures, every method, bad input, notifications."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import LiveServer
from dialect_clients import counts, make_shop
from notify_receivers import FormReceiver
from tillpay import signing
from tillpay.protocols.openapi.wire import signed_node


@pytest.mark.loopback_receivers
@pytest.mark.parametrize(("sign_type", "style"), [("RSA2", "post"), ("RSA", "get")])
def test_pay_query_refund_and_refund_query(live: LiveServer, sign_type: str, style: str) -> None:
    shop = make_shop(live)
    c = shop.open(sign_type, style)
    pay = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "OP-1",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "咖啡豆",
            "total_amount": "19.99",
        },
        notify_url="http://127.0.0.1:9/notify",
    )
    assert (pay.code, pay["msg"]) == ("10000", "Success")
    assert pay["out_trade_no"] == "OP-1" and pay["total_amount"] == "19.99" and pay["trade_no"]
    assert (
        pay["buyer_pay_amount"] == "141.97"
        and pay["pay_currency"] == "CNY"
        and pay["trans_pay_rate"] == "7.1023"
    )
    assert pay["buyer_user_id"].startswith("2088") and pay["fund_bill_list"][0]["amount"] == "141.97"
    q = c.call("alipay.trade.query", {"out_trade_no": "OP-1"})
    assert q.code == "10000" and q["trade_status"] == "TRADE_SUCCESS" and q["trade_no"] == pay["trade_no"]
    r = c.call(
        "alipay.trade.refund",
        {"trade_no": pay["trade_no"], "refund_amount": "5.00", "out_request_no": "OP-1-R1"},
    )
    assert r.code == "10000" and r["refund_fee"] == "5.00" and r["fund_change"] == "Y"
    r2 = c.call(
        "alipay.trade.refund", {"out_trade_no": "OP-1", "refund_amount": 4, "out_request_no": "OP-1-R2"}
    )
    assert r2["refund_fee"] == "9.00" and r2["send_back_fee"] == "4.00"
    rq = c.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "OP-1", "out_request_no": "OP-1-R1"})
    assert rq.code == "10000" and rq["refund_amount"] == "5.00" and rq["refund_status"] == "REFUND_SUCCESS"
    none = c.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "OP-1", "out_request_no": "nope"})
    assert none.code == "10000" and "refund_status" not in none.node  # Alipay: no data = no such refund
    assert shop.balance() == 1_000_000 - 14197 + 3551 + 2841


def test_confirmation_answers_10003_until_the_customer_confirms(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.open()
    pay = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "W-1",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "Watch",
            "total_amount": "2500.00",
        },
    )
    assert pay.code == "10003" and pay["receipt_amount"] == "0.00"
    assert pay["msg"] == " order success pay inprocess"  # as captured from production (reference §7)
    assert c.call("alipay.trade.query", {"out_trade_no": "W-1"})["trade_status"] == "WAIT_BUYER_PAY"
    shop.confirm()
    q = c.call("alipay.trade.query", {"out_trade_no": "W-1"})
    assert q["trade_status"] == "TRADE_SUCCESS" and q["receipt_amount"] == "2500.00" and q["send_pay_date"]


def test_declines_are_40004_with_the_acq_sub_code(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=500)
    c = shop.open()
    pay = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "D-1",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "Tea",
            "total_amount": "10.00",
        },
    )
    assert (pay.code, pay.sub_code) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH") and pay["sub_msg"]
    assert c.call("alipay.trade.query", {"out_trade_no": "D-1"})["trade_status"] == "TRADE_CLOSED"
    bad = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "D-2",
            "scene": "bar_code",
            "auth_code": "281234567890123456",
            "subject": "x",
            "total_amount": "1.00",
        },
    )
    assert bad.sub_code == "ACQ.PAYMENT_AUTH_CODE_INVALID"
    assert shop.balance() == 500


def test_over_balance_above_the_confirm_limit_is_40004_at_once_not_10003(live: LiveServer) -> None:
    # 300.00 USD is 2130.69 CNY: above the 2000.00 CNY confirm limit and above the 2000.00 CNY balance
    # (though 300.00 alone is not).
    shop = make_shop(live, currency="USD", balance=200_000)
    c = shop.open()
    code = shop.code()
    pay = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "B-1",
            "scene": "bar_code",
            "auth_code": code,
            "subject": "TV",
            "total_amount": "300.00",
        },
    )
    assert (pay.code, pay.sub_code) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    q = c.call("alipay.trade.query", {"out_trade_no": "B-1"})
    assert q["trade_status"] == "TRADE_CLOSED"
    assert shop.balance() == 200_000 and shop.code() == code  # nothing charged, the code still unused


def test_cancel_before_and_after_payment_and_close(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.open()

    def pay(no: str, amount: str = "10.00") -> str:
        return c.call(
            "alipay.trade.pay",
            {
                "out_trade_no": no,
                "scene": "bar_code",
                "auth_code": shop.code(),
                "subject": "Tea",
                "total_amount": amount,
            },
        ).code

    early = c.call("alipay.trade.cancel", {"out_trade_no": "C-0"})
    assert early.code == "10000" and early["retry_flag"] == "N" and "action" not in early.node
    late = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "C-0",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "Tea",
            "total_amount": "1.00",
        },
    )
    assert late.sub_code == "ACQ.TRADE_HAS_CLOSE"  # a pay arriving after its cancel never charges
    assert pay("C-1", "2500.00") == "10003"
    waiting = c.call("alipay.trade.cancel", {"out_trade_no": "C-1"})
    assert waiting["action"] == "close"
    assert pay("C-2") == "10000"
    paid = c.call("alipay.trade.cancel", {"out_trade_no": "C-2"})
    assert paid["action"] == "refund"
    assert c.call("alipay.trade.query", {"out_trade_no": "C-2"})["trade_status"] == "TRADE_CLOSED"
    assert pay("C-3") == "10000"
    refused = c.call("alipay.trade.close", {"out_trade_no": "C-3"})
    assert (refused.code, refused.sub_code) == ("40004", "ACQ.TRADE_STATUS_ERROR")  # close never refunds
    assert pay("C-4", "2500.00") == "10003"
    assert c.call("alipay.trade.close", {"out_trade_no": "C-4"}).code == "10000"
    assert c.call("alipay.trade.query", {"out_trade_no": "C-4"})["trade_status"] == "TRADE_CLOSED"
    assert c.call("alipay.trade.close", {"out_trade_no": "C-9"}).sub_code == "ACQ.TRADE_NOT_EXIST"
    assert shop.balance() == 1_000_000 - 1000


def test_precreate_qr_paid_from_the_wallet(live: LiveServer) -> None:
    shop = make_shop(live)
    c = shop.open()
    pre = c.call(
        "alipay.trade.precreate", {"out_trade_no": "Q-1", "total_amount": "5.00", "subject": "Lunch"}
    )
    assert pre.code == "10000" and pre["qr_code"].startswith(live.url + "/wallet/qr/")
    assert httpx.get(pre["qr_code"]).status_code == 200
    shop.pay_qr(pre["qr_code"].rsplit("/", 1)[1])
    q = c.call("alipay.trade.query", {"out_trade_no": "Q-1"})
    assert q["trade_status"] == "TRADE_SUCCESS" and q["buyer_pay_amount"] == "35.51"
    again = c.call(
        "alipay.trade.precreate", {"out_trade_no": "Q-1", "total_amount": "6.00", "subject": "Lunch"}
    )
    assert again.sub_code == "ACQ.CONTEXT_INCONSISTENT"


# --------------------------------------------------------------------------------------- bad input

BAD_BIZ = [
    ({"total_amount": "0"}, "ACQ.INVALID_PARAMETER"),
    ({"total_amount": "-1"}, "ACQ.INVALID_PARAMETER"),
    ({"total_amount": "1.001"}, "ACQ.INVALID_PARAMETER"),
    ({"total_amount": "1e3"}, "ACQ.INVALID_PARAMETER"),
    ({"total_amount": "100000000.01"}, "ACQ.TOTAL_FEE_EXCEED"),
    ({"total_amount": None}, "ACQ.INVALID_PARAMETER"),
    ({"subject": None}, "ACQ.INVALID_PARAMETER"),
    ({"scene": "face"}, "ACQ.INVALID_PARAMETER"),
    ({"out_trade_no": "x" * 65}, "ACQ.INVALID_PARAMETER"),
    ({"out_trade_no": "has space"}, "ACQ.INVALID_PARAMETER"),
    ({"trans_currency": "usd"}, "ACQ.INVALID_PARAMETER"),
    ({"settle_currency": "EUR"}, "ACQ.CURRENCY_NOT_SUPPORT"),
    ({"auth_code": ["28"]}, "ACQ.INVALID_PARAMETER"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_malformed_requests_get_their_code_and_change_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    other = make_shop(live)
    c = shop.open()
    code = shop.code()
    before = counts(live)
    base = {
        "out_trade_no": "B-1",
        "scene": "bar_code",
        "auth_code": code,
        "subject": "x",
        "total_amount": "1.00",
    }
    for over, sub in BAD_BIZ:
        biz = {k: v for k, v in {**base, **over}.items() if v is not None}
        reply = c.call("alipay.trade.pay", biz)
        assert (reply.code, reply.sub_code) == ("40004", sub), (over, reply.node)
        assert reply["sub_msg"], over
    for raw_biz in ("{not json", "[1]"):
        params = c.params("alipay.trade.pay", None, biz_content=raw_biz)
        reply = c.send("alipay.trade.pay", params)
        assert reply.signed and reply.sub_code == "ACQ.INVALID_PARAMETER"
    good = c.params("alipay.trade.pay", base)
    cases = {
        "tampered": ({**good, "timestamp": "2020-01-01 00:00:00"}, "40002", "isv.invalid-signature"),
        "other key": (
            {**other.open().params("alipay.trade.pay", base), "app_id": shop.merchant.app_id},
            "40002",
            "isv.invalid-signature",
        ),
        "garbage sign": ({**good, "sign": "AAAA"}, "40002", "isv.invalid-signature"),
        "md5": ({**good, "sign_type": "MD5"}, "40002", "isv.invalid-signature-type"),
        "no sign": ({k: v for k, v in good.items() if k != "sign"}, "40001", "isv.missing-signature"),
        "no app_id": ({k: v for k, v in good.items() if k != "app_id"}, "40001", "isv.missing-app-id"),
        "bad timestamp": ({**good, "timestamp": "yesterday"}, "40002", "isv.invalid-timestamp"),
        "bad version": ({**good, "version": "2.0"}, "40002", "isv.invalid-version"),
        "bad charset": ({**good, "charset": "latin9"}, "40002", "isv.invalid-charset"),
        "bad method": ({**c.params("alipay.trade.nope", base)}, "40002", "isv.invalid-method"),
    }
    for name, (params, code_, sub) in cases.items():
        method = params.get("method", "alipay.trade.pay")
        reply = c.send(method, dict(params))
        assert (reply.code, reply.sub_code) == (code_, sub), (name, reply.node)
        assert reply.signed or name in ("no app_id",), name
    unknown = c.send("alipay.trade.pay", {**good, "app_id": "2021999999999999"})
    assert (unknown.code, unknown.sub_code, unknown.signed) == ("40002", "isv.invalid-app-id", False)
    assert b'"sign"' not in unknown.raw  # nothing can be signed for an app Tillpay does not know
    assert counts(live) == before
    assert c.call("alipay.trade.pay", base).code == "10000"  # and the code is still good


def test_another_merchants_orders_are_invisible(live: LiveServer) -> None:
    a = make_shop(live, currency="CNY")
    b = make_shop(live, currency="CNY")
    ca, cb = a.open(), b.open()
    pay = ca.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "O-1",
            "scene": "bar_code",
            "auth_code": a.code(),
            "subject": "x",
            "total_amount": "10.00",
        },
    )
    for method, biz in [
        ("alipay.trade.query", {"trade_no": pay["trade_no"]}),
        (
            "alipay.trade.refund",
            {"trade_no": pay["trade_no"], "refund_amount": "1.00", "out_request_no": "R-1"},
        ),
        ("alipay.trade.close", {"out_trade_no": "O-1"}),
        ("alipay.trade.fastpay.refund.query", {"out_trade_no": "O-1", "out_request_no": "R-1"}),
    ]:
        reply = cb.call(method, biz)
        assert reply.sub_code == "ACQ.TRADE_NOT_EXIST", method
        assert pay["trade_no"] not in reply.raw.decode() and "buyer" not in reply.raw.decode()
    assert ca.call("alipay.trade.query", {"out_trade_no": "O-1"})["trade_status"] == "TRADE_SUCCESS"


def test_gateway_do_still_routes_service_to_mapi(live: LiveServer) -> None:
    shop = make_shop(live)
    with shop.mapi() as m:
        assert m.query("none").error == "TRADE_NOT_EXIST"
    raw = httpx.post(live.url + "/gateway.do", data={"method": "alipay.trade.query"})
    assert raw.status_code == 200 and json.loads(raw.text)["alipay_trade_query_response"]["code"] == "40001"


# ------------------------------------------------------------------------------------ notifications


@pytest.fixture
def receiver() -> Iterator[FormReceiver]:
    r = FormReceiver(fail_first=1, path="/alipay/notify")
    yield r
    r.httpd.shutdown()


@pytest.mark.loopback_receivers
def test_notifications_are_signed_and_repeated_until_success(
    live: LiveServer, receiver: FormReceiver
) -> None:
    shop = make_shop(live, currency="CNY")
    live.server.config.app.state.platform.settings = live.settings.model_copy(
        update={"notify_schedule": "0,0,0"}
    )
    c = shop.open()
    pay = c.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "N-1",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "Cake",
            "total_amount": "3.00",
        },
        notify_url=receiver.url,
    )
    assert pay.code == "10000"
    receiver.wait(2)
    first, second = receiver.received[:2]
    # the same notification retried (notify_time and so sign are of each attempt)
    same = {k: v for k, v in first.items() if k not in ("notify_time", "sign")}
    assert same == {k: v for k, v in second.items() if k not in ("notify_time", "sign")}
    assert first["notify_type"] == "trade_status_sync" and first["notify_id"] == second["notify_id"]
    assert first["trade_status"] == "TRADE_SUCCESS" and first["app_id"] == shop.merchant.app_id
    assert first["total_amount"] == "3.00" and first["out_trade_no"] == "N-1"
    sign = first.pop("sign")
    assert first.pop("sign_type") == "RSA2"
    content = signing.canonical_query(first).encode()
    assert signing.rsa_verify(
        content, sign, signing.load_public_key(shop.merchant.gateway_public_key), "RSA2"
    )
    assert not signing.rsa_verify(
        content.replace(b"3.00", b"300.00"),
        sign,
        signing.load_public_key(shop.merchant.gateway_public_key),
        "RSA2",
    )
    time.sleep(0.3)
    assert len(receiver.received) == 2


def test_signed_node_is_the_exact_response_text() -> None:
    body = b'{"alipay_trade_query_response":{"code":"10000","msg":"Success","x":"{}"},"sign":"abc"}'
    assert signed_node(body, "alipay.trade.query") == ('{"code":"10000","msg":"Success","x":"{}"}', "abc")
