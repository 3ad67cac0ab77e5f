"""A merchant's notify endpoint that times out, answers 500, resets the connection or drips its answer, for a
while under a pay load, then recovers: every notification is delivered, on the schedule, and only once
acknowledged; another merchant's notifications are not held up meanwhile.

The schedule is made short through its setting (``TILLPAY_NOTIFY_SCHEDULE``, one second between attempts)
and the deadline of an attempt through ``TILLPAY_NOTIFY_TIMEOUT_SECONDS``; the notifier's logic is the
production one.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fault_receiver import BAD_MODES, FaultReceiver
from faultkit import Load, Proc, _naive_utc, assert_clean, check, free_port, prepare, record
from sqlalchemy import create_engine, text

import factories as f
from conftest import LOOPBACK_RECEIVERS, LOOPBACK_RECEIVERS_ENV
from notify_receivers import FormReceiver
from tillpay.outbound import OutboundClient
from tillpay.services import payments
from tillpay.services.merchants import NewMerchant
from tillpay.services.platform import FakeClock, Platform
from tillpay.store.engine import sync_url
from tillpay.worker.notifier import deliver_due

#: One attempt right away, then one a second, twenty in all: the fault window is far shorter.
SHORT_SCHEDULE = ",".join(["0"] + ["1"] * 19)


def _outbox(db_url: str) -> tuple[list[Any], dict[int, list[Any]]]:
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, notify_id, status, attempts, payment_id FROM outbox")).all()
            attempts: dict[int, list[Any]] = {}
            for a in conn.execute(
                text("SELECT outbox_id, attempted_at, http_status, error FROM notify_attempts ORDER BY id")
            ).all():
                attempts.setdefault(a.outbox_id, []).append(a)
    finally:
        engine.dispose()
    return rows, attempts


def _until_none_waiting(db_url: str, seconds: float = 30) -> None:
    """Until no payment waits for its customer (the worker closes what expires)."""
    deadline = time.monotonic() + seconds
    engine = create_engine(sync_url(db_url))
    try:
        while True:
            with engine.connect() as conn:
                waiting = conn.execute(
                    text("SELECT count(*) FROM payments WHERE status = 'WAIT_BUYER_PAY'")
                ).scalar_one()
            if not waiting:
                return
            assert time.monotonic() < deadline, f"{waiting} payment(s) still waiting"
            time.sleep(0.1)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.loopback_receivers
def test_a_failing_notify_endpoint_gets_every_notification_once_it_recovers(tmp_path: Path) -> None:
    shop = prepare(f"sqlite:///{tmp_path / 'tillpay.db'}", users=300)
    receiver = FaultReceiver(hold_seconds=3)
    receiver.bad.set()
    env = {
        **LOOPBACK_RECEIVERS_ENV,
        "TILLPAY_NOTIFY_SCHEDULE": SHORT_SCHEDULE,
        "TILLPAY_NOTIFY_TIMEOUT_SECONDS": "1",
    }
    server = Proc(shop.db_url, "serve", port=free_port(), env=env)
    load = Load(shop, server.url, prefix="NE", notify_url=receiver.url).start()
    try:
        load.wait_for_successes(30)
        # The endpoint fails every way at least three times before it recovers.
        deadline = time.monotonic() + 60
        while not all(sum(s.mode == m for s in list(receiver.seen)) >= 3 for m in BAD_MODES):
            assert time.monotonic() < deadline, [s.mode for s in receiver.seen]
            time.sleep(0.1)
        fault_seen = len(receiver.seen)
        receiver.bad.clear()
        recovered_at = time.monotonic()
        load.wait_for_successes(10, after=recovered_at)
        load.stop()
        # The four checks while the worker still runs: it closes the last pays that wait past their
        # timeout (a MAPI notification each), after which nothing more is queued.
        result = check(shop, load)
        # A pay of the load's last moments may still wait for its customer (2 s): once it closes, its
        # notification is the last one queued. Only then is the outbox complete.
        _until_none_waiting(shop.db_url)

        rows, attempts = _outbox(shop.db_url)
        receiver.wait_acknowledged({r.notify_id for r in rows})
        # The worker records the acknowledgement just after it arrives.
        deadline = time.monotonic() + 30
        while any(r.status != "delivered" for r in rows) and time.monotonic() < deadline:
            time.sleep(0.1)
            rows, attempts = _outbox(shop.db_url)
    finally:
        load.stop()
        server.stop()
        receiver.close()

    assert fault_seen >= 3 * len(BAD_MODES)
    assert {r.status for r in rows} == {"delivered"}, [r for r in rows if r.status != "delivered"]
    # Every paid payment of the load was notified.
    engine = create_engine(sync_url(shop.db_url))
    with engine.connect() as conn:
        paid = set(conn.execute(text("SELECT id FROM payments WHERE paid_at IS NOT NULL")).scalars())
    engine.dispose()
    assert paid and paid <= {r.payment_id for r in rows}
    # Acknowledged once each, and never sent again after it was acknowledged.
    acks = receiver.acknowledged()
    assert set(acks) == {r.notify_id for r in rows}
    assert set(acks.values()) == {1}
    last = {s.fields["notify_id"]: s for s in receiver.seen}
    assert all(s.acknowledged for s in last.values())
    # On the schedule: attempt n+1 no sooner than the schedule's n-th wait after attempt n.
    plan = [int(s) for s in SHORT_SCHEDULE.split(",")]
    retried = 0
    for r in rows:
        times = [_naive_utc(a.attempted_at) for a in attempts[r.id]]
        assert len(times) == r.attempts
        for n, (a, b) in enumerate(itertools.pairwise(times), start=1):
            assert b - a >= timedelta(seconds=plan[n]), (r.notify_id, times)
        retried += len(times) > 1
    assert retried > 0
    # The errors the merchant's console shows for the failed attempts: each way the endpoint failed.
    failed = [a for rs in attempts.values() for a in rs if not (a.http_status == 200 and a.error is None)]
    assert any(a.http_status == 500 for a in failed)
    assert any(a.error for a in failed)

    result["notifications"] = len(rows)
    result["notify_attempts"] = sum(len(v) for v in attempts.values())
    result["endpoint_failures_answered"] = fault_seen
    assert_clean(result)
    record("endpoint_faults", "merchant endpoint: timeout, 500, reset, drip, then recovers", None, result)


# --------------------------------------------------- the schedule to the second, and the other merchants


async def _pay(p: Platform, m: NewMerchant, n: int) -> str:
    c = await f.customer(p)
    out = await payments.pay(
        p,
        payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id=f"order-{n}",
            code=await f.code(p, c),
            price_amount=1000,
            price_currency="USD",
            settle_currency="USD",
            subject="Noodles",
            dialect="mapi",
            notify_url=m.merchant.notify_url,
        ),
    )
    return out.payment.trade_no


@pytest.mark.anyio
@pytest.mark.loopback_receivers
async def test_a_failing_endpoint_is_retried_on_the_default_schedule_and_holds_no_one_else(
    platform: Platform, clock: FakeClock
) -> None:
    """The default schedule, with the clock moved to each due time: the bad merchant's notifications are
    tried exactly then; the good merchant's are delivered on the first pass, whatever the bad one does."""
    bad = FaultReceiver(hold_seconds=3)
    bad.bad.set()
    good = FormReceiver()
    platform.settings = platform.settings.model_copy(
        update={**LOOPBACK_RECEIVERS, "notify_timeout_seconds": 1, "notify_per_merchant": 4}
    )
    plan = [int(s) for s in platform.settings.notify_schedule.split(",")]
    try:
        await f.rates(platform)
        a = await f.merchant(platform, notify_url=bad.url)
        b = await f.merchant(platform, notify_url=good.url)
        for n in range(4):
            await _pay(platform, a, n)
        async with OutboundClient.from_settings(platform.settings) as client:
            start = clock.now()
            elapsed = 0
            for attempt in range(1, 5):  # four failed attempts: timeout, 500, reset, drip, in turn
                await _pay(platform, b, 100 + attempt)
                assert await deliver_due(platform, client) == 5  # A's four and B's new one
                assert len(good.received) == attempt  # B's, at once, while A's endpoint fails
                # Nothing of A's is due a second before its next time; all of it is due then.
                clock.advance(plan[attempt] - 1)
                assert await deliver_due(platform, client) == 0
                clock.advance(1)
                elapsed += plan[attempt]
            assert {s.mode for s in bad.seen} == set(BAD_MODES) and not any(s.acknowledged for s in bad.seen)
            bad.bad.clear()  # recovered
            assert await deliver_due(platform, client) == 4
            assert len(bad.acknowledged()) == 4 and set(bad.acknowledged().values()) == {1}
            clock.advance(max(plan))
            assert await deliver_due(platform, client) == 0  # delivered: never sent again
        assert clock.now() - start == timedelta(seconds=elapsed + max(plan))
        # Each of A's notifications: five attempts, at the schedule's times after the payment.
        rows, attempts = await asyncio.to_thread(_outbox, platform.settings.database_url)
        a_ids = {s.fields["notify_id"] for s in bad.seen}
        due = [sum(plan[1:k]) for k in range(1, 6)]  # 0, 240, 840, 1440, 5040 by default
        a_rows = [r for r in rows if r.notify_id in a_ids]
        assert len(a_rows) == 4
        for r in a_rows:
            assert r.status == "delivered" and r.attempts == 5
            offsets = [
                int((_naive_utc(x.attempted_at) - _naive_utc(start)).total_seconds()) for x in attempts[r.id]
            ]
            assert offsets == due
    finally:
        bad.close()
        good.close()
