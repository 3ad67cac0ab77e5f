"""The clock moves under a running scheme: a step forward (an NTP correction, a VM resumed) and a step back.

Tillpay has no setting that moves a process's clock, so these run at the service level with the clock
every service reads (``Platform.clock``) replaced by a ``FakeClock`` that the test steps; the services, the
database and the settlement run are the production ones. The rules checked:

- a step forward expires every waiting payment that became due, each exactly once, and a customer who
  confirms one late is refused, not charged;
- a step back un-expires nothing (a closed payment stays closed) and only delays what is still waiting
  (its expiry is an instant, not a countdown);
- a settlement run never settles a day before its cut-off by the clock, a run again after a step back is
  the same run (nothing settled twice), and a payment stamped inside a day already settled (made while
  the clock was behind) is settled once, by the next day's run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import factories as f
from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import payments, settlement, wallets
from tillpay.services.audit import audit
from tillpay.services.payments import PayCommand
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

IBAN = "DE89370400440532013000"


def at(clock: FakeClock, when: datetime) -> None:
    clock.advance((when - clock.now()).total_seconds())


async def _pay(p: Platform, m: Merchant, c: f.Customer, amount: int, ptid: str) -> Any:
    return await payments.pay(
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
        ),
    )


async def _status(p: Platform, m: Merchant, ptid: str) -> Status:
    return (await payments.query(p, m, partner_trans_id=ptid)).status


async def test_a_step_forward_expires_what_is_due_once_and_a_step_back_revives_nothing(
    platform: Platform, clock: FakeClock
) -> None:
    timeout = platform.settings.payment_timeout_seconds
    m = (await f.merchant(platform, "CNY")).merchant
    customers = [await f.customer(platform, "CNY", balance=1_000_000) for _ in range(4)]
    # Three payments wait for their customers (above the confirmation limit), a minute apart.
    for i, c in enumerate(customers[:3]):
        out = await _pay(platform, m, c, 250_000, f"W-{i}")
        assert out.code is Code.WAIT_BUYER_CONFIRM
        clock.advance(60)
    # The clock steps an hour forward: all three are past their expiry at once.
    clock.advance(3600)
    # W-0's customer confirms before the worker's pass: refused as expired, and closed then.
    with pytest.raises(TillpayError) as e:
        await payments.confirm(platform, customers[0].user.id, customers[0].pin)
    assert e.value.code is Code.PAYMENT_TIMEOUT
    assert await payments.expire_due(platform) == 2  # W-1 and W-2; W-0 is closed already
    assert await payments.expire_due(platform) == 0  # once each
    for i in range(3):
        assert await _status(platform, m, f"W-{i}") is Status.TRADE_CLOSED

    # A payment that waits, then the clock steps back two hours.
    assert (await _pay(platform, m, customers[3], 250_000, "W-3")).code is Code.WAIT_BUYER_CONFIRM
    due = clock.now() + timedelta(seconds=timeout)
    clock.advance(-7200)
    assert await payments.expire_due(platform) == 0
    for i in range(3):  # closed stays closed: nothing is confirmable again
        assert await _status(platform, m, f"W-{i}") is Status.TRADE_CLOSED
    for c in customers[:3]:
        with pytest.raises(TillpayError) as e:
            await payments.confirm(platform, c.user.id, c.pin)
        assert e.value.code is Code.CONFIRMATION_NOT_FOUND
    # W-3 expires at its instant, which is now further away by the clock: it waits, then closes once.
    assert await _status(platform, m, "W-3") is Status.WAIT_BUYER_PAY
    at(clock, due - timedelta(seconds=1))
    assert await payments.expire_due(platform) == 0
    at(clock, due)
    assert await payments.expire_due(platform) == 1
    assert await payments.expire_due(platform) == 0
    # Nobody was charged: every wallet is as it was funded.
    for c in customers:
        assert (await wallets.user_by_login(platform, c.user.login_id)).balance == 1_000_000
    assert not await audit(platform)


async def _items_per_payment(p: Platform) -> dict[int, int]:
    si = t.settlement_items
    async with p.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(si.c.payment_id, func.count())
                .where(si.c.kind == dom.PAYMENT)
                .group_by(si.c.payment_id)
            )
        ).all()
    return {r[0]: r[1] for r in rows}


async def test_a_settlement_run_under_a_clock_stepped_back_and_forth(
    platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    platform.settings.settlement_dir = str(tmp_path / "settlements")
    at(clock, datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    day = clock.now().date()  # UTC, cut-off 24:00 (the defaults)
    m = (await f.merchant(platform, "USD")).merchant
    await settlement.set_fee(platform, m.partner_id, 250)
    await settlement.set_account(platform, m.partner_id, iban=IBAN, bic="COBADEFFXXX", name="Shop Ltd")
    c = await f.customer(platform, "USD", balance=10_000_000)
    a = (await _pay(platform, m, c, 1000, "A")).payment
    b = (await _pay(platform, m, c, 2000, "B")).payment

    # Before the cut-off by the clock the day cannot be settled.
    at(clock, datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    with pytest.raises(TillpayError) as e:
        await settlement.run_day(platform, day)
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    # The clock steps over the cut-off: the day is settled.
    at(clock, datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    first = await settlement.run_day(platform, day)
    assert not first.rerun and [x.payment_count for x in first.batches] == [2]

    # The clock steps back into the settled day: no run of it, and a pay made now is stamped inside it.
    at(clock, datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    with pytest.raises(TillpayError):
        await settlement.run_day(platform, day)
    assert settlement.last_closed_day(platform) == day - timedelta(days=1)
    late = (await _pay(platform, m, c, 4000, "C")).payment
    assert late.paid_at is not None and late.paid_at.date() == day

    # Forward again: the day's run is the same run, nothing settled twice, the late pay not slipped in.
    at(clock, datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    again = await settlement.run_day(platform, day)
    assert again.rerun and [x.payment_count for x in again.batches] == [2]
    assert [x.id for x in again.batches] == [x.id for x in first.batches]
    # The next day's run settles the late pay, once.
    at(clock, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    nxt = await settlement.run_day(platform, day + timedelta(days=1))
    assert [x.payment_count for x in nxt.batches] == [1]
    ids = await _items_per_payment(platform)
    async with platform.engine.connect() as conn:
        pid = {
            r.trade_no: r.id
            for r in (await conn.execute(select(t.payments.c.id, t.payments.c.trade_no))).all()
        }
    assert ids == {pid[a.trade_no]: 1, pid[b.trade_no]: 1, pid[late.trade_no]: 1}
    assert not await audit(platform)
