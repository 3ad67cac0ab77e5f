"""Property tests of FX payments and refunds: balanced entries, exact totals, nobody gets back too much."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tillpay.domain import ledger
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import make_quote
from tillpay.domain.payment import refund_shares

CURRENCIES = ["CNY", "USD", "JPY", "KWD", "EUR"]
rates = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500"), places=4)


def balanced(lines: list[ledger.Posting]) -> bool:
    totals: dict[str, int] = {}
    for ln in lines:
        totals[ln.currency] = totals.get(ln.currency, 0) + ln.amount
    return all(v == 0 for v in totals.values())


@settings(max_examples=300)
@given(
    price=st.integers(1, 10**9),
    pc=st.sampled_from(CURRENCIES),
    sc=st.sampled_from(CURRENCIES),
    wc=st.sampled_from(CURRENCIES),
    r_usd=st.fixed_dictionaries({c: rates for c in CURRENCIES if c != "USD"}),
    margin=st.integers(0, 500),
    cuts=st.lists(st.integers(1, 10**9), max_size=8),
)
def test_a_payment_and_its_refunds_balance_and_close_to_the_minor_unit(
    price: int, pc: str, sc: str, wc: str, r_usd: dict[str, Decimal], margin: int, cuts: list[int]
) -> None:
    table = {("USD", c): r for c, r in r_usd.items()}
    try:
        q = make_quote(price, pc, sc, wc, table, margin_bps=margin)
    except TillpayError as e:
        # A price below one minor unit in some currency is refused, never charged as zero.
        assert e.code is Code.AMOUNT_OUT_OF_RANGE
        assume(False)
    assert q.margin_amount >= 0 and q.wallet_amount >= q.margin_amount
    pay = (
        ledger.conversion(
            "wallet:1", q.wallet_amount, wc, "merchant:1:payable", q.settle_amount, sc, margin=q.margin_amount
        )
        if q.wallet_amount or q.settle_amount
        else []
    )
    assert not pay or balanced(pay)
    refunded = back_wallet = back_settle = back_margin = 0
    steps = [*cuts, price]  # the last step refunds whatever is left
    for cut in steps:
        part = min(cut, price - refunded)
        if part == 0:
            break
        w = refund_shares(part, refunded, price, q.wallet_amount)
        s = refund_shares(part, refunded, price, q.settle_amount)
        m = refund_shares(part, refunded, price, q.margin_amount)
        assert 0 <= m <= w or q.margin_amount == 0
        if w or s:
            lines = ledger.reverse_conversion("merchant:1:payable", s, sc, "wallet:1", w, wc, margin=m)
            assert balanced(lines)
        refunded += part
        back_wallet += w
        back_settle += s
        back_margin += m
        assert back_wallet <= q.wallet_amount and back_settle <= q.settle_amount  # never more than paid
    assert refunded == price
    assert (back_wallet, back_settle, back_margin) == (q.wallet_amount, q.settle_amount, q.margin_amount)


@given(
    w0=st.integers(0, 10**9),
    w=st.integers(0, 10**9),
    s=st.integers(0, 10**9),
    m=st.integers(0, 10**6),
)
def test_a_refund_at_another_rate_books_the_difference_as_fx_gain(w0: int, w: int, s: int, m: int) -> None:
    if not (w or s or m or w0):
        return
    lines = ledger.reverse_conversion(
        "merchant:1:payable", s, "USD", "wallet:1", w, "CNY", margin=m, gain=w0 - w
    )
    assert balanced(lines)
    gain = sum(ln.amount for ln in lines if ln.account == ledger.FX_GAIN_LOSS)
    assert gain == w0 - w
