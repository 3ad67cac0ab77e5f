"""Exchange rates: the operator loads them; payments lock them into a quote."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent, known_currency
from tillpay.services.platform import Platform
from tillpay.store.uow import Repositories


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
        known_currency(c)
    if base == quote:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a rate needs two different currencies")
    value = parse_rate(rate)
    when = effective_at or p.now()
    async with p.unit_of_work() as uow:
        await uow.fx.add_rates([(base, quote, value, when)], p.now())
        await uow.commit()
    p.forget_rates()
    return Rate(base, quote, value, when)


async def current_rates(p: Platform) -> list[Rate]:
    """The rate in effect now for each loaded pair."""
    async with p.reader() as r:
        rows = await r.fx.rates_until(p.now())
    latest: dict[tuple[str, str], Rate] = {}
    for r in rows:
        latest[(r.base, r.quote)] = Rate(r.base, r.quote, Decimal(r.rate), r.effective_at)
    return sorted(latest.values(), key=lambda r: (r.base, r.quote))


@dataclass(frozen=True, slots=True)
class Margin:
    """The margin (basis points) the customer pays on a conversion between two currencies."""

    base: str
    quote: str
    bps: int
    effective_at: datetime


async def set_margin(
    p: Platform, base: str, quote: str, bps: int, effective_at: datetime | None = None
) -> Margin:
    """Set the margin for a currency pair (either direction of conversion); history is kept."""
    for c in (base, quote):
        known_currency(c)
    if base == quote:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a margin needs two different currencies")
    if not 0 <= bps <= 2000:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a margin is 0 to 2000 basis points")
    when = effective_at or p.now()
    async with p.unit_of_work() as uow:
        await uow.fx.add_margin(base, quote, bps, when, p.now())
        await uow.commit()
    return Margin(base, quote, bps, when)


async def margin_for(p: Platform, repos: Repositories, a: str, b: str) -> int:
    """The margin in force now for converting between ``a`` and ``b`` (else the scheme default)."""
    if a == b:
        return 0
    bps = await stored_margin(p, repos, a, b)
    return bps if bps is not None else p.settings.fx_default_margin_bps


async def stored_margin(p: Platform, repos: Repositories, a: str, b: str) -> int | None:
    """The stored margin in force now between ``a`` and ``b`` (either direction); None if none is."""
    return await repos.fx.margin_in_force(a, b, p.now())


async def current_margins(p: Platform) -> list[Margin]:
    """The margin in force now for each pair that has one."""
    async with p.reader() as r:
        rows = await r.fx.margins_until(p.now())
    latest = {(r.base, r.quote): Margin(r.base, r.quote, r.bps, r.effective_at) for r in rows}
    return sorted(latest.values(), key=lambda m: (m.base, m.quote))


async def import_rates_csv(p: Platform, text: str) -> int:
    """Load rates from CSV with the header ``base,quote,rate[,effective_at]`` (ISO times, UTC if naive).

    Every line is checked before anything is stored: one bad line (named with its number) changes nothing.
    """
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"base", "quote", "rate"} <= {f.strip() for f in reader.fieldnames}:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the CSV needs the header base,quote,rate[,effective_at]")
    rows: list[tuple[str, str, str, datetime | None]] = []
    for n, line in enumerate(reader, start=2):
        line = {k.strip(): (v or "").strip() for k, v in line.items() if k}
        base, quote, rate = line.get("base", "").upper(), line.get("quote", "").upper(), line.get("rate", "")
        try:
            exponent(base)
            exponent(quote)
            parse_rate(rate)
            if base == quote:
                raise ValueError("base and quote are the same")
            when = None
            if line.get("effective_at"):
                when = datetime.fromisoformat(line["effective_at"])
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
        except (ValueError, TillpayError) as e:
            detail = e.detail if isinstance(e, TillpayError) else str(e)
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"line {n}: {detail}") from None
        rows.append((base, quote, rate, when))
    if not rows:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the CSV has no rates")
    now = p.now()
    async with p.unit_of_work() as uow:
        await uow.fx.add_rates([(b, q, parse_rate(r), w or now) for b, q, r, w in rows], now)
        await uow.commit()
    p.forget_rates()
    return len(rows)


async def rates_at(p: Platform, repos: Repositories, when: datetime) -> dict[tuple[str, str], Decimal]:
    """The rates that were in effect at ``when`` (to explain a past payment or price a refund)."""
    rows = await repos.fx.rates_until(when)
    return {(r.base, r.quote): Decimal(r.rate) for r in rows}
