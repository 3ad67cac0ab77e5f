"""Antom ``notifyPayment``: a signed JSON POST to ``paymentNotifyUrl``, repeated until acknowledged.

Headers and signature as for requests (reference §2.2): ``client-id``, ``request-time`` and ``signature``
over ``"POST <path of the notify URL>\\n<client-id>.<request-time>.<body>"``, made with Tillpay's key for
the merchant (global-open-sdk-python's ``webhook_tool.check_signature`` verifies it). The merchant
acknowledges with ``{"result":{"resultCode":"SUCCESS","resultStatus":"S",...}}`` (reference §2.8).

``notifyPayment`` is sent only for a payment that is paid: Antom's in-store page sends it "when the
payment processing reaches a final state of success" (reference §7, ``ams/paymentrn``), so a payment that
closes unpaid (declined, expired, rejected, cancelled) is learned from ``inquiryPayment``
(``services.payments`` leaves such notifications out of the outbox). Refunds are notified with
``notifyType`` ``REFUND_RESULT`` (``ams/notify_refund``). ``request-time`` is epoch milliseconds, as
Antom's headers are (``ams_zh-cn/api_fund``). ``notifyId`` and the refund's ``paymentId`` are Tillpay's
additions: ``notifyId`` is stable across retries, so a merchant can drop duplicates.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tillpay.domain.errors import Code
from tillpay.domain.payment import Status
from tillpay.protocols import common
from tillpay.protocols.antom import signing
from tillpay.protocols.antom.codes import SUCCESS, antom_result
from tillpay.services.platform import Merchant


def _amount(minor: int, currency: str) -> dict[str, str]:
    return {"currency": currency, "value": str(minor)}


def _t(text: str | None) -> str | None:
    return common.as_beijing_iso(datetime.fromisoformat(text)) if text else None


def body(notify_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of one notification."""
    refund = payload.get("refund")
    if refund:
        v = refund["payment"]
        return {
            "notifyType": "REFUND_RESULT",
            "notifyId": notify_id,
            "result": SUCCESS.to_json(),
            "refundStatus": "SUCCESS",
            "refundRequestId": refund["partner_refund_id"],
            "refundId": refund["refund_no"],
            "paymentId": v["trade_no"],
            "refundAmount": _amount(refund["price_amount"], refund["price_currency"]),
            "refundTime": _t(refund["created_at"]),
        }
    v = payload["payment"]
    if v["status"] == Status.TRADE_SUCCESS.value:
        result = SUCCESS
    else:
        # Not enqueued any more (success only, see above); kept for notifications queued before that.
        code = Code(v["result_code"]) if v["result_code"] and not v["paid_at"] else Code.TRADE_HAS_CLOSE
        result = antom_result(code)
    out: dict[str, Any] = {
        "notifyType": "PAYMENT_RESULT",
        "notifyId": notify_id,
        "result": result.to_json(),
        "paymentRequestId": v["partner_trans_id"],
        "paymentId": v["trade_no"],
        "paymentAmount": _amount(v["price_amount"], v["price_currency"]),
        "paymentCreateTime": _t(v["created_at"]),
    }
    if v["paid_at"]:
        out["paymentTime"] = _t(v["paid_at"])
    if v["wallet_amount"] is not None and v["wallet_currency"]:
        out["actualPaymentAmount"] = _amount(v["wallet_amount"], v["wallet_currency"])
        if v["wallet_currency"] != v["price_currency"] and v["wallet_rate"]:
            out["paymentQuote"] = {
                "quoteId": f"Q{v['trade_no']}",
                "quoteCurrencyPair": f"{v['price_currency']}/{v['wallet_currency']}",
                "quotePrice": format(Decimal(v["wallet_rate"]).normalize(), "f"),
            }
    if v["settle_currency"] != v["price_currency"]:
        out["grossSettlementAmount"] = _amount(v["settle_amount"], v["settle_currency"])
    return out


def render(
    notify_id: str,
    event: str,
    payload: dict[str, Any],
    now: datetime,
    merchant: Merchant,
    sign_type: str,
    url: str,
) -> tuple[bytes, dict[str, str]]:
    """The signed request: JSON body bytes and headers."""
    text = json.dumps(body(notify_id, payload), ensure_ascii=False, separators=(",", ":"))
    client_id = merchant.client_id or merchant.partner_id
    when = common.as_epoch_ms(now)
    path = urlsplit(url).path or "/"
    sig = signing.sign(signing.content("POST", path, client_id, when, text), merchant.gateway_private_key)
    headers = {
        "content-type": "application/json; charset=UTF-8",
        "client-id": client_id,
        "request-time": when,
        "signature": signing.header(sig),
    }
    return text.encode("utf-8"), headers


def acknowledged(answer: bytes) -> bool:
    """Whether the merchant's answer is JSON with ``result.resultStatus`` S."""
    try:
        data = json.loads(answer)
    except (ValueError, RecursionError):  # RecursionError: an answer nested deeper than Python recurses
        return False
    result = data.get("result") if isinstance(data, dict) else None
    return isinstance(result, dict) and result.get("resultStatus") == "S"
