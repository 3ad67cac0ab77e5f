"""The one table from Tillpay's result codes to Antom's ``result`` (``resultCode`` / ``resultStatus``).

``resultStatus`` S is success, F a final failure, U unknown or in process (query or retry with the same
request id). Codes from reference §2.9 (Antom and Alipay+ pages); those marked *guessed* are not in it.
Change a guess here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from tillpay.domain.errors import Code


@dataclass(frozen=True, slots=True)
class Result:
    """Antom's ``result`` object."""

    code: str
    status: str  # S | F | U
    message: str

    def to_json(self) -> dict[str, str]:
        """The wire form."""
        return {"resultCode": self.code, "resultStatus": self.status, "resultMessage": self.message}


SUCCESS = Result("SUCCESS", "S", "Success")
#: inquiryRefund of a refund id the merchant never used (guessed code; the reference has no table).
REFUND_NOT_EXIST = Result("REFUND_NOT_EXIST", "F", "The refund doesn't exist.")


def _f(code: str, message: str) -> Result:
    return Result(code, "F", message)


#: Tillpay code → Antom result.
ANTOM_RESULTS: dict[Code, Result] = {
    Code.ILLEGAL_ARGUMENT: _f("PARAM_ILLEGAL", "Illegal parameters exist."),
    Code.ILLEGAL_CHARSET: _f("PARAM_ILLEGAL", "Illegal parameters exist."),
    Code.ILLEGAL_SERVICE: _f("PARAM_ILLEGAL", "Illegal parameters exist."),
    Code.ILLEGAL_SIGN: _f("INVALID_SIGNATURE", "The signature is invalid."),
    Code.ILLEGAL_SIGN_TYPE: _f("INVALID_SIGNATURE", "The signature is invalid."),
    Code.ILLEGAL_PARTNER: _f("INVALID_CLIENT", "The client is invalid."),
    Code.HAS_NO_PUBLICKEY: _f("KEY_NOT_FOUND", "The key is not found."),
    Code.SYSTEM_ERROR: Result(
        "UNKNOWN_EXCEPTION", "U", "An API calling is failed, which is caused by unknown reasons."
    ),
    Code.WAIT_BUYER_CONFIRM: Result("PAYMENT_IN_PROCESS", "U", "The payment is being processed."),
    Code.TRADE_NOT_EXIST: _f("ORDER_NOT_EXIST", "The order doesn't exist."),
    Code.REPEAT_REQ_INCONSISTENT: _f("REPEAT_REQ_INCONSISTENT", "Repeated requests are inconsistent."),
    Code.AMOUNT_OUT_OF_RANGE: _f("PAYMENT_AMOUNT_EXCEED_LIMIT", "The payment amount exceeds the limit."),
    Code.CURRENCY_NOT_SUPPORT: _f("CURRENCY_NOT_SUPPORT", "The currency is not supported."),
    Code.NO_EXCHANGE_RATE: _f("CURRENCY_NOT_SUPPORT", "The currency is not supported."),  # guessed
    Code.INVALID_CODE: _f("INVALID_CODE", "The code is invalid."),
    Code.EXPIRED_CODE: _f("EXPIRED_CODE", "The code is expired."),
    Code.CODE_USED: _f("INVALID_CODE", "The code is invalid."),  # guessed
    Code.CODE_ATTEMPTS_EXCEEDED: _f(
        "RISK_REJECT", "The request is rejected because of the risk control."
    ),  # guessed
    Code.BUYER_NOT_EXIST: _f("USER_NOT_EXIST", "The user does not exist."),
    Code.BUYER_FROZEN: _f("USER_STATUS_ABNORMAL", "The user status is abnormal."),
    Code.MERCHANT_FROZEN: _f("INVALID_MERCHANT_STATUS", "The merchant status is invalid."),
    Code.BUYER_BALANCE_NOT_ENOUGH: _f(
        "USER_BALANCE_NOT_ENOUGH", "The user balance is not enough for the payment."
    ),
    Code.RISK_REJECT: _f("RISK_REJECT", "The request is rejected because of the risk control."),
    Code.PAYMENT_AMOUNT_EXCEED_LIMIT: _f(
        "USER_AMOUNT_EXCEED_LIMIT", "The payment amount exceeds the user payment limit."
    ),
    Code.DAY_LIMIT_EXCEEDED: _f(
        "USER_AMOUNT_EXCEED_LIMIT", "The payment amount exceeds the user payment limit."
    ),
    Code.MONTH_LIMIT_EXCEEDED: _f(
        "USER_AMOUNT_EXCEED_LIMIT", "The payment amount exceeds the user payment limit."
    ),
    Code.USER_PAYMENT_VERIFICATION_FAILED: _f(
        "USER_PAYMENT_VERIFICATION_FAILED", "User fails to pass the payment verification."
    ),
    Code.USER_REJECTED: _f(
        "USER_PAYMENT_VERIFICATION_FAILED", "User fails to pass the payment verification."
    ),  # guessed
    Code.PAYMENT_TIMEOUT: _f("ORDER_IS_CLOSED", "The order is closed."),
    Code.TRADE_HAS_CLOSE: _f("ORDER_IS_CLOSED", "The order is closed."),
    Code.TRADE_STATUS_ERROR: _f("ORDER_STATUS_INVALID", "The order status is invalid."),  # guessed
    Code.REFUND_AMOUNT_EXCEED: _f(
        "REFUND_AMOUNT_EXCEED", "The total refund amount exceeds the payment amount."
    ),
    Code.REFUND_WINDOW_EXCEED: _f("REFUND_WINDOW_EXCEED", "The refund request is outside the refund window."),
    Code.REFUND_CURRENCY_MISMATCH: _f(
        "CURRENCY_NOT_SUPPORT", "The refund currency is not the order's."
    ),  # guessed
}


def antom_result(code: Code) -> Result:
    """Antom's result for a Tillpay code (unlisted codes are the general business failure)."""
    return ANTOM_RESULTS.get(code, _f("PROCESS_FAIL", "A general business failure occurred."))
