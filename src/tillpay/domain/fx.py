"""Quotes: what a price in one currency costs in the merchant's and the customer's currencies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import convert

#: Rates are kept to this many significant digits when inverted or crossed.
RATE_DIGITS = 12
#: Cross rates go through this currency when no direct or inverse rate is loaded.
PIVOT = "USD"


def _normalise(rate: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = RATE_DIGITS
        return +rate


def find_rate(rates: Mapping[tuple[str, str], Decimal], base: str, quote: str) -> Decimal:
    """The mid rate (``quote`` units per ``base`` unit): direct, inverted, or crossed through PIVOT."""
    if base == quote:
        return Decimal(1)
    direct = rates.get((base, quote))
    if direct is not None:
        return direct
    inverse = rates.get((quote, base))
    if inverse is not None:
        with localcontext() as ctx:
            ctx.prec = RATE_DIGITS + 4
            return _normalise(Decimal(1) / inverse)
    if PIVOT not in (base, quote):
        try:
            with localcontext() as ctx:
                ctx.prec = RATE_DIGITS + 4
                crossed = find_rate(rates, base, PIVOT) * find_rate(rates, PIVOT, quote)
            return _normalise(crossed)
        except TillpayError:
            pass
    raise TillpayError(Code.NO_EXCHANGE_RATE, f"no exchange rate for {base}/{quote}")


@dataclass(frozen=True, slots=True)
class Quote:
    """The three amounts of a payment, locked when it is created."""

    price_amount: int
    price_currency: str
    settle_amount: int
    settle_currency: str
    wallet_amount: int
    wallet_currency: str
    #: Settlement-currency units per price-currency unit.
    settle_rate: Decimal
    #: Wallet-currency units per price-currency unit, margin included (MAPI ``exchange_rate``).
    wallet_rate: Decimal
    #: The mid rate price→wallet before the margin, the margin in basis points, and the margin's amount
    #: in the wallet currency: wallet_amount = convert(price at mid) + margin_amount.
    wallet_mid_rate: Decimal = Decimal(1)
    margin_bps: int = 0
    margin_amount: int = 0


def make_quote(
    price_amount: int,
    price_currency: str,
    settle_currency: str,
    wallet_currency: str,
    rates: Mapping[tuple[str, str], Decimal],
    margin_bps: int = 0,
) -> Quote:
    """Lock the amounts of a payment; the customer pays the margin on a currency conversion."""
    if margin_bps < 0:
        raise ValueError("a margin cannot be negative")
    settle_rate = find_rate(rates, price_currency, settle_currency)
    wallet_rate = mid_rate = find_rate(rates, price_currency, wallet_currency)
    if price_currency == wallet_currency:
        margin_bps = 0
    if margin_bps:
        with localcontext() as ctx:
            ctx.prec = RATE_DIGITS + 4
            wallet_rate = _normalise(wallet_rate * (Decimal(10000 + margin_bps) / Decimal(10000)))
    settle_amount = (
        price_amount
        if price_currency == settle_currency
        else convert(price_amount, price_currency, settle_currency, settle_rate)
    )
    wallet_amount = (
        price_amount
        if price_currency == wallet_currency
        else convert(price_amount, price_currency, wallet_currency, wallet_rate)
    )
    if settle_amount <= 0 or wallet_amount <= 0:
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, "the amount is too small to convert into every currency")
    mid_amount = (
        price_amount
        if price_currency == wallet_currency
        else convert(price_amount, price_currency, wallet_currency, mid_rate)
    )
    return Quote(
        price_amount,
        price_currency,
        settle_amount,
        settle_currency,
        wallet_amount,
        wallet_currency,
        settle_rate,
        wallet_rate,
        mid_rate,
        margin_bps,
        wallet_amount - mid_amount,
    )
