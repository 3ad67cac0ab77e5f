"""The one table from Tillpay's result codes to the Open Platform's ``code`` / ``sub_code``.

Every Open Platform answer carries a public ``code``: ``10000`` success, ``10003`` waiting for the
customer, ``20000`` unknown (query to learn the outcome), ``40001`` a required common parameter is
missing, ``40002`` a common parameter is invalid (``isv.*`` sub-codes: app id, signature, method,
charset), ``40004`` business failure (``ACQ.*`` sub-codes). The ``ACQ.*`` names marked *guessed* are not
in the public reference (``../shared/reference/alipay-protocols.md`` §3.3/§3.4); the rest are seen in
Alipay's documentation or SDK fixtures. Change a guess here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from tillpay.domain.errors import Code

SUCCESS = ("10000", "Success")
#: The msg as captured from production ``alipay_trade_pay_response`` bodies: leading space, lower case
#: (reference §7).
WAITING = ("10003", " order success pay inprocess")
UNKNOWN = ("20000", "Service Currently Unavailable")
MISSING = ("40001", "Missing Required Arguments")
INVALID = ("40002", "Invalid Arguments")
BUSINESS = ("40004", "Business Failed")


@dataclass(frozen=True, slots=True)
class OpenCode:
    """One Open Platform outcome: public code and message, and the sub-code."""

    code: str
    msg: str
    sub_code: str


def _business(sub_code: str) -> OpenCode:
    return OpenCode(BUSINESS[0], BUSINESS[1], sub_code)


def _invalid(sub_code: str) -> OpenCode:
    return OpenCode(INVALID[0], INVALID[1], sub_code)


#: Tillpay code → Open Platform outcome.
OPEN_CODES: dict[Code, OpenCode] = {
    # Gateway level (40002 isv.*): the request is not authentic or not addressed to a known app.
    Code.ILLEGAL_SIGN: _invalid("isv.invalid-signature"),
    Code.ILLEGAL_SIGN_TYPE: _invalid("isv.invalid-signature-type"),
    Code.ILLEGAL_PARTNER: _invalid("isv.invalid-app-id"),
    Code.ILLEGAL_SERVICE: _invalid("isv.invalid-method"),
    Code.ILLEGAL_CHARSET: _invalid("isv.invalid-charset"),
    Code.HAS_NO_PUBLICKEY: _invalid("isv.missing-signature-config"),  # guessed
    # Unknown outcome: the merchant queries.
    Code.SYSTEM_ERROR: OpenCode(UNKNOWN[0], UNKNOWN[1], "ACQ.SYSTEM_ERROR"),
    # Business failures (40004 ACQ.*).
    Code.ILLEGAL_ARGUMENT: _business("ACQ.INVALID_PARAMETER"),
    Code.TRADE_NOT_EXIST: _business("ACQ.TRADE_NOT_EXIST"),
    Code.REPEAT_REQ_INCONSISTENT: _business("ACQ.CONTEXT_INCONSISTENT"),
    Code.AMOUNT_OUT_OF_RANGE: _business("ACQ.TOTAL_FEE_EXCEED"),
    Code.CURRENCY_NOT_SUPPORT: _business("ACQ.CURRENCY_NOT_SUPPORT"),  # guessed
    Code.NO_EXCHANGE_RATE: _business("ACQ.EXCHANGE_RATE_NOT_AVAILABLE"),  # guessed
    Code.INVALID_CODE: _business("ACQ.PAYMENT_AUTH_CODE_INVALID"),
    Code.EXPIRED_CODE: _business("ACQ.PAYMENT_AUTH_CODE_INVALID"),
    Code.CODE_USED: _business("ACQ.PAYMENT_AUTH_CODE_INVALID"),
    Code.CODE_ATTEMPTS_EXCEEDED: _business("ACQ.PAYMENT_REQUEST_HAS_RISK"),  # guessed
    Code.BUYER_NOT_EXIST: _business("ACQ.BUYER_NOT_EXIST"),  # guessed
    Code.BUYER_FROZEN: _business("ACQ.BUYER_ENABLE_STATUS_FORBID"),
    Code.MERCHANT_FROZEN: _business("ACQ.SELLER_BEEN_BLOCKED"),
    Code.BUYER_BALANCE_NOT_ENOUGH: _business("ACQ.BUYER_BALANCE_NOT_ENOUGH"),
    Code.RISK_REJECT: _business("ACQ.PAYMENT_REQUEST_HAS_RISK"),
    Code.PAYMENT_AMOUNT_EXCEED_LIMIT: _business("ACQ.BEYOND_PER_RECEIPT_RESTRICTION"),
    Code.DAY_LIMIT_EXCEEDED: _business("ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR"),
    Code.MONTH_LIMIT_EXCEEDED: _business("ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR"),
    Code.USER_PAYMENT_VERIFICATION_FAILED: _business("ACQ.PAYMENT_FAIL"),
    Code.USER_REJECTED: _business("ACQ.PAYMENT_FAIL"),
    Code.PAYMENT_TIMEOUT: _business("ACQ.TRADE_HAS_CLOSE"),
    Code.TRADE_HAS_CLOSE: _business("ACQ.TRADE_HAS_CLOSE"),
    Code.TRADE_STATUS_ERROR: _business("ACQ.TRADE_STATUS_ERROR"),
    Code.REFUND_AMOUNT_EXCEED: _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"),
    Code.REFUND_WINDOW_EXCEED: _business("ACQ.TRADE_HAS_FINISHED"),  # guessed
    Code.REFUND_CURRENCY_MISMATCH: _business("ACQ.INVALID_PARAMETER"),
}


def open_code(code: Code) -> OpenCode:
    """The Open Platform outcome of a Tillpay code (unlisted codes are business failures)."""
    return OPEN_CODES.get(code, _business(f"ACQ.{code.value}"))


def missing(name: str) -> OpenCode:
    """40001 for a missing common parameter, e.g. ``isv.missing-app-id``."""
    return OpenCode(MISSING[0], MISSING[1], f"isv.missing-{name.replace('_', '-')}")


def invalid(name: str) -> OpenCode:
    """40002 for a malformed common parameter, e.g. ``isv.invalid-timestamp``."""
    return OpenCode(INVALID[0], INVALID[1], f"isv.invalid-{name.replace('_', '-')}")
