"""Exchange rates: the operator loads them; payments lock them into a quote."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import insert, select

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent
from tillpay.services.platform import Platform
from tillpay.store import tables as t


@dataclass(frozen=True, slots=True)
class Rate:
    """One loaded rate: ``quote`` units per one ``base`` unit from ``effective_at`` on."""

    base: str
    quote: str
    rate: Decimal
    effective_at: datetime


def parse_rate(text: str) -> Decimal:
    """A positive decimal rate from text; ILLEGAL_ARGUMENT for anything else (``1e3`` included)."""
    if not text or not all(c.isdigit() or c == "." for c in text) or text.count(".") > 1:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"a rate is a plain positive decimal, not {text!r}")
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"not a rate: {text!r}") from None
    if rate <= 0 or len(text) > 30:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a rate must be positive and at most 30 characters")
    return rate


async def set_rate(
    p: Platform, base: str, quote: str, rate: str, effective_at: datetime | None = None
) -> Rate:
    """Load a rate; history is kept, so every payment's rate can be explained later."""
    for c in (base, quote):
        try:
            exponent(c)
        except ValueError:
            raise TillpayError(Code.CURRENCY_NOT_SUPPORT, f"unknown currency {c!r}") from None
    if base == quote:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a rate needs two different currencies")
    value = parse_rate(rate)
    when = effective_at or p.now()
    async with p.engine.begin() as conn:
        await conn.execute(
            insert(t.fx_rates).values(
                base=base, quote=quote, rate=str(value), effective_at=when, created_at=p.now()
            )
        )
    p.forget_rates()
    return Rate(base, quote, value, when)


async def current_rates(p: Platform) -> list[Rate]:
    """The rate in effect now for each loaded pair."""
    async with p.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.fx_rates)
                .where(t.fx_rates.c.effective_at <= p.now())
                .order_by(t.fx_rates.c.effective_at, t.fx_rates.c.id)
            )
        ).all()
    latest: dict[tuple[str, str], Rate] = {}
    for r in rows:
        latest[(r.base, r.quote)] = Rate(r.base, r.quote, Decimal(r.rate), r.effective_at)
    return sorted(latest.values(), key=lambda r: (r.base, r.quote))
