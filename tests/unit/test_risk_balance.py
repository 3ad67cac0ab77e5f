"""The balance rule of the risk decision: a payment the wallet cannot cover is declined, never confirmed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tillpay.domain import risk
from tillpay.domain.errors import Code
from tillpay.domain.risk import RiskConfig, RiskInputs, Verdict

CONFIRM_ABOVE = RiskConfig(confirm_above={"CNY": 200_000})


def test_over_balance_above_the_confirm_limit_declines_instead_of_confirming() -> None:
    d = risk.evaluate(CONFIRM_ABOVE, RiskInputs(250_000, "CNY", balance=100_000))
    assert (d.verdict, d.rule, d.code) == (Verdict.DECLINE, "balance", Code.BUYER_BALANCE_NOT_ENOUGH)
    assert d.fired == ("balance", "amount_over_confirm_limit") and not d.spends_code


def test_enough_balance_still_confirms_and_an_unknown_balance_is_not_checked() -> None:
    for balance in (250_000, None):
        d = risk.evaluate(CONFIRM_ABOVE, RiskInputs(250_000, "CNY", balance=balance))
        assert d.verdict is Verdict.CONFIRM and d.spends_code


def test_every_other_decline_is_reported_before_the_balance_and_spends_the_code() -> None:
    frozen = risk.evaluate(RiskConfig(), RiskInputs(500, "CNY", buyer_active=False, balance=0))
    assert (frozen.rule, frozen.code) == ("buyer_frozen", Code.BUYER_FROZEN) and frozen.spends_code
    cfg = RiskConfig(per_payment_limit={"CNY": 100})
    limit = risk.evaluate(cfg, RiskInputs(500, "CNY", balance=0))
    assert limit.rule == "per_payment_limit" and "balance" in limit.fired and limit.spends_code


@given(st.integers(0, 10**12), st.integers(1, 10**12), st.booleans())
def test_a_payment_is_paid_or_waits_only_when_the_balance_covers_it(
    balance: int, amount: int, over_limit: bool
) -> None:
    cfg = RiskConfig(confirm_above={"CNY": amount - 1 if over_limit else amount})
    d = risk.evaluate(cfg, RiskInputs(amount, "CNY", balance=balance))
    assert (d.verdict is not Verdict.DECLINE) == risk.covers(balance, amount) == (balance >= amount)
