"""The MAPI dialect of ``/gateway.do``: parse, check, call the payment core, render the signed XML."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import structlog

from tillpay import signing as canonical
from tillpay.domain.errors import DESCRIPTIONS, Code, TillpayError
from tillpay.domain.money import format_amount
from tillpay.outbound import notify_url_problem
from tillpay.protocols import common, freshness
from tillpay.protocols.mapi import secmerchant, signing
from tillpay.protocols.mapi.codes import UNKNOWN, Level, mapi_error, result_code
from tillpay.protocols.mapi.services import CANCEL, PAY, PRECREATE, QUERY, REFUND, REFUND_QUERY
from tillpay.protocols.mapi.wire import FORBIDDEN, Envelope
from tillpay.services import payments
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, RefundView

log = structlog.get_logger("tillpay.mapi")


@dataclass(frozen=True, slots=True)
class P:
    """One parameter of a service: required or not, its maximum length, and its pattern."""

    required: bool = False
    max_len: int = 64
    pattern: str | None = None
    #: A JSON value (extend_info, extend_params): quotation marks are its syntax, not forbidden text.
    json: bool = False


_AMOUNT = r"[0-9.]+|-[0-9.]+|.*"  # format is checked by money.parse_amount for a precise error
#: ``timestamp``: epoch milliseconds (``global/acquire_cancel``, ``hkapi/precreate``) or
#: ``yyyy-MM-dd HH:mm:ss`` GMT+8 (``global/precreate_transaction``, ``global/offline_maintain``).
_TIMESTAMP = r"\d{10,16}|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
_URL = r"https?://\S+"
_ID = r"[A-Za-z0-9_\-.]+"
_COMMON = {
    "service": P(True, 64),
    "partner": P(True, 16, r"2088\d{12}"),
    "_input_charset": P(False, 8),
    "sign_type": P(True, 8),
    "sign": P(True, 1024),
}
SPECS: dict[str, dict[str, P]] = {
    # global/spot_pay, spotpay_cn; extras from the AOP request class, reference §1.5 and §7.
    PAY: {
        **_COMMON,
        "notify_url": P(False, 200, _URL),
        "alipay_seller_id": P(True, 16, r"2088\d{12}"),
        "quantity": P(False, 10, r"[1-9]\d{0,8}"),
        "trans_name": P(True, 256),
        "partner_trans_id": P(True, 64, _ID),
        "currency": P(True, 8, r"[A-Z]{3}"),
        "trans_currency": P(False, 8, r"[A-Z]{3}"),
        "trans_amount": P(True, 16),
        "buyer_identity_code": P(True, 32),
        "identity_code_type": P(False, 16, r"barcode|qrcode|soundwave"),
        "trans_create_time": P(False, 14, r"\d{14}"),
        "memo": P(False, 256),
        "biz_product": P(False, 32, r"OVERSEAS_MBARCODE_PAY"),
        "extend_info": P(False, 2048, json=True),
        "trade_information": P(False, 4096, json=True),
        "timestamp": P(False, 19, _TIMESTAMP),
        "terminal_timestamp": P(False, 19, _TIMESTAMP),
    },
    # global/overseas_query
    QUERY: {
        **_COMMON,
        "partner_trans_id": P(False, 64),
        "alipay_trans_id": P(False, 64),
    },
    # global/acquire_cancel; AlipayAcquireCancelRequest (alipay-sdk-java-all)
    CANCEL: {
        **_COMMON,
        "_input_charset": P(True, 8),
        "out_trade_no": P(False, 64),
        "trade_no": P(False, 64),
        "operator_id": P(False, 28),
        "operator_type": P(False, 2, r"[0-9]{1,2}"),
        "timestamp": P(True, 19, _TIMESTAMP),
        "terminal_timestamp": P(False, 19, _TIMESTAMP),
        "notify_url": P(False, 200, _URL),
    },
    # global/spot_refund
    REFUND: {
        **_COMMON,
        "partner_trans_id": P(True, 64),
        "alipay_trans_id": P(False, 64),
        "partner_refund_id": P(True, 64, _ID),
        "refund_amount": P(True, 16),
        "currency": P(True, 10, r"[A-Z]{3}"),
        "refund_reason": P(False, 128),
        "is_sync": P(False, 1, r"[YN]"),
        "notify_url": P(False, 200, _URL),
    },
    # global/refundquerycn
    REFUND_QUERY: {
        **_COMMON,
        "_input_charset": P(True, 8),
        "out_trade_no": P(True, 64),
        "out_return_no": P(True, 128),
    },
    # global/precreate_transaction, hkapi/precreate, 3rdpartryqrcode/simplified_1
    PRECREATE: {
        **_COMMON,
        "_input_charset": P(True, 8),
        "notify_url": P(False, 200, _URL),
        "timestamp": P(True, 19, _TIMESTAMP),
        "terminal_timestamp": P(False, 19, _TIMESTAMP),
        "out_trade_no": P(True, 64, _ID),
        "subject": P(True, 256),
        "body": P(False, 400),
        "total_fee": P(False, 16),
        "price": P(False, 16),
        "quantity": P(False, 10, r"[1-9]\d{0,8}"),
        "currency": P(True, 8, r"[A-Z]{3}"),
        "trans_currency": P(False, 8, r"[A-Z]{3}"),
        "seller_id": P(False, 16, r"2088\d{12}"),
        "seller_email": P(False, 100, r"[^@\s]+@[^@\s]+"),
        "show_url": P(False, 400, _URL),
        "goods_detail": P(False, 4096, json=True),
        "operator_id": P(False, 28),
        "product_code": P(False, 32, r"OVERSEAS_MBARCODE_PAY"),
        "extend_params": P(False, 2048, json=True),
        "passback_parameters": P(False, 256),
        "it_b_pay": P(False, 8),
    },
    **secmerchant.specs(P, _COMMON),
}

#: A parameter no page documents for the service is accepted and ignored (and logged), not refused:
#: the global and HK pages and the public clients each send fields the others do not list
#: (``sys_service_provider_id``, ``biz_product``, ``password``...), and a till that works against
#: Alipay must work here. The signature still covers it, so it cannot be slipped in by anyone else.
_UNKNOWN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
_MAX_UNKNOWN = 1024


def _validate(service: str, params: dict[str, str]) -> dict[str, str]:
    """Check every parameter against the service's table; the documented, non-empty ones, to use.

    Empty parameters count as absent: Alipay's rule is that a parameter without a value is neither
    signed nor meaningful, and some tills send them anyway.
    """
    spec = SPECS[service]
    out: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in params.items():
        rule = spec.get(name)
        if (rule is None or not rule.json) and canonical.ambiguous(name, value):
            # JSON-valued parameters are parsed whole below, which makes them unambiguous.
            raise TillpayError(
                Code.ILLEGAL_ARGUMENT, f"parameter {name[:64]!r}: {canonical.AMBIGUOUS_DETAIL}"
            )
        if rule is None:
            if not _UNKNOWN_NAME.fullmatch(name) or len(value) > _MAX_UNKNOWN:
                raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name[:64]!r} is malformed")
            ignored.append(name)
            continue
        if value == "":
            continue
        if len(value) > rule.max_len:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name!r} is longer than {rule.max_len}")
        if '"' in value and not rule.json:
            # Alipay: "Do not use the halfwidth quotation mark in parameter values."
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name!r} contains a quotation mark")
        if rule.pattern and not re.fullmatch(rule.pattern, value):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name!r} is malformed")
        if rule.json:
            _json_object(name, value)
        out[name] = value
    for name, rule in spec.items():
        if rule.required and name not in out:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name!r} is missing")
    if ignored:
        log.info("mapi_ignored_parameters", service=service, names=sorted(ignored))
    return out


def _check_timestamp(p: Platform, text: str) -> None:
    """``timestamp``: epoch milliseconds or ``yyyy-MM-dd HH:mm:ss`` GMT+8, within the replay window."""
    sent = freshness.epoch_ms(text) or freshness.beijing_text(text)
    if sent is None:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT, "timestamp must be epoch milliseconds or yyyy-MM-dd HH:mm:ss (GMT+8)"
        )
    if not freshness.is_fresh(p, sent):
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            f"timestamp is more than {freshness.window_text(p)} away from the server's clock",
        )


def _json_object(name: str, value: str) -> dict[str, object]:
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # too deep is malformed too
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name} is not JSON") from None
    if not isinstance(parsed, (dict, list)):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name} must be a JSON object or array")
    return parsed if isinstance(parsed, dict) else {}


def _rate(rate: Decimal | None) -> str:
    return format(rate.normalize(), "f") if rate is not None else ""


def payment_fields(v: PaymentView, payment_inst: str = "TILLPAY") -> dict[str, str]:
    """The MAPI fields that describe a payment (pay and query responses)."""
    f = {
        "alipay_trans_id": v.trade_no,
        "partner_trans_id": v.partner_trans_id,
        "out_trade_no": v.partner_trans_id,
        "alipay_trans_status": v.status.value,
        "currency": v.settle_currency,
        "trans_currency": v.price_currency,
        "trans_amount": format_amount(v.price_amount, v.price_currency),
    }
    if v.price_currency != v.settle_currency:
        f["settle_amount"] = format_amount(v.settle_amount, v.settle_currency)
    if v.wallet_amount is not None and v.wallet_currency:
        # trans_amount_cny is "the exact amount that the buyer has paid", in the wallet's currency.
        f["trans_amount_cny"] = format_amount(v.wallet_amount, v.wallet_currency)
        f["exchange_rate"] = _rate(v.wallet_rate)
        f["buyer_currency"] = v.wallet_currency
    if v.buyer_id:
        f["alipay_buyer_user_id"] = v.buyer_id
    if v.buyer_login:
        f["alipay_buyer_login_id"] = v.buyer_login
    if v.paid_at:
        f["alipay_pay_time"] = common.as_beijing_compact(v.paid_at)
    if v.refunded_price:
        f["refund_amount_total"] = format_amount(v.refunded_price, v.price_currency)
    f["payment_inst"] = payment_inst
    return f


def refund_fields(r: RefundView) -> dict[str, str]:
    """The MAPI fields that describe a refund."""
    v = r.payment
    f = {
        "alipay_trans_id": v.trade_no,
        "partner_trans_id": v.partner_trans_id,
        "partner_refund_id": r.partner_refund_id,
        "alipay_refund_id": r.refund_no,
        "refund_amount": format_amount(r.price_amount, r.price_currency),
        "currency": r.price_currency,
        "refund_status": "REFUND_SUCCESS",
        "refund_time": common.as_beijing_compact(r.created_at),
    }
    if v.settle_currency != r.price_currency:
        f["settle_refund_amount"] = format_amount(r.settle_amount, v.settle_currency)
        f["settle_currency"] = v.settle_currency
    if v.wallet_currency:
        f["refund_amount_cny"] = format_amount(r.wallet_amount, v.wallet_currency)
        f["exchange_rate"] = _rate(v.wallet_rate)
    return f


#: Services whose response model names the failure ``detail_error_code``/``detail_error_des`` and has
#: no ``error`` (alipay-sdk-java-all ``AlipayAcquireCancelResponse``, ``AlipayAcquirePrecreateResponse``).
_DETAIL_ONLY = frozenset({CANCEL, PRECREATE})

#: ``alipay.acquire.refund.query`` answers ``response_code`` instead of ``result_code``
#: (``global/refundquerycn``): SUCCESS, ACCESS_FORBIDDEN, NOT_FOUND, QUERY_FAILED, TRADE_NOT_EXIST.
_REFUND_QUERY_CODES = {
    Code.TRADE_NOT_EXIST: "TRADE_NOT_EXIST",
    Code.NOT_FOUND: "NOT_FOUND",
    Code.MERCHANT_FROZEN: "ACCESS_FORBIDDEN",
}


def _business(
    service: str, code: Code | None, fields: dict[str, str], detail: str | None = None
) -> dict[str, str]:
    """The ``response/alipay`` fields of an accepted request: the outcome in the service's own words."""
    if service == REFUND_QUERY:
        response_code = "SUCCESS" if code is None else _REFUND_QUERY_CODES.get(code, "QUERY_FAILED")
        out = {"response_code": response_code, **fields}
        if code is not None:
            out["detail_error_code"] = code.value
            out["detail_error_des"] = detail or DESCRIPTIONS[code]
        return out
    out = {"result_code": result_code(code, service), **fields}
    if code is not None:
        value = mapi_error(code)[0]
        if service in _DETAIL_ONLY:
            out["detail_error_code"] = value
        else:
            out["error"] = value
            out["detail_error_code"] = code.value  # Tillpay's stable code, beside Alipay's value
        out["detail_error_des"] = detail or DESCRIPTIONS[code]
        if service == CANCEL:
            # retry_flag: whether another cancel may still succeed (Y only when the outcome is unknown).
            out["retry_flag"] = "Y" if code in UNKNOWN else "N"
    return out


async def _pay(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    if q["alipay_seller_id"] != m.partner_id:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "alipay_seller_id must equal partner")
    settle = q["currency"]
    price_currency = q.get("trans_currency", settle)
    amount = common.amount(q["trans_amount"], price_currency, "trans_amount")
    # Where the pay happened: the secondary merchant, its store and the terminal (all optional).
    extend = secmerchant.extend_info(q["extend_info"]) if "extend_info" in q else secmerchant.SecondaryRef()
    outcome = await payments.pay(
        p,
        payments.PayCommand(
            merchant=m,
            partner_trans_id=q["partner_trans_id"],
            code=q["buyer_identity_code"],
            price_amount=amount,
            price_currency=price_currency,
            settle_currency=settle,
            subject=q["trans_name"],
            dialect="mapi",
            notify_url=q.get("notify_url"),
            sign_type=sign_type,
            store_id=extend.store_id,
            terminal_id=extend.terminal_id,
            memo=q.get("memo"),
            secondary_merchant_id=extend.secondary_merchant_id,
            secondary_merchant_name=extend.secondary_merchant_name,
            secondary_merchant_industry=extend.secondary_merchant_industry,
            store_name=extend.store_name,
        ),
    )
    return _business(PAY, outcome.code, payment_fields(outcome.payment, p.settings.payment_inst))


async def _query(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    if "partner_trans_id" not in q and "alipay_trans_id" not in q:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "give partner_trans_id or alipay_trans_id")
    view = await payments.query(
        p, m, partner_trans_id=q.get("partner_trans_id"), trade_no=q.get("alipay_trans_id")
    )
    fields = payment_fields(view, p.settings.payment_inst)
    if view.result_code and view.paid_at is None:
        fields["close_reason"] = mapi_error(view.result_code)[0]
    return _business(QUERY, None, fields)


async def _cancel(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    # AlipayAcquireCancelRequest: out_trade_no and/or trade_no; "if both, trade_no governs".
    if "trade_no" in q:
        partner_trans_id = (await payments.query(p, m, trade_no=q["trade_no"])).partner_trans_id
    elif "out_trade_no" in q:
        partner_trans_id = q["out_trade_no"]
    else:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "give out_trade_no or trade_no")
    outcome = await payments.cancel(p, m, partner_trans_id=partner_trans_id, dialect="mapi")
    v = outcome.payment
    fields = {
        "out_trade_no": v.partner_trans_id,
        "trade_no": v.trade_no,
        "retry_flag": "N",
        # Tillpay's addition: close (was unpaid), refund (was paid) or none (never seen; reserved closed).
        "action": outcome.action,
    }
    return _business(CANCEL, None, fields)


async def _refund(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    amount = common.amount(q["refund_amount"], q["currency"], "refund_amount")
    view = await payments.refund(
        p,
        payments.RefundCommand(
            merchant=m,
            partner_refund_id=q["partner_refund_id"],
            amount=amount,
            currency=q["currency"],
            dialect="mapi",
            partner_trans_id=q["partner_trans_id"],
            trade_no=q.get("alipay_trans_id"),
            reason=q.get("refund_reason"),
            # is_sync=Y: "only sync result", so no notification.
            notify_url=None if q.get("is_sync") == "Y" else q.get("notify_url"),
            sign_type=sign_type,
        ),
    )
    return _business(REFUND, None, refund_fields(view))


async def _refund_query(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    payment = await payments.query(p, m, partner_trans_id=q["out_trade_no"])  # TRADE_NOT_EXIST
    try:
        view = await payments.refund_query(p, m, q["out_return_no"], partner_trans_id=q["out_trade_no"])
    except TillpayError as e:
        if e.code is not Code.TRADE_NOT_EXIST:
            raise
        raise TillpayError(Code.NOT_FOUND, f"no refund {q['out_return_no']!r} of this order") from None
    # global/refundquerycn's fields, then Tillpay's: the amounts, as the refund answered them.
    fields = {
        "out_trade_no": payment.partner_trans_id,
        "trade_no": payment.trade_no,
        "out_return_no": view.partner_refund_id,
        "refund_result_code": "SUCCESS",  # a Tillpay refund is final when it is answered
        "gmt_create": common.as_beijing_text(view.created_at),
        "refund_amount": format_amount(view.price_amount, view.price_currency),
        "currency": view.price_currency,
    }
    if payment.wallet_currency:
        fields["refund_amount_cny"] = format_amount(view.wallet_amount, payment.wallet_currency)
    return _business(REFUND_QUERY, None, fields)


def _precreate_amount(q: dict[str, str], currency: str) -> int:
    """``total_fee``, or ``price`` times ``quantity`` (the classic precreate takes either)."""
    quantity = int(q.get("quantity", "1"))
    if "price" in q:
        total = common.amount(q["price"], currency, "price") * quantity
        if "total_fee" in q and common.amount(q["total_fee"], currency, "total_fee") != total:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "total_fee is not price times quantity")
        return total
    if "total_fee" not in q:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "give total_fee, or price (and quantity)")
    return common.amount(q["total_fee"], currency, "total_fee")


async def _precreate(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    if "seller_id" in q and q["seller_id"] != m.partner_id:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "seller_id must equal partner")
    settle = q["currency"]
    price_currency = q.get("trans_currency", settle)
    amount = _precreate_amount(q, price_currency)
    view = await payments.precreate(
        p,
        payments.PrecreateCommand(
            merchant=m,
            partner_trans_id=q["out_trade_no"],
            price_amount=amount,
            price_currency=price_currency,
            settle_currency=settle,
            subject=q["subject"],
            dialect="mapi",
            notify_url=q.get("notify_url"),
            sign_type=sign_type,
        ),
    )
    # AlipayAcquirePrecreateResponse: trade_no, out_trade_no, qr_code, pic_url, voucher_type.
    fields = {
        "out_trade_no": view.partner_trans_id,
        "trade_no": view.trade_no,
        "qr_code": payments.qr_url(p, view.trade_no),
        "pic_url": payments.qr_picture_url(p, view.trade_no),
        "voucher_type": "qrcode",
    }
    return _business(PRECREATE, None, fields)


Handler = Callable[[Platform, Merchant, dict[str, str], str], Awaitable[dict[str, str]]]
HANDLERS: dict[str, Handler] = {
    PAY: _pay,
    QUERY: _query,
    CANCEL: _cancel,
    REFUND: _refund,
    REFUND_QUERY: _refund_query,
    PRECREATE: _precreate,
    **secmerchant.HANDLERS,
}


def _sign(
    env: Envelope, merchant: Merchant | None, sign_type: str | None, codec: str, md5_key: str = ""
) -> Envelope:
    if merchant is None or sign_type not in signing.SIGN_TYPES:
        return env  # nothing to sign with: unknown partner or unusable sign_type
    assert sign_type is not None
    if sign_type == "MD5" and not merchant.allows("MD5"):
        return env  # the MD5 key is disabled: it signs nothing
    env.sign = signing.sign(
        env.signed_fields(),
        sign_type=sign_type,
        md5_key=md5_key or merchant.md5_key,  # the key the request verified with, during a rotation
        private_key_pem=merchant.gateway_private_key,
        charset=codec,
    )
    env.sign_type = sign_type
    return env


#: The refusal when the merchant cannot be read (the database is unreachable): ``is_success=F`` with
#: Alipay's ``SYSTEM_ERROR``, which its error handling page tells tills to retry or query (reference §1.12).
UNAVAILABLE = "SYSTEM_ERROR"
UNAVAILABLE_DETAIL = "the gateway cannot read its database; nothing was done; send the request again"


async def handle(p: Platform, params: dict[str, str], codec: str) -> Envelope:
    """Answer one decoded MAPI request with a signed envelope; never raises for bad input."""
    echo = list(params.items())
    merchant: Merchant | None = None
    sign_type = params.get("sign_type")
    service = params.get("service", "")
    md5_used = ""
    try:
        partner = params.get("partner", "")
        if partner:
            try:
                merchant = await p.merchant_by_partner(partner)
            except TillpayError:
                merchant = None
            except Exception:
                # The merchant (and so its key) cannot be read, e.g. the database is down: nothing has
                # been done. A gateway-level refusal says so and needs no signature (clients verify
                # is_success=T answers only, reference §7); an unsigned T answer would fail their check.
                log.exception("mapi_merchant_unreadable", partner=partner[:32], service=service[:64])
                return Envelope(False, echo, error=UNAVAILABLE, detail=UNAVAILABLE_DETAIL)
        for name, value in params.items():
            if FORBIDDEN.search(name) or FORBIDDEN.search(value):
                raise TillpayError(
                    Code.ILLEGAL_ARGUMENT, f"parameter {name[:64]!r} contains a control character"
                )
        if service not in SPECS:
            raise TillpayError(Code.ILLEGAL_SERVICE, f"unsupported service {service!r}")
        if not partner:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "parameter 'partner' is missing")
        if merchant is None:
            raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown partner {partner!r}")
        md5_used = signing.verify_request(
            params,
            md5_key=merchant.md5_key,
            public_key_pem=merchant.public_key,
            charset=codec,
            previous_md5_keys=merchant.md5_keys(p.now())[1:],
            allowed=merchant.sign_types,
        )
        q = _validate(service, params)
        if "timestamp" in q and service not in secmerchant.HANDLERS:  # those keep their 30 minutes
            _check_timestamp(p, q["timestamp"])
        if "notify_url" in q and (problem := notify_url_problem(p.settings, q["notify_url"])):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter 'notify_url' {problem}")
        assert sign_type is not None
        fields = await HANDLERS[service](p, merchant, q, sign_type)
        return _sign(Envelope(True, echo, fields), merchant, sign_type, codec, md5_used)
    except TillpayError as e:
        value, level = mapi_error(e.code)
        log.info("mapi_error", code=e.code.value, detail=e.detail, partner=params.get("partner"))
        if level is Level.GATEWAY:
            env = Envelope(False, echo, error=value, detail=e.detail)
        else:
            env = Envelope(True, echo, _business(service, e.code, {}, e.detail))
        return _sign(env, merchant, sign_type, codec, md5_used)
    except Exception:
        log.exception("mapi_internal_error", partner=params.get("partner"), service=service)
        env = Envelope(True, echo, _business(service, Code.SYSTEM_ERROR, {}))
        return _sign(env, merchant, sign_type, codec, md5_used)
