"""Payouts against a bank statement: CSV and camt.053 parsing, every injected difference found."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tillpay.domain.money import format_amount
from tillpay.services.reconcile import SourceError, StatementEntry, match_payouts, read_statement
from tillpay.services.settlement import BatchView

DAY = date(2026, 11, 25)


def payout(i: int, amount: int, currency: str = "USD") -> BatchView:
    return BatchView(
        id=i,
        partner_id=f"20880000000000{i:02d}",
        merchant_name="Shop",
        currency=currency,
        settle_date=DAY,
        cutoff_at=datetime(2026, 11, 26, tzinfo=UTC),
        mdr_bps=0,
        payment_count=1,
        refund_count=0,
        reversal_count=0,
        payments_amount=amount,
        refunds_amount=0,
        reversals_amount=0,
        fee=0,
        net=amount,
        carried_in=0,
        payout_amount=amount,
        payout_date=date(2026, 11, 26),
        payout_status="paid",
        payout_run_date=date(2026, 11, 26),
    )


PAYOUTS = [payout(i, 1000 + i * 17, "JPY" if i % 4 == 0 else "USD") for i in range(1, 20)]


def entry(b: BatchView, **kw: object) -> StatementEntry:
    args: dict[str, object] = dict(
        reference=b.end_to_end_id,
        amount=b.payout_amount,
        currency=b.currency,
        booked=date(2026, 11, 26),
        line=1,
    )
    args.update(kw)
    return StatementEntry(**args)  # type: ignore[arg-type]


def test_a_statement_with_every_payout_reconciles_cleanly() -> None:
    report = match_payouts(PAYOUTS, [entry(b) for b in PAYOUTS], None, None)
    assert report.clean and report.summary["inputs"]["matched"] == len(PAYOUTS)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(PAYOUTS) - 1), st.sampled_from(["drop", "amount", "currency", "date", "twice"])
        ),
        max_size=6,
        unique_by=lambda x: x[0],
    ),
    st.booleans(),
)
def test_every_injected_statement_difference_is_found_and_nothing_else(
    changes: list[tuple[int, str]], stranger: bool
) -> None:
    chosen = dict(changes)
    entries: list[StatementEntry] = []
    expected: set[tuple[str, str]] = set()
    for i, b in enumerate(PAYOUTS):
        how = chosen.get(i)
        if how is None:
            entries.append(entry(b))
        elif how == "drop":
            expected.add(("missing_in_statement", b.end_to_end_id))
        elif how == "amount":
            entries.append(entry(b, amount=b.payout_amount + 1))
            expected.add(("amount_mismatch", b.end_to_end_id))
        elif how == "currency":
            entries.append(entry(b, currency="EUR"))
            expected.add(("currency_mismatch", b.end_to_end_id))
        elif how == "date":
            entries.append(entry(b, booked=date(2026, 11, 27)))
            expected.add(("date_mismatch", b.end_to_end_id))
        else:
            entries += [entry(b), entry(b)]
            expected.add(("duplicate", b.end_to_end_id))
    if stranger:
        entries.append(StatementEntry("RENT-NOV", 99_00, "USD", date(2026, 11, 26), 99))
        expected.add(("unknown_in_statement", "RENT-NOV"))
    # The statement covers the payouts' value date, whatever was dropped from it.
    report = match_payouts(PAYOUTS, entries, date(2026, 11, 26), date(2026, 11, 27))
    assert {(r["kind"], r["reference"]) for r in report.differences.iter_rows(named=True)} == expected
    assert report.differences.height == len(expected)


def test_a_payout_outside_the_statements_period_is_not_missing() -> None:
    report = match_payouts(PAYOUTS, [], date(2026, 12, 1), date(2026, 12, 31))
    assert report.clean


def camt053(entries: list[tuple[str, int, str, str, str]]) -> str:
    ntry = "".join(
        f"<Ntry><Amt Ccy='{cur}'>{format_amount(amount, cur)}</Amt><CdtDbtInd>{ind}</CdtDbtInd>"
        f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{ref}</EndToEndId></Refs>"
        f"<Amt Ccy='{cur}'>{format_amount(amount, cur)}</Amt></TxDtls></NtryDtls></Ntry>"
        for ref, amount, cur, ind, day in entries
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt>"
        "<GrpHdr><MsgId>S1</MsgId><CreDtTm>2026-11-27T06:00:00</CreDtTm></GrpHdr>"
        "<Stmt><Id>1</Id><FrToDt><FrDtTm>2026-11-26T00:00:00</FrDtTm><ToDtTm>2026-11-26T23:59:59</ToDtTm></FrToDt>"
        f"{ntry}</Stmt></BkToCstmrStmt></Document>"
    )


def test_camt053_debits_are_read_and_credits_ignored(tmp_path: Path) -> None:
    b = PAYOUTS[0]
    path = tmp_path / "s.xml"
    path.write_text(
        camt053(
            [
                (b.end_to_end_id, b.payout_amount, b.currency, "DBIT", "2026-11-26"),
                ("TOPUP-1", 5000, "USD", "CRDT", "2026-11-26"),
            ]
        )
    )
    entries, start, end = read_statement(path)
    assert entries == [StatementEntry(b.end_to_end_id, b.payout_amount, b.currency, date(2026, 11, 26), 1)]
    assert (start, end) == (date(2026, 11, 26), date(2026, 11, 26))


def test_a_csv_statement_is_read(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "date,amount,currency,reference,direction\n2026-11-26,-12.34,USD,TP1,DBIT\n2026-11-26,5,USD,X,CRDT\n"
    )
    entries, _, _ = read_statement(path)
    assert entries == [StatementEntry("TP1", 1234, "USD", date(2026, 11, 26), 2)]


@pytest.mark.parametrize(
    "content",
    [
        "date,amount\n2026-11-26,1\n",
        "date,amount,currency,reference\n2026-11-26,1.234,USD,TP1\n",
        "date,amount,currency,reference\nyesterday,1,USD,TP1\n",
        "<Document><unclosed>",
        "<Document/>",
    ],
)
def test_a_bad_statement_is_refused_clearly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "s.txt"
    path.write_text(content)
    with pytest.raises(SourceError):
        read_statement(path)
