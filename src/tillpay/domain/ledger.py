"""Double-entry postings: every money movement is one entry whose postings sum to zero per currency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

#: The bank: money entering the scheme (top-ups) and leaving it (payouts).
BANK = "bank"
#: Fee revenue of the scheme, per currency.
FEE_REVENUE = "fee_revenue"
#: Money owed to merchants between settlement and payout.
SETTLEMENT_CLEARING = "settlement_clearing"


def wallet_account(user_id: int) -> str:
    """The account of a customer's wallet."""
    return f"wallet:{user_id}"


def merchant_payable(merchant_id: int) -> str:
    """What the scheme owes a merchant in its settlement currency."""
    return f"merchant:{merchant_id}:payable"


def fx_position(currency: str) -> str:
    """The scheme's FX position in one currency (conversions pass through it)."""
    return f"fx:{currency}"


class UnbalancedEntry(ValueError):
    """The postings of an entry do not sum to zero in some currency."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of a journal entry: a signed amount in minor units on one account."""

    account: str
    currency: str
    amount: int


def check_balanced(postings: Iterable[Posting]) -> list[Posting]:
    """Return the postings (zero lines dropped) if they sum to zero per currency, else raise."""
    totals: dict[str, int] = defaultdict(int)
    kept = []
    for p in postings:
        if p.amount == 0:
            continue
        totals[p.currency] += p.amount
        kept.append(p)
    broken = {c: t for c, t in totals.items() if t != 0}
    if broken:
        raise UnbalancedEntry(f"entry does not balance: {broken}")
    if not kept:
        raise UnbalancedEntry("entry has no non-zero postings")
    return kept


def transfer(
    debit_account: str,
    debit_amount: int,
    debit_currency: str,
    credit_account: str,
    credit_amount: int,
    credit_currency: str,
) -> list[Posting]:
    """Move money from one account to another, converting through the FX accounts when needed."""
    if debit_currency == credit_currency and debit_amount == credit_amount:
        return check_balanced(
            [
                Posting(debit_account, debit_currency, -debit_amount),
                Posting(credit_account, credit_currency, credit_amount),
            ]
        )
    return check_balanced(
        [
            Posting(debit_account, debit_currency, -debit_amount),
            Posting(fx_position(debit_currency), debit_currency, debit_amount),
            Posting(fx_position(credit_currency), credit_currency, -credit_amount),
            Posting(credit_account, credit_currency, credit_amount),
        ]
    )


#: The scheme's FX margin revenue (in the customer's currency).
FX_MARGIN = "fx_margin"
#: The scheme's FX gain (credit) or loss (debit) when a refund uses another rate than the payment.
FX_GAIN_LOSS = "fx_gain_loss"


def _netted(lines: list[Posting]) -> list[Posting]:
    totals: dict[tuple[str, str], int] = {}
    for ln in lines:
        key = (ln.account, ln.currency)
        totals[key] = totals.get(key, 0) + ln.amount
    return check_balanced(Posting(a, c, v) for (a, c), v in totals.items())


def conversion(
    debit_account: str,
    debit_amount: int,
    debit_currency: str,
    credit_account: str,
    credit_amount: int,
    credit_currency: str,
    *,
    margin: int = 0,
) -> list[Posting]:
    """A payment: the customer's debit, less the scheme's FX margin, passes through the FX accounts."""
    return _netted(
        [
            Posting(debit_account, debit_currency, -debit_amount),
            Posting(FX_MARGIN, debit_currency, margin),
            Posting(fx_position(debit_currency), debit_currency, debit_amount - margin),
            Posting(fx_position(credit_currency), credit_currency, -credit_amount),
            Posting(credit_account, credit_currency, credit_amount),
        ]
    )


def reverse_conversion(
    debit_account: str,
    debit_amount: int,
    debit_currency: str,
    credit_account: str,
    credit_amount: int,
    credit_currency: str,
    *,
    margin: int = 0,
    gain: int = 0,
) -> list[Posting]:
    """A refund: the merchant returns ``debit_amount``; the customer gets ``credit_amount``.

    ``margin`` (credit currency) is the part of the payment's FX margin given back; ``gain`` (credit
    currency) is what the scheme keeps (+) or adds (-) because the refund used another rate.
    """
    return _netted(
        [
            Posting(debit_account, debit_currency, -debit_amount),
            Posting(fx_position(debit_currency), debit_currency, debit_amount),
            Posting(fx_position(credit_currency), credit_currency, -(credit_amount + gain - margin)),
            Posting(FX_MARGIN, credit_currency, -margin),
            Posting(FX_GAIN_LOSS, credit_currency, gain),
            Posting(credit_account, credit_currency, credit_amount),
        ]
    )
