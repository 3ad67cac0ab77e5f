"""Settlement arithmetic and layouts: fees, netting, ledger movements, cut-offs, IBANs, pain.001."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillpay.domain import ledger
from tillpay.domain import settlement as dom

items = st.lists(
    st.builds(
        dom.Item,
        kind=st.sampled_from([dom.PAYMENT, dom.REFUND, dom.REVERSAL]),
        amount=st.integers(0, 10**10),
        fee=st.integers(0, 10**8),
    ),
    max_size=40,
)


@given(st.integers(0, 10**13), st.integers(0, 10_000))
def test_the_fee_is_the_rate_rounded_half_up(amount: int, bps: int) -> None:
    exact = Decimal(amount) * Decimal(bps) / Decimal(10_000)
    assert dom.payment_fee(amount, bps) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(items, st.integers(-(10**10), 0))
def test_a_batch_nets_to_payments_less_refunds_reversals_and_fee(its: list[dom.Item], carried: int) -> None:
    t = dom.net(its, carried)
    pays = [i for i in its if i.kind == dom.PAYMENT]
    revs = [i for i in its if i.kind == dom.REVERSAL]
    refs = [i for i in its if i.kind == dom.REFUND]
    assert t.fee == sum(i.fee for i in pays) - sum(i.fee for i in revs)
    assert (
        t.net
        == sum(i.amount for i in pays) - sum(i.amount for i in refs) - sum(i.amount for i in revs) - t.fee
    )
    assert t.payout_amount == max(0, t.net + carried) and t.payout_amount >= 0
    assert t.payout_amount + t.carry_out == t.net + carried  # nothing is lost between batches
    assert (t.payment_count, t.refund_count, t.reversal_count) == (len(pays), len(refs), len(revs))


@given(items)
def test_the_ledger_moves_exactly_the_batch_totals(its: list[dom.Item]) -> None:
    t = dom.net(its)
    postings = dom.settlement_postings(7, "USD", t.fee, t.payout_amount)
    by = {p.account: p.amount for p in postings}
    assert by.get(ledger.merchant_payable(7), 0) == -(t.fee + t.payout_amount)
    assert by.get(ledger.FEE_REVENUE, 0) == t.fee
    assert by.get(ledger.SETTLEMENT_CLEARING, 0) == t.payout_amount
    assert sum(by.values()) == 0


def test_payout_postings_move_clearing_to_the_bank() -> None:
    assert dom.payout_postings("EUR", 500) == [
        ledger.Posting(ledger.SETTLEMENT_CLEARING, "EUR", -500),
        ledger.Posting(ledger.BANK, "EUR", 500),
    ]
    with pytest.raises(ValueError):
        dom.payout_postings("EUR", 0)


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]),
    st.sampled_from(["24:00", "23:00", "18:30", "00:15"]),
)
def test_every_instant_belongs_to_exactly_one_business_day(instant: datetime, tz: str, cutoff: str) -> None:
    day = dom.business_day(instant, tz, cutoff)
    assert dom.cutoff_at(day - timedelta(days=1), tz, cutoff) <= instant < dom.cutoff_at(day, tz, cutoff)


def test_the_cutoff_follows_the_wall_clock_through_daylight_saving() -> None:
    # Berlin moved to summer time on 2026-03-29: that day is 23 hours long.
    end = dom.cutoff_at(date(2026, 3, 29), "Europe/Berlin", "24:00")
    start = dom.cutoff_at(date(2026, 3, 28), "Europe/Berlin", "24:00")
    assert end - start == timedelta(hours=23)
    assert dom.cutoff_at(date(2026, 11, 25), "Asia/Shanghai", "23:00") == datetime(
        2026, 11, 25, 15, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("bad", ["25:00", "00:00", "24:30", "noon", "7"])
def test_a_bad_cutoff_is_refused(bad: str) -> None:
    with pytest.raises(dom.SettlementConfigError):
        dom.parse_cutoff(bad)


def test_ibans_are_checked_and_made_with_iso_13616_check_digits() -> None:
    assert dom.check_iban("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert dom.make_iban("DE", "370400440532013000") == "DE89370400440532013000"
    assert dom.make_iban("GB", "NWBK60161331926819") == "GB29NWBK60161331926819"
    for bad in ("DE88370400440532013000", "DE89", "XX00ABC"):
        with pytest.raises(dom.SettlementConfigError):
            dom.check_iban(bad)
    assert dom.check_bic("cobadeffxxx") == "COBADEFFXXX"
    with pytest.raises(dom.SettlementConfigError):
        dom.check_bic("COBA")


def _payouts() -> list[dom.Payout]:
    return [
        dom.Payout(
            "TP20261125A",
            12345,
            "USD",
            date(2026, 11, 26),
            "Shop & Co <1>",
            "DE89370400440532013000",
            None,
            "r1",
        ),
        dom.Payout(
            "TP20261125B", 500, "JPY", date(2026, 11, 26), "Ramen", "GB29NWBK60161331926819", "NWBKGB2L", "r2"
        ),
        dom.Payout(
            "TP20261125C", 99, "USD", date(2026, 11, 26), "Kiosk", "DE89370400440532013000", None, "r3"
        ),
    ]


def test_pain001_is_well_formed_deterministic_and_adds_up() -> None:
    args = dict(
        message_id="TILLPAY-PAYOUT-20261126",
        created_at=datetime(2026, 11, 27, tzinfo=UTC),
        debtor_name="Scheme",
        debtor_iban="DE89370400440532013000",
        debtor_bic="COBADEFFXXX",
    )
    a = dom.render_pain001(payouts=_payouts(), **args)  # type: ignore[arg-type]
    b = dom.render_pain001(payouts=list(reversed(_payouts())), **args)  # type: ignore[arg-type]
    assert a == b
    ns = {"p": dom.PAIN001_NS}
    root = ET.fromstring(a)  # noqa: S314 - our own output
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=ns) == "3"
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=ns) == "624.44"
    blocks = root.findall("p:CstmrCdtTrfInitn/p:PmtInf", ns)
    assert [x.findtext("p:CtrlSum", namespaces=ns) for x in blocks] == ["500", "124.44"]
    names = [x.text for x in root.iter(f"{{{dom.PAIN001_NS}}}Nm")]
    assert "Shop & Co <1>" in names  # escaped in the XML, intact when parsed
    with pytest.raises(ValueError):
        dom.render_pain001(payouts=[], **args)  # type: ignore[arg-type]


def test_text_fields_cannot_break_a_record() -> None:
    row = dom.FileRow(
        kind=dom.PAYMENT,
        partner_transaction_id="A|B\nC",
        transaction_id="1",
        amount=100,
        fee=1,
        currency="USD",
        occurred_at=datetime(2026, 11, 25, tzinfo=UTC),
        trans_currency="USD",
        trans_amount=100,
        forex_rate="1",
        mcc="5411",
        merchant_name="Pipe | Shop",
        store_id=None,
        terminal_id=None,
        payment_kind="barcode",
    )
    z = dom.zone("UTC")
    line = dom.transaction_line(row, z)
    assert line.count("\n") == 1 and len(line.split("|")) == len(dom.TRANSACTION_COLUMNS)
    line = dom.settlement_line(row, datetime(2026, 11, 26, tzinfo=UTC), z)
    assert len(line.split("|")) == len(dom.SETTLEMENT_COLUMNS)
    assert line.split("|")[4] == "0.99"  # Settlement = Amount - Fee
