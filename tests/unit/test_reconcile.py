"""Reconciliation rules: every difference injected into the merchant's records is found, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillpay.domain import reconcile as rec
from tillpay.domain import settlement as sdom
from tillpay.domain.money import format_amount


@dataclass(frozen=True)
class Rec:
    """A settled record as both sides know it."""

    type: str  # PAYMENT | REFUND | REVERSAL
    ptid: str
    prid: str | None
    trans_amount: int
    trans_currency: str
    settle_amount: int
    settle_currency: str
    fee: int

    @property
    def key(self) -> str:
        return self.prid if self.type == "REFUND" and self.prid else self.ptid


def day_of_records(n: int) -> list[Rec]:
    """Payments in USD and JPY (some priced in CNY), with refunds and cancellations."""
    out: list[Rec] = []
    for i in range(n):
        cur = "JPY" if i % 3 == 0 else "USD"
        amount = 1000 + 37 * i
        if i % 5 == 0:  # priced in CNY, settled in the merchant's currency
            trans_cur, trans_amount = "CNY", amount * 7
        else:
            trans_cur, trans_amount = cur, amount
        fee = sdom.payment_fee(amount, 250)
        out.append(Rec("PAYMENT", f"P{i}", None, trans_amount, trans_cur, amount, cur, fee))
        if i % 4 == 1:
            out.append(Rec("REFUND", f"P{i}", f"P{i}-R", trans_amount // 2, trans_cur, amount // 2, cur, 0))
        if i % 7 == 2:
            out.append(Rec("REVERSAL", f"P{i}", None, trans_amount, trans_cur, amount, cur, fee))
    return out


def transaction_file(records: list[Rec]) -> pl.DataFrame:
    rows = [
        {
            "Partner_transaction_id": r.key,
            "Transaction_id": f"T{r.ptid}",
            "Transaction_amount": format_amount(r.settle_amount, r.settle_currency),
            "Charge_amount": format_amount(r.fee, r.settle_currency),
            "Currency": r.settle_currency,
            "Payment_time": "2026-11-25 10:00:00",
            "Transaction_type": r.type,
            "Trans_currency": r.trans_currency,
            "Trans_amount": format_amount(r.trans_amount, r.trans_currency),
        }
        for r in records
    ]
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))


def settlement_file(records: list[Rec]) -> pl.DataFrame:
    rows = [
        {
            "Partner_transaction_id": r.key,
            "Amount": format_amount(r.settle_amount, r.settle_currency),
            "Fee": format_amount(r.fee, r.settle_currency),
            "Settlement": format_amount(r.settle_amount - r.fee, r.settle_currency),
            "Currency": r.settle_currency,
            "Type": "P" if r.type == "PAYMENT" else "R",
            "Remarks": {"PAYMENT": "", "REFUND": "Refund", "REVERSAL": "Cancel"}[r.type],
        }
        for r in records
    ]
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String))


def journal_row(r: Rec, **kw: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "record_type": r.type,
        "partner_transaction_id": r.ptid,
        "partner_refund_id": r.prid,
        "transaction_id": f"T{r.ptid}",
        "amount": format_amount(r.trans_amount, r.trans_currency),
        "currency": r.trans_currency,
        "status": "SUCCESS",
        "time": "2026-11-25T10:00:00Z",
        "fee": None,
    }
    row.update(kw)
    return row


def journal(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict.fromkeys(rec.JOURNAL_COLUMNS, pl.String))


def run(rows: list[dict[str, str | None]], records: list[Rec], mdr: int | None = None) -> rec.Result:
    return rec.reconcile(
        rec.normalise_journal(journal(rows)),
        rec.normalise_transaction_file(transaction_file(records)),
        rec.normalise_settlement_file(settlement_file(records)),
        mdr_bps=mdr,
    )


def found(result: rec.Result) -> set[tuple[str, str, str]]:
    return {(r["kind"], r["record_type"], r["key"]) for r in result.differences.iter_rows(named=True)}


RECORDS = day_of_records(40)


def test_identical_records_reconcile_with_no_difference_and_totals_that_close() -> None:
    rows = [journal_row(r) for r in RECORDS]
    # A payment the merchant saw fail is in its journal but not in the files: not a difference.
    rows.append(journal_row(Rec("PAYMENT", "FAILED-1", None, 500, "USD", 500, "USD", 0), status="FAILED"))
    result = run(rows, RECORDS, mdr=250)
    assert result.differences.height == 0, result.differences
    assert result.clean
    assert {t["currency"] for t in result.summary["totals"]} == {"CNY", "JPY", "USD"}


def test_a_merchant_amount_in_the_settlement_currency_matches_too() -> None:
    r = next(x for x in RECORDS if x.trans_currency == "CNY")
    rows = [journal_row(x) for x in RECORDS if x != r]
    rows.append(
        journal_row(r, amount=format_amount(r.settle_amount, r.settle_currency), currency=r.settle_currency)
    )
    assert run(rows, RECORDS).clean


MUTATIONS = (
    "delete",
    "add",
    "amount",
    "currency",
    "failed",
    "fee",
    "duplicate",
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(RECORDS) - 1), st.sampled_from(MUTATIONS)),
        max_size=8,
        unique_by=lambda x: x[0],
    )
)
def test_every_injected_difference_is_found_and_nothing_else(changes: list[tuple[int, str]]) -> None:
    rows: list[dict[str, str | None]] = []
    expected: set[tuple[str, str, str]] = set()
    chosen = dict(changes)
    for i, r in enumerate(RECORDS):
        how = chosen.get(i)
        if how is None:
            rows.append(journal_row(r))
        elif how == "delete":
            expected.add(("missing_in_merchant", r.type, r.key))
        elif how == "add":
            rows.append(journal_row(r))
            ghost = replace(r, ptid=f"GHOST-{i}", prid=f"GHOST-{i}-R" if r.prid else None)
            rows.append(journal_row(ghost))
            expected.add(("missing_in_files", ghost.type, ghost.key))
        elif how == "amount":
            rows.append(journal_row(r, amount=format_amount(r.trans_amount + 1, r.trans_currency)))
            expected.add(("amount_mismatch", r.type, r.key))
        elif how == "currency":
            other = next(c for c in ("EUR", "GBP", "SGD") if c not in (r.trans_currency, r.settle_currency))
            rows.append(journal_row(r, currency=other))
            expected.add(("currency_mismatch", r.type, r.key))
        elif how == "failed":
            rows.append(journal_row(r, status="FAILED"))
            expected.add(("status_mismatch", r.type, r.key))
        elif how == "fee":
            rows.append(journal_row(r, fee=format_amount(r.fee + 3, r.settle_currency)))
            expected.add(("fee_mismatch", r.type, r.key))
        elif how == "duplicate":
            rows += [journal_row(r), journal_row(r)]
            expected.add(("duplicate", r.type, r.key))
    result = run(rows, RECORDS)
    assert found(result) == expected
    assert result.differences.height == len(expected)
    # Every gap between the two sides' totals is explained by the listed differences.
    assert all(t["closes"] for t in result.summary["totals"]), result.summary["totals"]


def test_a_fee_unlike_the_contract_rate_is_found() -> None:
    bad = [replace(r, fee=r.fee + 1) if r.ptid == "P3" and r.type == "PAYMENT" else r for r in RECORDS]
    result = run([journal_row(r) for r in RECORDS], bad, mdr=250)
    assert found(result) == {("fee_mismatch", "PAYMENT", "P3")}


def test_files_that_disagree_with_each_other_are_reported() -> None:
    tx = rec.normalise_transaction_file(transaction_file(RECORDS))
    st_bad = settlement_file(
        [replace(r, settle_amount=r.settle_amount + 1) if r.ptid == "P8" else r for r in RECORDS]
    )
    result = rec.reconcile(
        rec.normalise_journal(journal([journal_row(r) for r in RECORDS])),
        tx,
        rec.normalise_settlement_file(st_bad),
    )
    assert ("file_inconsistency", "PAYMENT", "P8") in found(result)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("record_type", "SALE", "record_type"),
        ("amount", "12.345", "amount"),
        ("amount", "-5.00", "amount"),
        ("currency", "XXX", "currency"),
        ("status", "MAYBE", "status"),
        ("partner_transaction_id", "", "partner_transaction_id"),
    ],
)
def test_a_bad_journal_is_refused_with_its_line(field: str, value: str, message: str) -> None:
    rows = [journal_row(r) for r in RECORDS[:5]]
    rows[2][field] = value
    with pytest.raises(rec.ReconcileInputError) as e:
        rec.normalise_journal(journal(rows))
    assert "line 4" in str(e.value) and message in str(e.value)


@given(st.integers(0, 10**12), st.sampled_from(["USD", "JPY", "BHD", "CNY"]))
def test_amount_text_round_trips_through_the_columnar_parser(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    df = pl.DataFrame({"a": [text], "c": [currency]})
    out = df.select(
        rec.minor(pl.col("a"), pl.col("c")).alias("m"),
        rec.major(rec.minor(pl.col("a"), pl.col("c")), pl.col("c")).alias("t"),
    )
    assert out["m"][0] == minor and out["t"][0] == text
