"""The sandbox actions repository: what the sandbox does later about a magic payment (docs/sandbox.md).

An action is the customer's answer to a confirmation (``confirm``, ``reject``, or ``qr-<wallet>`` for a
QR order) due at a time on its merchant's clock, or ``fail_notify``: how many more acknowledged
deliveries of the payment's notification are recorded as failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t

_a = t.sandbox_actions


class SandboxActionsRepository:
    """Sandbox actions over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, payment_id: int, merchant_id: int, now: datetime, **action: Any) -> None:
        """Record an action about a payment (``action`` and its ``due_at`` or ``remaining``)."""
        await self.conn.execute(
            insert(_a).values(payment_id=payment_id, merchant_id=merchant_id, created_at=now, **action)
        )

    async def open_answers(self) -> list[Any]:
        """The answers not yet given, soonest first, with their merchant's ``partner_id`` and their
        payment's ``user_id`` and ``trade_no``."""
        return list(
            (
                await self.conn.execute(
                    select(
                        _a.c.id,
                        _a.c.action,
                        _a.c.due_at,
                        t.merchants.c.partner_id,
                        t.payments.c.user_id,
                        t.payments.c.trade_no,
                    )
                    .join(t.merchants, t.merchants.c.id == _a.c.merchant_id)
                    .join(t.payments, t.payments.c.id == _a.c.payment_id)
                    .where(_a.c.done_at.is_(None), _a.c.action != "fail_notify")
                    .order_by(_a.c.due_at)
                )
            ).all()
        )

    async def claim(self, action_id: int, now: datetime) -> bool:
        """Mark an action done; False if another worker did first."""
        res = await self.conn.execute(
            update(_a).where(_a.c.id == action_id, _a.c.done_at.is_(None)).values(done_at=now)
        )
        return bool(res.rowcount == 1)

    async def count_down_failure(self, payment_id: int) -> bool:
        """Take one from the payment's deliveries still to record as failed; False if none was left."""
        res = await self.conn.execute(
            update(_a)
            .where(_a.c.payment_id == payment_id, _a.c.action == "fail_notify", _a.c.remaining > 0)
            .values(remaining=_a.c.remaining - 1)
        )
        return bool(res.rowcount == 1)
