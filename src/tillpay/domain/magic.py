"""Magic payment codes: 18-digit codes that make a chosen outcome happen on a sandbox (docs/sandbox.md).

A magic code has the shape of a payment code (``paycode``: ``"28"`` + 8-digit device number + slot + 7-digit
OTP), with a device number below 10,000,000 that no real device has (``Ids.device_no`` draws them from
10,000,000 up). Its device number picks the outcome; the last two digits of the OTP carry ``N`` where an
outcome takes one (seconds, or a count). The slot and the first five OTP digits are free, so a till can
vary them::

    28 000000OO S XXXXX NN      OO: outcome (table below), S and XXXXX: anything, NN: N (00-99)

Magic codes are honoured only for a test merchant or on a sandbox server; anywhere else they are codes no
device has and are refused as such (``INVALID_CODE``). This table is the one source for the code, the
documentation (``docs/sandbox.md`` is checked against it by a test) and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tillpay.domain import paycode

__all__ = [
    "DEFAULT_ANSWER_DELAY",
    "MAX_DELAY_SECONDS",
    "MIN_REAL_DEVICE_NO",
    "QR_AMOUNTS",
    "QR_ANSWER_SECONDS",
    "TABLE",
    "Looked",
    "Magic",
    "MagicAmount",
    "MagicCode",
    "Wallet",
    "code_for",
    "delay_seconds",
    "lookup",
    "lookup_amount",
    "markdown_amounts",
    "markdown_table",
]

#: Real device numbers are never below this (``Ids.device_no``): below it a code can only be magic.
MIN_REAL_DEVICE_NO: Final = 10_000_000
#: The longest a magic code makes a till wait for its answer (``N`` above it is cut to it).
MAX_DELAY_SECONDS: Final = 60


class Wallet(StrEnum):
    """Which of the merchant's sandbox wallets pays a magic code (each made on first use)."""

    #: Funded, with rules that never ask for confirmation nor decline.
    FUNDED = "funded"
    #: Funded, with a rule that asks for confirmation on every payment (``amount_over_confirm_limit``).
    CONFIRMS = "confirms"
    #: Never topped up: balance 0.
    EMPTY = "empty"
    #: Funded, with a rule that declines every payment (``velocity``, action DECLINE: RISK_REJECT).
    RISKY = "risky"
    #: Funded, frozen by the operator.
    FROZEN = "frozen"


class Magic(StrEnum):
    """The outcomes a magic code produces."""

    SUCCESS = "success"
    CONFIRM_THEN_CONFIRMED = "confirm-then-confirmed"
    CONFIRM_THEN_REJECTED = "confirm-then-rejected"
    CONFIRM_NEVER_ANSWERED = "confirm-never-answered"
    BALANCE_NOT_ENOUGH = "balance-not-enough"
    CODE_EXPIRED = "code-expired"
    CODE_USED = "code-used"
    RISK_DECLINE = "risk-decline"
    BUYER_FROZEN = "buyer-frozen"
    SLOW_ANSWER = "slow-answer"
    UNKNOWN_THEN_SUCCESS = "unknown-then-success"
    SUCCESS_AFTER_CANCEL = "success-after-cancel"
    NOTIFY_FAILS = "notify-fails"


@dataclass(frozen=True, slots=True)
class MagicCode:
    """One row of the table: the outcome, its number, what it does, and what ``N`` means (None: unused)."""

    number: int
    outcome: Magic
    #: The wallet that pays it (unknown-then-success with N above 0: ``CONFIRMS``, whose confirmation the
    #: sandbox answers after N seconds, so the payment is processing until then).
    wallet: Wallet
    #: What the till sees, in a sentence (docs/sandbox.md shows it).
    does: str
    #: What ``N`` is for this outcome (None: the last two digits are free too).
    n_means: str | None = None

    @property
    def example(self) -> str:
        """The code with every free digit 0 and N = 00."""
        return code_for(self.outcome)


TABLE: Final[tuple[MagicCode, ...]] = (
    MagicCode(1, Magic.SUCCESS, Wallet.FUNDED, "paid at once"),
    MagicCode(
        2,
        Magic.CONFIRM_THEN_CONFIRMED,
        Wallet.CONFIRMS,
        "waits for the customer's confirmation (WAIT_BUYER_CONFIRM), then the customer confirms: paid",
        "seconds until the customer confirms (merchant's clock)",
    ),
    MagicCode(
        3,
        Magic.CONFIRM_THEN_REJECTED,
        Wallet.CONFIRMS,
        "waits for the customer's confirmation, then the customer rejects: closed with USER_REJECTED",
        "seconds until the customer rejects (merchant's clock)",
    ),
    MagicCode(
        4,
        Magic.CONFIRM_NEVER_ANSWERED,
        Wallet.CONFIRMS,
        "waits for the customer's confirmation, which never comes: closed with PAYMENT_TIMEOUT "
        "when the payment timeout passes",
    ),
    MagicCode(
        5,
        Magic.BALANCE_NOT_ENOUGH,
        Wallet.EMPTY,
        "declined: BUYER_BALANCE_NOT_ENOUGH (the wallet is empty)",
    ),
    MagicCode(6, Magic.CODE_EXPIRED, Wallet.FUNDED, "refused: EXPIRED_CODE (a code 10 minutes old)"),
    MagicCode(7, Magic.CODE_USED, Wallet.FUNDED, "refused: CODE_USED (a code a payment used before)"),
    MagicCode(8, Magic.RISK_DECLINE, Wallet.RISKY, "declined by risk control: RISK_REJECT"),
    MagicCode(9, Magic.BUYER_FROZEN, Wallet.FROZEN, "declined: BUYER_FROZEN (the wallet is frozen)"),
    MagicCode(
        10,
        Magic.SLOW_ANSWER,
        Wallet.FUNDED,
        "the gateway waits N seconds before it pays and answers: a till whose timeout is shorter "
        "gives up first (a cancel sent meanwhile closes the order before it is paid)",
        f"seconds before the pay starts (at most {MAX_DELAY_SECONDS})",
    ),
    MagicCode(
        11,
        Magic.UNKNOWN_THEN_SUCCESS,
        Wallet.FUNDED,
        "answered UNKNOW (a system error: query the order); the query finds it paid (N = 0) or "
        "processing, then paid after N seconds",
        "seconds the payment stays processing before it is paid (merchant's clock; 0: paid at once)",
    ),
    MagicCode(
        12,
        Magic.SUCCESS_AFTER_CANCEL,
        Wallet.FUNDED,
        "paid at once, but the success is answered only after N seconds (default 10): a till "
        "that times out and cancels meanwhile gets the payment refunded (MAPI cancel action=refund)",
        f"seconds before the success is answered (00: 10; at most {MAX_DELAY_SECONDS})",
    ),
    MagicCode(
        13,
        Magic.NOTIFY_FAILS,
        Wallet.FUNDED,
        "paid at once; the first N deliveries of its notification reach the notify URL but are "
        "recorded as failed, so the merchant's handler sees repeats",
        "failed deliveries before the one that counts",
    ),
)

_BY_NUMBER: Final = {row.number: row for row in TABLE}
_BY_OUTCOME: Final = {row.outcome: row for row in TABLE}
#: Where a delay outcome's N is 00.
DEFAULT_ANSWER_DELAY: Final = 10


def code_for(outcome: Magic, n: int = 0) -> str:
    """The magic code of ``outcome`` with ``N`` = ``n`` (every free digit 0)."""
    if not 0 <= n <= 99:
        raise ValueError(f"N is 0..99: {n}")
    row = _BY_OUTCOME[outcome]
    return f"{paycode.PREFIX}{row.number:0{paycode.DEVICE_DIGITS}d}000000{n:02d}"


@dataclass(frozen=True, slots=True)
class Looked:
    """A magic code read: its row and its ``N``."""

    row: MagicCode
    n: int


def lookup(code: str) -> Looked | None:
    """The table's row for ``code`` and its N; None for anything that is not a magic code (cheap: a pay
    calls it for every code)."""
    # A real code's device number is 10,000,000 or more: its first digit is never 0.
    if len(code) != paycode.LENGTH or not code.startswith(paycode.PREFIX + "0"):
        return None
    try:
        parsed = paycode.parse(code)
    except paycode.MalformedCode:
        return None
    if parsed.device_no >= MIN_REAL_DEVICE_NO:
        return None
    row = _BY_NUMBER.get(parsed.device_no)
    if row is None:
        return None
    return Looked(row, int(parsed.otp[-2:]))


def delay_seconds(looked: Looked) -> int:
    """How long the gateway holds a pay (SLOW_ANSWER: before it, SUCCESS_AFTER_CANCEL: after it)."""
    if looked.row.outcome is Magic.SLOW_ANSWER:
        return min(looked.n, MAX_DELAY_SECONDS)
    if looked.row.outcome is Magic.SUCCESS_AFTER_CANCEL:
        return min(looked.n or DEFAULT_ANSWER_DELAY, MAX_DELAY_SECONDS)
    return 0


@dataclass(frozen=True, slots=True)
class MagicAmount:
    """A magic amount of a merchant-presented QR order (no code to choose with): who pays it, and how."""

    #: The order's amount in minor units of its currency (1: USD 0.01, JPY 1).
    minor: int
    outcome: Magic
    wallet: Wallet
    does: str


#: QR orders (MAPI precreate, Open Platform ``alipay.trade.precreate``, Antom ``OrderCode``) of these
#: amounts are paid, or tried, by a sandbox customer ``QR_ANSWER_SECONDS`` after they are made (on the
#: merchant's clock); any other amount waits for a real customer, or expires. Amounts this small are
#: rarely a real price, so a sandbox demo's own QR orders are left alone.
QR_AMOUNTS: Final[tuple[MagicAmount, ...]] = (
    MagicAmount(1, Magic.SUCCESS, Wallet.FUNDED, "a sandbox customer pays it"),
    MagicAmount(
        5,
        Magic.BALANCE_NOT_ENOUGH,
        Wallet.EMPTY,
        "a sandbox customer with an empty wallet tries: closed with BUYER_BALANCE_NOT_ENOUGH",
    ),
    MagicAmount(8, Magic.RISK_DECLINE, Wallet.RISKY, "declined by risk control: closed with RISK_REJECT"),
    MagicAmount(9, Magic.BUYER_FROZEN, Wallet.FROZEN, "a frozen customer tries: closed with BUYER_FROZEN"),
)
#: How long after it is made a magic QR order is answered, on the merchant's clock.
QR_ANSWER_SECONDS: Final = 2
_QR_BY_MINOR: Final = {row.minor: row for row in QR_AMOUNTS}


def lookup_amount(minor: int) -> MagicAmount | None:
    """The magic amount row of a QR order's amount (minor units); None for any other amount."""
    return _QR_BY_MINOR.get(minor)


def markdown_table() -> str:
    """The table as docs/sandbox.md shows it (a test keeps the two the same)."""
    lines = ["| code (N = 00) | outcome | what the till sees | N |", "|---|---|---|---|"]
    for row in TABLE:
        lines.append(f"| `{row.example}` | {row.outcome.value} | {row.does} | {row.n_means or '—'} |")
    return "\n".join(lines)


def markdown_amounts() -> str:
    """The QR amount table as docs/sandbox.md shows it."""
    lines = ["| amount (minor units) | e.g. | outcome | what happens |", "|---|---|---|---|"]
    for row in QR_AMOUNTS:
        lines.append(
            f"| {row.minor} | USD {row.minor // 100}.{row.minor % 100:02d}, JPY {row.minor} "
            f"| {row.outcome.value} | {row.does} |"
        )
    return "\n".join(lines)
