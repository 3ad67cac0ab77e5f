"""The risk repository: rule layers per scope (scheme, merchant, user) and the stored decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t


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
