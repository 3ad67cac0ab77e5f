"""The payment state machine, refund arithmetic, ledger postings and quotes (pure domain)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillpay.domain import ledger
from tillpay.domain.errors import DESCRIPTIONS, Code, TillpayError
from tillpay.domain.fx import find_rate, make_quote
from tillpay.domain.payment import FINAL, Event, Status, can, proportional_share, refund_shares, transition


def test_every_code_has_a_description() -> None:
    assert set(DESCRIPTIONS) == set(Code)


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (Status.WAIT_BUYER_PAY, Event.CONFIRM, Status.TRADE_SUCCESS),
        (Status.WAIT_BUYER_PAY, Event.REJECT, Status.TRADE_CLOSED),
        (Status.WAIT_BUYER_PAY, Event.EXPIRE, Status.TRADE_CLOSED),
        (Status.WAIT_BUYER_PAY, Event.CANCEL, Status.TRADE_CLOSED),
        (Status.TRADE_SUCCESS, Event.CANCEL, Status.TRADE_CLOSED),
        (Status.TRADE_SUCCESS, Event.REFUND_ALL, Status.TRADE_CLOSED),
    ],
)
def test_allowed_transitions(state: Status, event: Event, after: Status) -> None:
    assert transition(state, event) is after


@given(st.sampled_from(list(Event)))
def test_a_closed_payment_never_changes_again(event: Event) -> None:
    assert not can(Status.TRADE_CLOSED, event)
    with pytest.raises(TillpayError) as e:
        transition(Status.TRADE_CLOSED, event)
    assert e.value.code is Code.TRADE_STATUS_ERROR


def test_a_paid_payment_cannot_be_confirmed_or_expired_again() -> None:
    for event in (Event.CONFIRM, Event.EXPIRE, Event.REJECT):
        assert not can(Status.TRADE_SUCCESS, event)
    assert FINAL == {Status.TRADE_SUCCESS, Status.TRADE_CLOSED}


@given(
    paid=st.integers(1, 10**9),
    other=st.integers(0, 10**12),
    cuts=st.lists(st.integers(1, 10**9), max_size=12),
)
def test_refund_shares_sum_exactly_to_the_other_amount_and_never_exceed_it(
    paid: int, other: int, cuts: list[int]
) -> None:
    refunded, given_back = 0, 0
    for cut in cuts:
        part = min(cut, paid - refunded)
        if part == 0:
            break
        share = refund_shares(part, refunded, paid, other)
        assert share >= 0
        refunded += part
        given_back += share
        assert given_back <= other
    last = paid - refunded
    if last:
        given_back += refund_shares(last, refunded, paid, other)
    assert given_back == other  # the last refund takes exactly the remainder


def test_proportional_share_rounds_half_up() -> None:
    assert proportional_share(3, 1, 2) == 2  # 1.5 -> 2
    assert proportional_share(1, 1, 3) == 0  # 0.33 -> 0
    with pytest.raises(ValueError):
        proportional_share(10, 3, 2)


@given(
    a=st.integers(1, 10**12),
    b=st.integers(1, 10**12),
    ca=st.sampled_from(["CNY", "USD", "JPY"]),
    cb=st.sampled_from(["CNY", "USD", "JPY"]),
)
def test_transfers_balance_in_every_currency(a: int, b: int, ca: str, cb: str) -> None:
    if ca == cb:
        b = a if a == b else b
    lines = ledger.transfer("wallet:1", a, ca, "merchant:1:payable", b, cb)
    totals: dict[str, int] = {}
    for ln in lines:
        totals[ln.currency] = totals.get(ln.currency, 0) + ln.amount
    assert set(totals.values()) == {0}
    assert ledger.Posting("wallet:1", ca, -a) in lines


def test_unbalanced_entry_is_refused() -> None:
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.check_balanced([ledger.Posting("bank", "CNY", -5), ledger.Posting("wallet:1", "CNY", 4)])
    with pytest.raises(ledger.UnbalancedEntry):
        ledger.check_balanced([])


RATES = {("USD", "CNY"): Decimal("7.1023"), ("USD", "JPY"): Decimal("151.37")}


def test_rates_are_found_direct_inverted_and_crossed() -> None:
    assert find_rate(RATES, "USD", "CNY") == Decimal("7.1023")
    assert find_rate(RATES, "CNY", "USD") == Decimal("0.140799459330")
    assert find_rate(RATES, "JPY", "CNY") == Decimal("0.0469201294840")
    with pytest.raises(TillpayError) as e:
        find_rate(RATES, "EUR", "CNY")
    assert e.value.code is Code.NO_EXCHANGE_RATE


def test_quote_charges_the_margin_to_the_customer_only() -> None:
    q = make_quote(1000, "USD", "USD", "CNY", RATES, margin_bps=100)
    assert (q.settle_amount, q.settle_currency) == (1000, "USD")
    assert q.wallet_rate == Decimal("7.173323") and q.wallet_amount == 7173
    same = make_quote(1000, "CNY", "CNY", "CNY", RATES, margin_bps=100)
    assert same.wallet_amount == 1000 and same.wallet_rate == 1
