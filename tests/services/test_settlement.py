"""Settlement on SQLite and PostgreSQL: netting, fees, cut-off, late refunds, T+N payouts, files, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

import factories as f
from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import payments, settlement
from tillpay.services.audit import audit
from tillpay.services.payments import PayCommand, RefundCommand
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

DAY = date(2026, 11, 25)
IBAN = "DE89370400440532013000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))


def at(clock: FakeClock, when: datetime) -> None:
    clock.advance((when - clock.now()).total_seconds())


async def pay(p: Platform, m: Merchant, c: f.Customer, amount: int, ptid: str) -> str:
    out = await payments.pay(
        p,
        PayCommand(
            merchant=m,
            partner_trans_id=ptid,
            code=await f.code(p, c),
            price_amount=amount,
            price_currency=m.settlement_currency,
            settle_currency=m.settlement_currency,
            subject="Goods",
            dialect="mapi",
            store_id="S1",
            terminal_id="T1",
        ),
    )
    assert out.code is None, out
    return out.payment.trade_no


async def refund(p: Platform, m: Merchant, ptid: str, rid: str, amount: int) -> None:
    await payments.refund(
        p,
        RefundCommand(
            merchant=m,
            partner_refund_id=rid,
            amount=amount,
            currency=m.settlement_currency,
            dialect="mapi",
            partner_trans_id=ptid,
        ),
    )


async def shop(p: Platform, bps: int = 250, account: bool = True) -> tuple[Merchant, f.Customer]:
    m = (await f.merchant(p, "USD")).merchant
    await settlement.set_fee(p, m.partner_id, bps)
    if account:
        await settlement.set_account(p, m.partner_id, iban=IBAN, bic="COBADEFFXXX", name="Shop Ltd")
    c = await f.customer(p, "USD", balance=10_000_000)
    return m, c


@pytest.fixture
def files_dir(tmp_path: Path, platform: Platform) -> Path:
    d = tmp_path / "settlements"
    platform.settings.settlement_dir = str(d)
    return d


async def test_a_batch_nets_payments_refunds_cancellations_and_fees(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=250)
    await pay(platform, m, c, 1000, "A")
    await pay(platform, m, c, 2000, "B")
    await pay(platform, m, c, 3333, "C")
    clock.advance(600)
    await refund(platform, m, "A", "A-R1", 500)
    await payments.cancel(platform, m, partner_trans_id="B")
    at(clock, datetime(2026, 11, 26, 1, 0, tzinfo=UTC))

    run = await settlement.run_day(platform, DAY)

    [b] = run.batches
    # Fees: 25 + 50 + 83 (33.33 x 2.5 % = 0.83325, half up); the cancellation returns B's 50.
    assert (b.payment_count, b.refund_count, b.reversal_count) == (3, 1, 1)
    assert (b.payments_amount, b.refunds_amount, b.reversals_amount) == (6333, 500, 2000)
    assert b.fee == 25 + 50 + 83 - 50
    assert b.net == 6333 - 500 - 2000 - 108 == 3725
    assert b.payout_amount == 3725 and b.payout_status == "scheduled"
    assert b.payout_date == DAY + timedelta(days=1)
    assert run.payouts == []  # T+1: paid by the next day's run
    assert not await audit(platform)


async def test_the_ledger_moves_exactly_the_batch_totals(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=199)
    for i in range(7):
        await pay(platform, m, c, 1234 + 111 * i, f"P{i}")
    await refund(platform, m, "P3", "P3-R", 100)
    at(clock, datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC))
    [b] = (await settlement.run_day(platform, DAY)).batches
    async with platform.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.postings.c.account, t.postings.c.amount)
                .join(t.journal_entries, t.journal_entries.c.id == t.postings.c.entry_id)
                .where(t.journal_entries.c.ref == f"settlement:{b.id}")
            )
        ).all()
        payable = (
            await conn.execute(
                text("SELECT SUM(amount) FROM postings WHERE account = :a"), {"a": f"merchant:{m.id}:payable"}
            )
        ).scalar_one()
    assert dict(rows) == {
        f"merchant:{m.id}:payable": -(b.fee + b.payout_amount),
        "fee_revenue": b.fee,
        "settlement_clearing": b.payout_amount,
    }
    assert payable == 0  # everything before the cut-off was settled


async def test_a_day_cannot_be_settled_before_its_cutoff(platform: Platform, clock: FakeClock) -> None:
    at(clock, datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    with pytest.raises(TillpayError) as e:
        await settlement.run_day(platform, DAY)
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "cannot be settled" in e.value.detail


async def test_cutoff_is_taken_in_the_scheme_time_zone(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    platform.settings.settlement_timezone = "Asia/Shanghai"
    m, c = await shop(platform)
    at(clock, datetime(2026, 11, 25, 15, 59, tzinfo=UTC))  # 23:59 in Shanghai: day 25
    await pay(platform, m, c, 1000, "LATE-EVENING")
    at(clock, datetime(2026, 11, 25, 16, 1, tzinfo=UTC))  # 00:01 in Shanghai: day 26
    await pay(platform, m, c, 2000, "NEXT-MORNING")
    run = await settlement.run_day(platform, DAY)
    [b] = run.batches
    assert b.payments_amount == 1000
    assert b.cutoff_at == datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


async def test_a_refund_after_cutoff_goes_into_the_next_batch_and_the_closed_day_never_changes(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=100)
    await pay(platform, m, c, 5000, "ORDER")
    at(clock, datetime(2026, 11, 26, 0, 30, tzinfo=UTC))
    await refund(platform, m, "ORDER", "ORDER-R", 1500)  # after day 25's cut-off
    first = await settlement.run_day(platform, DAY)
    assert [(b.payments_amount, b.refunds_amount) for b in first.batches] == [(5000, 0)]
    before = {x.name: (files_dir / x.name).read_bytes() for x in first.files}

    at(clock, datetime(2026, 11, 27, 0, 30, tzinfo=UTC))
    second = await settlement.run_day(platform, DAY + timedelta(days=1))
    assert [(b.payments_amount, b.refunds_amount, b.net) for b in second.batches] == [(0, 1500, -1500)]
    again = await settlement.run_day(platform, DAY)
    assert again.rerun and [b.id for b in again.batches] == [b.id for b in first.batches]
    assert {x.name: (files_dir / x.name).read_bytes() for x in again.files} == before


async def test_rerunning_a_day_rewrites_byte_identical_files(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    await f.rates(platform)
    m, c = await shop(platform)
    cny = await f.customer(platform, "CNY", balance=10_000_000)
    await pay(platform, m, c, 1999, "X1")
    await pay(platform, m, cny, 4550, "X2")
    await refund(platform, m, "X2", "X2-R", 550)
    at(clock, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    first = await settlement.run_day(platform, DAY)
    snapshot = {x.name: (files_dir / x.name).read_bytes() for x in first.files}
    for x in first.files:
        (files_dir / x.name).unlink()
    second = await settlement.run_day(platform, DAY)
    assert {x.name: (files_dir / x.name).read_bytes() for x in second.files} == snapshot
    assert await settlement.verify_files(platform, DAY) == []
    # A digest file accompanies every file, in sha256sum's format.
    for x in second.files:
        digest = (files_dir / (x.name + ".sha256")).read_text()
        assert digest == f"{dom.sha256_hex(snapshot[x.name])}  {x.name.rsplit('/', 1)[-1]}\n"


async def test_transaction_and_settlement_files_have_alipays_layout(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=250)
    at(clock, datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC))
    trade_a = await pay(platform, m, c, 1000, "A")
    trade_b = await pay(platform, m, c, 2000, "B")
    at(clock, datetime(2026, 11, 25, 11, 0, 0, tzinfo=UTC))
    await refund(platform, m, "A", "A-R", 300)
    at(clock, datetime(2026, 11, 25, 11, 5, 0, tzinfo=UTC))
    await payments.cancel(platform, m, partner_trans_id="B")
    at(clock, datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    run = await settlement.run_day(platform, DAY)
    tx_name, st_name = dom.file_names(m.partner_id, DAY, "USD")
    assert {x.name for x in run.files} == {tx_name, st_name}
    tx = (files_dir / tx_name).read_text().splitlines()
    st = (files_dir / st_name).read_text().splitlines()
    name = m.name
    assert tx == [
        f"Partner:{m.partner_id}|Payment_time: 2026-11-25|Total_count:4",
        "|".join(dom.TRANSACTION_COLUMNS),
        f"A|{trade_a}|10.00|0.25|USD|2026-11-25 10:15:30|PAYMENT||5411|{name}|S1|T1|barCode|USD|10.00|1|TILLPAY",
        f"B|{trade_b}|20.00|0.50|USD|2026-11-25 10:15:30|PAYMENT||5411|{name}|S1|T1|barCode|USD|20.00|1|TILLPAY",
        f"A-R|{trade_a}|3.00|0.00|USD|2026-11-25 11:00:00|REFUND|Refund|5411|{name}|S1|T1|barCode|USD|3.00|1|TILLPAY",
        f"B|{trade_b}|20.00|0.50|USD|2026-11-25 11:05:00|REVERSAL|Cancel|5411|{name}|S1|T1|barCode|USD|20.00|1|TILLPAY",
    ]
    settled = "2026-11-26 00:00:00"
    assert st == [
        "|".join(dom.SETTLEMENT_COLUMNS),
        f"A|{trade_a}|10.00|0.25|9.75|USD|2026-11-25 10:15:30|{settled}|P|L||5411|{name}|S1|T1|barCode|USD|10.00|1|TILLPAY",
        f"B|{trade_b}|20.00|0.50|19.50|USD|2026-11-25 10:15:30|{settled}|P|L||5411|{name}|S1|T1|barCode|USD|20.00|1|TILLPAY",
        f"A-R|{trade_a}|3.00|0.00|3.00|USD|2026-11-25 11:00:00|{settled}|R|L|Refund|5411|{name}|S1|T1|barCode|USD|3.00|1|TILLPAY",
        f"B|{trade_b}|20.00|0.50|19.50|USD|2026-11-25 11:05:00|{settled}|R|L|Cancel|5411|{name}|S1|T1|barCode|USD|20.00|1|TILLPAY",
    ]
    assert len(tx[2].split("|")) == 17 and len(st[1].split("|")) == 20


async def test_payouts_are_paid_at_t_plus_n_once_and_written_to_pain001(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=0)
    await pay(platform, m, c, 12345, "BIG")
    at(clock, datetime(2026, 11, 26, 0, 10, tzinfo=UTC))
    await settlement.run_day(platform, DAY)
    at(clock, datetime(2026, 11, 27, 0, 10, tzinfo=UTC))
    run = await settlement.run_day(platform, DAY + timedelta(days=1))
    assert run.batches == []  # nothing happened on the 26th
    [po] = run.payouts
    assert po.payout_amount == 12345 and po.payout_status == "paid"
    [pain] = [x for x in run.files if x.kind == "pain001"]
    xml = (files_dir / pain.name).read_text()
    assert f"<EndToEndId>{po.end_to_end_id}</EndToEndId>" in xml
    assert '<InstdAmt Ccy="USD">123.45</InstdAmt>' in xml
    assert f"<IBAN>{IBAN}</IBAN>" in xml and "<ReqdExctnDt><Dt>2026-11-26</Dt></ReqdExctnDt>" in xml
    rerun = await settlement.run_day(platform, DAY + timedelta(days=1))
    assert [x.id for x in rerun.payouts] == [po.id]
    assert (files_dir / pain.name).read_text() == xml
    async with platform.engine.connect() as conn:
        bank = (
            await conn.execute(
                text("SELECT SUM(amount) FROM postings WHERE account = 'bank' AND currency = 'USD'")
            )
        ).scalar_one()
    assert bank == 12345 - 10_000_000  # the customer's top-up came from the bank, the payout went back


async def test_a_merchant_without_a_bank_account_is_held_until_it_has_one(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=0, account=False)
    await pay(platform, m, c, 800, "X")
    at(clock, datetime(2026, 11, 27, 0, 10, tzinfo=UTC))
    await settlement.run_day(platform, DAY)
    run = await settlement.run_day(platform, DAY + timedelta(days=1))
    assert run.payouts == [] and [b.payout_status for b in run.held] == ["held"]
    with pytest.raises(TillpayError):
        await settlement.set_account(
            platform, m.partner_id, iban="DE00370400440532013000", bic=None, name=None
        )
    await settlement.set_account(
        platform, m.partner_id, iban="de89 3704 0044 0532 0130 00", bic=None, name=None
    )
    at(clock, datetime(2026, 11, 28, 0, 10, tzinfo=UTC))
    run = await settlement.run_day(platform, DAY + timedelta(days=2))
    assert [(b.payout_amount, b.payout_status) for b in run.payouts] == [(800, "paid")]


async def test_a_negative_day_pays_nothing_and_carries_into_the_next(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform, bps=0)
    await pay(platform, m, c, 1000, "D1")
    at(clock, datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    await refund(platform, m, "D1", "D1-R", 1000)
    at(clock, datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    await pay(platform, m, c, 3000, "D3")
    at(clock, datetime(2026, 11, 28, 0, 1, tzinfo=UTC))
    for d in range(3):
        await settlement.run_day(platform, DAY + timedelta(days=d))
    batches = sorted(
        await settlement.list_batches(platform, partner_id=m.partner_id), key=lambda b: b.settle_date
    )
    assert [(b.net, b.carried_in, b.payout_amount) for b in batches] == [
        (1000, 0, 1000),
        (-1000, 0, 0),
        (3000, -1000, 2000),
    ]
    assert not await audit(platform)


async def test_audit_finds_a_closed_batch_that_was_tampered_with(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    m, c = await shop(platform)
    await pay(platform, m, c, 1000, "T")
    at(clock, datetime(2026, 11, 26, 0, 1, tzinfo=UTC))
    [b] = (await settlement.run_day(platform, DAY)).batches
    async with platform.engine.begin() as conn:
        await conn.execute(update(t.settlement_items).values(amount=999))
    names = {x.check for x in await audit(platform)}
    assert {"settlement_batch_totals", "settlement_items_match_sources"} <= names
    with pytest.raises(TillpayError) as e:
        await settlement.run_day(platform, DAY)  # the rewritten file would differ
    assert "never change" in e.value.detail
    async with platform.engine.begin() as conn:
        await conn.execute(update(t.settlement_items).values(amount=1000))
    assert not await audit(platform)
    assert b.payout_amount == 1000 - 25


async def test_fee_and_account_settings_reject_bad_input(platform: Platform) -> None:
    m = (await f.merchant(platform, "USD")).merchant
    for bad in (-1, 10_001):
        with pytest.raises(TillpayError):
            await settlement.set_fee(platform, m.partner_id, bad)
    with pytest.raises(TillpayError) as e:
        await settlement.set_fee(platform, "2088999999999999", 10)
    assert e.value.code is Code.ILLEGAL_PARTNER
    with pytest.raises(TillpayError):
        await settlement.set_account(platform, m.partner_id, iban=IBAN, bic="NOT A BIC", name=None)
    assert (
        await settlement.set_fee(platform, m.partner_id, None) == platform.settings.settlement_default_mdr_bps
    )


async def test_two_runs_of_the_same_day_at_once_settle_it_once(
    platform: Platform, clock: FakeClock, files_dir: Path
) -> None:
    import asyncio

    m, c = await shop(platform)
    for i in range(5):
        await pay(platform, m, c, 1000 + i, f"C{i}")
    at(clock, datetime(2026, 11, 27, 0, 10, tzinfo=UTC))
    other = Platform(platform.settings, clock=clock)
    try:
        await asyncio.gather(
            settlement.run_day(platform, DAY),
            settlement.run_day(other, DAY),
            settlement.run_day(other, DAY + timedelta(days=1)),
        )
    finally:
        await other.close()
    [b] = await settlement.list_batches(platform, day=DAY)
    assert b.payment_count == 5 and b.payout_status == "paid"
    assert not await audit(platform)
