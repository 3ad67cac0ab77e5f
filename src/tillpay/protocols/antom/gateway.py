"""The Antom in-store dialect: ``POST /ams/api/v1/payments/{pay,inquiryPayment,cancel,refund,inquiryRefund}``.

Facts: ``../shared/reference/alipay-protocols.md`` §2 and ``ecosystem.md`` §1b. Every answer is HTTP 200
with a JSON body carrying ``result``; answers to a known client are signed in the lowercase headers
``signature``, ``response-time`` and ``client-id`` (global-open-sdk-python looks them up case-sensitively).
Amounts are ``{"currency", "value"}`` with ``value`` a string of minor units. Unknown JSON keys are
ignored (the SDK's models send optional fields Tillpay has no use for).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import known_currency
from tillpay.domain.payment import Status
from tillpay.outbound import notify_url_problem
from tillpay.protocols import common, freshness
from tillpay.protocols.antom import signing
from tillpay.protocols.antom.codes import REFUND_NOT_EXIST, SUCCESS, Result, antom_result
from tillpay.services import merchants, payments, testmode
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, RefundView

log = structlog.get_logger("tillpay.antom")

PREFIX = "/ams/api/v1/payments/"
#: Antom's sandbox path: the same endpoints, for test credentials only (a client id starting ``SANDBOX_``
#: makes global-open-sdk-python call it). A test client id on PREFIX is accepted too: the credentials
#: decide, not the path (docs/sandbox.md).
SANDBOX_PREFIX = "/ams/sandbox/api/v1/payments/"
MAX_BODY = 64 * 1024
_ID = re.compile(r"[\x21-\x7e]{1,64}")
_URL = re.compile(r"https?://\S{1,1020}")


class Failure(Exception):
    """An answer with a non-success ``result`` and the fields known so far."""

    def __init__(self, result: Result, detail: str, fields: dict[str, Any] | None = None) -> None:
        self.result = result
        self.detail = detail
        self.fields = fields or {}


def _bad(detail: str) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, detail)


# ------------------------------------------------------------------------------------ request body


class Body:
    """The request JSON, read field by field with a clear PARAM_ILLEGAL for each wrong one."""

    def __init__(self, data: Mapping[str, Any], where: str = "") -> None:
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}{key}"

    def text(
        self, key: str, *, required: bool = False, max_len: int = 64, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        """A string field (Antom: every non-array field is a string)."""
        v = self.data.get(key)
        if v is None or v == "":
            if required:
                raise _bad(f"{self._name(key)} is missing")
            return None
        if not isinstance(v, str):
            raise _bad(f"{self._name(key)} must be a string")
        if len(v) > max_len:
            raise _bad(f"{self._name(key)} is longer than {max_len}")
        if pattern is not None and not pattern.fullmatch(v):
            raise _bad(f"{self._name(key)} is malformed")
        return v

    def need(self, key: str, **kw: Any) -> str:
        """A required string field."""
        v = self.text(key, required=True, **kw)
        assert v is not None
        return v

    def obj(self, key: str, *, required: bool = False) -> Body | None:
        """A nested object field."""
        v = self.data.get(key)
        if v is None:
            if required:
                raise _bad(f"{self._name(key)} is missing")
            return None
        if not isinstance(v, dict):
            raise _bad(f"{self._name(key)} must be an object")
        return Body(v, f"{self._name(key)}.")

    def amount(self, key: str, *, required: bool = True) -> tuple[int, str] | None:
        """An Amount: (minor units, currency); the value is a string of digits, above zero."""
        a = self.obj(key, required=required)
        if a is None:
            return None
        currency = a.need("currency", max_len=3, pattern=re.compile(r"[A-Z]{3}"))
        value = a.need("value", max_len=18, pattern=re.compile(r"\d+"))
        known_currency(currency)
        if int(value) <= 0:
            raise _bad(f"{self._name(key)}.value must be above 0")
        return int(value), currency


def _notify_url(p: Platform, b: Body, key: str) -> str | None:
    """A notify URL field, checked as every dialect checks one (``tillpay.outbound``)."""
    url = b.text(key, max_len=1024, pattern=_URL)
    if url is not None and (problem := notify_url_problem(p.settings, url)):
        raise _bad(f"{key} {problem}")
    return url


def _amount(minor: int, currency: str) -> dict[str, str]:
    return {"currency": currency, "value": str(minor)}


# -------------------------------------------------------------------------------------- rendering


def payment_fields(v: PaymentView) -> dict[str, Any]:
    """What describes a payment in pay and inquiry answers and in notifications."""
    f: dict[str, Any] = {
        "paymentRequestId": v.partner_trans_id,
        "paymentId": v.trade_no,
        "paymentAmount": _amount(v.price_amount, v.price_currency),
        "paymentCreateTime": common.as_beijing_iso(v.created_at),
    }
    if v.paid_at is not None:
        f["paymentTime"] = common.as_beijing_iso(v.paid_at)
    if v.wallet_amount is not None and v.wallet_currency:
        # actualPaymentAmount = payment amount x payment rate (what the customer paid, in their currency).
        f["actualPaymentAmount"] = _amount(v.wallet_amount, v.wallet_currency)
        if v.wallet_currency != v.price_currency and v.wallet_rate is not None:
            f["paymentQuote"] = {
                "quoteId": f"Q{v.trade_no}",
                "quoteCurrencyPair": f"{v.price_currency}/{v.wallet_currency}",
                "quotePrice": format(v.wallet_rate.normalize(), "f"),
                "quoteStartTime": common.as_beijing_iso(v.created_at),
            }
    if v.settle_currency != v.price_currency:
        f["grossSettlementAmount"] = _amount(v.settle_amount, v.settle_currency)
        f["settlementQuote"] = {
            "quoteCurrencyPair": f"{v.price_currency}/{v.settle_currency}",
            "quotePrice": format(v.settle_rate.normalize(), "f"),
        }
    if v.buyer_id:
        f["customerId"] = v.buyer_id
    return f


def refund_fields(r: RefundView) -> dict[str, Any]:
    """What describes a refund in refund and inquiryRefund answers and notifications."""
    v = r.payment
    f: dict[str, Any] = {
        "refundRequestId": r.partner_refund_id,
        "refundId": r.refund_no,
        "paymentId": v.trade_no,
        "refundAmount": _amount(r.price_amount, r.price_currency),
        "refundTime": common.as_beijing_iso(r.created_at),
    }
    if v.settle_currency != r.price_currency:
        f["grossSettlementAmount"] = _amount(r.settle_amount, v.settle_currency)
    return f


async def payment_status(p: Platform, v: PaymentView) -> tuple[str, Result]:
    """Antom's ``paymentStatus`` and payment result for a payment.

    A paid payment stays SUCCESS when refunds later close it (Antom reports refunds apart) and becomes
    CANCELLED when the merchant cancelled it; an unpaid one is CANCELLED if the merchant cancelled or
    closed it, else FAIL with the reason.
    """
    if v.status is Status.WAIT_BUYER_PAY:
        return "PROCESSING", antom_result(Code.WAIT_BUYER_CONFIRM)
    if v.paid_at is not None:
        if v.status is Status.TRADE_CLOSED and any(
            r.kind == "cancel" for r in await payments.refunds_of(p, v.id)
        ):
            return "CANCELLED", antom_result(Code.TRADE_HAS_CLOSE)
        return "SUCCESS", SUCCESS
    code = v.result_code or Code.TRADE_HAS_CLOSE
    if code is Code.TRADE_HAS_CLOSE:
        return "CANCELLED", antom_result(code)
    return "FAIL", antom_result(code)


# ---------------------------------------------------------------------------------------- methods


def _ids(b: Body) -> tuple[str | None, str | None]:
    request_id = b.text("paymentRequestId", pattern=_ID)
    payment_id = b.text("paymentId", pattern=_ID)
    if not request_id and not payment_id:
        raise _bad("give paymentRequestId or paymentId")
    # Antom: if both are given, paymentId wins.
    return (None if payment_id else request_id), payment_id


async def _pay(p: Platform, m: Merchant, b: Body) -> tuple[Result, dict[str, Any]]:
    if b.need("productCode", max_len=32) != "IN_STORE_PAYMENT":
        raise _bad("productCode must be IN_STORE_PAYMENT")
    request_id = b.need("paymentRequestId", pattern=_ID)
    amount = b.amount("paymentAmount")
    assert amount is not None
    method = b.obj("paymentMethod", required=True)
    assert method is not None
    if method.need("paymentMethodType", max_len=32) != "CONNECT_WALLET":
        raise _bad("paymentMethod.paymentMethodType must be CONNECT_WALLET")
    factor = b.obj("paymentFactor", required=True)
    assert factor is not None
    scenario = factor.need("inStorePaymentScenario", max_len=32)
    if scenario not in ("PaymentCode", "OrderCode"):
        raise _bad("paymentFactor.inStorePaymentScenario must be PaymentCode or OrderCode")
    # PaymentCode: the customer shows a code. OrderCode: the merchant shows a QR code (precreate).
    code = method.need("paymentMethodId", max_len=64) if scenario == "PaymentCode" else ""
    order = b.obj("order", required=True)
    assert order is not None
    subject = order.need("orderDescription", max_len=256)
    order.amount("orderAmount", required=False)
    store_id = terminal_id = None
    if (merchant := order.obj("merchant")) is not None and (store := merchant.obj("store")) is not None:
        store_id = store.text("referenceStoreId")
    if (env := order.obj("env")) is not None:
        terminal_id = env.text("storeTerminalId")
    settle = m.settlement_currency
    if (strategy := b.obj("settlementStrategy")) is not None:
        settle = strategy.text("settlementCurrency", max_len=3, pattern=re.compile(r"[A-Z]{3}")) or settle
    notify_url = _notify_url(p, b, "paymentNotifyUrl")
    if scenario == "OrderCode":
        return await _order_code(
            p,
            payments.PrecreateCommand(
                merchant=m,
                partner_trans_id=request_id,
                price_amount=amount[0],
                price_currency=amount[1],
                settle_currency=settle,
                subject=subject,
                dialect="antom",
                notify_url=notify_url,
                sign_type="RSA256",
                store_id=store_id,
                terminal_id=terminal_id,
            ),
        )
    outcome = await payments.pay(
        p,
        payments.PayCommand(
            merchant=m,
            partner_trans_id=request_id,
            code=code,
            price_amount=amount[0],
            price_currency=amount[1],
            settle_currency=settle,
            subject=subject,
            dialect="antom",
            notify_url=notify_url,
            sign_type="RSA256",
            store_id=store_id,
            terminal_id=terminal_id,
        ),
    )
    fields = payment_fields(outcome.payment)
    if outcome.code is None:
        return SUCCESS, fields
    return antom_result(outcome.code), fields


async def _order_code(p: Platform, cmd: payments.PrecreateCommand) -> tuple[Result, dict[str, Any]]:
    """Order-code payment: the QR the customer scans, in ``orderCodeForm`` (result U until paid)."""
    v = await payments.precreate(p, cmd)
    fields = payment_fields(v)
    status, result = await payment_status(p, v)
    if status == "PROCESSING":
        form: dict[str, Any] = {
            "codeDetails": [{"codeValue": payments.qr_url(p, v.trade_no), "displayType": "TEXT"}]
        }
        if v.expires_at is not None:
            form["expireTime"] = common.as_beijing_iso(v.expires_at)
        fields["orderCodeForm"] = form
    return result, fields


async def _inquiry(p: Platform, m: Merchant, b: Body) -> tuple[Result, dict[str, Any]]:
    request_id, payment_id = _ids(b)
    v = await payments.query(p, m, partner_trans_id=request_id, trade_no=payment_id)
    status, result = await payment_status(p, v)
    fields = payment_fields(v)
    fields.update(paymentStatus=status, paymentResultCode=result.code, paymentResultMessage=result.message)
    return SUCCESS, fields


async def _cancel(p: Platform, m: Merchant, b: Body) -> tuple[Result, dict[str, Any]]:
    request_id, payment_id = _ids(b)
    outcome = await payments.cancel(p, m, partner_trans_id=request_id, trade_no=payment_id, dialect="antom")
    v = outcome.payment
    if outcome.reserved:
        # Antom answers ORDER_NOT_EXIST for an id it never saw (reference §7, ams_zh-cn/paymentc). The
        # core cancel has still closed the id, so a pay that arrives late with it cannot charge.
        raise Failure(
            antom_result(Code.TRADE_NOT_EXIST),
            f"no payment has paymentRequestId {v.partner_trans_id!r}; a later pay with it will fail",
        )
    return SUCCESS, {
        "paymentRequestId": v.partner_trans_id,
        "paymentId": v.trade_no,
        "cancelTime": common.as_beijing_iso(v.closed_at or p.now()),
    }


async def _refund(p: Platform, m: Merchant, b: Body) -> tuple[Result, dict[str, Any]]:
    refund_id = b.need("refundRequestId", pattern=_ID)
    payment_id = b.text("paymentId", pattern=_ID)
    request_id = b.text("paymentRequestId", pattern=_ID)
    if not payment_id and not request_id:
        raise _bad("paymentId is missing")
    amount = b.amount("refundAmount")
    assert amount is not None
    reason = b.text("refundReason", max_len=256)
    r = await payments.refund(
        p,
        payments.RefundCommand(
            merchant=m,
            partner_refund_id=refund_id,
            amount=amount[0],
            currency=amount[1],
            dialect="antom",
            partner_trans_id=None if payment_id else request_id,
            trade_no=payment_id,
            reason=reason[:128] if reason else None,  # Tillpay keeps 128 characters of the reason
            notify_url=_notify_url(p, b, "refundNotifyUrl"),
            sign_type="RSA256",
        ),
    )
    return SUCCESS, refund_fields(r)


async def _inquiry_refund(p: Platform, m: Merchant, b: Body) -> tuple[Result, dict[str, Any]]:
    refund_request_id = b.text("refundRequestId", pattern=_ID)
    refund_id = b.text("refundId", pattern=_ID)
    try:
        if refund_id:
            r = await payments.refund_by_no(p, m, refund_id)
        elif refund_request_id:
            r = await payments.refund_query(p, m, refund_request_id)
        else:
            raise _bad("give refundRequestId or refundId")
    except TillpayError as e:
        if e.code is Code.TRADE_NOT_EXIST:
            raise Failure(REFUND_NOT_EXIST, e.detail) from None
        raise
    fields = refund_fields(r)
    fields["refundStatus"] = "SUCCESS"
    return SUCCESS, fields


Handler = Callable[[Platform, Merchant, Body], Awaitable[tuple[Result, dict[str, Any]]]]
HANDLERS: dict[str, Handler] = {
    "pay": _pay,
    "inquiryPayment": _inquiry,
    "cancel": _cancel,
    "refund": _refund,
    "inquiryRefund": _inquiry_refund,
}


# ------------------------------------------------------------------------------------------ entry


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: always status 200, JSON body, signature headers when the client is known."""

    body: bytes
    headers: dict[str, str]
    status: int = 200


async def _authenticate(p: Platform, path: str, headers: Mapping[str, str], text: str) -> Merchant:
    client_id = headers.get("client-id", "")
    if not client_id:
        raise _bad("the client-id header is missing")
    merchant = await p.merchant_by_credential("client_id", client_id)
    request_time = headers.get("request-time", "")
    if not request_time:
        raise _bad("the request-time header is missing")
    raw = headers.get("signature", "")
    if not raw:
        raise TillpayError(Code.ILLEGAL_SIGN, "the signature header is missing")
    algorithm, version, sig = signing.parse_header(raw)
    if algorithm.upper() != signing.ALGORITHM:
        raise TillpayError(Code.ILLEGAL_SIGN_TYPE, "algorithm must be RSA256")
    if not merchant.allows(signing.ALGORITHM):
        raise TillpayError(Code.ILLEGAL_SIGN_TYPE, "this client may not sign with RSA256")
    key = await merchants.public_key_version(p, merchant, version)
    if not signing.verify(signing.content("POST", path, client_id, request_time, text), sig, key):
        raise TillpayError(Code.ILLEGAL_SIGN, "the signature does not verify")
    _check_request_time(p, request_time)
    return merchant


def _check_request_time(p: Platform, text: str) -> None:
    """``request-time``: epoch milliseconds (Antom's pages) or ISO 8601 with an offset (the Python SDK),
    within the replay window (docs/security.md); PARAM_ILLEGAL otherwise."""
    sent = freshness.epoch_ms(text) or freshness.iso_with_offset(text)
    if sent is None:
        raise _bad("request-time must be epoch milliseconds or ISO 8601 with an offset")
    if not freshness.is_fresh(p, sent):
        raise _bad(f"request-time is more than {freshness.window_text(p)} away from the server's clock")


async def handle(p: Platform, op: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """Answer one Antom request; never raises."""
    merchant: Merchant | None = None
    fields: dict[str, Any] = {}
    try:
        try:
            if len(body) > MAX_BODY:
                raise _bad("the request body is too large")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("the body is not UTF-8") from None
            # The client is looked up first, so even a refused request is answered signed when possible.
            client_id = headers.get("client-id", "")
            if client_id:
                try:
                    merchant = await p.merchant_by_credential("client_id", client_id)
                except TillpayError:
                    merchant = None
            merchant = await _authenticate(p, path, headers, text)
            if path.startswith(SANDBOX_PREFIX) and not merchant.is_test:
                raise TillpayError(
                    Code.ILLEGAL_PARTNER,
                    "a live client id is not accepted on the sandbox path: call /ams/api/... "
                    "(test credentials: tillpay merchant test-credentials)",
                )
            handler = HANDLERS.get(op)
            if handler is None:
                raise TillpayError(Code.ILLEGAL_SERVICE, f"unknown API {path}")
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):  # too deep is malformed too
                raise _bad("the body is not JSON") from None
            if not isinstance(data, dict):
                raise _bad("the body must be a JSON object")
            result, fields = await handler(p, merchant, Body(data))
            message = result.message
        except TillpayError as e:
            raise Failure(antom_result(e.code), e.detail) from None
    except Failure as f:
        result, fields, message = f.result, f.fields, f.detail
        log.info("antom_error", code=result.code, detail=f.detail, path=path)
    except Exception:
        log.exception("antom_internal_error", path=path)
        result = antom_result(Code.SYSTEM_ERROR)
        message = result.message
    out = {"result": {**result.to_json(), "resultMessage": message}, **fields}
    body_text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    hdrs = {"content-type": "application/json; charset=UTF-8"}
    if merchant is not None and merchant.client_id:
        # The header is signed verbatim, so any form verifies; Antom's own is epoch milliseconds.
        now = common.as_epoch_ms(p.now())
        sig = signing.sign(
            signing.content("POST", path, merchant.client_id, now, body_text), merchant.gateway_private_key
        )
        hdrs.update({"client-id": merchant.client_id, "response-time": now, "signature": signing.header(sig)})
        hdrs.update(testmode.mode_headers(merchant))  # not signed: outside Antom's signed content
    return Answer(body_text.encode("utf-8"), hdrs)
