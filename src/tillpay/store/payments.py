"""The payments repository: payments and refunds as customers and merchants see them, and the rows the
payment use cases change (a payment's state, a refund, a QR order, a cancelled id's placeholder). (The
pay itself writes through store/paypath.py, the ledger through store/ledger.py.)

A customer's reads are scoped by the customer's user id here and a merchant's by the merchant's id:
another customer's or merchant's payment is not found.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain.payment import Status
from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore

_pay, _ref = t.payments, t.refunds


class PaymentsRepository:
    """Payments and their refunds (and the names of their merchants)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # A merchant's payments.

    async def of_merchant(
        self,
        merchant_id: int,
        *,
        partner_trans_id: str | None = None,
        trade_no: str | None = None,
        lock: bool = False,
    ) -> Any:
        """The merchant's payment by its gateway id or its own id (both: both must match), or None;
        ``lock``: its row locked (``FOR UPDATE``)."""
        q = select(_pay).where(_pay.c.merchant_id == merchant_id)
        # Alipay: if both ids are given, the Alipay transaction id is checked first.
        if trade_no:
            q = q.where(_pay.c.trade_no == trade_no)
            if partner_trans_id:
                q = q.where(_pay.c.partner_trans_id == partner_trans_id)
        elif partner_trans_id:
            q = q.where(_pay.c.partner_trans_id == partner_trans_id)
        else:
            raise ValueError("a merchant's payment is found by one of its ids")
        if lock:
            q = q.with_for_update()
        return (await self.conn.execute(q)).first()

    async def count_of_merchant(self, merchant_id: int, status: Status | None = None) -> int:
        """How many payments the merchant has (in one state, if given), cancelled ids' placeholders aside."""
        q = (
            select(func.count())
            .select_from(_pay)
            .where(and_(_pay.c.merchant_id == merchant_id, _pay.c.kind != "tombstone"))
        )
        if status:
            q = q.where(_pay.c.status == status.value)
        return int((await self.conn.execute(q)).scalar_one())

    async def by_id(self, payment_id: int) -> Any:
        """The payment row with this id (it exists: the caller has just read or written it)."""
        return (await self.conn.execute(select(_pay).where(_pay.c.id == payment_id))).one()

    async def by_trade_no(self, trade_no: str) -> Any:
        """Any payment by gateway id, or None (the operator's and the wallet's lookups)."""
        return (await self.conn.execute(select(_pay).where(_pay.c.trade_no == trade_no))).first()

    async def status_of(self, payment_id: int) -> str:
        """The payment's status."""
        return str(
            (await self.conn.execute(select(_pay.c.status).where(_pay.c.id == payment_id))).one().status
        )

    async def change(self, payment_id: int, **values: Any) -> None:
        """Set columns of one payment (its state, counters, the customer's quote)."""
        await self.conn.execute(update(_pay).where(_pay.c.id == payment_id).values(**values))

    async def add_if_new(self, values: dict[str, Any]) -> int | None:
        """Insert a payment unless the merchant has one with its ``partner_trans_id``; its id, or None."""
        ins = insert_ignore(self.conn, _pay, "merchant_id", "partner_trans_id").values(**values)
        value = (await self.conn.execute(ins.returning(_pay.c.id))).scalar()
        return int(value) if value is not None else None

    # Payments waiting for their customer.

    async def lock_waiting(self, payment_id: int, *, skip_locked: bool = False) -> Any:
        """The payment's id, status, expiry and merchant, its row locked (``skip_locked``: None if another
        transaction holds it), or None."""
        return (
            await self.conn.execute(
                select(_pay.c.id, _pay.c.status, _pay.c.expires_at, _pay.c.merchant_id)
                .where(_pay.c.id == payment_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).first()

    async def waiting_due(self, until: datetime, limit: int, merchant_id: int | None = None) -> list[int]:
        """The ids of up to ``limit`` waiting payments (of one merchant, if given) expired by ``until``."""
        q = select(_pay.c.id).where(_pay.c.status == Status.WAIT_BUYER_PAY.value)
        if merchant_id is not None:
            q = q.where(_pay.c.merchant_id == merchant_id)
        q = q.where(_pay.c.expires_at <= until).limit(limit)
        return [int(i) for i in (await self.conn.execute(q)).scalars().all()]

    async def waiting_for(self, user_id: int) -> list[Any]:
        """The customer's payments waiting for confirmation, newest first."""
        q = (
            select(_pay)
            .where(_pay.c.user_id == user_id, _pay.c.status == Status.WAIT_BUYER_PAY.value)
            .order_by(_pay.c.id.desc())
        )
        return list((await self.conn.execute(q)).all())

    async def lock_to_answer(self, user_id: int, trade_no: str | None, *, precreated: bool = False) -> Any:
        """The waiting payment the customer answers, its row locked, or None: ``trade_no`` of the
        customer's (without it the newest), or with ``precreated`` the QR order ``trade_no``."""
        q = select(_pay).where(_pay.c.status == Status.WAIT_BUYER_PAY.value)
        if precreated:
            q = q.where(_pay.c.trade_no == trade_no, _pay.c.kind == "precreate")
        else:
            q = q.where(_pay.c.user_id == user_id)
            q = q.where(_pay.c.trade_no == trade_no) if trade_no else q.order_by(_pay.c.id.desc())
        return (await self.conn.execute(q.limit(1).with_for_update())).first()

    # Refunds.

    async def refund(self, refund_id: int) -> Any:
        """The refund row with this id (it exists)."""
        return (await self.conn.execute(select(_ref).where(_ref.c.id == refund_id))).one()

    async def merchant_refund(self, merchant_id: int, partner_refund_id: str) -> Any:
        """The id and request digest of the merchant's refund with its own refund id, or None."""
        return (
            await self.conn.execute(
                select(_ref.c.id, _ref.c.request_digest).where(
                    _ref.c.merchant_id == merchant_id, _ref.c.partner_refund_id == partner_refund_id
                )
            )
        ).first()

    async def refund_id_by_no(self, merchant_id: int, refund_no: str) -> int | None:
        """The id of the merchant's refund with the gateway's refund id, or None."""
        value = (
            await self.conn.execute(
                select(_ref.c.id).where(_ref.c.merchant_id == merchant_id, _ref.c.refund_no == refund_no)
            )
        ).scalar()
        return int(value) if value is not None else None

    async def add_refund_if_new(self, values: dict[str, Any]) -> int | None:
        """Insert a refund unless the merchant has one with its ``partner_refund_id``; its id, or None."""
        ins = insert_ignore(self.conn, _ref, "merchant_id", "partner_refund_id").values(**values)
        value = (await self.conn.execute(ins.returning(_ref.c.id))).scalar()
        return int(value) if value is not None else None

    # A customer's payments.

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
