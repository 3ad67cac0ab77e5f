"""Expiry: a payment waiting for its customer closes when its timeout passes.

A test merchant's payments expire by the merchant's own clock (its test clock, docs/sandbox.md): their
``expires_at`` is in the merchant's time, compared with real time plus the merchant's offset.
"""

from __future__ import annotations

from datetime import timedelta

from tillpay.domain.errors import Code
from tillpay.domain.payment import Event, Status
from tillpay.services import testmode
from tillpay.services.payment_common import close_payment
from tillpay.services.platform import Merchant, Platform
from tillpay.store.uow import Reader, UnitOfWork


async def expire_payment(p: Platform, payment_id: int, *, skip_locked: bool = False) -> bool:
    """Close one waiting payment whose timeout passed; False if it was no longer waiting or not due.

    With ``skip_locked`` (the workers) a payment another transaction holds is left alone: another worker
    is closing it, or the customer is confirming it; if it is still due, the next pass takes it.
    """
    async with p.unit_of_work() as uow:
        return await _expire(p, uow, payment_id, skip_locked)


async def expire_on(p: Platform, r: Reader, payment_id: int, *, skip_locked: bool = False) -> bool:
    """``expire_payment`` on the caller's reader's connection (the pay path's, which on SQLite is the
    process's one connection); what the caller read on it is rolled back first."""
    async with r.then_write() as uow:
        return await _expire(p, uow, payment_id, skip_locked)


async def _expire(p: Platform, uow: UnitOfWork, payment_id: int, skip_locked: bool) -> bool:
    row = await uow.payments.lock_waiting(payment_id, skip_locked=skip_locked)
    if row is None or row.status != Status.WAIT_BUYER_PAY.value or row.expires_at is None:
        return False
    _, offset = await testmode.merchant_of_payment(uow, row.merchant_id)
    now = p.now() + timedelta(seconds=offset)  # the merchant's time (real time for a live one)
    if row.expires_at > now:
        return False
    await close_payment(p, uow, payment_id, Event.EXPIRE, Code.PAYMENT_TIMEOUT, now=now)
    await uow.commit()
    return True


async def expire_due(p: Platform, limit: int = 500, *, merchant: Merchant | None = None) -> int:
    """Close every waiting payment whose timeout passed (of one merchant, if given); returns how many.

    Due by real time first, then, per merchant whose test clock is ahead, due by the merchant's time.
    """
    now = p.now()
    mid = None if merchant is None else merchant.id
    async with p.reader() as r:
        ids = await r.payments.waiting_due(now, limit, mid)
        for ahead, offset in await r.merchants.clocks_ahead(mid):
            if len(ids) >= limit:
                break
            more = await r.payments.waiting_due(now + timedelta(seconds=offset), limit - len(ids), ahead)
            ids.extend(i for i in more if i not in ids)
    closed = 0
    for pid in ids:
        closed += await expire_payment(p, pid, skip_locked=True)
    return closed
