"""The one registry of result codes a client can see.

Every failure inside Tillpay carries a :class:`Code`. Each wire dialect maps these codes to its own
vocabulary in exactly one table (``protocols/<dialect>/codes.py``), so a client can switch on a stable
code and never on message text.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Stable machine codes for every outcome other than plain success."""

    # Request-level problems: the request was not understood or not authentic.
    ILLEGAL_ARGUMENT = "ILLEGAL_ARGUMENT"
    ILLEGAL_SIGN = "ILLEGAL_SIGN"
    ILLEGAL_SIGN_TYPE = "ILLEGAL_SIGN_TYPE"
    ILLEGAL_SERVICE = "ILLEGAL_SERVICE"
    ILLEGAL_PARTNER = "ILLEGAL_PARTNER"
    ILLEGAL_CHARSET = "ILLEGAL_CHARSET"
    HAS_NO_PUBLICKEY = "HAS_NO_PUBLICKEY"
    SYSTEM_ERROR = "SYSTEM_ERROR"

    # Business outcomes.
    TRADE_NOT_EXIST = "TRADE_NOT_EXIST"
    REPEAT_REQ_INCONSISTENT = "REPEAT_REQ_INCONSISTENT"
    AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
    CURRENCY_NOT_SUPPORT = "CURRENCY_NOT_SUPPORT"
    NO_EXCHANGE_RATE = "NO_EXCHANGE_RATE"
    INVALID_CODE = "INVALID_CODE"
    EXPIRED_CODE = "EXPIRED_CODE"
    CODE_USED = "CODE_USED"
    CODE_ATTEMPTS_EXCEEDED = "CODE_ATTEMPTS_EXCEEDED"
    BUYER_NOT_EXIST = "BUYER_NOT_EXIST"
    BUYER_FROZEN = "BUYER_FROZEN"
    MERCHANT_FROZEN = "MERCHANT_FROZEN"
    BUYER_BALANCE_NOT_ENOUGH = "BUYER_BALANCE_NOT_ENOUGH"
    RISK_REJECT = "RISK_REJECT"
    PAYMENT_AMOUNT_EXCEED_LIMIT = "PAYMENT_AMOUNT_EXCEED_LIMIT"
    DAY_LIMIT_EXCEEDED = "DAY_LIMIT_EXCEEDED"
    MONTH_LIMIT_EXCEEDED = "MONTH_LIMIT_EXCEEDED"
    USER_PAYMENT_VERIFICATION_FAILED = "USER_PAYMENT_VERIFICATION_FAILED"
    USER_REJECTED = "USER_REJECTED"
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"
    WAIT_BUYER_CONFIRM = "WAIT_BUYER_CONFIRM"
    TRADE_HAS_CLOSE = "TRADE_HAS_CLOSE"
    TRADE_STATUS_ERROR = "TRADE_STATUS_ERROR"
    REFUND_AMOUNT_EXCEED = "REFUND_AMOUNT_EXCEED"
    REFUND_WINDOW_EXCEED = "REFUND_WINDOW_EXCEED"
    REFUND_CURRENCY_MISMATCH = "REFUND_CURRENCY_MISMATCH"
    CONFIRMATION_NOT_FOUND = "CONFIRMATION_NOT_FOUND"
    WRONG_PIN = "WRONG_PIN"
    PIN_LOCKED = "PIN_LOCKED"
    TRY_AGAIN = "TRY_AGAIN"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"


#: A short English description per code, for logs, CLI output and ``detail_error_des``.
DESCRIPTIONS: dict[Code, str] = {
    Code.ILLEGAL_ARGUMENT: "A parameter is missing, empty, unknown or malformed.",
    Code.ILLEGAL_SIGN: "The signature is missing or does not verify.",
    Code.ILLEGAL_SIGN_TYPE: "The sign_type is not one of MD5, RSA, RSA2, or the key for it is missing.",
    Code.ILLEGAL_SERVICE: "The service or method is not supported.",
    Code.ILLEGAL_PARTNER: "The partner is unknown.",
    Code.ILLEGAL_CHARSET: "The charset is unsupported or the request cannot be decoded with it.",
    Code.HAS_NO_PUBLICKEY: "The merchant has no RSA public key registered.",
    Code.SYSTEM_ERROR: "Internal error; query the order to learn its state.",
    Code.TRADE_NOT_EXIST: "No such order for this merchant.",
    Code.REPEAT_REQ_INCONSISTENT: "The same request id was used before with different parameters.",
    Code.AMOUNT_OUT_OF_RANGE: "The amount is outside the allowed range.",
    Code.CURRENCY_NOT_SUPPORT: "The currency is unknown or not accepted here.",
    Code.NO_EXCHANGE_RATE: "No exchange rate is loaded for this currency pair.",
    Code.INVALID_CODE: "The payment code is not valid.",
    Code.EXPIRED_CODE: "The payment code has expired; ask the customer to refresh it.",
    Code.CODE_USED: "The payment code was already used; ask the customer to refresh it.",
    Code.CODE_ATTEMPTS_EXCEEDED: "Too many invalid payment codes; try again later.",
    Code.BUYER_NOT_EXIST: "The customer does not exist.",
    Code.BUYER_FROZEN: "The customer's account is frozen.",
    Code.MERCHANT_FROZEN: "The merchant's account is frozen.",
    Code.BUYER_BALANCE_NOT_ENOUGH: "The customer's balance is not enough.",
    Code.RISK_REJECT: "The payment was declined by risk control.",
    Code.PAYMENT_AMOUNT_EXCEED_LIMIT: "The amount is above the customer's single-payment limit.",
    Code.DAY_LIMIT_EXCEEDED: "The customer's daily payment limit would be exceeded.",
    Code.MONTH_LIMIT_EXCEEDED: "The customer's monthly payment limit would be exceeded.",
    Code.USER_PAYMENT_VERIFICATION_FAILED: "The customer failed to confirm the payment (wrong PIN).",
    Code.USER_REJECTED: "The customer rejected the payment.",
    Code.PAYMENT_TIMEOUT: "The customer did not confirm in time; the order is closed.",
    Code.WAIT_BUYER_CONFIRM: "Waiting for the customer to confirm; query until it ends.",
    Code.TRADE_HAS_CLOSE: "The order is closed.",
    Code.TRADE_STATUS_ERROR: "The order is not in a state that allows this.",
    Code.REFUND_AMOUNT_EXCEED: "The refund exceeds the amount left to refund.",
    Code.REFUND_WINDOW_EXCEED: "The refund window has passed.",
    Code.REFUND_CURRENCY_MISMATCH: "The refund currency is not the order's currency.",
    Code.CONFIRMATION_NOT_FOUND: "No payment is waiting for this customer's confirmation.",
    Code.WRONG_PIN: "The PIN is wrong.",
    Code.PIN_LOCKED: "Too many wrong PINs: sign in again with the password to unlock the PIN.",
    Code.TRY_AGAIN: "The server is busy; try again in a moment.",
    Code.NOT_FOUND: "Not found.",
    Code.ALREADY_EXISTS: "Already exists.",
}


class TillpayError(Exception):
    """A failure with a stable :class:`Code`, safe to show to the client."""

    def __init__(self, code: Code, detail: str | None = None) -> None:
        self.code = code
        self.detail = detail or DESCRIPTIONS[code]
        super().__init__(f"{code.value}: {self.detail}")
