"""Open Platform asynchronous notifications: ``trade_status_sync`` form fields, signed, acked by ``success``.

Fields after reference §3.6 (fzlee docs and Alipay's 异步通知 page); the signature covers every field but
``sign`` and ``sign_type``, sorted ``k=v&...`` (the rule ``AliPay.verify`` of python-alipay-sdk applies),
made with Tillpay's key for the merchant. Refunds are notified as the same ``trade_status_sync`` with
``out_biz_no``, ``refund_fee`` and ``gmt_refund`` (what Alipay sends after a partial refund).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tillpay import signing
from tillpay.domain.money import format_amount
from tillpay.protocols import common
from tillpay.services.platform import Merchant

#: The body a merchant answers with to acknowledge; anything else is retried.
ACK = "success"


def _t(iso: str | None) -> str | None:
    return common.as_beijing_text(datetime.fromisoformat(iso)) if iso else None


def fields(notify_id: str, payload: dict[str, Any], now: datetime, merchant: Merchant) -> dict[str, str]:
    """The unsigned form fields of one notification."""
    refund = payload.get("refund")
    v = refund["payment"] if refund else payload["payment"]
    paid = bool(v["paid_at"])
    total = format_amount(v["price_amount"], v["price_currency"])
    paid_by_buyer = (
        format_amount(v["wallet_amount"], v["wallet_currency"]) if paid and v["wallet_currency"] else None
    )
    f: dict[str, str | None] = {
        "notify_time": common.as_beijing_text(now),
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "app_id": merchant.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": v["trade_no"],
        "out_trade_no": v["partner_trans_id"],
        "buyer_id": v["buyer_id"],
        "buyer_logon_id": v["buyer_login"],
        "seller_id": merchant.partner_id,
        "trade_status": v["status"],
        "total_amount": total,
        "receipt_amount": total if paid else None,
        "invoice_amount": total if paid else None,
        "buyer_pay_amount": paid_by_buyer,
        "point_amount": "0.00" if paid else None,
        "trans_currency": v["price_currency"],
        "settle_currency": v["settle_currency"],
        "settle_amount": format_amount(v["settle_amount"], v["settle_currency"]),
        "subject": v["subject"] or None,
        "gmt_create": _t(v["created_at"]),
        "gmt_payment": _t(v["paid_at"]),
        "gmt_close": _t(v["closed_at"]),
        "fund_bill_list": json.dumps(
            [{"amount": paid_by_buyer, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
        )
        if paid_by_buyer
        else None,
    }
    if refund:
        f["out_biz_no"] = refund["partner_refund_id"]
        f["refund_fee"] = format_amount(v["refunded_price"], v["price_currency"])
        f["send_back_fee"] = format_amount(refund["price_amount"], refund["price_currency"])
        f["gmt_refund"] = _t(refund["created_at"])
    return {k: val for k, val in f.items() if val not in (None, "")}


def render(
    notify_id: str, payload: dict[str, Any], now: datetime, merchant: Merchant, sign_type: str
) -> dict[str, str]:
    """The signed form fields of one notification (UTF-8)."""
    f = fields(notify_id, payload, now, merchant)
    alg = sign_type if sign_type in ("RSA", "RSA2") else "RSA2"
    f["sign"] = signing.rsa_sign(
        signing.canonical_query(f).encode("utf-8"),
        signing.load_private_key(merchant.gateway_private_key),
        alg,  # type: ignore[arg-type]
    )
    f["sign_type"] = alg
    return f


def acknowledged(body: bytes) -> bool:
    """Whether the merchant's answer acknowledges the notification."""
    return body.strip() == ACK.encode()
