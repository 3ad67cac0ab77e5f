"""MAPI asynchronous notifications: the classic form fields, signed, acknowledged by ``success``.

The field list of the barcode product's notification is not published (see ``docs/mapi.md``); Tillpay
sends the fields of Alipay's classic ``trade_status_sync`` notification plus the MAPI names of the
payment fields, so a merchant can read either.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tillpay.domain.money import format_amount
from tillpay.protocols import common
from tillpay.protocols.mapi import signing
from tillpay.services.platform import Merchant

#: The body a merchant answers with to acknowledge; anything else is retried.
ACK = "success"

#: Where the pay happened, under ``extend_info``'s names (Tillpay's addition to the guessed field list).
_EXTEND_FIELDS = (
    "secondary_merchant_id",
    "secondary_merchant_name",
    "secondary_merchant_industry",
    "store_id",
    "store_name",
    "terminal_id",
)

_ACTIONS = {"TRADE_SUCCESS": "payByAccountAction", "TRADE_CLOSED": "closeTradeAction"}


def _t(iso: str | None) -> str | None:
    return common.as_beijing_text(datetime.fromisoformat(iso)) if iso else None


def fields(
    notify_id: str, event: str, payload: dict[str, Any], now: datetime, merchant: Merchant
) -> dict[str, str]:
    """The unsigned form fields of one notification."""
    refund = payload.get("refund")
    v = refund["payment"] if refund else payload["payment"]
    f: dict[str, str | None] = {
        "notify_id": notify_id,
        "notify_time": common.as_beijing_text(now),
        "notify_type": "trade_status_sync",
        "partner": merchant.partner_id,
        "out_trade_no": v["partner_trans_id"],
        "partner_trans_id": v["partner_trans_id"],
        "trade_no": v["trade_no"],
        "alipay_trans_id": v["trade_no"],
        "trade_status": v["status"],
        "trans_amount": format_amount(v["price_amount"], v["price_currency"]),
        "trans_currency": v["price_currency"],
        "currency": v["settle_currency"],
        "gmt_create": _t(v["created_at"]),
        "gmt_payment": _t(v["paid_at"]),
        "gmt_close": _t(v["closed_at"]),
        "buyer_id": v["buyer_id"],
        "buyer_email": v["buyer_login"],
        "subject": v["subject"] or None,
    }
    # The pay's extend_info, as recorded (``.get``: notifications queued before these were stored lack them).
    for key in _EXTEND_FIELDS:
        f[key] = v.get(key)
    if v["wallet_amount"] is not None:
        f["trans_amount_cny"] = format_amount(v["wallet_amount"], v["wallet_currency"])
        f["exchange_rate"] = format(Decimal(v["wallet_rate"]).normalize(), "f")
    if v["result_code"] and not v["paid_at"]:
        f["close_reason"] = v["result_code"]
    if refund:
        f["notify_action_type"] = "reverseAction" if refund["kind"] == "cancel" else "refundFPAction"
        f["partner_refund_id"] = refund["partner_refund_id"]
        f["out_return_no"] = refund["partner_refund_id"]
        f["refund_amount"] = format_amount(refund["price_amount"], refund["price_currency"])
        f["refund_status"] = "REFUND_SUCCESS"
        f["gmt_refund"] = _t(refund["created_at"])
    elif v["status"] == "TRADE_CLOSED" and v["paid_at"]:
        # Closed after it was paid: only a cancel (reversal) of a paid order notifies the payment so;
        # its refund is the remainder, recorded as the reversal (a full spot.refund notifies the refund).
        f["notify_action_type"] = "reverseAction"
    else:
        f["notify_action_type"] = _ACTIONS.get(v["status"], "payByAccountAction")
    return {k: val for k, val in f.items() if val not in (None, "")}


def render(
    notify_id: str, event: str, payload: dict[str, Any], now: datetime, merchant: Merchant, sign_type: str
) -> dict[str, str]:
    """The signed form fields of one notification (UTF-8)."""
    f = fields(notify_id, event, payload, now, merchant)
    f["sign"] = signing.sign(
        f,
        sign_type=sign_type,
        md5_key=merchant.md5_key,
        private_key_pem=merchant.gateway_private_key,
        charset="utf-8",
    )
    f["sign_type"] = sign_type
    return f


def acknowledged(body: bytes) -> bool:
    """Whether the merchant's answer acknowledges the notification."""
    return body.strip() == ACK.encode()
