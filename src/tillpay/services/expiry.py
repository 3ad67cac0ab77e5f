"""Expiry: a payment waiting for its customer closes when its timeout passes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain.errors import Code
from tillpay.domain.payment import Event, Status
from tillpay.services.payment_common import (
    close_payment,
)
from tillpay.services.platform import Platform
from tillpay.store import tables as t


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
                select(t.payments.c.id, t.payments.c.status, t.payments.c.expires_at)
                .where(t.payments.c.id == payment_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).first()
        if (
            row is None
            or row.status != Status.WAIT_BUYER_PAY.value
            or row.expires_at is None
            or row.expires_at > p.now()
        ):
            return False
        await close_payment(p, conn, payment_id, Event.EXPIRE, Code.PAYMENT_TIMEOUT)
        return True


async def expire_due(p: Platform, limit: int = 500) -> int:
    """Close every waiting payment whose timeout passed; returns how many closed."""
    async with p.engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    select(t.payments.c.id)
                    .where(
                        t.payments.c.status == Status.WAIT_BUYER_PAY.value,
                        t.payments.c.expires_at <= p.now(),
                    )
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        await conn.rollback()
    closed = 0
    for pid in ids:
        closed += await expire_payment(p, pid, skip_locked=True)
    return closed
