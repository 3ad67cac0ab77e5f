"""Cross-aggregate reads for the merchant console: payments with their refunds, risk decisions,
notifications and settlement, the dashboard's sums, the merchant's keys.

In the manner of cosmicpython's ``views.py``: the console's pages read across tables here, and every
method takes the signed-in merchant's id and puts it in the WHERE clause of every statement it runs, so a
payment, refund, notification, batch or key of another merchant is never found (the tenant scoping lives
here, not in the callers). Two writes the console makes on the merchant's own rows are here too: the
notify URL, and Redeliver's rescheduling of a notification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.domain.payment import Status
from tillpay.domain.risk import Verdict
from tillpay.store import outbox
from tillpay.store import tables as t

_pay = t.payments
#: The request an attempt sent: read only for the notification inspector (up to 16 KiB each).
_REQUEST_COLUMNS = ("request_headers", "request_body")


@dataclass(frozen=True, slots=True)
class PaymentQuery:
    """The transaction list's filters as the database sees them; every field is optional.

    ``created_from``/``created_before`` are UTC instants; ``min_amount``/``max_amount`` are minor units of
    ``currency`` (the price currency) when one is given, else of the settlement currency.
    """

    created_from: datetime | None = None
    created_before: datetime | None = None
    status: str | None = None
    store_id: str | None = None
    terminal_id: str | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    currency: str | None = None
    wallet_currency: str | None = None
    dialect: str | None = None
    q: str | None = None


def _conditions(merchant_id: int, f: PaymentQuery) -> list[ColumnElement[bool]]:
    pm = _pay
    conds: list[ColumnElement[bool]] = [pm.c.merchant_id == merchant_id, pm.c.kind != "tombstone"]
    if f.created_from:
        conds.append(pm.c.created_at >= f.created_from)
    if f.created_before:
        conds.append(pm.c.created_at < f.created_before)
    if f.status:
        conds.append(pm.c.status == f.status)
    if f.store_id:
        conds.append(pm.c.store_id == f.store_id)
    if f.terminal_id:
        conds.append(pm.c.terminal_id == f.terminal_id)
    if f.currency:
        conds.append(pm.c.price_currency == f.currency)
    if f.wallet_currency:
        conds.append(pm.c.wallet_currency == f.wallet_currency)
    if f.dialect:
        conds.append(pm.c.dialect == f.dialect)
    amount = pm.c.price_amount if f.currency else pm.c.settle_amount
    if f.min_amount is not None:
        conds.append(amount >= f.min_amount)
    if f.max_amount is not None:
        conds.append(amount <= f.max_amount)
    if f.q:
        q = f.q.strip()
        r, o = t.refunds, t.outbox
        conds.append(
            or_(
                pm.c.trade_no == q,
                pm.c.partner_trans_id == q,
                # Both subqueries are scoped by the merchant too: a refund id of another merchant finds nothing.
                pm.c.id.in_(
                    select(r.c.payment_id).where(
                        r.c.merchant_id == merchant_id, or_(r.c.refund_no == q, r.c.partner_refund_id == q)
                    )
                ),
                pm.c.id.in_(select(o.c.payment_id).where(o.c.merchant_id == merchant_id, o.c.notify_id == q)),
            )
        )
    return conds


class ConsoleReads:
    """The merchant console's reads (and its two writes on the merchant's own rows), under one merchant."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # Payments

    async def payments(
        self, merchant_id: int, f: PaymentQuery, *, before: int | None, limit: int
    ) -> list[Any]:
        """The merchant's payments matching ``f``, newest first (``before``: only ids below it)."""
        conds = _conditions(merchant_id, f)
        if before is not None:
            conds.append(_pay.c.id < before)
        q = select(_pay).where(and_(*conds)).order_by(_pay.c.id.desc()).limit(limit)
        return list((await self.conn.execute(q)).all())

    async def logins(self, user_ids: Iterable[int]) -> dict[int, str]:
        """The login ids of these wallet users (the buyers of the merchant's payments) by user id."""
        ids = set(user_ids)
        if not ids:
            return {}
        u = t.wallet_users
        found = await self.conn.execute(select(u.c.id, u.c.login_id).where(u.c.id.in_(ids)))
        return {r.id: r.login_id for r in found.all()}

    async def payment(self, merchant_id: int, trade_no: str) -> Any:
        """One of the merchant's payments by gateway id (a tombstone too), or None."""
        return (
            await self.conn.execute(
                select(_pay).where(_pay.c.merchant_id == merchant_id, _pay.c.trade_no == trade_no)
            )
        ).first()

    async def refunds(self, merchant_id: int, payment_id: int) -> list[Any]:
        """The refunds of one of the merchant's payments, oldest first."""
        r = t.refunds
        return list(
            (
                await self.conn.execute(
                    select(r)
                    .where(r.c.payment_id == payment_id, r.c.merchant_id == merchant_id)
                    .order_by(r.c.id)
                )
            ).all()
        )

    async def risk_decision(self, merchant_id: int, payment_id: int) -> Any:
        """The stored risk decision of one of the merchant's payments, or None."""
        rd = t.risk_decisions
        return (
            await self.conn.execute(
                select(rd)
                .join(_pay, _pay.c.id == rd.c.payment_id)
                .where(rd.c.payment_id == payment_id, _pay.c.merchant_id == merchant_id)
            )
        ).first()

    async def settlement_of(self, merchant_id: int, payment_id: int) -> list[Any]:
        """The settlement items of one of the merchant's payments (and its refunds) with their batches."""
        si, sb = t.settlement_items, t.settlement_batches
        return list(
            (
                await self.conn.execute(
                    select(si.c.kind, sb.c.settle_date, sb.c.currency, sb.c.payout_status, sb.c.payout_date)
                    .join(sb, sb.c.id == si.c.batch_id)
                    .where(si.c.payment_id == payment_id, sb.c.merchant_id == merchant_id)
                    .order_by(si.c.id)
                )
            ).all()
        )

    # Notifications

    async def notifications(
        self, merchant_id: int, limit: int, *, payment_id: int | None = None
    ) -> tuple[list[Any], list[Any]]:
        """The merchant's latest notifications (of one payment, if given) with the trade_no, and their
        attempts without the requests sent, oldest first."""
        where = t.outbox.c.payment_id == payment_id if payment_id is not None else t.outbox.c.id > 0
        return await self._notifications(merchant_id, where, limit, with_requests=False)

    async def notification(self, merchant_id: int, notify_id: str) -> tuple[list[Any], list[Any]]:
        """One of the merchant's notifications (none or one row) and its attempts with the requests sent."""
        return await self._notifications(
            merchant_id, t.outbox.c.notify_id == notify_id, 1, with_requests=True
        )

    async def _notifications(
        self, merchant_id: int, where: ColumnElement[bool], limit: int, *, with_requests: bool
    ) -> tuple[list[Any], list[Any]]:
        o, a = t.outbox, t.notify_attempts
        rows = list(
            (
                await self.conn.execute(
                    select(o, _pay.c.trade_no)
                    .outerjoin(_pay, _pay.c.id == o.c.payment_id)
                    .where(o.c.merchant_id == merchant_id, where)
                    .order_by(o.c.id.desc())
                    .limit(limit)
                )
            ).all()
        )
        if not rows:
            return rows, []
        columns = (c for c in a.c if with_requests or c.name not in _REQUEST_COLUMNS)
        attempts = (
            await self.conn.execute(
                select(*columns).where(a.c.outbox_id.in_([x.id for x in rows])).order_by(a.c.id)
            )
        ).all()
        return rows, list(attempts)

    async def redeliver(
        self, merchant_id: int, notify_id: str, now: datetime, *, interval: timedelta, per_minute: int
    ) -> outbox.Redelivery | None:
        """Make one of the merchant's notifications due now, within Redeliver's rate limits; None if the
        merchant has no such notification (``store.outbox.redeliver``)."""
        return await outbox.redeliver(
            self.conn, merchant_id, notify_id, now, interval=interval, per_minute=per_minute
        )

    # Dashboard

    async def sales(self, merchant_id: int, since: datetime, until: datetime) -> list[Any]:
        """(price currency, amount, count) of the merchant's payments paid in [since, until)."""
        pm = _pay
        return list(
            (
                await self.conn.execute(
                    select(pm.c.price_currency, func.sum(pm.c.price_amount), func.count())
                    .where(pm.c.merchant_id == merchant_id, pm.c.paid_at >= since, pm.c.paid_at < until)
                    .group_by(pm.c.price_currency)
                )
            ).all()
        )

    async def refunded(self, merchant_id: int, since: datetime, until: datetime) -> list[Any]:
        """(price currency, amount, count) of the merchant's refunds made in [since, until)."""
        r = t.refunds
        return list(
            (
                await self.conn.execute(
                    select(r.c.price_currency, func.sum(r.c.price_amount), func.count())
                    .where(r.c.merchant_id == merchant_id, r.c.created_at >= since, r.c.created_at < until)
                    .group_by(r.c.price_currency)
                )
            ).all()
        )

    async def paid_since(self, merchant_id: int, since: datetime) -> list[Any]:
        """(paid_at, price currency, price amount) of the merchant's payments paid since ``since``."""
        pm = _pay
        return list(
            (
                await self.conn.execute(
                    select(pm.c.paid_at, pm.c.price_currency, pm.c.price_amount).where(
                        pm.c.merchant_id == merchant_id, pm.c.paid_at >= since
                    )
                )
            ).all()
        )

    async def confirm_share(self, merchant_id: int, since: datetime) -> tuple[int, int]:
        """(risk decisions since ``since``, of them the ones asking the customer to confirm)."""
        pm, rd = _pay, t.risk_decisions
        decided = (
            await self.conn.execute(
                select(func.count(), func.sum(case((rd.c.verdict == Verdict.CONFIRM.value, 1), else_=0)))
                .select_from(rd)
                .join(pm, pm.c.id == rd.c.payment_id)
                .where(pm.c.merchant_id == merchant_id, rd.c.created_at >= since)
            )
        ).one()
        return int(decided[0] or 0), int(decided[1] or 0)

    async def declines(self, merchant_id: int, limit: int) -> list[Any]:
        """The merchant's latest payments closed unpaid with a result code, newest first."""
        pm = _pay
        return list(
            (
                await self.conn.execute(
                    select(pm)
                    .where(
                        pm.c.merchant_id == merchant_id,
                        pm.c.status == Status.TRADE_CLOSED.value,
                        pm.c.paid_at.is_(None),
                        pm.c.kind != "tombstone",
                        pm.c.result_code.is_not(None),
                    )
                    .order_by(pm.c.id.desc())
                    .limit(limit)
                )
            ).all()
        )

    # The merchant's own settings

    async def keys(self, merchant_id: int) -> list[Any]:
        """The merchant's public keys, newest version first."""
        k = t.merchant_keys
        return list(
            (
                await self.conn.execute(
                    select(k).where(k.c.merchant_id == merchant_id).order_by(k.c.key_version.desc())
                )
            ).all()
        )

    async def test_partner_of(self, merchant_id: int) -> str | None:
        """The partner id of the merchant's test merchant, if made."""
        m = t.merchants
        value = (await self.conn.execute(select(m.c.partner_id).where(m.c.test_of == merchant_id))).scalar()
        return str(value) if value is not None else None
