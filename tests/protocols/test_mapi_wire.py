"""MAPI as real tills speak it, driven by the reference client (tests/mapi_reference.py), which follows
the public MAPI clients and imports none of Tillpay's protocol code. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import re
import time
from decimal import Decimal

import httpx
import pytest
import zxingcpp
from PIL import Image

import mapi_reference as ref
from conftest import LiveServer
from mapi_helpers import counts, make_shop
from tillpay.services import payments

PAY = "alipay.acquire.overseas.spot.pay"
QUERY = "alipay.acquire.overseas.query"
CANCEL = "alipay.acquire.cancel"
REFUND = "alipay.acquire.overseas.spot.refund"
REFUND_QUERY = "alipay.acquire.refund.query"
PRECREATE = "alipay.acquire.precreate"


def _ms() -> str:
    return str(int(time.time() * 1000))


def _beijing() -> str:
    """``yyyy-MM-dd HH:mm:ss`` GMT+8, now (the gateway refuses times outside its replay window)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600))


@pytest.mark.parametrize(
    ("sign_type", "style", "charset"),
    [
        ("MD5", "classic", "UTF-8"),
        ("RSA", "url-charset", "GBK"),
        ("RSA2", "get", "UTF-8"),
        ("RSA2", "classic", "utf-8"),
    ],
)
def test_a_till_built_like_the_public_clients_pays_queries_refunds_and_cancels(
    live: LiveServer, sign_type: str, style: ref.Style, charset: str
) -> None:
    """Alipay's classic demo posts ``_input_charset`` in the URL and the signed body; melitigo only in the
    URL (signed); ``link`` puts everything in the query. Every answer verifies by the public rule."""
    shop = make_shop(live)
    c = shop.reference(live, sign_type, style, charset)
    pay = c.call(
        PAY,
        alipay_seller_id=shop.partner,
        partner_trans_id="RT-1",
        buyer_identity_code=shop.code(live),
        trans_name="咖啡 Coffee",
        trans_amount="19.99",
        currency="USD",
        quantity="1",
        biz_product="OVERSEAS_MBARCODE_PAY",
        identity_code_type="barcode",
        trans_create_time="20261130101010",
        extend_info=json.dumps({"store_id": "S-1", "terminal_id": "T-9", "sys_service_provider_id": "2088"}),
        trade_information=json.dumps({"business_type": "4", "goods_info": "coffee^1", "total_quantity": "1"}),
    )
    assert (
        pay.is_success and pay["result_code"] == "SUCCESS" and pay["alipay_trans_status"] == "TRADE_SUCCESS"
    )
    assert pay["trans_amount"] == "19.99" and pay["trans_amount_cny"] == "141.97"
    assert pay["payment_inst"] == "TILLPAY" and re.fullmatch(r"\d{14}", pay["alipay_pay_time"])
    assert pay.echo["service"] == PAY  # the request echoed under <request>
    query = c.call(QUERY, partner_trans_id="RT-1")
    assert query["alipay_trans_id"] == pay["alipay_trans_id"] and query["result_code"] == "SUCCESS"
    refund = c.call(
        REFUND, partner_trans_id="RT-1", partner_refund_id="RT-1-R", refund_amount="5.00", currency="USD"
    )
    assert refund["result_code"] == "SUCCESS" and refund["refund_amount"] == "5.00"
    rq = c.call(REFUND_QUERY, out_trade_no="RT-1", out_return_no="RT-1-R")
    assert (rq["response_code"], rq["refund_result_code"], rq["trade_no"]) == (
        "SUCCESS",
        "SUCCESS",
        pay["alipay_trans_id"],
    )
    assert (
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rq["gmt_create"]) and "result_code" not in rq.fields
    )
    cancel = c.call(CANCEL, out_trade_no="RT-1", timestamp=_ms())
    assert (cancel["result_code"], cancel["retry_flag"], cancel["trade_no"]) == (
        "SUCCESS",
        "N",
        pay["alipay_trans_id"],
    )
    assert c.call(QUERY, partner_trans_id="RT-1")["alipay_trans_status"] == "TRADE_CLOSED"
    assert shop.balance(live) == 1_000_000  # the cancel refunded what the refund had left


def test_the_same_charset_in_url_and_body_is_one_parameter_two_different_ones_are_refused(
    live: LiveServer,
) -> None:
    shop = make_shop(live)
    c = shop.reference(live)
    signed = c.signed(QUERY, {"partner_trans_id": "none"})
    body = ref.urllib.parse.urlencode(signed).encode()
    r = httpx.post(
        live.url + "/gateway.do?_input_charset=GBK",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = ref.parse(r.content, r.headers["content-type"])
    assert (answer.is_success, answer.error) == (False, "ILLEGAL_ARGUMENT")
    assert "_input_charset" in (answer.detail or "") and "GBK" in (answer.detail or "")
    same = c.send(signed, style="classic")
    assert same.is_success and same["result_code"] == "FAIL" and same["error"] == "TRADE_NOT_EXIST"


def test_documented_and_unknown_parameters_are_accepted_and_change_nothing_else(live: LiveServer) -> None:
    shop = make_shop(live)
    c = shop.reference(live)
    answer = c.call(
        PAY,
        alipay_seller_id=shop.partner,
        partner_trans_id="U-1",
        buyer_identity_code=shop.code(live),
        trans_name="Tea",
        trans_amount="1.00",
        currency="USD",
        timestamp=_beijing(),  # GMT+8, as global pages write it
        memo="",  # an empty parameter is neither signed nor refused
        vendor_field="whatever",  # undocumented: ignored
    )
    assert answer["result_code"] == "SUCCESS"
    stored = live.run(lambda p: payments.payment_by_trade_no(p, answer["alipay_trans_id"]))
    assert stored.store_id is None and stored.subject == "Tea"


def test_failures_are_spelled_as_each_services_model_spells_them(live: LiveServer) -> None:
    shop = make_shop(live, balance=100)
    c = shop.reference(live, "RSA2")
    pay = c.call(
        PAY,
        alipay_seller_id=shop.partner,
        partner_trans_id="F-1",
        buyer_identity_code=shop.code(live),
        trans_name="Tea",
        trans_amount="10.00",
        currency="USD",
    )
    # AlipayAcquireOverseasSpotPayResponse: SUCCESS, FAILED, UNKNOW
    assert (pay["result_code"], pay["error"]) == ("FAILED", "BUYER_BALANCE_NOT_ENOUGH")
    refund = c.call(
        REFUND, partner_trans_id="F-1", partner_refund_id="F-1-R", refund_amount="1.00", currency="USD"
    )
    assert refund["result_code"] == "FAILED"  # AlipayAcquireOverseasSpotRefundResponse
    query = c.call(QUERY, partner_trans_id="nobody")
    assert (query["result_code"], query["error"]) == ("FAIL", "TRADE_NOT_EXIST")  # global/overseas_query_cn
    cancel = c.call(CANCEL, trade_no="2026000000000000000000000001", timestamp=_ms())
    # AlipayAcquireCancelResponse: detail_error_code/des, retry_flag, and no error field
    assert (cancel["result_code"], cancel["detail_error_code"], cancel["retry_flag"]) == (
        "FAIL",
        "TRADE_NOT_EXIST",
        "N",
    )
    assert "error" not in cancel.fields and cancel["detail_error_des"]
    rq = c.call(REFUND_QUERY, out_trade_no="nobody", out_return_no="R")
    assert rq["response_code"] == "TRADE_NOT_EXIST"
    rq = c.call(REFUND_QUERY, out_trade_no="F-1", out_return_no="R-unknown")
    assert rq["response_code"] == "NOT_FOUND"  # global/refundquerycn


def test_cancel_by_trade_no_governs_over_out_trade_no(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.reference(live)
    base = {"alipay_seller_id": shop.partner, "trans_name": "Tea", "trans_amount": "10.00", "currency": "CNY"}
    a = c.call(PAY, partner_trans_id="CA-1", buyer_identity_code=shop.code(live), **base)
    b = c.call(PAY, partner_trans_id="CA-2", buyer_identity_code=shop.code(live), **base)
    cancel = c.call(CANCEL, out_trade_no="CA-2", trade_no=a["alipay_trans_id"], timestamp=_beijing())
    assert (cancel["out_trade_no"], cancel["trade_no"]) == ("CA-1", a["alipay_trans_id"])
    assert c.call(QUERY, partner_trans_id="CA-1")["alipay_trans_status"] == "TRADE_CLOSED"
    assert c.call(QUERY, alipay_trans_id=b["alipay_trans_id"])["alipay_trans_status"] == "TRADE_SUCCESS"
    # a never-seen order is cancelled by out_trade_no and a late pay can no longer charge
    assert c.call(CANCEL, out_trade_no="CA-3", timestamp=_ms())["result_code"] == "SUCCESS"
    late = c.call(PAY, partner_trans_id="CA-3", buyer_identity_code=shop.code(live), **base)
    assert (late["result_code"], late["error"]) == ("FAILED", "TRADE_HAS_CLOSE")
    nothing = c.send(c.signed(CANCEL, {"timestamp": _ms()}))
    assert (nothing.is_success, nothing.error) == (False, "ILLEGAL_ARGUMENT")


@pytest.mark.loopback_receivers
def test_precreate_takes_both_timestamps_price_times_quantity_and_serves_its_qr_picture(
    live: LiveServer,
) -> None:
    shop = make_shop(live)
    c = shop.reference(live, "RSA2")
    before = counts(live)
    pre = c.call(
        PRECREATE,
        out_trade_no="PC-1",
        subject="Lunch set",
        body="Two lunch sets",
        price="2.50",
        quantity="2",
        currency="USD",
        seller_id=shop.partner,
        goods_detail=json.dumps(
            [{"goods_id": "L1", "goods_name": "Lunch", "quantity": "2", "price": "2.50"}]
        ),
        operator_id="cashier-7",
        timestamp=_beijing(),
        notify_url="http://127.0.0.1:9/notify",
    )
    assert (pre["result_code"], pre["voucher_type"], pre["out_trade_no"]) == ("SUCCESS", "qrcode", "PC-1")
    assert pre["qr_code"] == f"{live.url}/wallet/qr/{pre['trade_no']}"
    png = httpx.get(pre["pic_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert [d.text for d in decoded] == [pre["qr_code"]]
    assert httpx.get(f"{live.url}/qr/2026000000000000000000000001.png").status_code == 404
    assert httpx.get(f"{live.url}/qr/..%2F..%2Fetc.png").status_code == 404
    view = live.run(lambda p: payments.payment_by_trade_no(p, pre["trade_no"]))
    assert view.price_amount == 500  # 2.50 x 2
    ms = c.call(
        PRECREATE, out_trade_no="PC-2", subject="x", total_fee="1.00", currency="USD", timestamp=_ms()
    )
    assert ms["result_code"] == "SUCCESS"
    wrong = c.call(
        PRECREATE,
        out_trade_no="PC-3",
        subject="x",
        total_fee="9.00",
        price="1.00",
        quantity="2",
        currency="USD",
        timestamp=_ms(),
    )
    assert wrong.is_success is False and wrong.error == "ILLEGAL_ARGUMENT"
    after = counts(live)
    assert after["payments"] == before["payments"] + 2


def test_every_answer_of_a_checkout_verifies_by_the_public_rule_with_each_sign_type(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    for sign_type in ("MD5", "RSA", "RSA2"):
        with shop.client(live, sign_type) as c:
            res = c.checkout(f"CK-{sign_type}", shop.code(live), "12.00", "CNY", "Noodles")
            assert res.outcome == "PAID" and res.payment is not None
            assert res.payment.trans_amount == Decimal("12.00")
            assert c._http._transport.checked >= 1  # type: ignore[attr-defined]
