"""Money as integer minor units: strict parsing, canonical wire text, conversion and allocation.

Amounts are always ``int`` minor units (cents, fen, yen). ``Decimal`` appears only at the
parse/print/convert boundary, and ``float`` never appears at all.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from tillpay.domain.errors import Code, TillpayError

__all__ = [
    "CURRENCY_EXPONENTS",
    "MAX_AMOUNT_TEXT_LENGTH",
    "MAX_MINOR",
    "ROUNDING",
    "CurrencyMismatch",
    "InvalidAmount",
    "Money",
    "UnknownCurrency",
    "allocate",
    "convert",
    "exponent",
    "format_amount",
    "parse_amount",
]

# ISO 4217 minor-unit exponents. IDR and TWD are listed with 2 (the ISO value) even though
# cash has no subunit there, because Alipay's wire protocol sends them with two decimals.
CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AED": 2,
        "AUD": 2,
        "BHD": 3,
        "CAD": 2,
        "CHF": 2,
        "CNY": 2,
        "CZK": 2,
        "DKK": 2,
        "EUR": 2,
        "GBP": 2,
        "HKD": 2,
        "IDR": 2,
        "ILS": 2,
        "INR": 2,
        "JPY": 0,
        "KRW": 0,
        "KWD": 3,
        "LKR": 2,
        "MOP": 2,
        "MUR": 2,
        "MYR": 2,
        "NOK": 2,
        "NZD": 2,
        "PHP": 2,
        "RUB": 2,
        "SEK": 2,
        "SGD": 2,
        "THB": 2,
        "TWD": 2,
        "USD": 2,
        "VND": 0,
        "ZAR": 2,
    }
)

# Amounts are stored in signed 64-bit database columns.
MAX_MINOR: Final = 2**63 - 1

# Longer input is rejected before any conversion so hostile input costs nothing to refuse.
MAX_AMOUNT_TEXT_LENGTH: Final = 20

# The one rounding mode for currency conversion: half away from zero, the commercial rule
# customers and acquirers expect (banker's rounding surprises people on receipts).
ROUNDING: Final = decimal.ROUND_HALF_UP

# [0-9] rather than \d, which would also accept non-ASCII digits such as "١" or "５".
_AMOUNT_RE: Final = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")


class UnknownCurrency(ValueError):
    """The currency code is not a supported uppercase ISO 4217 code."""


class InvalidAmount(ValueError):
    """The amount text is not a valid amount for its currency."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        # Short machine-readable cause ("length", "format", "precision", "range") for error codes.
        self.reason = reason


class CurrencyMismatch(ValueError):
    """Arithmetic was attempted between amounts in different currencies."""


def exponent(currency: str) -> int:
    """Return the number of minor-unit digits for an uppercase ISO 4217 currency code."""
    if not isinstance(currency, str) or _CURRENCY_RE.fullmatch(currency) is None:
        raise UnknownCurrency(f"not an uppercase 3-letter currency code: {currency!r}")
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(f"unsupported currency: {currency}") from None


def unsupported_currency(currency: str) -> TillpayError:
    """CURRENCY_NOT_SUPPORT for a currency Tillpay does not know (the one answer every part gives)."""
    return TillpayError(Code.CURRENCY_NOT_SUPPORT, f"unknown currency {currency!r}")


def known_currency(currency: str) -> int:
    """The currency's minor-unit digits; CURRENCY_NOT_SUPPORT if Tillpay does not know it."""
    try:
        return exponent(currency)
    except UnknownCurrency:
        raise unsupported_currency(currency) from None


def parse_amount(text: str, currency: str) -> int:
    """Parse strict major-unit decimal text (e.g. "39.25") into integer minor units."""
    exp = exponent(currency)
    if not isinstance(text, str):
        raise InvalidAmount("format", f"amount must be text, got {type(text).__name__}")
    if len(text) > MAX_AMOUNT_TEXT_LENGTH:
        raise InvalidAmount("length", f"amount text longer than {MAX_AMOUNT_TEXT_LENGTH} characters")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise InvalidAmount("format", f"not a plain decimal amount: {text!r}")
    whole: str = match["whole"]
    frac: str | None = match["frac"]
    if frac is not None and len(frac) > exp:
        # Even "100.0" is refused for JPY: a fraction on a whole-unit currency signals a client bug.
        raise InvalidAmount("precision", f"{currency} allows at most {exp} decimal places: {text!r}")
    minor: int = int(whole) * 10**exp + int((frac or "").ljust(exp, "0") or "0")
    if minor > MAX_MINOR:
        raise InvalidAmount("range", f"amount does not fit in 63 bits: {text!r}")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Render integer minor units as canonical wire text, e.g. 3925 USD -> "39.25"."""
    exp = exponent(currency)
    _require_int(minor)
    sign = "-" if minor < 0 else ""
    if exp == 0:
        return f"{sign}{abs(minor)}"
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}"


def convert(minor: int, from_currency: str, to_currency: str, rate: Decimal) -> int:
    """Convert minor units at `rate` (major `to` per major `from`), rounding half-up to the target unit."""
    _require_int(minor)
    if not isinstance(rate, Decimal):
        raise TypeError("rate must be a Decimal, never a float")
    if not rate.is_finite() or rate <= 0:
        raise ValueError(f"rate must be a positive finite Decimal: {rate}")
    shift = exponent(to_currency) - exponent(from_currency)
    # Enough digits for the exact product, and Inexact trapped so a too-small context fails loudly.
    digits = len(str(abs(minor))) + len(rate.as_tuple().digits) + abs(shift) + 2
    with decimal.localcontext() as ctx:
        ctx.prec = max(digits, 28)
        ctx.traps[decimal.Inexact] = True
        ctx.traps[decimal.Rounded] = False
        exact = (Decimal(minor) * rate).scaleb(shift)
        ctx.traps[decimal.Inexact] = False
        return int(exact.quantize(Decimal(1), rounding=ROUNDING))


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to non-negative `weights` so the parts sum exactly to `total`."""
    _require_int(total)
    if not weights:
        raise ValueError("allocate needs at least one weight")
    for weight in weights:
        _require_int(weight)
        if weight < 0:
            raise ValueError(f"weights must be non-negative: {weight}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    if total < 0:
        # Mirror the positive split so a negative allocation is exactly the negated positive one.
        return [-part for part in allocate(-total, weights)]
    parts: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        part, remainder = divmod(total * weight, weight_sum)
        parts.append(part)
        remainders.append(remainder)
    leftover = total - sum(parts)
    # Largest remainder first; ties go to the lower index so results are reproducible.
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        parts[i] += 1
    return parts


def _require_int(value: object) -> None:
    # bool is an int subclass; True as an amount is always a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected int minor units, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Money:
    """An integer amount of minor units in one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        _require_int(self.amount)
        exponent(self.currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse strict major-unit wire text into Money."""
        return cls(parse_amount(text, currency), currency)

    def format(self) -> str:
        """Return the canonical wire text of the amount, without the currency."""
        return format_amount(self.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.format()} {self.currency}"

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _check_same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")
