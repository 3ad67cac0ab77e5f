"""The Antom in-store dialect over real HTTP: header signatures, every API, bad input, notifyPayment."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import LiveServer
from dialect_clients import counts, make_shop
from tillpay import signing
from tillpay.protocols.antom import signing as antom_signing
from tillpay.services import merchants


def assert_epoch_ms(header: str) -> None:
    """Antom's header times are epoch milliseconds (``1685599933871``), near now."""
    assert header.isdigit() and len(header) == 13, header
    assert abs(int(header) - time.time() * 1000) < 60_000, header


def test_pay_inquiry_refund_and_inquiry_refund(live: LiveServer) -> None:
    shop = make_shop(live)
    c = shop.antom()
    pay = c.pay("AP-1", shop.code(), 1999, "USD", "Coffee beans")
    assert pay.result == ("S", "SUCCESS") and pay["paymentRequestId"] == "AP-1"
    assert pay["paymentAmount"] == {"currency": "USD", "value": "1999"}
    assert pay["actualPaymentAmount"] == {"currency": "CNY", "value": "14197"}
    assert (
        pay["paymentQuote"]["quoteCurrencyPair"] == "USD/CNY"
        and pay["paymentQuote"]["quotePrice"] == "7.1023"
    )
    assert pay["paymentTime"] and pay["customerId"].startswith("2088")
    assert pay.headers["client-id"] == shop.merchant.client_id
    assert_epoch_ms(pay.headers["response-time"])
    q = c.call("inquiryPayment", {"paymentRequestId": "AP-1"})
    assert (
        q.result == ("S", "SUCCESS")
        and q["paymentStatus"] == "SUCCESS"
        and q["paymentId"] == pay["paymentId"]
    )
    r1 = c.call(
        "refund",
        {
            "refundRequestId": "AR-1",
            "paymentId": pay["paymentId"],
            "refundAmount": {"currency": "USD", "value": "500"},
        },
    )
    assert r1.result == ("S", "SUCCESS") and r1["refundAmount"]["value"] == "500" and r1["refundId"]
    r2 = c.call(
        "refund",
        {
            "refundRequestId": "AR-2",
            "paymentId": pay["paymentId"],
            "refundAmount": {"currency": "USD", "value": "400"},
        },
    )
    assert r2.result[0] == "S"
    over = c.call(
        "refund",
        {
            "refundRequestId": "AR-3",
            "paymentId": pay["paymentId"],
            "refundAmount": {"currency": "USD", "value": "1100"},
        },
    )
    assert over.result == ("F", "REFUND_AMOUNT_EXCEED")
    again = c.call(
        "refund",
        {
            "refundRequestId": "AR-1",
            "paymentId": pay["paymentId"],
            "refundAmount": {"currency": "USD", "value": "501"},
        },
    )
    assert again.result == ("F", "REPEAT_REQ_INCONSISTENT")
    iq = c.call("inquiryRefund", {"refundRequestId": "AR-1"})
    assert iq.result[0] == "S" and iq["refundStatus"] == "SUCCESS" and iq["refundId"] == r1["refundId"]
    assert c.call("inquiryRefund", {"refundId": r2["refundId"]})["refundRequestId"] == "AR-2"
    assert c.call("inquiryRefund", {"refundRequestId": "nope"}).result == ("F", "REFUND_NOT_EXIST")
    assert shop.balance() == 1_000_000 - 14197 + 3551 + 2841


def test_payment_in_process_until_the_customer_confirms(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.antom()
    pay = c.pay("AW-1", shop.code(), 250_000, "CNY", "Watch")
    assert pay.result == ("U", "PAYMENT_IN_PROCESS") and "paymentTime" not in pay.body
    q = c.call("inquiryPayment", {"paymentRequestId": "AW-1"})
    assert q["paymentStatus"] == "PROCESSING" and q["paymentResultCode"] == "PAYMENT_IN_PROCESS"
    shop.confirm()
    q = c.call("inquiryPayment", {"paymentId": pay["paymentId"]})
    assert q["paymentStatus"] == "SUCCESS" and q["paymentTime"]
    same = c.pay("AW-1", "0" * 18, 250_000, "CNY", "Watch")  # a different code: same id, other parameters
    assert same.result == ("F", "REPEAT_REQ_INCONSISTENT")


def test_failures_and_cancel(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=500)
    c = shop.antom()
    poor = c.pay("AF-1", shop.code(), 1000, "CNY")
    assert poor.result == ("F", "USER_BALANCE_NOT_ENOUGH")
    q = c.call("inquiryPayment", {"paymentRequestId": "AF-1"})
    assert (q["paymentStatus"], q["paymentResultCode"]) == ("FAIL", "USER_BALANCE_NOT_ENOUGH")
    assert c.pay("AF-2", "281234567890123456", 100, "CNY").result == ("F", "INVALID_CODE")
    assert c.call("inquiryPayment", {"paymentRequestId": "AF-9"}).result == ("F", "ORDER_NOT_EXIST")
    # Cancel of an id Antom never saw: ORDER_NOT_EXIST, every time; the id is closed all the same.
    for _ in range(2):
        early = c.call("cancel", {"paymentRequestId": "AF-3"})
        assert early.result == ("F", "ORDER_NOT_EXIST") and "cancelTime" not in early.body
        assert "paymentId" not in early.body
    assert c.call("inquiryPayment", {"paymentRequestId": "AF-3"}).result == ("F", "ORDER_NOT_EXIST")
    code = shop.code()
    assert c.pay("AF-3", code, 100, "CNY").result == ("F", "ORDER_IS_CLOSED")
    assert shop.code() == code  # the late pay charged nothing and used nothing
    paid = c.pay("AF-4", shop.code(), 300, "CNY")
    assert paid.result[0] == "S"
    assert c.call("cancel", {"paymentId": paid["paymentId"]}).result[0] == "S"
    q = c.call("inquiryPayment", {"paymentRequestId": "AF-4"})
    assert q["paymentStatus"] == "CANCELLED"
    assert shop.balance() == 500


def test_over_balance_above_the_confirm_limit_fails_at_once_with_the_balance_code(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=100_000)  # 1000.00 CNY; confirm above 2000.00
    c = shop.antom()
    code = shop.code()
    before = counts(live)
    poor = c.pay("AB-1", code, 250_000, "CNY", "Watch")
    assert poor.result == ("F", "USER_BALANCE_NOT_ENOUGH") and "paymentTime" not in poor.body
    q = c.call("inquiryPayment", {"paymentRequestId": "AB-1"})
    assert (q["paymentStatus"], q["paymentResultCode"]) == ("FAIL", "USER_BALANCE_NOT_ENOUGH")
    after = counts(live)
    assert after["payments"] == before["payments"] + 1
    assert {k: after[k] for k in ("code_uses", "postings", "outbox")} == {
        k: before[k] for k in ("code_uses", "postings", "outbox")
    }
    assert shop.balance() == 100_000 and shop.code() == code


# --------------------------------------------------------------------------------------- bad input


def _pay_body(code: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "productCode": "IN_STORE_PAYMENT",
        "paymentRequestId": "AB-1",
        "paymentAmount": {"currency": "USD", "value": "100"},
        "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
        "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
        "order": {"orderDescription": "x"},
    }
    for k, v in over.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


BAD_BODIES = [
    ({"productCode": "ONLINE_PAYMENT"}, "PARAM_ILLEGAL"),
    ({"paymentAmount": {"currency": "USD", "value": "0"}}, "PARAM_ILLEGAL"),
    ({"paymentAmount": {"currency": "USD", "value": "-5"}}, "PARAM_ILLEGAL"),
    ({"paymentAmount": {"currency": "USD", "value": "1.5"}}, "PARAM_ILLEGAL"),
    ({"paymentAmount": {"currency": "USD", "value": 100}}, "PARAM_ILLEGAL"),
    ({"paymentAmount": {"currency": "XYZ", "value": "100"}}, "CURRENCY_NOT_SUPPORT"),
    ({"paymentAmount": {"currency": "USD", "value": "10000000001"}}, "PAYMENT_AMOUNT_EXCEED_LIMIT"),
    ({"paymentAmount": None}, "PARAM_ILLEGAL"),
    ({"paymentMethod": {"paymentMethodType": "CARD", "paymentMethodId": "1"}}, "PARAM_ILLEGAL"),
    ({"paymentFactor": {"inStorePaymentScenario": "EntryCode"}}, "PARAM_ILLEGAL"),
    ({"paymentFactor": None}, "PARAM_ILLEGAL"),
    ({"order": None}, "PARAM_ILLEGAL"),
    ({"order": {}}, "PARAM_ILLEGAL"),
    ({"paymentRequestId": "x" * 65}, "PARAM_ILLEGAL"),
    ({"paymentNotifyUrl": "ftp://x"}, "PARAM_ILLEGAL"),
    ({"settlementStrategy": {"settlementCurrency": "EUR"}}, "CURRENCY_NOT_SUPPORT"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_malformed_and_forged_requests_fail_and_change_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    other = make_shop(live)
    c = shop.antom()
    code = shop.code()
    before = counts(live)
    for over, result_code in BAD_BODIES:
        reply = c.call("pay", _pay_body(code, **over))
        assert reply.result == ("F", result_code), (over, reply.body)
        assert reply.body["result"]["resultMessage"]
    for text in ("{not json", "[1]", ""):
        reply = c.raw("pay", text)
        assert reply.signed and reply.result == ("F", "PARAM_ILLEGAL"), text
    body = json.dumps(_pay_body(code))
    forged = {
        "bad signature": ({"signature": "algorithm=RSA256,keyVersion=1,signature=AAAA"}, "INVALID_SIGNATURE"),
        "no signature": ({"signature": None}, "INVALID_SIGNATURE"),
        "other algorithm": (
            {"signature": "algorithm=ECC224,keyVersion=1,signature=AAAA"},
            "INVALID_SIGNATURE",
        ),
        "unknown key version": (
            {"signature": "algorithm=RSA256,keyVersion=7,signature=AAAA"},
            "KEY_NOT_FOUND",
        ),
        "no request-time": ({"request-time": None}, "PARAM_ILLEGAL"),
    }
    for name, (headers, result_code) in forged.items():
        reply = c.raw("pay", body, headers)
        assert reply.signed and reply.result == ("F", result_code), (name, reply.body)
    # Signed with another merchant's key under this client id.
    o = other.antom()
    o.client_id = shop.merchant.client_id
    o.gateway_public_key = shop.merchant.gateway_public_key
    assert o.raw("pay", body).result == ("F", "INVALID_SIGNATURE")
    # A body changed after signing: the headers of one body sent with another.
    signed = c.raw("inquiryPayment", json.dumps({"paymentRequestId": "none"}))
    assert signed.result == ("F", "ORDER_NOT_EXIST")
    path = "/ams/api/v1/payments/pay"
    when = "2026-11-26T10:00:00+08:00"
    sig = antom_signing.sign(
        antom_signing.content("POST", path, shop.merchant.client_id, when, body),
        shop.new.merchant_private_key,
    )
    r = httpx.post(
        live.url + path,
        content=body.replace('"100"', '"1"').encode(),
        headers={
            "client-id": shop.merchant.client_id,
            "request-time": when,
            "signature": antom_signing.header(sig),
        },
    )
    assert r.status_code == 200 and r.json()["result"]["resultCode"] == "INVALID_SIGNATURE"
    unknown = c.raw("pay", body, {"client-id": "TPNOSUCHCLIENT00"})
    assert (
        unknown.result == ("F", "INVALID_CLIENT")
        and not unknown.signed
        and "signature" not in unknown.headers
    )
    assert c.raw("pay", body, {"client-id": None}).result == ("F", "PARAM_ILLEGAL")
    assert counts(live) == before


def test_key_versions_rotate_without_breaking_old_keys(live: LiveServer) -> None:
    shop = make_shop(live)
    c = shop.antom()
    new_key = signing.generate_private_key()
    version = live.run(
        lambda p: merchants.add_key_version(
            p, shop.merchant.partner_id, signing.public_key_pem(new_key.public_key())
        )
    )
    assert version == 2
    assert c.call("inquiryPayment", {"paymentRequestId": "none"}).result == (
        "F",
        "ORDER_NOT_EXIST",
    )  # keyVersion 1
    c2 = shop.antom()
    c2.private_key, c2.key_version = signing.private_key_pem(new_key), "2"
    assert c2.call("inquiryPayment", {"paymentRequestId": "none"}).result == ("F", "ORDER_NOT_EXIST")
    c2.key_version = "1"
    assert c2.call("inquiryPayment", {"paymentRequestId": "none"}).result == ("F", "INVALID_SIGNATURE")


def test_another_merchants_payments_are_invisible(live: LiveServer) -> None:
    a = make_shop(live, currency="CNY")
    b = make_shop(live, currency="CNY")
    pay = a.antom().pay("AO-1", a.code(), 1000, "CNY")
    cb = b.antom()
    for op, body in [
        ("inquiryPayment", {"paymentId": pay["paymentId"]}),
        (
            "refund",
            {
                "refundRequestId": "X",
                "paymentId": pay["paymentId"],
                "refundAmount": {"currency": "CNY", "value": "1"},
            },
        ),
    ]:
        reply = cb.call(op, body)
        assert reply.result == ("F", "ORDER_NOT_EXIST"), op
        assert "customerId" not in reply.body
    assert cb.call("cancel", {"paymentId": pay["paymentId"]}).result == ("F", "ORDER_NOT_EXIST")
    assert a.antom().call("inquiryPayment", {"paymentRequestId": "AO-1"})["paymentStatus"] == "SUCCESS"


# ------------------------------------------------------------------------------------ notifications


class JsonReceiver:
    """A merchant's Antom notify endpoint: records path, headers and body; acknowledges after one miss."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                ok = len(outer.received) > 1
                answer = {
                    "result": {"resultCode": "SUCCESS" if ok else "X", "resultStatus": "S" if ok else "F"}
                }
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/antom/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= n


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    r = JsonReceiver()
    yield r
    r.httpd.shutdown()


@pytest.mark.loopback_receivers
def test_notify_payment_is_signed_json_repeated_until_acknowledged(
    live: LiveServer, receiver: JsonReceiver
) -> None:
    shop = make_shop(live)
    live.server.config.app.state.platform.settings = live.settings.model_copy(
        update={"notify_schedule": "0,0,0"}
    )
    pay = shop.antom().pay("AN-1", shop.code(), 300, "USD", paymentNotifyUrl=receiver.url)
    assert pay.result[0] == "S"
    receiver.wait(2)
    (path, headers, body), second = receiver.received[0], receiver.received[1]
    assert_epoch_ms(headers["request-time"])
    assert json.loads(second[2])["notifyId"] == json.loads(body)["notifyId"] and path == "/antom/notify"
    data = json.loads(body)
    assert data["notifyType"] == "PAYMENT_RESULT" and data["result"]["resultStatus"] == "S"
    assert data["paymentRequestId"] == "AN-1" and data["paymentAmount"] == {"currency": "USD", "value": "300"}
    assert headers["client-id"] == shop.merchant.client_id
    _, _, sig = antom_signing.parse_header(headers["signature"])
    content = antom_signing.content("POST", path, headers["client-id"], headers["request-time"], body)
    assert antom_signing.verify(content, sig, shop.merchant.gateway_public_key)
    assert not antom_signing.verify(content.replace(b"300", b"301"), sig, shop.merchant.gateway_public_key)
    time.sleep(0.3)
    assert len(receiver.received) == 2


@pytest.mark.loopback_receivers
def test_only_a_paid_payment_is_notified_and_refunds_are_refund_result(
    live: LiveServer, receiver: JsonReceiver
) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.antom()
    # Never paid: declined for the balance, and waiting then cancelled. Antom notifies success only.
    before = counts(live)["outbox"]
    poor = c.pay("AS-1", shop.code(), 2_000_000, "CNY", paymentNotifyUrl=receiver.url)
    assert poor.result == ("F", "USER_BALANCE_NOT_ENOUGH")
    waiting = c.pay("AS-2", shop.code(), 250_000, "CNY", paymentNotifyUrl=receiver.url)
    assert waiting.result == ("U", "PAYMENT_IN_PROCESS")
    assert c.call("cancel", {"paymentRequestId": "AS-2"}).result == ("S", "SUCCESS")
    assert counts(live)["outbox"] == before
    # Paid after the customer confirms: one PAYMENT_RESULT S. A cancel of it afterwards adds nothing.
    confirmed = c.pay("AS-3", shop.code(), 250_000, "CNY", paymentNotifyUrl=receiver.url)
    shop.confirm(confirmed["paymentId"])
    receiver.wait(1)
    first = json.loads(receiver.received[0][2])
    assert (first["notifyType"], first["paymentRequestId"]) == ("PAYMENT_RESULT", "AS-3")
    assert first["result"]["resultStatus"] == "S" and first["paymentTime"]
    paid = c.pay("AS-4", shop.code(), 500, "CNY", paymentNotifyUrl=receiver.url)
    refund = c.call(
        "refund",
        {
            "refundRequestId": "ASR-1",
            "paymentId": paid["paymentId"],
            "refundAmount": {"currency": "CNY", "value": "200"},
            "refundNotifyUrl": receiver.url,
        },
    )
    assert refund.result == ("S", "SUCCESS")
    assert c.call("cancel", {"paymentRequestId": "AS-3"}).result == ("S", "SUCCESS")
    assert counts(live)["outbox"] == before + 3  # AS-3 paid, AS-4 paid, the refund of AS-4
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = {json.loads(b)["notifyId"]: json.loads(b) for _, _, b in receiver.received}
        if len(seen) == 3:
            break
        time.sleep(0.05)
    kinds = sorted(
        (d["notifyType"], d.get("paymentRequestId") or d.get("refundRequestId"), d["result"]["resultStatus"])
        for d in seen.values()
    )
    assert kinds == [
        ("PAYMENT_RESULT", "AS-3", "S"),
        ("PAYMENT_RESULT", "AS-4", "S"),
        ("REFUND_RESULT", "ASR-1", "S"),
    ]
    notified = next(d for d in seen.values() if d["notifyType"] == "REFUND_RESULT")
    assert notified["refundStatus"] == "SUCCESS" and notified["refundAmount"] == {
        "currency": "CNY",
        "value": "200",
    }
    assert notified["refundId"] == refund["refundId"] and notified["refundTime"]
