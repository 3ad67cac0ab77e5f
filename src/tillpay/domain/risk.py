"""The risk decision for a payment (the basic rule; the full engine builds on this shape)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from tillpay.domain.errors import Code


class Verdict(StrEnum):
    """What may happen to a payment."""

    ALLOW = "ALLOW"
    CONFIRM = "CONFIRM"
    DECLINE = "DECLINE"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict with the reason and the rule that produced it."""

    verdict: Verdict
    rule: str
    code: Code | None = None


def decide(
    *,
    wallet_amount: int,
    wallet_currency: str,
    confirm_above: Mapping[str, int],
    buyer_active: bool,
    merchant_active: bool,
) -> Decision:
    """ALLOW, CONFIRM when the wallet amount is over the no-confirmation limit, DECLINE when frozen."""
    if not merchant_active:
        return Decision(Verdict.DECLINE, "merchant_frozen", Code.MERCHANT_FROZEN)
    if not buyer_active:
        return Decision(Verdict.DECLINE, "buyer_frozen", Code.BUYER_FROZEN)
    limit = confirm_above.get(wallet_currency)
    if limit is not None and wallet_amount > limit:
        return Decision(Verdict.CONFIRM, "amount_over_confirm_limit")
    return Decision(Verdict.ALLOW, "default")
