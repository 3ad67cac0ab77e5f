"""Drives global-open-sdk-python (Antom), unchanged, against Tillpay's Antom dialect."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import rsa
from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.model.amount import Amount
from com.alipay.ams.api.model.env import Env
from com.alipay.ams.api.model.merchant import Merchant
from com.alipay.ams.api.model.order import Order
from com.alipay.ams.api.model.store import Store
from com.alipay.ams.api.request.pay.alipay_inquiry_refund_request import AlipayInquiryRefundRequest
from com.alipay.ams.api.request.pay.alipay_pay_cancel_request import AlipayPayCancelRequest
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.request.pay.alipay_refund_request import AlipayRefundRequest
from com.alipay.ams.api.request.pay.order_code_payment_request import OrderCodePaymentRequest
from com.alipay.ams.api.request.pay.user_presented_code_payment_request import UserPresentedCodePaymentRequest
from com.alipay.ams.api.tools.webhook_tool import check_signature
from rpc import serve

client: Any = None
public_key = ""


def init(url: str, client_id: str, private_key: str, public_key_pem: str) -> str:
    global client, public_key
    # The SDK always connects to port 443 over verified TLS, whatever the URL says.
    client = DefaultAlipayClient(url, client_id, private_key, public_key_pem)
    public_key = public_key_pem
    return "ready"


def _order(currency: str, value: str, subject: str) -> Order:
    order = Order()
    order.order_amount = Amount(currency, value)
    order.order_description = subject
    order.reference_order_id = "ORD-" + subject.replace(" ", "-")
    merchant = Merchant()
    merchant.reference_merchant_id = "M-001"
    merchant.merchant_mcc = "5812"
    merchant.merchant_name = "Corner Cafe"
    store = Store()
    store.reference_store_id = "S-01"
    store.store_name = "Main street"
    store.store_mcc = "5812"
    merchant.store = store
    order.merchant = merchant
    env = Env()
    env.store_terminal_id = "T-07"
    env.store_terminal_request_time = datetime.now(UTC).isoformat(timespec="seconds")
    order.env = env
    return order


def pay(
    request_id: str, code: str, currency: str, value: str, subject: str, notify_url: str | None = None
) -> Any:
    request = UserPresentedCodePaymentRequest(
        request_id, _order(currency, value, subject), currency, value, code, payment_notify_url=notify_url
    )
    return json.loads(client.execute(request))


def order_code(request_id: str, currency: str, value: str, subject: str) -> Any:
    request = OrderCodePaymentRequest(request_id, _order(currency, value, subject), currency, value)
    return json.loads(client.execute(request))


def inquiry(request_id: str) -> Any:
    request = AlipayPayQueryRequest()
    request.payment_request_id = request_id
    return json.loads(client.execute(request))


def cancel(request_id: str) -> Any:
    request = AlipayPayCancelRequest()
    request.payment_request_id = request_id
    return json.loads(client.execute(request))


def refund(refund_request_id: str, payment_id: str, currency: str, value: str) -> Any:
    request = AlipayRefundRequest()
    request.refund_request_id = refund_request_id
    request.payment_id = payment_id
    request.refund_amount = Amount(currency, value)
    return json.loads(client.execute(request))


def inquiry_refund(refund_request_id: str) -> Any:
    request = AlipayInquiryRefundRequest()
    request.refund_request_id = refund_request_id
    return json.loads(client.execute(request))


def verify(path: str, client_id: str, request_time: str, body: str, signature: str) -> bool:
    try:
        return bool(check_signature("POST", path, client_id, request_time, body, signature, public_key))
    except rsa.VerificationError:  # how this SDK's check_signature says "does not verify"
        return False


serve(
    {
        "init": init,
        "pay": pay,
        "order_code": order_code,
        "inquiry": inquiry,
        "cancel": cancel,
        "refund": refund,
        "inquiry_refund": inquiry_refund,
        "verify": verify,
    }
)
