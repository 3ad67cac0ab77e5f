"""The MAPI dialect over real HTTP: signatures, every service, bad input, notifications."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

import mapi_reference as ref
from conftest import LiveServer
from mapi_helpers import Shop, counts, make_shop
from notify_receivers import FormReceiver as Receiver
from tillpay import signing
from tillpay.client import GatewayRejected, MapiClient, SignatureError
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.protocols.mapi.wire import Envelope
from tillpay.services import payments

# ------------------------------------------------------------------------------------- signatures


def test_md5_request_signature_is_the_classic_alipay_rule() -> None:
    params = {
        "service": "alipay.acquire.overseas.query",
        "partner": "2088101122136241",
        "_input_charset": "UTF-8",
        "partner_trans_id": "2010121000000002",
        "sign_type": "MD5",
        "empty": "",
    }
    key = "760bdzec6y9goq7ctyx96ezkz78287de"
    expected_content = (
        "_input_charset=UTF-8&partner=2088101122136241&partner_trans_id=2010121000000002"
        "&service=alipay.acquire.overseas.query"
    )
    assert mapi_signing.content(params) == expected_content
    expected = hashlib.md5((expected_content + key).encode()).hexdigest()
    assert mapi_signing.sign_request(params, sign_type="MD5", md5_key=key) == expected


@pytest.mark.parametrize("sign_type", ["RSA", "RSA2"])
def test_rsa_request_signatures_verify_with_the_merchants_public_key(sign_type: str) -> None:
    key = signing.generate_private_key()
    params = {"service": "x", "partner": "2088101122136241", "trans_name": "咖啡", "sign_type": sign_type}
    sig = mapi_signing.sign_request(params, sign_type=sign_type, private_key_pem=signing.private_key_pem(key))
    pub = signing.public_key_pem(key.public_key())
    mapi_signing.verify_request({**params, "sign": sig}, md5_key="", public_key_pem=pub, charset="utf-8")
    # and the public clients' rule agrees on the bytes
    assert (
        ref.sign(
            ref.pre_sign_string(params),
            sign_type,
            private_key_pem=signing.private_key_pem(key),
            charset="utf-8",
        )
        == sig
    )
    with pytest.raises(Exception, match="does not verify"):
        mapi_signing.verify_request(
            {**params, "trans_name": "茶", "sign": sig}, md5_key="", public_key_pem=pub, charset="utf-8"
        )


def test_response_signature_covers_only_the_business_fields_as_the_public_clients_verify() -> None:
    key = "760bdzec6y9goq7ctyx96ezkz78287de"
    env = Envelope(True, [("service", "x")], {"trans_amount": "1.00", "result_code": "SUCCESS", "memo": ""})
    assert mapi_signing.content(env.signed_fields()) == "result_code=SUCCESS&trans_amount=1.00"
    env.sign = mapi_signing.sign(
        env.signed_fields(), sign_type="MD5", md5_key=key, private_key_pem="", charset="gbk"
    )
    env.sign_type = "MD5"
    answer = ref.parse(env.to_xml("gbk"), "text/xml; charset=GBK")
    assert answer.fields == {"result_code": "SUCCESS", "trans_amount": "1.00"}  # no empty element is sent
    ref.check_answer(answer, md5_key=key, public_key_pem="", charset="gbk")  # melitigo's and Yurunsoft's rule
    assert env.sign == hashlib.md5(f"result_code=SUCCESS&trans_amount=1.00{key}".encode()).hexdigest()
    parsed = Envelope.from_xml(env.to_xml("gbk"))
    assert parsed.fields == env.fields and parsed.request == [("service", "x")]
    refusal = Envelope(False, error="ILLEGAL_SIGN", detail="the MD5 signature does not verify")
    assert mapi_signing.content(refusal.signed_fields()) == "error=ILLEGAL_SIGN"  # melitigo's string


# ------------------------------------------------------------------------------------------- flows


@pytest.mark.parametrize("sign_type", ["MD5", "RSA", "RSA2"])
def test_pay_query_and_refund_with_each_sign_type(live: LiveServer, sign_type: str) -> None:
    shop = make_shop(live)
    with shop.client(live, sign_type) as c:
        r = c.pay("T-1", shop.code(live), "19.99", "USD", "Coffee beans")
        assert r.ok and r.status == "TRADE_SUCCESS"
        assert r.trans_amount == Decimal("19.99") and r.trans_amount_cny == Decimal("141.97")
        assert r.exchange_rate == Decimal("7.1023") and r.get("buyer_currency") == "CNY"
        assert r.get("alipay_buyer_user_id", "").startswith("2088")
        q = c.query("T-1")
        assert q.ok and q.status == "TRADE_SUCCESS" and q.trade_no == r.trade_no
        rf = c.refund("T-1", "T-1-R1", "5.00", "USD", reason="chipped cup")
        assert rf.ok and rf.refund_amount == Decimal("5.00")
        assert c.refund_query("T-1", "T-1-R1").ok
        assert c._http._transport.checked == 4  # type: ignore[attr-defined]  # every answer, by the public rule
    assert shop.balance(live) == 1_000_000 - 14197 + 3551  # 5.00 USD back at the locked rate


def test_get_requests_and_gbk_charset_work(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    with shop.client(live, "MD5", method="GET", charset="GBK") as c:
        r = c.pay("G-1", shop.code(live), "8.80", "CNY", "奶茶 两杯")
        assert r.ok and r.status == "TRADE_SUCCESS"
    answer = shop.reference(live, "MD5", "get", "GBK").call(
        "alipay.acquire.overseas.query", partner_trans_id="G-1"
    )
    assert answer.content_type == "text/xml; charset=GBK" and answer["alipay_trans_status"] == "TRADE_SUCCESS"


def test_several_partial_refunds_never_exceed_the_payment(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    with shop.client(live) as c:
        assert c.pay("P-1", shop.code(live), "100.00", "CNY", "Shoes").ok
        assert c.refund("P-1", "R-1", "30.00", "CNY").ok
        assert c.refund("P-1", "R-2", "30.00", "CNY").ok
        over = c.refund("P-1", "R-3", "40.01", "CNY")
        assert over.result_code == "FAILED" and over.error == "REFUND_AMT_RESTRICTION"
        assert c.refund("P-1", "R-3", "40.00", "CNY").ok
        assert c.query("P-1").status == "TRADE_CLOSED"
        again = c.refund("P-1", "R-2", "30.00", "CNY")  # a retry of an earlier refund answers it again
        assert again.ok and again.get("alipay_refund_id")
    assert shop.balance(live) == 1_000_000


def test_cancel_before_and_after_payment(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    with shop.client(live) as c:
        early = c.cancel("C-1")
        assert early.ok and early.action == "none"
        late = c.pay("C-1", shop.code(live), "10.00", "CNY", "Tea")
        assert late.result_code == "FAILED" and late.error == "TRADE_HAS_CLOSE"
        assert c.pay("C-2", shop.code(live), "10.00", "CNY", "Tea").ok
        done = c.cancel("C-2")
        assert done.ok and done.action == "refund"
        assert c.query("C-2").status == "TRADE_CLOSED"
    assert shop.balance(live) == 1_000_000


def test_checkout_waits_for_the_customers_confirmation(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    states: list[str] = []

    def customer_confirms() -> None:
        for _ in range(100):
            pending = live.run(lambda p: payments.pending_for_user(p, shop.customer.user.id))
            if pending:
                live.run(lambda p: payments.confirm(p, shop.customer.user.id, "123456"))
                return
            time.sleep(0.05)

    th = threading.Thread(target=customer_confirms)
    th.start()
    with shop.client(live) as c:
        res = c.checkout(
            "W-1",
            shop.code(live),
            "2500.00",
            "CNY",
            "Watch",
            poll_interval=0.2,
            merchant_timeout=15,
            on_state=lambda s, _: states.append(s),
        )
    th.join()
    assert res.outcome == "PAID" and res.payment is not None and res.payment.status == "TRADE_SUCCESS"
    assert states[0] == "sending" and "waiting" in states and states[-1] == "paid"
    assert shop.balance(live) == 1_000_000 - 250_000


def test_checkout_cancels_when_nobody_confirms(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    with shop.client(live) as c:
        res = c.checkout(
            "W-2", shop.code(live), "2500.00", "CNY", "Watch", poll_interval=0.1, merchant_timeout=0.5
        )
        assert res.outcome == "CANCELLED" and res.cancel is not None and res.cancel.action == "close"
        assert c.query("W-2").status == "TRADE_CLOSED"
    with pytest.raises(Exception, match="CONFIRMATION_NOT_FOUND"):
        live.run(lambda p: payments.confirm(p, shop.customer.user.id, "123456"))
    assert shop.balance(live) == 1_000_000


def test_checkout_reports_a_decline_without_polling(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=500)
    with shop.client(live) as c:
        res = c.checkout("D-1", shop.code(live), "10.00", "CNY", "Tea", poll_interval=5, merchant_timeout=60)
    assert res.outcome == "FAILED" and res.reason == "BUYER_BALANCE_NOT_ENOUGH"
    assert res.history == ["sending", "failed"]


def test_precreate_gives_a_qr_url_the_wallet_can_pay(live: LiveServer) -> None:
    shop = make_shop(live)
    with shop.client(live) as c:
        pre = c.precreate("Q-1", "5.00", "USD", "Lunch set")
        assert pre.ok and pre.qr_code == f"{live.url}/wallet/qr/{pre.trade_no}"
        page = httpx.get(pre.qr_code)
        assert page.status_code == 200 and "Lunch set" in page.text
        trade_no = pre.trade_no
        live.run(lambda p: payments.confirm(p, shop.customer.user.id, "123456", trade_no, precreated=True))
        q = c.query("Q-1")
        assert q.status == "TRADE_SUCCESS" and q.trans_amount_cny == Decimal("35.51")


# --------------------------------------------------------------------------------------- bad input


def raw_call(live: LiveServer, shop: Shop, params: dict[str, str], sign_type: str = "MD5") -> ref.Answer:
    c = shop.reference(live, sign_type)
    return c.check(c.send(c.signed(params.pop("service"), params)))


def pay_params(shop: Shop, code: str, **over: str) -> dict[str, str]:
    base = {
        "service": "alipay.acquire.overseas.spot.pay",
        "alipay_seller_id": shop.partner,
        "partner_trans_id": "BAD-1",
        "buyer_identity_code": code,
        "trans_amount": "10.00",
        "currency": "USD",
        "trans_name": "x",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v != "<drop>"}


BAD_PAYS = [
    ({"trans_amount": "0"}, "TOTAL_FEE_OUT_OF_RANGE"),
    ({"trans_amount": "-1"}, "ILLEGAL_ARGUMENT"),
    ({"trans_amount": "1.001"}, "ILLEGAL_ARGUMENT"),
    ({"trans_amount": "100000000.01"}, "TOTAL_FEE_OUT_OF_RANGE"),
    ({"trans_amount": "1e3"}, "ILLEGAL_ARGUMENT"),
    ({"trans_amount": "ten"}, "ILLEGAL_ARGUMENT"),
    ({"trans_amount": "100.5", "trans_currency": "JPY"}, "ILLEGAL_ARGUMENT"),
    ({"trans_amount": "<drop>"}, "ILLEGAL_ARGUMENT"),
    ({"trans_name": "<drop>"}, "ILLEGAL_ARGUMENT"),
    ({"surprise": "x" * 1025}, "ILLEGAL_ARGUMENT"),
    ({"extend_info": "[1]"}, "ILLEGAL_ARGUMENT"),
    ({"timestamp": "2026-13"}, "ILLEGAL_ARGUMENT"),
    ({"partner_trans_id": "x" * 65}, "ILLEGAL_ARGUMENT"),
    ({"trans_name": "y" * 257}, "ILLEGAL_ARGUMENT"),
    ({"alipay_seller_id": "2088000000000999"}, "ILLEGAL_ARGUMENT"),
    ({"currency": "usd"}, "ILLEGAL_ARGUMENT"),
    ({"extend_info": "{not json"}, "ILLEGAL_ARGUMENT"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_malformed_pay_requests_get_a_gateway_error_and_change_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    code = shop.code(live)
    before = counts(live)
    for over, error in BAD_PAYS:
        env = raw_call(live, shop, pay_params(shop, code, **over))
        assert (env.is_success, env.error) == (False, error), (over, env)
        assert env.detail and env.sign, over  # a clear reason, and signed (over error=...)
        assert ref.verify(
            f"error={error}", env.sign, "MD5", md5_key=shop.new.merchant.md5_key, charset="utf-8"
        )
    assert counts(live) == before
    # and the code is still good afterwards
    with shop.client(live) as c:
        assert c.pay("GOOD", code, "1.00", "USD", "ok").ok


BAD_BUSINESS = [
    ({"currency": "XYZ"}, "CURRENCY_NOT_SUPPORT"),
    ({"currency": "EUR"}, "CURRENCY_NOT_SUPPORT"),
    ({"buyer_identity_code": "281234567890123456"}, "INVALID_BUYER_IDENTITY_CODE"),
    ({"buyer_identity_code": "12"}, "INVALID_BUYER_IDENTITY_CODE"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_refused_business_requests_fail_in_the_signed_envelope_and_change_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    code = shop.code(live)
    before = counts(live)
    for over, error in BAD_BUSINESS:
        env = raw_call(live, shop, pay_params(shop, code, **over))
        assert env.is_success and env.fields["result_code"] == "FAILED" and env.fields["error"] == error, over
    after = counts(live)
    assert {k: v for k, v in after.items()} == before


def test_wrong_missing_or_foreign_signatures_are_illegal_sign(live: LiveServer) -> None:
    shop = make_shop(live)
    other = make_shop(live)
    before = counts(live)
    good = shop.reference(live).signed("alipay.acquire.overseas.spot.pay", pay_params(shop, shop.code(live)))
    cases = {
        "tampered": {**good, "trans_amount": "0.01"},
        "missing": {k: v for k, v in good.items() if k != "sign"},
        "other key": other.reference(live).signed(
            "alipay.acquire.overseas.spot.pay", pay_params(shop, shop.code(live)) | {"partner": shop.partner}
        ),
        "bad sign_type": {**good, "sign_type": "md5"},
        "rsa garbage": {**good, "sign_type": "RSA2", "sign": "AAAA"},
    }
    for name, params in cases.items():
        env = shop.reference(live).send(params)
        assert not env.is_success and env.error in ("ILLEGAL_SIGN", "ILLEGAL_SIGN_TYPE"), name
    env = shop.reference(live).send({**good, "partner": "2088999999999999"})
    assert (env.is_success, env.error, env.sign) == (False, "ILLEGAL_PARTNER", None)
    env = shop.reference(live).send({**good, "service": "alipay.nope"})
    assert env.error == "ILLEGAL_SERVICE"
    assert counts(live) == before


def test_undecodable_charset_is_refused(live: LiveServer) -> None:
    shop = make_shop(live)
    body = (
        b"service=alipay.acquire.overseas.query&partner=" + shop.partner.encode() + b"&trans_name=%FF%FE%FD"
    )
    env = ref.parse(
        httpx.post(
            live.url + "/gateway.do?_input_charset=UTF-8",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).content
    )
    assert (env.is_success, env.error) == (False, "ILLEGAL_CHARSET")
    env = ref.parse(httpx.post(live.url + "/gateway.do?_input_charset=latin9", content=b"a=b").content)
    assert env.error == "ILLEGAL_CHARSET"


@pytest.mark.foreign_gateway_key
def test_client_rejects_a_response_signed_with_another_key(live: LiveServer) -> None:
    shop = make_shop(live)
    other = make_shop(live)
    m = shop.new.merchant
    c = MapiClient(
        live.url,
        m.partner_id,
        sign_type="RSA2",
        private_key=shop.new.merchant_private_key or "",
        gateway_public_key=other.new.merchant.gateway_public_key,
    )
    with pytest.raises(SignatureError):
        c.query("nothing")
    with shop.client(live) as good, pytest.raises(GatewayRejected) as e:
        good.pay("X", shop.code(live), "-1", "USD", "x")
    assert e.value.error == "ILLEGAL_ARGUMENT" and "trans_amount" in (e.value.detail or "")


def test_refund_and_cancel_of_another_merchants_order_fail(live: LiveServer) -> None:
    a = make_shop(live, currency="CNY")
    b = make_shop(live, currency="CNY")
    with a.client(live) as ca, b.client(live) as cb:
        assert ca.pay("O-1", a.code(live), "10.00", "CNY", "x").ok
        r = cb.refund("O-1", "R-1", "1.00", "CNY")
        assert r.result_code == "FAILED" and r.error == "TRADE_NOT_EXIST"
        q = cb.query(trade_no=ca.query("O-1").trade_no)
        assert q.result_code == "FAIL" and q.error == "TRADE_NOT_EXIST"  # the query page's spelling
        assert cb.cancel("O-1").action == "none"
        assert ca.query("O-1").status == "TRADE_SUCCESS"


# ------------------------------------------------------------------------------------ notifications


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.httpd.shutdown()


@pytest.mark.loopback_receivers
@pytest.mark.parametrize("sign_type", ["MD5", "RSA2"])
def test_notifications_are_signed_and_repeated_until_the_merchant_says_success(
    live: LiveServer, receiver: Receiver, sign_type: str
) -> None:
    shop = make_shop(live)
    # shorten the retry schedule for this test: the second attempt comes immediately
    live.server.config.app.state.platform.settings = live.settings.model_copy(
        update={"notify_schedule": "0,0,0"}
    )
    with shop.client(live, sign_type) as c:
        assert c.pay("N-1", shop.code(live), "3.00", "USD", "Cake", notify_url=receiver.url).ok
    receiver.wait(2)
    first, second = receiver.received[:2]
    # The same notification, same notify_id, retried. notify_time is the time each attempt is sent
    # (Alipay: "通知的发送时间"), so it and the signature over it may differ when a retry crosses a
    # second; every other field is the same, and each attempt's signature verifies on its own.
    stamped = {"notify_time", "sign"}
    assert {k: v for k, v in first.items() if k not in stamped} == {
        k: v for k, v in second.items() if k not in stamped
    }
    assert first["notify_time"] <= second["notify_time"]
    m = shop.new.merchant
    assert ref.verify_notification(second, md5_key=m.md5_key, public_key_pem=m.gateway_public_key)
    assert first["trade_status"] == "TRADE_SUCCESS" and first["out_trade_no"] == "N-1"
    assert first["sign_type"] == sign_type and first["notify_type"] == "trade_status_sync"
    # as a merchant checks it: every posted field but sign/sign_type, sorted (classic notify rule)
    assert ref.verify_notification(first, md5_key=m.md5_key, public_key_pem=m.gateway_public_key)
    with shop.client(live, sign_type) as c:  # and the client library's check agrees
        assert c.verify_notification(first) and not c.verify_notification({**first, "trade_status": "X"})
    assert not ref.verify_notification(
        {**first, "trans_amount": "0.01"}, md5_key=m.md5_key, public_key_pem=m.gateway_public_key
    )
    time.sleep(0.3)
    assert len(receiver.received) == 2  # acknowledged: no more attempts
