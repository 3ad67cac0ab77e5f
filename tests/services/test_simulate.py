"""Simulated days, settled and reconciled, on SQLite and PostgreSQL (the ledger audit runs after each)."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tillpay.domain.errors import Code, TillpayError
from tillpay.services import reconcile, settlement, simulate
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

DAY = date(2026, 11, 25)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 27, 3, 0, tzinfo=UTC))


@pytest.fixture
def files_dir(tmp_path: Path, platform: Platform) -> Path:
    d = tmp_path / "settlements"
    platform.settings.settlement_dir = str(d)
    return d


def reconcile_all(result: simulate.SimResult, files_dir: Path) -> list[reconcile.Report]:
    reports = []
    for m in result.merchants:
        [journal] = [j for j in result.journals if m.partner_id in j.name and j.name.endswith("20261125.csv")]
        reports.append(reconcile.reconcile_merchant(journal, [files_dir / DAY.isoformat() / m.partner_id]))
    return reports


async def test_a_day_through_the_services_settles_and_reconciles_with_no_difference(
    platform: Platform, files_dir: Path, tmp_path: Path
) -> None:
    result = await simulate.simulate(
        platform, DAY, 400, n_merchants=2, journal_dir=tmp_path / "journals", seed=7
    )
    assert result.payments > 350 and result.refunds + result.cancels > 0
    run = await settlement.run_day(platform, DAY)
    assert sum(b.payment_count for b in run.batches) == result.payments
    assert sum(b.refund_count for b in run.batches) == result.refunds
    assert sum(b.reversal_count for b in run.batches) == result.cancels
    for report in reconcile_all(result, files_dir):
        assert report.clean, report.differences
    # Went through the services: every payment used a payment code exactly once.
    async with platform.engine.connect() as conn:
        codes = (await conn.execute(select(func.count()).select_from(t.code_uses))).scalar_one()
    assert codes >= result.payments


async def test_ten_thousand_transactions_settle_reconcile_and_audit_clean(
    platform: Platform, files_dir: Path, tmp_path: Path
) -> None:
    result = await simulate.simulate(
        platform, DAY, 10_000, n_merchants=4, bulk=True, journal_dir=tmp_path / "j"
    )
    assert result.payments + result.failed == 10_000
    run = await settlement.run_day(platform, DAY)
    assert {b.partner_id for b in run.batches} == {m.partner_id for m in result.merchants}
    assert sum(b.payment_count for b in run.batches) == result.payments
    reports = reconcile_all(result, files_dir)
    assert all(r.clean for r in reports), [r.summary for r in reports if not r.clean]
    assert (
        sum(r.summary["inputs"]["file records"] for r in reports)
        == result.payments + result.refunds + result.cancels
    )
    # Re-running the closed day rewrites byte-identical files.
    before = {f.name: (files_dir / f.name).read_bytes() for f in run.files}
    again = await settlement.run_day(platform, DAY)
    assert {f.name: (files_dir / f.name).read_bytes() for f in again.files} == before


async def test_an_edited_journal_record_is_reported(
    platform: Platform, files_dir: Path, tmp_path: Path
) -> None:
    result = await simulate.simulate(platform, DAY, 300, n_merchants=1, bulk=True, journal_dir=tmp_path / "j")
    await settlement.run_day(platform, DAY)
    journal = result.journals[0]
    rows = list(csv.DictReader(journal.open()))
    victim = next(r for r in rows if r["record_type"] == "PAYMENT" and r["status"] == "SUCCESS")
    victim["amount"] = "999.99" if victim["currency"] != "JPY" else "99999"
    with journal.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    [report] = reconcile_all(result, files_dir)
    assert [(r["kind"], r["key"]) for r in report.differences.iter_rows(named=True)] == [
        ("amount_mismatch", victim["partner_transaction_id"])
    ]
    assert all(x["closes"] for x in report.summary["totals"])


async def test_an_ecr_sqlite_journal_is_read_through_a_view(
    platform: Platform, files_dir: Path, tmp_path: Path
) -> None:
    result = await simulate.simulate(platform, DAY, 200, n_merchants=1, bulk=True, journal_dir=tmp_path / "j")
    await settlement.run_day(platform, DAY)
    rows = list(csv.DictReader(result.journals[0].open()))
    ecr = tmp_path / "ecr.db"
    con = sqlite3.connect(ecr)
    # The ECR keeps its own schema (amounts in minor units, its own names); a view maps it.
    con.execute(
        "CREATE TABLE sales (kind TEXT, order_no TEXT, refund_no TEXT, gw_no TEXT, cents INTEGER, cur TEXT, ok INTEGER)"
    )
    con.executemany(
        "INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r["record_type"],
                r["partner_transaction_id"],
                r["partner_refund_id"] or None,
                r["transaction_id"],
                int(r["amount"].replace(".", "")),
                r["currency"],
                r["status"] == "SUCCESS",
            )
            for r in rows
        ],
    )
    con.execute(
        "CREATE VIEW tillpay_journal AS SELECT kind AS record_type, order_no AS partner_transaction_id, "
        "refund_no AS partner_refund_id, gw_no AS transaction_id, "
        "CASE WHEN cur = 'JPY' THEN CAST(cents AS TEXT) ELSE printf('%d.%02d', cents / 100, cents % 100) END AS amount, "
        "cur AS currency, CASE WHEN ok THEN 'SUCCESS' ELSE 'FAILED' END AS status FROM sales"
    )
    con.commit()
    con.close()
    m = result.merchants[0]
    report = reconcile.reconcile_merchant(ecr, [files_dir / DAY.isoformat() / m.partner_id])
    assert report.clean, report.differences


async def test_simulating_the_same_day_and_seed_twice_is_refused(platform: Platform, tmp_path: Path) -> None:
    await simulate.simulate(platform, DAY, 20, n_merchants=1, bulk=True)
    with pytest.raises(TillpayError) as e:
        await simulate.simulate(platform, DAY, 20, n_merchants=1, bulk=True)
    assert e.value.code is Code.ALREADY_EXISTS
    await simulate.simulate(platform, DAY, 20, n_merchants=1, bulk=True, seed=2)


async def test_the_sql_fee_formula_equals_the_domain_rule(platform: Platform) -> None:
    from sqlalchemy import literal

    from tillpay.domain.settlement import payment_fee

    amounts = [0, 1, 199, 200, 201, 4999, 5000, 5001, 123_456_789, 10**12]
    async with platform.engine.connect() as conn:
        for bps in (0, 1, 150, 199, 250, 9999, 10_000):
            got = [
                (await conn.execute(select((literal(a, t.Money) * bps + 5000) // 10000))).scalar_one()
                for a in amounts
            ]
            assert got == [payment_fee(a, bps) for a in amounts]
