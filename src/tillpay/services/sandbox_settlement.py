"""Test settlement: a test merchant's business days, closed by its own clock, as test files.

A test merchant is never in a live run (services/settlement.py leaves it out; ``tillpay audit`` checks).
Instead, every business day whose cut-off has passed on the merchant's clock is netted the way a live
batch is (the same fee rounding, refunds and reversals, a negative day carried forward) and written as
files of the live formats below ``<settlement_dir>/test/``, every name starting ``TEST_``:

- ``test/<day>/<partner>/TEST_<partner>_transaction_<yyyymmdd>_<cur>.txt`` and ``..._settlement_...``;
- ``test/<day>/<partner>/TEST_<partner>_payouts_<yyyymmdd>.csv``: the T+N payouts whose value date is
  that day. A test payout is a line in a test file, never a bank payout: there is no pain.001, no ledger
  entry, and the money (sandbox money) stays where it is.

Nothing is stored but the files: they are made again from the payments, the same bytes each time, so a
run is idempotent and the files of a day stay as they were once the day closed.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import format_amount
from tillpay.services.platform import Merchant, Platform
from tillpay.services.settlement import FileView

ROOT = "test"
PAYOUT_COLUMNS = ("End_to_end_id", "Settle_date", "Value_date", "Currency", "Amount", "Mode")


@dataclass(frozen=True, slots=True)
class TestBatch:
    """One test business day of one currency, netted."""

    settle_date: date
    currency: str
    totals: dom.Totals
    payout_date: date
    paid_out: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        x = self.totals
        return {
            "settle_date": self.settle_date.isoformat(),
            "currency": self.currency,
            "payment_count": x.payment_count,
            "refund_count": x.refund_count,
            "reversal_count": x.reversal_count,
            "fee": x.fee,
            "net": x.net,
            "payout_amount": x.payout_amount,
            "payout_date": self.payout_date.isoformat(),
            "payout_status": "test-paid" if self.paid_out else ("scheduled" if x.payout_amount else "none"),
        }


@dataclass(frozen=True, slots=True)
class TestRun:
    """A test merchant's settlement up to its clock: the closed days, their batches and files."""

    partner_id: str
    last_closed: date
    batches: list[TestBatch] = field(default_factory=list)
    files: list[FileView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "partner_id": self.partner_id,
            "last_closed_day": self.last_closed.isoformat(),
            "batches": [b.to_json() for b in self.batches],
            "files": [f.to_json() for f in self.files],
        }


def _names(partner_id: str, day: date, currency: str) -> tuple[str, str]:
    tx, st = dom.file_names(partner_id, day, currency)
    return _test_name(tx), _test_name(st)


def _test_name(live_name: str) -> str:
    folder, _, base = live_name.rpartition("/")
    return f"{ROOT}/{folder}/TEST_{base}"


def _payout_name(partner_id: str, day: date) -> str:
    return f"{ROOT}/{day.isoformat()}/{partner_id}/TEST_{partner_id}_payouts_{day.strftime('%Y%m%d')}.csv"


def _write(root: Path, name: str, text: str) -> tuple[str, int]:
    data = text.encode("utf-8")
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    digest = dom.sha256_hex(data)
    path.with_name(path.name + ".sha256").write_text(dom.digest_text(digest, path.name))
    return digest, len(data)


async def run(p: Platform, merchant: Merchant, *, directory: str | Path | None = None) -> TestRun:
    """Settle every business day of the test merchant closed by its clock and write its test files."""
    if not merchant.is_test:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "test settlement is for test merchants only")
    s = p.settings
    try:
        z = dom.zone(s.settlement_timezone)
        mine = merchant.clock(p.now())
        last_closed = dom.business_day(mine, s.settlement_timezone, s.settlement_cutoff) - timedelta(days=1)
        upto = dom.cutoff_at(last_closed, s.settlement_timezone, s.settlement_cutoff)
    except dom.SettlementConfigError as e:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, str(e)) from None

    def day_of(instant: datetime) -> date:
        return dom.business_day(instant, s.settlement_timezone, s.settlement_cutoff)

    async with p.reader() as r:
        bps_row = await r.settlement.fee_of(merchant.id)
        payments = await r.settlement.test_payments(merchant.id, upto)
        refunds = await r.settlement.test_refunds(merchant.id, upto)
    bps = bps_row if bps_row is not None else s.settlement_default_mdr_bps
    # (day, currency) -> [(occurred_at, order, FileRow)]
    days: dict[tuple[date, str], list[tuple[datetime, int, dom.FileRow]]] = defaultdict(list)

    def file_row(r: Any, kind: str, amount: int, fee: int, at: datetime) -> dom.FileRow:
        refund = kind == dom.REFUND
        return dom.FileRow(
            kind=kind,
            partner_transaction_id=r.partner_refund_id if refund else r.partner_trans_id,
            transaction_id=r.trade_no,
            amount=amount,
            fee=fee,
            currency=r.settle_currency,
            occurred_at=at,
            trans_currency=r.price_currency,
            trans_amount=r.price_amount if kind == dom.PAYMENT else r.refund_price_amount,
            forex_rate=r.settle_rate,
            mcc=merchant.mcc,
            merchant_name=merchant.name,
            store_id=r.store_id,
            terminal_id=r.terminal_id,
            payment_kind=r.kind,
            secondary_merchant_id=r.secondary_merchant_id,
            secondary_merchant_name=r.secondary_merchant_name,
            secondary_merchant_industry=r.secondary_merchant_industry,
            store_name=r.store_name,
        )

    for r in payments:
        fee = dom.payment_fee(r.settle_amount, bps)
        days[(day_of(r.paid_at), r.settle_currency)].append(
            (r.paid_at, r.id, file_row(r, dom.PAYMENT, r.settle_amount, fee, r.paid_at))
        )
    for r in refunds:
        # A cancellation returns the fee its payment was charged, as in a live batch.
        kind = dom.REVERSAL if r.refund_kind == "cancel" else dom.REFUND
        fee = dom.payment_fee(r.settle_amount, bps) if kind == dom.REVERSAL else 0
        days[(day_of(r.refunded_at), r.settle_currency)].append(
            (r.refunded_at, r.refund_id, file_row(r, kind, r.refund_settle_amount, fee, r.refunded_at))
        )

    root = Path(directory or s.settlement_dir)
    batches: list[TestBatch] = []
    files: list[FileView] = []
    carried: dict[str, int] = defaultdict(int)
    payouts: dict[date, list[tuple[TestBatch, str]]] = defaultdict(list)
    for day, currency in sorted(days):
        rows = [fr for _, _, fr in sorted(days[(day, currency)], key=lambda x: (x[0], x[2].kind, x[1]))]
        totals = dom.net((dom.Item(r.kind, r.amount, r.fee) for r in rows), carried[currency])
        carried[currency] = totals.carry_out
        try:
            value_date = dom.payout_date(day, s.settlement_days)
        except dom.SettlementConfigError as e:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, str(e)) from None
        batch = TestBatch(day, currency, totals, value_date, value_date <= last_closed)
        batches.append(batch)
        cutoff = dom.cutoff_at(day, s.settlement_timezone, s.settlement_cutoff)
        tx_name, st_name = _names(merchant.partner_id, day, currency)
        tx = dom.transaction_header(merchant.partner_id, day, len(rows)) + dom.column_line(
            dom.TRANSACTION_COLUMNS
        )
        tx += "".join(dom.transaction_line(r, z) for r in rows)
        st = dom.column_line(dom.SETTLEMENT_COLUMNS) + "".join(
            dom.settlement_line(r, cutoff, z) for r in rows
        )
        for name, kind, text in ((tx_name, "transaction", tx), (st_name, "settlement", st)):
            digest, size = _write(root, name, text)
            files.append(FileView(name, kind, day, merchant.partner_id, digest, size, test=True))
        if batch.paid_out and totals.payout_amount > 0:
            payouts[value_date].append((batch, dom.end_to_end_id(day, merchant.partner_id, currency)))
    for value_date in sorted(payouts):
        lines = [dom.column_line(PAYOUT_COLUMNS)]
        for batch, e2e in payouts[value_date]:
            amount = format_amount(batch.totals.payout_amount, batch.currency)
            lines.append(
                f"{e2e}|{batch.settle_date.isoformat()}|{value_date.isoformat()}|{batch.currency}|{amount}|TEST\n"
            )
        name = _payout_name(merchant.partner_id, value_date)
        digest, size = _write(root, name, "".join(lines))
        files.append(FileView(name, "payouts", value_date, merchant.partner_id, digest, size, test=True))
    return TestRun(merchant.partner_id, last_closed, batches, files)


def file_path(p: Platform, merchant: Merchant, name: str, directory: str | Path | None = None) -> Path:
    """Where the test merchant's test file ``name`` is; NOT_FOUND for any other name."""
    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[0] != ROOT
        or parts[2] != merchant.partner_id
        or not parts[3].startswith(f"TEST_{merchant.partner_id}_")
        or any(x in ("", ".", "..") for x in parts)
    ):
        raise TillpayError(Code.NOT_FOUND, "no such file")
    path = Path(directory or p.settings.settlement_dir) / name
    if not path.is_file():
        raise TillpayError(Code.NOT_FOUND, "no such file")
    return path
