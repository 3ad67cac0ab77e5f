"""Test credentials on the wire, over real HTTP: Antom's sandbox path and ``X-Tillpay-Mode: test``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import LiveServer
from dialect_clients import AntomClient, OpenClient, counts
from protocols.test_antom import JsonReceiver
from tillpay import signing
from tillpay.client import MapiClient
from tillpay.protocols.openapi.wire import signed_node
from tillpay.services import merchants, wallets
from tillpay.services.merchants import NewMerchant

SANDBOX = "/ams/sandbox/api/v1/payments/"


class Pair:
    """A live merchant, its test merchant, a real customer and a sandbox customer, on a live server."""

    def __init__(self, live: LiveServer) -> None:
        import factories as f

        async def go(p: Any) -> tuple[NewMerchant, NewMerchant, Any, Any]:
            real = await f.merchant(p, "USD")
            test = await merchants.test_merchant_of(p, real.merchant.partner_id)
            buyer = await f.customer(p, "USD", 1_000_000)
            _, device = await wallets.add_user(
                p, login_id="dev@sandbox.test", currency="USD", pin="123456", sandbox=True
            )
            await wallets.fund(p, "dev@sandbox.test", 1_000_000, "sandbox-1", sandbox=True)
            return real, test, buyer.device, device

        self.live = live
        self.real, self.test, self.buyer, self.sandbox = live.run(go)

    def code(self, device: Any) -> str:
        return str(self.live.run(lambda p: wallets.current_code(p, device)))

    def antom(self, new: NewMerchant, prefix: str = "/ams/api/v1/payments/") -> AntomClient:
        m = new.merchant
        return AntomClient(
            self.live.url, m.client_id, new.merchant_private_key, m.gateway_public_key, prefix=prefix
        )


@pytest.fixture
def pair(live: LiveServer) -> Pair:
    return Pair(live)


def test_a_test_client_id_starts_sandbox_as_antoms_sdk_expects(pair: Pair) -> None:
    assert pair.test.merchant.client_id.startswith("SANDBOX_")
    assert not pair.real.merchant.client_id.startswith("SANDBOX_")


def test_the_sandbox_path_serves_a_test_merchant_signed_and_marked(pair: Pair) -> None:
    c = pair.antom(pair.test, SANDBOX)
    paid = c.pay("SB-1", pair.code(pair.sandbox), 300, "USD")
    assert paid.result == ("S", "SUCCESS") and paid.signed
    assert paid.headers["x-tillpay-mode"] == "test"
    asked = c.call("inquiryPayment", {"paymentRequestId": "SB-1"})
    assert asked["paymentStatus"] == "SUCCESS" and asked.headers["x-tillpay-mode"] == "test"


def test_the_sandbox_path_refuses_a_live_client_id(pair: Pair, live: LiveServer) -> None:
    before = counts(live)
    reply = pair.antom(pair.real, SANDBOX).raw(
        "pay", json.dumps({"paymentRequestId": "LIVE-ON-SANDBOX", "productCode": "IN_STORE_PAYMENT"})
    )
    assert reply.result == ("F", "INVALID_CLIENT") and reply.signed
    assert "x-tillpay-mode" not in reply.headers
    assert counts(live) == before


def test_a_test_client_id_is_accepted_on_the_live_path_too(pair: Pair) -> None:
    paid = pair.antom(pair.test).pay("SB-2", pair.code(pair.sandbox), 300, "USD")
    assert paid.result == ("S", "SUCCESS") and paid.headers["x-tillpay-mode"] == "test"


def test_a_live_merchants_answers_carry_no_mode_header(pair: Pair) -> None:
    paid = pair.antom(pair.real).pay("LV-1", pair.code(pair.buyer), 300, "USD")
    assert paid.result == ("S", "SUCCESS") and "x-tillpay-mode" not in paid.headers


def test_a_test_merchant_refuses_a_real_wallet_in_every_dialect(pair: Pair, live: LiveServer) -> None:
    before = counts(live)
    antom = pair.antom(pair.test, SANDBOX).pay("RW-1", pair.code(pair.buyer), 300, "USD")
    assert antom.result == ("F", "RISK_REJECT")
    mapi = _mapi(pair, pair.test).pay("RW-2", pair.code(pair.buyer), "3.00", "USD", "Item")
    assert mapi.failed and mapi.error == "PAYMENT_REQUEST_HAS_RISK"
    m = pair.test.merchant
    open_ = OpenClient(live.url, m.app_id, pair.test.merchant_private_key, m.gateway_public_key)
    reply = open_.call(
        "alipay.trade.pay",
        {
            "out_trade_no": "RW-3",
            "scene": "bar_code",
            "auth_code": pair.code(pair.buyer),
            "subject": "Item",
            "total_amount": "3.00",
            "trans_currency": "USD",
            "settle_currency": "USD",
        },
    )
    assert reply.sub_code == "ACQ.PAYMENT_REQUEST_HAS_RISK"
    assert counts(live)["payments"] == before["payments"]


class _Recording(httpx.HTTPTransport):
    """Keeps the last answer's headers (the MAPI client reads the body only)."""

    last: httpx.Headers | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = super().handle_request(request)
        self.last = r.headers
        return r


def _mapi(pair: Pair, new: NewMerchant, transport: httpx.BaseTransport | None = None) -> MapiClient:
    m = new.merchant
    return MapiClient(
        pair.live.url,
        m.partner_id,
        sign_type="RSA2",
        private_key=new.merchant_private_key,
        gateway_public_key=m.gateway_public_key,
        transport=transport,
    )


def test_mapi_answers_to_a_test_merchant_are_marked_and_still_verify(pair: Pair) -> None:
    rec = _Recording()
    r = _mapi(pair, pair.test, rec).pay("MT-1", pair.code(pair.sandbox), "3.00", "USD", "Item")
    assert r.ok  # the client verified the answer's signature
    assert rec.last is not None and rec.last["x-tillpay-mode"] == "test"
    rec_live = _Recording()
    assert _mapi(pair, pair.real, rec_live).pay("ML-1", pair.code(pair.buyer), "3.00", "USD", "Item").ok
    assert rec_live.last is not None and "x-tillpay-mode" not in rec_live.last


def test_open_platform_answers_to_a_test_merchant_are_marked_and_still_verify(
    pair: Pair, live: LiveServer
) -> None:
    for new, marked in ((pair.test, True), (pair.real, False)):
        m = new.merchant
        client = OpenClient(live.url, m.app_id, new.merchant_private_key, m.gateway_public_key)
        params = client.params("alipay.trade.query", {"out_trade_no": "NONE"})
        biz = {"biz_content": params.pop("biz_content")}
        r = httpx.post(live.url + "/gateway.do", params=params, data=biz)
        text, sign = signed_node(r.content, "alipay.trade.query")
        assert sign is not None and signing.rsa_verify(
            text.encode(), sign, signing.load_public_key(m.gateway_public_key), "RSA2"
        )
        assert (r.headers.get("x-tillpay-mode") == "test") is marked


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    r = JsonReceiver()
    yield r
    r.httpd.shutdown()


@pytest.mark.loopback_receivers
def test_a_test_merchants_notification_is_marked_and_its_signature_verifies(
    pair: Pair, receiver: JsonReceiver
) -> None:
    from tillpay.protocols.antom import signing as antom_signing

    pair.antom(pair.test, SANDBOX).pay(
        "NT-1", pair.code(pair.sandbox), 300, "USD", paymentNotifyUrl=receiver.url
    )
    receiver.wait(1)
    path, headers, body = receiver.received[0]
    assert headers["x-tillpay-mode"] == "test"
    _, _, sig = antom_signing.parse_header(headers["signature"])
    content = antom_signing.content("POST", path, headers["client-id"], headers["request-time"], body)
    assert antom_signing.verify(content, sig, pair.test.merchant.gateway_public_key)
