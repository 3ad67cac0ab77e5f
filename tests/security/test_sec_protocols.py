"""Issue 14, findings 8, 9 and 12 against a live server (loopback only), on SQLite and PostgreSQL.

8: a signed request carries a time within ±15 minutes of the server's clock, in each dialect.
9: a signed canonical string cannot be re-read as a different request; the settlement API refuses
   parameters it does not define and requests signed for another endpoint.
12: control characters never reach MAPI's XML; deeply nested JSON is a parameter error.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

import dialect_clients
import mapi_helpers
from conftest import LiveServer
from tillpay.protocols.antom import signing as antom_signing
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.protocols.mapi.wire import Envelope

PAY = "alipay.acquire.overseas.spot.pay"
CANCEL = "alipay.acquire.cancel"
QUERY = "alipay.acquire.overseas.query"


def _ms(offset: timedelta = timedelta()) -> str:
    return str(int((time.time() + offset.total_seconds()) * 1000))


def _beijing(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + timedelta(hours=8) + offset).strftime("%Y-%m-%d %H:%M:%S")


def _antom(shop: dialect_clients.Shop, op: str, text: str, request_time: str) -> dict[str, Any]:
    """POST a correctly signed Antom request whose ``request-time`` is the given text."""
    path = "/ams/api/v1/payments/" + op
    m = shop.merchant
    sig = antom_signing.sign(
        antom_signing.content("POST", path, m.client_id, request_time, text), shop.new.merchant_private_key
    )
    r = httpx.post(
        shop.live.url + path,
        content=text.encode(),
        headers={
            "content-type": "application/json; charset=UTF-8",
            "client-id": m.client_id,
            "request-time": request_time,
            "signature": antom_signing.header(sig),
        },
    )
    assert r.status_code == 200
    return r.json()["result"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ 8: freshness


def test_stale_future_and_malformed_request_times_are_refused_in_every_dialect(live: LiveServer) -> None:
    shop = dialect_clients.make_shop(live, currency="CNY")
    inquiry = json.dumps({"paymentRequestId": "NOPE-1"})
    now = datetime.now(UTC)
    for bad in (
        "1",
        "abc",
        _ms(timedelta(days=365 * 73)),  # 2099
        _ms(-timedelta(minutes=16)),
        (now - timedelta(minutes=16)).isoformat(timespec="seconds"),
        (now + timedelta(minutes=16)).isoformat(timespec="seconds"),
        now.replace(tzinfo=None).isoformat(timespec="seconds"),  # no zone: which time is it?
    ):
        result = _antom(shop, "inquiryPayment", inquiry, bad)
        assert (result["resultStatus"], result["resultCode"]) == ("F", "PARAM_ILLEGAL"), bad
        assert "request-time" in result["resultMessage"]
    # What the clients send: epoch milliseconds (Antom's pages) and ISO 8601 (global-open-sdk-python).
    for good in (_ms(), now.isoformat(timespec="seconds"), _ms(-timedelta(minutes=14))):
        assert _antom(shop, "inquiryPayment", inquiry, good)["resultCode"] == "ORDER_NOT_EXIST", good

    c = shop.open()
    for bad in (
        _beijing(-timedelta(minutes=16)),
        _beijing(timedelta(minutes=16)),
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),  # UTC, read as GMT+8: eight hours off
        "2001-01-01 00:00:00",
    ):
        reply = c.send(
            "alipay.trade.query", c.params("alipay.trade.query", {"out_trade_no": "X"}, timestamp=bad)
        )
        assert (reply.code, reply.sub_code) == ("40002", "isv.invalid-timestamp"), bad
    reply = c.send(
        "alipay.trade.query",
        c.params("alipay.trade.query", {"out_trade_no": "X"}, timestamp=_beijing(-timedelta(minutes=14))),
    )
    assert reply.sub_code == "ACQ.TRADE_NOT_EXIST"


def test_a_mapi_cancel_dated_2001_does_not_cancel(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    ref = shop.reference(live, sign_type="MD5")
    paid = ref.call(
        PAY,
        partner_trans_id="FR-1",
        alipay_seller_id=shop.partner,
        trans_name="Tea",
        trans_amount="1.00",
        currency="CNY",
        buyer_identity_code=shop.code(live),
    )
    assert paid["alipay_trans_status"] == "TRADE_SUCCESS"
    balance = shop.balance(live)
    for stamp in (
        "978307200000",
        "2001-01-01 08:00:00",
        _ms(timedelta(minutes=16)),
        _beijing(-timedelta(minutes=16)),
    ):
        answer = ref.send(ref.signed(CANCEL, {"out_trade_no": "FR-1", "timestamp": stamp}))
        assert not answer.is_success and answer.error == "ILLEGAL_ARGUMENT", stamp
        assert answer.detail and "timestamp" in answer.detail
    assert shop.balance(live) == balance
    assert ref.call(QUERY, partner_trans_id="FR-1")["alipay_trans_status"] == "TRADE_SUCCESS"
    # Within the window, both documented forms cancel.
    assert ref.call(CANCEL, out_trade_no="FR-1", timestamp=_beijing(-timedelta(minutes=14)))[
        "result_code"
    ] == ("SUCCESS")
    assert shop.balance(live) == balance + 100


# --------------------------------------------------------------------------- 9: unambiguous strings


def test_a_value_cannot_carry_another_signed_parameter(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    ref = shop.reference(live, sign_type="MD5")
    params = {
        "partner_trans_id": "AM-1",
        "alipay_seller_id": shop.partner,
        "trans_name": "Tea",
        "trans_amount": "1.00",
        "currency": "CNY",
        "buyer_identity_code": shop.code(live),
        "memo": "hello",
        "notify_url": "http://127.0.0.1:9/notify",
    }
    honest = ref.signed(PAY, params)
    forged = {k: v for k, v in honest.items() if k != "notify_url"}
    forged["memo"] = "hello&notify_url=http://127.0.0.1:9/notify"
    assert mapi_signing.content(forged) == mapi_signing.content(honest)  # the same signed string
    before = mapi_helpers.counts(live)
    answer = ref.send(forged)
    assert not answer.is_success and answer.error == "ILLEGAL_ARGUMENT"
    assert answer.detail and "&name=" in answer.detail
    assert mapi_helpers.counts(live) == before
    # An '&' that cannot start another pair is still a plain character.
    ok = ref.call(PAY, **{**params, "partner_trans_id": "AM-2", "memo": "Fish & Chips", "notify_url": None})
    assert ok["alipay_trans_status"] == "TRADE_SUCCESS"

    open_shop = dialect_clients.make_shop(live, currency="CNY")
    c = open_shop.open()
    good = c.params(
        "alipay.trade.query", {"out_trade_no": "X"}, mx="hello", notify_url="http://127.0.0.1:9/n"
    )
    bad = {k: v for k, v in good.items() if k != "notify_url"}
    bad["mx"] = "hello&notify_url=http://127.0.0.1:9/n"
    reply = c.send("alipay.trade.query", bad)
    assert (reply.code, reply.sub_code) == ("40002", "isv.invalid-mx")
    # biz_content is JSON, parsed whole: '&' and '=' inside it are fine.
    reply = c.call("alipay.trade.query", {"out_trade_no": "A&b=c"})
    assert reply.sub_code == "ACQ.TRADE_NOT_EXIST"


def test_the_settlement_api_takes_only_requests_signed_for_it(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    m = shop.new.merchant

    def signed(params: dict[str, str]) -> dict[str, str]:
        q = {"partner": m.partner_id, "timestamp": _ms(), **params}
        q["sign"] = mapi_signing.sign_request(q, sign_type="MD5", md5_key=m.md5_key)
        q["sign_type"] = "MD5"
        return q

    files = f"{live.url}/settlement/files"
    assert httpx.get(files, params=signed({"service": "tillpay.settlement.files"})).status_code == 200
    # A signed MAPI cancel replayed here.
    cancel = signed({"service": CANCEL, "out_trade_no": "X", "_input_charset": "UTF-8"})
    r = httpx.get(files, params=cancel)
    assert r.status_code == 400 and "not defined" in r.json()["message"]
    # A request signed for the download endpoint, or without a service, or with an extra parameter.
    for params in (
        {"service": "tillpay.settlement.download"},
        {},
        {"service": "tillpay.settlement.files", "foo": "bar"},
    ):
        r = httpx.get(files, params=signed(params))
        assert r.status_code == 400 and "files" not in r.json(), params
    download = signed({"service": "tillpay.settlement.files", "name": "x.txt"})
    assert httpx.get(f"{live.url}/settlement/download", params=download).status_code == 400


# ------------------------------------------------------------------------ 12: well-formed answers


def test_control_characters_are_refused_and_never_echoed_raw(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    ref = shop.reference(live, sign_type="MD5")
    before = mapi_helpers.counts(live)
    for params in (
        ref.signed(QUERY, {"partner_trans_id": "CC\x00-1"}),
        ref.signed(QUERY, {"partner_trans_id": "CC-1", "memo\x08": "x"}),
        {"service": "no.such\x08service", "partner": shop.partner, "x": "\x00\x1f"},
    ):
        r = httpx.post(
            f"{live.url}/gateway.do",
            data=params,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        )
        root = ET.fromstring(r.content)  # noqa: S314 - must be well-formed XML
        assert root.findtext("is_success") == "F"
        assert root.findtext("error") in ("ILLEGAL_ARGUMENT", "ILLEGAL_SERVICE")
        assert not any(ch in r.text for ch in "\x00\x08\x1f")
    assert mapi_helpers.counts(live) == before


def test_the_envelope_is_well_formed_whatever_it_echoes() -> None:
    env = Envelope(False, [("a\x00", "b\x08\ufffe\udc80c")], error="ILLEGAL_ARGUMENT", detail="d\x01")
    root = ET.fromstring(env.to_xml("utf-8").decode("utf-8"))  # noqa: S314
    assert root.find("request/param") is not None


def test_deeply_nested_json_is_a_parameter_error(live: LiveServer) -> None:
    shop = dialect_clients.make_shop(live, currency="CNY")
    deep = '{"paymentRequestId":"D-1","x":' + "[" * 20000 + "]" * 20000 + "}"
    reply = shop.antom().raw("inquiryPayment", deep)
    assert reply.signed and reply.result == ("F", "PARAM_ILLEGAL"), reply.body
    c = shop.open()
    params = c.params("alipay.trade.query", None, biz_content='{"a":' + "[" * 3000 + "]" * 3000 + "}")
    reply = c.send("alipay.trade.query", params)
    assert reply.code == "40004" and reply.sub_code == "ACQ.INVALID_PARAMETER", reply
    mshop = mapi_helpers.make_shop(live, currency="CNY")
    ref = mshop.reference(live, sign_type="MD5")
    answer = ref.send(
        ref.signed(
            PAY,
            {
                "partner_trans_id": "DJ-1",
                "alipay_seller_id": mshop.partner,
                "trans_name": "Tea",
                "trans_amount": "1.00",
                "currency": "CNY",
                "buyer_identity_code": mshop.code(live),
                "extend_info": "[" * 1500 + "]" * 1500,
            },
        )
    )
    assert not answer.is_success and answer.error == "ILLEGAL_ARGUMENT"
