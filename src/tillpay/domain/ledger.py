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
