"""The one table from Tillpay's result codes to MAPI's ``error`` values.

MAPI has two levels of failure. A request the gateway rejects outright answers ``is_success=F`` with a
top-level ``<error>`` (bad signature, unknown partner, malformed parameters). A request it accepted
answers ``is_success=T`` and carries ``result_code`` (SUCCESS, or the service's spelling of a failure
or an unknown outcome) with ``error`` inside ``response/alipay``.

Values marked *guessed* are not in the public reference (see ``docs/mapi.md``); everything else is
confirmed in Alipay's documentation or captured responses. Change a guess here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

from tillpay.domain.errors import Code


class Level(StrEnum):
    """Whether the gateway rejected the request or the business operation failed."""

    GATEWAY = "gateway"  # is_success=F
    BUSINESS = "business"  # is_success=T, result_code FAIL or UNKNOW


#: Tillpay code → (MAPI error value, level).
MAPI_ERRORS: dict[Code, tuple[str, Level]] = {
    Code.ILLEGAL_ARGUMENT: ("ILLEGAL_ARGUMENT", Level.GATEWAY),
    Code.ILLEGAL_SIGN: ("ILLEGAL_SIGN", Level.GATEWAY),
    Code.ILLEGAL_SIGN_TYPE: ("ILLEGAL_SIGN_TYPE", Level.GATEWAY),
    Code.ILLEGAL_SERVICE: ("ILLEGAL_SERVICE", Level.GATEWAY),
    Code.ILLEGAL_PARTNER: ("ILLEGAL_PARTNER", Level.GATEWAY),
    Code.ILLEGAL_CHARSET: ("ILLEGAL_CHARSET", Level.GATEWAY),
    Code.HAS_NO_PUBLICKEY: ("HAS_NO_PUBLICKEY", Level.GATEWAY),
    Code.AMOUNT_OUT_OF_RANGE: ("TOTAL_FEE_OUT_OF_RANGE", Level.GATEWAY),
    Code.SYSTEM_ERROR: ("SYSTEM_ERROR", Level.BUSINESS),
    Code.TRADE_NOT_EXIST: ("TRADE_NOT_EXIST", Level.BUSINESS),
    Code.REPEAT_REQ_INCONSISTENT: ("REPEAT_REQ_INCONSISTENT", Level.BUSINESS),  # guessed
    Code.CURRENCY_NOT_SUPPORT: ("CURRENCY_NOT_SUPPORT", Level.BUSINESS),  # guessed
    Code.NO_EXCHANGE_RATE: ("EXCHANGE_RATE_NOT_AVAILABLE", Level.BUSINESS),  # guessed
    Code.INVALID_CODE: ("INVALID_BUYER_IDENTITY_CODE", Level.BUSINESS),  # guessed
    Code.EXPIRED_CODE: ("BUYER_IDENTITY_CODE_EXPIRED", Level.BUSINESS),  # guessed
    Code.CODE_USED: ("BUYER_IDENTITY_CODE_USED", Level.BUSINESS),  # guessed
    Code.CODE_ATTEMPTS_EXCEEDED: ("INVALID_CODE_LIMIT_EXCEEDED", Level.BUSINESS),  # guessed
    Code.BUYER_NOT_EXIST: ("BUYER_NOT_EXIST", Level.BUSINESS),
    Code.BUYER_FROZEN: ("BUYER_ENABLE_STATUS_FORBID", Level.BUSINESS),
    Code.MERCHANT_FROZEN: ("ACCESS_FORBIDDEN", Level.BUSINESS),
    Code.BUYER_BALANCE_NOT_ENOUGH: ("BUYER_BALANCE_NOT_ENOUGH", Level.BUSINESS),
    Code.RISK_REJECT: ("PAYMENT_REQUEST_HAS_RISK", Level.BUSINESS),  # guessed (Open Platform sub-code name)
    Code.PAYMENT_AMOUNT_EXCEED_LIMIT: ("BEYOND_PER_RECEIPT_RESTRICTION", Level.BUSINESS),
    Code.DAY_LIMIT_EXCEEDED: ("BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR", Level.BUSINESS),
    Code.MONTH_LIMIT_EXCEEDED: ("BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR", Level.BUSINESS),
    Code.USER_PAYMENT_VERIFICATION_FAILED: ("USER_PAYMENT_VERIFICATION_FAILED", Level.BUSINESS),  # guessed
    Code.USER_REJECTED: ("BUYER_REJECTED_PAYMENT", Level.BUSINESS),  # guessed
    Code.PAYMENT_TIMEOUT: ("SESSION_TIMEOUT", Level.BUSINESS),
    Code.WAIT_BUYER_CONFIRM: ("WAIT_BUYER_PAY", Level.BUSINESS),  # guessed (result_code UNKNOW)
    Code.TRADE_HAS_CLOSE: ("TRADE_HAS_CLOSE", Level.BUSINESS),
    Code.TRADE_STATUS_ERROR: ("TRADE_STATUS_ERROR", Level.BUSINESS),  # guessed
    Code.REFUND_AMOUNT_EXCEED: ("REFUND_AMT_RESTRICTION", Level.BUSINESS),  # guessed
    Code.REFUND_WINDOW_EXCEED: ("REFUND_TIME_EXPIRED", Level.BUSINESS),  # guessed
    Code.REFUND_CURRENCY_MISMATCH: ("CURRENCY_NOT_MATCH", Level.BUSINESS),  # guessed
}

#: Codes whose outcome is not final: MAPI says UNKNOW and the merchant must query.
UNKNOWN = frozenset({Code.SYSTEM_ERROR, Code.WAIT_BUYER_CONFIRM})


def mapi_error(code: Code) -> tuple[str, Level]:
    """The MAPI error value and level for a Tillpay code (unlisted codes are business failures)."""
    return MAPI_ERRORS.get(code, (code.value, Level.BUSINESS))


#: How each service's response model spells a failure and an unknown outcome in ``result_code``. The
#: sources disagree, so each service follows its own model: spot.pay and spot.refund say ``FAILED`` and
#: ``UNKNOW`` (Alipay's AOP models ``AlipayAcquireOverseasSpotPayResponse``/``...SpotRefundResponse``),
#: cancel and precreate ``FAIL`` and ``UNKNOWN`` (alipay-sdk-java-all ``AlipayAcquireCancelResponse``,
#: ``AlipayAcquirePrecreateResponse``), the query page ``FAIL`` (``global/overseas_query_cn``; its
#: ``UNKNOW`` is guessed). Services not listed use the query's spelling.
_SPELLING: dict[str, tuple[str, str]] = {
    "alipay.acquire.overseas.spot.pay": ("FAILED", "UNKNOW"),
    "alipay.acquire.overseas.spot.refund": ("FAILED", "UNKNOW"),
    "alipay.acquire.cancel": ("FAIL", "UNKNOWN"),
    "alipay.acquire.precreate": ("FAIL", "UNKNOWN"),
}
_DEFAULT_SPELLING = ("FAIL", "UNKNOW")

#: Every spelling a client may meet, by meaning.
FAILED = frozenset({"FAIL", "FAILED"})
UNKNOWN_RESULT = frozenset({"UNKNOW", "UNKNOWN"})


def result_code(code: Code | None, service: str = "") -> str:
    """MAPI ``result_code`` for an outcome: SUCCESS, or the service's spelling of failed or unknown."""
    if code is None:
        return "SUCCESS"
    failed, unknown = _SPELLING.get(service, _DEFAULT_SPELLING)
    return unknown if code in UNKNOWN else failed
