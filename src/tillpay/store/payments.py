"""The payments repository's reads for the people who see payments: a customer's history, a payment
and its refunds, a QR order by id. (The pay itself writes through services/paypath.py, the ledger
through store/ledger.py.)

A customer's reads are scoped by the customer's user id here: another customer's payment is not found.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain.payment import Status
from tillpay.store import tables as t

_pay = t.payments


class PaymentsRepository:
    """Reads of payments, their refunds and their merchants' names."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def of_customer(self, user_id: int, *, before: int | None, limit: int) -> list[Any]:
        """The customer's payments, newest first (``before``: only ids below it)."""
        q = select(_pay).where(_pay.c.user_id == user_id, _pay.c.kind != "tombstone")
        if before is not None:
            q = q.where(_pay.c.id < before)
        return list((await self.conn.execute(q.order_by(_pay.c.id.desc()).limit(limit))).all())

    async def customer_payment(self, user_id: int, trade_no: str) -> Any:
        """One of the customer's payments by gateway id, or None."""
        return (
            await self.conn.execute(
                select(_pay).where(_pay.c.trade_no == trade_no, _pay.c.user_id == user_id)
            )
        ).first()

    async def waiting_or_newer(self, user_id: int, since_id: int, limit: int = 50) -> list[Any]:
        """The customer's payments waiting for confirmation or newer than ``since_id``, newest first."""
        return list(
            (
                await self.conn.execute(
                    select(_pay)
                    .where(
                        _pay.c.user_id == user_id,
                        or_(_pay.c.status == Status.WAIT_BUYER_PAY.value, _pay.c.id > since_id),
                    )
                    .order_by(_pay.c.id.desc())
                    .limit(limit)
                )
            ).all()
        )

    async def newest_id(self, user_id: int) -> int:
        """The id of the customer's newest payment (0 if none)."""
        value = (
            await self.conn.execute(select(func.max(_pay.c.id)).where(_pay.c.user_id == user_id))
        ).scalar()
        return int(value or 0)

    async def pin_attempts(self, trade_no: str, user_id: int | None = None) -> int:
        """Wrong PINs counted on a payment (of this customer, when ``user_id`` is given); 0 if none."""
        q = select(_pay.c.pin_attempts).where(_pay.c.trade_no == trade_no)
        if user_id is not None:
            q = q.where(_pay.c.user_id == user_id)
        return int((await self.conn.execute(q)).scalar() or 0)

    async def qr_order(self, trade_no: str) -> Any:
        """A merchant-presented QR order (a precreated payment) by gateway id, or None."""
        return (
            await self.conn.execute(
                select(_pay).where(_pay.c.trade_no == trade_no, _pay.c.kind == "precreate")
            )
        ).first()

    async def due_waiting(self, trade_no: str, now: datetime) -> int | None:
        """The id of the payment ``trade_no`` if it still waits but has expired by ``now``, else None."""
        value = (
            await self.conn.execute(
                select(_pay.c.id).where(
                    _pay.c.trade_no == trade_no,
                    _pay.c.status == Status.WAIT_BUYER_PAY.value,
                    _pay.c.expires_at <= now,
                )
            )
        ).scalar()
        return int(value) if value is not None else None

    async def refunds_of(self, payment_ids: Iterable[int]) -> list[Any]:
        """The refunds of these payments, oldest first."""
        ids = list(payment_ids)
        if not ids:
            return []
        return list(
            (
                await self.conn.execute(
                    select(t.refunds).where(t.refunds.c.payment_id.in_(ids)).order_by(t.refunds.c.id)
                )
            ).all()
        )

    async def merchant_names(self, merchant_ids: Iterable[int]) -> dict[int, str]:
        """The names of these merchants by id."""
        ids = set(merchant_ids)
        if not ids:
            return {}
        rows = (
            await self.conn.execute(
                select(t.merchants.c.id, t.merchants.c.name).where(t.merchants.c.id.in_(ids))
            )
        ).all()
        return {r.id: r.name for r in rows}
