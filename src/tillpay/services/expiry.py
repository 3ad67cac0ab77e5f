"""Expiry: a payment waiting for its customer closes when its timeout passes.

A test merchant's payments expire by the merchant's own clock (its test clock, docs/sandbox.md): their
``expires_at`` is in the merchant's time, compared with real time plus the merchant's offset.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain.errors import Code
from tillpay.domain.payment import Event, Status
from tillpay.services.payment_common import (
    close_payment,
)
from tillpay.services.platform import Merchant, Platform
from tillpay.store import tables as t
from tillpay.store.uow import Reader


async def expire_payment(p: Platform, payment_id: int, *, skip_locked: bool = False) -> bool:
    """Close one waiting payment whose timeout passed; False if it was no longer waiting or not due.

    With ``skip_locked`` (the workers) a payment another transaction holds is left alone: another worker
    is closing it, or the customer is confirming it; if it is still due, the next pass takes it.
    """
    async with p.engine.connect() as conn:
        return await expire_on(p, conn, payment_id, skip_locked=skip_locked)


async def expire_on(
    p: Platform, conn: AsyncConnection, payment_id: int, *, skip_locked: bool = False
) -> bool:
    await conn.rollback()
    async with conn.begin():
        row = (
            await conn.execute(
                select(
                    t.payments.c.id, t.payments.c.status, t.payments.c.expires_at, t.payments.c.merchant_id
                )
                .where(t.payments.c.id == payment_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).first()
        if row is None or row.status != Status.WAIT_BUYER_PAY.value or row.expires_at is None:
            return False
        offset = (
            await conn.execute(
                select(t.merchants.c.clock_offset_seconds).where(t.merchants.c.id == row.merchant_id)
            )
        ).scalar_one()
        now = p.now() + timedelta(seconds=offset)  # the merchant's time (real time for a live one)
        if row.expires_at > now:
            return False
        await close_payment(p, Reader.on(conn), payment_id, Event.EXPIRE, Code.PAYMENT_TIMEOUT, now=now)
        return True


async def expire_due(p: Platform, limit: int = 500, *, merchant: Merchant | None = None) -> int:
    """Close every waiting payment whose timeout passed (of one merchant, if given); returns how many.

    Due by real time first, then, per merchant whose test clock is ahead, due by the merchant's time.
    """
    pay, m = t.payments, t.merchants
    now = p.now()
    async with p.engine.connect() as conn:
        waiting = select(pay.c.id).where(pay.c.status == Status.WAIT_BUYER_PAY.value)
        if merchant is not None:
            waiting = waiting.where(pay.c.merchant_id == merchant.id)
        ids = list((await conn.execute(waiting.where(pay.c.expires_at <= now).limit(limit))).scalars().all())
        ahead_q = select(m.c.id, m.c.clock_offset_seconds).where(m.c.clock_offset_seconds > 0)
        if merchant is not None:
            ahead_q = ahead_q.where(m.c.id == merchant.id)
        for mid, offset in (await conn.execute(ahead_q)).all():
            if len(ids) >= limit:
                break
            more = (
                await conn.execute(
                    waiting.where(
                        pay.c.merchant_id == mid, pay.c.expires_at <= now + timedelta(seconds=offset)
                    ).limit(limit - len(ids))
                )
            ).scalars()
            ids.extend(i for i in more if i not in ids)
        await conn.rollback()
    closed = 0
    for pid in ids:
        closed += await expire_payment(p, pid, skip_locked=True)
    return closed
