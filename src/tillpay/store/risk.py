"""The risk repository: rule layers per scope (scheme, merchant, user), the stored decisions, and the
customer's totals the rules count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t

#: Built once: a decision is stored on every pay that runs the rules.
_ADD_DECISION = insert(t.risk_decisions)


class RiskRepository:
    """Rule layers as JSON text keyed by (scope, subject); decisions keyed by payment."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def subject_exists(self, scope: str, subject: str) -> bool:
        """Whether the merchant (partner id) or wallet user (login id) a layer names exists."""
        table, column = (
            (t.merchants, t.merchants.c.partner_id)
            if scope == "merchant"
            else (t.wallet_users, t.wallet_users.c.login_id)
        )
        return (await self.conn.execute(select(table.c.id).where(column == subject))).first() is not None

    async def layer(self, scope: str, subject: str) -> Any:
        """The stored layer (``id``, ``config``) of one scope, or None."""
        rs = t.risk_settings
        return (
            await self.conn.execute(
                select(rs.c.id, rs.c.config).where(rs.c.scope == scope, rs.c.subject == subject)
            )
        ).first()

    async def add_layer(self, scope: str, subject: str, config: str, now: datetime) -> None:
        """Store a scope's first layer."""
        await self.conn.execute(
            insert(t.risk_settings).values(scope=scope, subject=subject, config=config, updated_at=now)
        )

    async def replace_layer(self, layer_id: int, config: str, now: datetime) -> None:
        """Replace a stored layer's rules."""
        rs = t.risk_settings
        await self.conn.execute(update(rs).where(rs.c.id == layer_id).values(config=config, updated_at=now))

    async def layers(self) -> list[Any]:
        """Every stored layer, by scope and subject."""
        rs = t.risk_settings
        return list((await self.conn.execute(select(rs).order_by(rs.c.scope, rs.c.subject))).all())

    async def decision_of(self, trade_no: str) -> Any:
        """The stored decision of the payment ``trade_no`` (with its ``trade_no``), or None."""
        return (
            await self.conn.execute(
                select(t.risk_decisions, t.payments.c.trade_no)
                .join(t.payments, t.payments.c.id == t.risk_decisions.c.payment_id)
                .where(t.payments.c.trade_no == trade_no)
            )
        ).first()

    async def layers_for(self, partner_id: str, login_id: str | None) -> dict[str, str]:
        """The stored layers' text by scope that apply to a payment of the merchant ``partner_id`` (and
        the customer ``login_id``): the scheme's, the merchant's, the customer's, where stored."""
        rs = t.risk_settings
        conds = [and_(rs.c.scope == "scheme", rs.c.subject == "")]
        conds.append(and_(rs.c.scope == "merchant", rs.c.subject == partner_id))
        if login_id:
            conds.append(and_(rs.c.scope == "user", rs.c.subject == login_id))
        rows = (await self.conn.execute(select(rs.c.scope, rs.c.config).where(or_(*conds)))).all()
        return {r.scope: r.config for r in rows}

    async def customer_totals(
        self, user_id: int, day: datetime, month: datetime, since_velocity: datetime
    ) -> tuple[int, int, int]:
        """The customer's paid-or-waiting wallet amounts created since ``day`` and since ``month``, and
        the count of its payments created since ``since_velocity``."""
        pay = t.payments
        counted = or_(pay.c.paid_at.is_not(None), pay.c.status == "WAIT_BUYER_PAY")
        amount = pay.c.wallet_amount
        row = (
            await self.conn.execute(
                select(
                    func.coalesce(func.sum(amount).filter(and_(pay.c.created_at >= day, counted)), 0),
                    func.coalesce(func.sum(amount).filter(and_(pay.c.created_at >= month, counted)), 0),
                    func.count().filter(pay.c.created_at >= since_velocity),
                ).where(
                    pay.c.user_id == user_id,
                    pay.c.created_at >= min(month, since_velocity),
                    pay.c.kind != "tombstone",
                )
            )
        ).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def add_decision(self, values: dict[str, Any]) -> None:
        """Store a payment's decision (the ``risk_decisions`` row ``values``)."""
        await self.conn.execute(_ADD_DECISION, values)
