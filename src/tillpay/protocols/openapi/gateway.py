"""The Open Platform dialect of ``/gateway.do`` (``method=alipay.trade.*``): check, call the core, answer.

Facts: ``../shared/reference/alipay-protocols.md`` §3 and ``ecosystem.md`` §1b. Everything inside
``biz_content`` that is wrong answers ``40004 ACQ.INVALID_PARAMETER``; a missing or malformed common
parameter answers ``40001 isv.missing-*`` / ``40002 isv.invalid-*``. Unknown ``biz_content`` keys are
ignored, as Alipay does (SDK models send optional fields Tillpay has no use for).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog

from tillpay import signing
from tillpay.config import Settings
from tillpay.domain.errors import DESCRIPTIONS, Code, TillpayError
from tillpay.domain.money import format_amount
from tillpay.domain.payment import Status
from tillpay.outbound import notify_url_problem
from tillpay.protocols import common, freshness
from tillpay.protocols.openapi import codes
from tillpay.protocols.openapi.codes import OpenCode, open_code
from tillpay.protocols.openapi.wire import (
    SIGN_TYPES,
    decode_params,
    loose_params,
    render,
    sign_content,
)
from tillpay.services import payments
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, RefundView

log = structlog.get_logger("tillpay.openapi")

PAY = "alipay.trade.pay"
QUERY = "alipay.trade.query"
CANCEL = "alipay.trade.cancel"
CLOSE = "alipay.trade.close"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
PRECREATE = "alipay.trade.precreate"

_ID = re.compile(r"[A-Za-z0-9_\-.]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_METHOD = re.compile(r"[a-z][a-z0-9.]{0,127}")


class OpenError(Exception):
    """An answer other than success, with its Open Platform code and a clear ``sub_msg``."""

    def __init__(self, outcome: OpenCode, sub_msg: str, fields: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.sub_msg = sub_msg
        self.fields = fields or {}


# ------------------------------------------------------------------------------------ biz_content


def _bad(detail: str) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, detail)


class Biz:
    """``biz_content``, read field by field with a clear error for each wrong one."""

    def __init__(self, raw: str | None) -> None:
        if raw is None:
            raise _bad("biz_content is missing")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # too deep is malformed too
            raise _bad("biz_content is not JSON") from None
        if not isinstance(data, dict):
            raise _bad("biz_content must be a JSON object")
        self.data: dict[str, Any] = data

    def text(
        self, name: str, *, required: bool = False, max_len: int = 64, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        """A string field (numbers are taken as their text, as SDKs send amounts either way)."""
        v = self.data.get(name)
        if v is None or v == "":
            if required:
                raise _bad(f"{name} is missing")
            return None
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _bad(f"{name} must be a string")
        s = str(v)
        if len(s) > max_len:
            raise _bad(f"{name} is longer than {max_len}")
        if pattern is not None and not pattern.fullmatch(s):
            raise _bad(f"{name} is malformed")
        return s

    def need(self, name: str, **kw: Any) -> str:
        """A required string field."""
        v = self.text(name, required=True, **kw)
        assert v is not None
        return v

    def currency(self, name: str, default: str) -> str:
        """An ISO 4217 code field (uppercase), or ``default``."""
        return self.text(name, max_len=3, pattern=re.compile(r"[A-Z]{3}")) or default


def _amount(text: str, currency: str, name: str) -> int:
    value = common.amount(text, currency, name)
    if value <= 0:
        raise _bad(f"{name} must be above 0")
    return value


def _ids(biz: Biz) -> tuple[str | None, str | None]:
    out_trade_no = biz.text("out_trade_no")
    trade_no = biz.text("trade_no")
    if not out_trade_no and not trade_no:
        raise _bad("give out_trade_no or trade_no")
    return out_trade_no, trade_no


# -------------------------------------------------------------------------------------- rendering


def _money(minor: int | None, currency: str | None) -> str:
    return format_amount(minor or 0, currency) if currency else "0.00"


def trade_fields(v: PaymentView) -> dict[str, Any]:
    """The fields that describe a trade in pay and query answers (amounts in the order's currency)."""
    paid = v.paid_at is not None
    total = format_amount(v.price_amount, v.price_currency)
    f: dict[str, Any] = {"trade_no": v.trade_no, "out_trade_no": v.partner_trans_id}
    if v.buyer_login:
        f["buyer_logon_id"] = v.buyer_login
    f["total_amount"] = total
    # What the merchant receives and what the customer paid; 0.00 until paid (Alipay's failed-pay shape).
    f["receipt_amount"] = total if paid else "0.00"
    f["invoice_amount"] = total if paid else "0.00"
    f["buyer_pay_amount"] = _money(v.wallet_amount, v.wallet_currency) if paid else "0.00"
    f["point_amount"] = "0.00"
    if v.buyer_id:
        f["buyer_user_id"] = v.buyer_id
    if paid and v.paid_at is not None:
        f["gmt_payment"] = common.as_beijing_text(v.paid_at)
        f["fund_bill_list"] = [
            {"amount": _money(v.wallet_amount, v.wallet_currency), "fund_channel": "ALIPAYACCOUNT"}
        ]
    # Cross-currency fields of the global Open Platform (trans = price, settle = merchant, pay = wallet).
    f["trans_currency"] = v.price_currency
    f["settle_currency"] = v.settle_currency
    f["settle_amount"] = format_amount(v.settle_amount, v.settle_currency)
    if v.price_currency != v.settle_currency:
        f["settle_trans_rate"] = format(v.settle_rate.normalize(), "f")
    if v.wallet_currency and v.wallet_amount is not None:
        f["pay_currency"] = v.wallet_currency
        f["pay_amount"] = format_amount(v.wallet_amount, v.wallet_currency)
        if v.wallet_rate is not None:
            f["trans_pay_rate"] = format(v.wallet_rate.normalize(), "f")
    if v.store_id:
        f["store_id"] = v.store_id
    if v.terminal_id:
        f["terminal_id"] = v.terminal_id
    return f


def _refund_fields(r: RefundView) -> dict[str, Any]:
    v = r.payment
    return {
        "trade_no": v.trade_no,
        "out_trade_no": v.partner_trans_id,
        "out_request_no": r.partner_refund_id,
        "refund_amount": format_amount(r.price_amount, r.price_currency),
        "total_amount": format_amount(v.price_amount, v.price_currency),
        "refund_status": "REFUND_SUCCESS",
        "gmt_refund_pay": common.as_beijing_text(r.created_at),
        "refund_currency": r.price_currency,
    }


def _ok(fields: dict[str, Any]) -> dict[str, Any]:
    return {"code": codes.SUCCESS[0], "msg": codes.SUCCESS[1], **fields}


def _fail(code: Code, detail: str | None, fields: dict[str, Any] | None = None) -> OpenError:
    return OpenError(open_code(code), detail or DESCRIPTIONS[code], fields)


# ---------------------------------------------------------------------------------------- methods


async def _pay(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    biz = Biz(params.get("biz_content"))
    scene = biz.need("scene", max_len=32)
    if scene not in ("bar_code", "wave_code"):
        raise _bad("scene must be bar_code or wave_code")
    product = biz.text("product_code", max_len=32)
    if product not in (None, "FACE_TO_FACE_PAYMENT", "OFFLINE_PAYMENT"):
        raise _bad("product_code must be FACE_TO_FACE_PAYMENT")
    settle = biz.currency("settle_currency", m.settlement_currency)
    price_currency = biz.currency("trans_currency", settle)
    outcome = await payments.pay(
        p,
        payments.PayCommand(
            merchant=m,
            partner_trans_id=biz.need("out_trade_no", pattern=_ID),
            code=biz.need("auth_code", max_len=32),
            price_amount=_amount(biz.need("total_amount", max_len=16), price_currency, "total_amount"),
            price_currency=price_currency,
            settle_currency=settle,
            subject=biz.need("subject", max_len=256),
            dialect="openapi",
            notify_url=params.get("notify_url"),
            sign_type=sign_type,
            store_id=biz.text("store_id"),
            terminal_id=biz.text("terminal_id"),
            memo=biz.text("body", max_len=128),
        ),
    )
    fields = trade_fields(outcome.payment)
    if outcome.code is None:
        return _ok(fields)
    if outcome.code is Code.WAIT_BUYER_CONFIRM:
        return {"code": codes.WAITING[0], "msg": codes.WAITING[1], **fields}
    raise _fail(outcome.code, None, fields)


async def _query(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    out_trade_no, trade_no = _ids(Biz(params.get("biz_content")))
    v = await payments.query(p, m, partner_trans_id=out_trade_no, trade_no=trade_no)
    fields = trade_fields(v)
    fields["trade_status"] = v.status.value
    if v.paid_at is not None:
        fields["send_pay_date"] = common.as_beijing_text(v.paid_at)
    return _ok(fields)


async def _cancel(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    out_trade_no, trade_no = _ids(Biz(params.get("biz_content")))
    outcome = await payments.cancel(p, m, partner_trans_id=out_trade_no, trade_no=trade_no, dialect="openapi")
    v = outcome.payment
    fields: dict[str, Any] = {"trade_no": v.trade_no, "out_trade_no": v.partner_trans_id, "retry_flag": "N"}
    if outcome.action != "none":
        fields["action"] = outcome.action
    if outcome.action == "refund" and v.closed_at is not None:
        fields["gmt_refund_pay"] = common.as_beijing_text(v.closed_at)
    return _ok(fields)


async def _close(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    out_trade_no, trade_no = _ids(Biz(params.get("biz_content")))
    v = await payments.close(p, m, partner_trans_id=out_trade_no, trade_no=trade_no)
    return _ok({"trade_no": v.trade_no, "out_trade_no": v.partner_trans_id})


async def _refund(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    biz = Biz(params.get("biz_content"))
    out_trade_no, trade_no = _ids(biz)
    amount_text = biz.need("refund_amount", max_len=16)
    request_no = biz.text("out_request_no", pattern=_ID)
    reason = biz.text("refund_reason", max_len=256)
    # The order's currency is needed to read the amount (JPY has no decimals); the currency never changes.
    v = await payments.query(p, m, partner_trans_id=out_trade_no, trade_no=trade_no)
    currency = biz.currency("refund_currency", v.price_currency)
    r = await payments.refund(
        p,
        payments.RefundCommand(
            merchant=m,
            # Without out_request_no Alipay treats the refund as one refund under the order's own number;
            # Tillpay files it under the gateway's trade number (refund ids must differ from the order id).
            partner_refund_id=request_no or v.trade_no,
            amount=_amount(amount_text, currency, "refund_amount"),
            currency=currency,
            dialect="openapi",
            partner_trans_id=out_trade_no,
            trade_no=trade_no,
            reason=reason,
            notify_url=params.get("notify_url"),
            sign_type=sign_type,
        ),
    )
    pv = r.payment
    fields: dict[str, Any] = {"trade_no": pv.trade_no, "out_trade_no": pv.partner_trans_id}
    if pv.buyer_login:
        fields["buyer_logon_id"] = pv.buyer_login
    fields.update(
        fund_change="Y",
        refund_fee=format_amount(pv.refunded_price, pv.price_currency),
        send_back_fee=format_amount(r.price_amount, r.price_currency),
        refund_currency=r.price_currency,
        gmt_refund_pay=common.as_beijing_text(r.created_at),
    )
    if pv.buyer_id:
        fields["buyer_user_id"] = pv.buyer_id
    return _ok(fields)


async def _refund_query(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    biz = Biz(params.get("biz_content"))
    out_trade_no, trade_no = _ids(biz)
    request_no = biz.need("out_request_no")
    v = await payments.query(p, m, partner_trans_id=out_trade_no, trade_no=trade_no)
    # A refund made without out_request_no is asked for by the order's own number (see _refund).
    wanted = v.trade_no if request_no == v.partner_trans_id else request_no
    try:
        r = await payments.refund_query(p, m, wanted, trade_no=v.trade_no)
    except TillpayError as e:
        if e.code is not Code.TRADE_NOT_EXIST:
            raise
        # Alipay: an answer without refund data means no such refund succeeded (not an error).
        return _ok({"trade_no": v.trade_no, "out_trade_no": v.partner_trans_id, "out_request_no": request_no})
    fields = _refund_fields(r)
    fields["out_request_no"] = request_no
    return _ok(fields)


async def _precreate(p: Platform, m: Merchant, params: dict[str, str], sign_type: str) -> dict[str, Any]:
    biz = Biz(params.get("biz_content"))
    settle = biz.currency("settle_currency", m.settlement_currency)
    price_currency = biz.currency("trans_currency", settle)
    v = await payments.precreate(
        p,
        payments.PrecreateCommand(
            merchant=m,
            partner_trans_id=biz.need("out_trade_no", pattern=_ID),
            price_amount=_amount(biz.need("total_amount", max_len=16), price_currency, "total_amount"),
            price_currency=price_currency,
            settle_currency=settle,
            subject=biz.need("subject", max_len=256),
            dialect="openapi",
            notify_url=params.get("notify_url"),
            sign_type=sign_type,
            store_id=biz.text("store_id"),
            terminal_id=biz.text("terminal_id"),
        ),
    )
    if v.status is not Status.WAIT_BUYER_PAY:
        raise _fail(
            Code.TRADE_HAS_CLOSE if v.paid_at is None else Code.TRADE_STATUS_ERROR,
            "the order exists and is no longer payable",
        )
    return _ok({"out_trade_no": v.partner_trans_id, "qr_code": payments.qr_url(p, v.trade_no)})


Handler = Callable[[Platform, Merchant, dict[str, str], str], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {
    PAY: _pay,
    QUERY: _query,
    CANCEL: _cancel,
    CLOSE: _close,
    REFUND: _refund,
    REFUND_QUERY: _refund_query,
    PRECREATE: _precreate,
}


# ------------------------------------------------------------------------------------------ entry


def _check_common(settings: Settings, params: dict[str, str]) -> None:
    for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version"):
        if not params.get(name):
            raise OpenError(codes.missing("signature" if name == "sign" else name), f"{name} is missing")
    if params["sign_type"] not in SIGN_TYPES:
        raise _fail(Code.ILLEGAL_SIGN_TYPE, "sign_type must be RSA2 or RSA")
    if not _TIMESTAMP.fullmatch(params["timestamp"]):
        raise OpenError(codes.invalid("timestamp"), "timestamp must be yyyy-MM-dd HH:mm:ss")
    try:
        datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise OpenError(codes.invalid("timestamp"), "timestamp is not a valid time") from None
    if params["version"] != "1.0":
        raise OpenError(codes.invalid("version"), "version must be 1.0")
    if params.get("format", "JSON").upper() != "JSON":
        raise OpenError(codes.invalid("format"), "format must be JSON")
    if "notify_url" in params and (problem := notify_url_problem(settings, params["notify_url"])):
        raise OpenError(codes.invalid("notify_url"), f"notify_url {problem}")


def _check_fresh_and_unambiguous(p: Platform, params: dict[str, str]) -> None:
    """After the signature: ``timestamp`` (GMT+8, as Alipay reads it) within the replay window, and no
    value that would let the signed string be read as another request (docs/security.md)."""
    sent = freshness.beijing_text(params["timestamp"])
    if sent is None or not freshness.is_fresh(p, sent):
        raise OpenError(
            codes.invalid("timestamp"),
            f"timestamp (yyyy-MM-dd HH:mm:ss, GMT+8) is more than {freshness.window_text(p)} "
            "away from the server's clock",
        )
    for name, value in params.items():
        if name == "biz_content":
            # JSON, parsed whole: a split inside it leaves a prefix that is not JSON (docs/security.md).
            try:
                json.loads(value)
            except (ValueError, RecursionError):  # too deep is malformed too
                raise _bad("biz_content is not JSON") from None
            continue
        if signing.ambiguous(name, value):
            raise OpenError(
                codes.invalid(name if name.isidentifier() else "parameter"), signing.AMBIGUOUS_DETAIL
            )


def _verify(params: dict[str, str], m: Merchant, codec: str) -> None:
    if not m.allows(params["sign_type"]):
        raise TillpayError(Code.ILLEGAL_SIGN_TYPE, f"this app may not sign with {params['sign_type']}")
    if not m.public_key:
        raise TillpayError(Code.HAS_NO_PUBLICKEY, "no RSA public key is registered for this app")
    ok = signing.rsa_verify(
        sign_content(params).encode(codec),
        params["sign"],
        signing.load_public_key(m.public_key),
        params["sign_type"],  # type: ignore[arg-type]
    )
    if not ok:
        raise TillpayError(Code.ILLEGAL_SIGN, f"the {params['sign_type']} signature does not verify")


async def handle(p: Platform, query: bytes, body: bytes) -> tuple[bytes, str]:
    """Answer one Open Platform request: the signed JSON body and its content type; never raises."""
    codec = "utf-8"
    method: str | None = None
    merchant: Merchant | None = None
    sign_type = "RSA2"
    try:
        try:
            params, codec = decode_params(query, body)
        except TillpayError:
            # Still answer under the method's name and signed for the app, if those can be read.
            params, failed = loose_params(query, body), sys.exc_info()[1]
        else:
            failed = None
        raw_method = params.get("method", "")
        method = raw_method if _METHOD.fullmatch(raw_method) else None
        if params.get("sign_type") in SIGN_TYPES:
            sign_type = params["sign_type"]
        if params.get("app_id"):
            try:
                merchant = await p.merchant_by_credential("app_id", params["app_id"])
            except TillpayError:
                merchant = None
        if failed is not None:
            raise failed
        _check_common(p.settings, params)
        if merchant is None:
            raise _fail(Code.ILLEGAL_PARTNER, f"unknown app_id {params['app_id']!r}")
        _verify(params, merchant, codec)
        _check_fresh_and_unambiguous(p, params)
        handler = HANDLERS.get(params["method"])
        if handler is None:
            raise _fail(Code.ILLEGAL_SERVICE, f"unsupported method {params['method']!r}")
        try:
            node = await handler(p, merchant, params, sign_type)
        except TillpayError as e:
            raise _fail(e.code, e.detail) from None
    except TillpayError as e:
        o = open_code(e.code)
        node = {"code": o.code, "msg": o.msg, "sub_code": o.sub_code, "sub_msg": e.detail}
        log.info("openapi_error", sub_code=o.sub_code, detail=e.detail, method=method)
    except OpenError as e:
        node = {
            "code": e.outcome.code,
            "msg": e.outcome.msg,
            "sub_code": e.outcome.sub_code,
            "sub_msg": e.sub_msg,
            **e.fields,
        }
        log.info("openapi_error", sub_code=e.outcome.sub_code, detail=e.sub_msg, method=method)
    except Exception:
        log.exception("openapi_internal_error", method=method)
        o = open_code(Code.SYSTEM_ERROR)
        node = {
            "code": o.code,
            "msg": o.msg,
            "sub_code": o.sub_code,
            "sub_msg": DESCRIPTIONS[Code.SYSTEM_ERROR],
        }
    # Answers to a known app are signed with Tillpay's key for it; to an unknown app they cannot be.
    key = merchant.gateway_private_key if merchant is not None else None
    return render(method, node, key, sign_type, codec), f"application/json;charset={codec}"
