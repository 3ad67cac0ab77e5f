"""The FX repository: exchange rates and margins, each with its history (rows are only ever added)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t


class FxRepository:
    """Rates (``quote`` units per ``base`` unit) and margins (basis points), effective from a time."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_rates(
        self, rows: Sequence[tuple[str, str, Decimal, datetime]], created_at: datetime
    ) -> None:
        """Store rates ``(base, quote, rate, effective_at)``; later rows for a pair win at equal times."""
        await self.conn.execute(
            insert(t.fx_rates),
            [
                {"base": b, "quote": q, "rate": str(r), "effective_at": w, "created_at": created_at}
                for b, q, r, w in rows
            ],
        )

    async def rates_until(self, when: datetime) -> list[Any]:
        """Every rate effective at or before ``when``, oldest first (the last per pair is in force)."""
        fx = t.fx_rates
        return list(
            (
                await self.conn.execute(
                    select(fx.c.base, fx.c.quote, fx.c.rate, fx.c.effective_at)
                    .where(fx.c.effective_at <= when)
                    .order_by(fx.c.effective_at, fx.c.id)
                )
            ).all()
        )

    async def add_margin(
        self, base: str, quote: str, bps: int, effective_at: datetime, created_at: datetime
    ) -> None:
        """Store a margin for a pair (it applies to either direction of conversion)."""
        await self.conn.execute(
            insert(t.fx_margins).values(
                base=base, quote=quote, bps=bps, effective_at=effective_at, created_at=created_at
            )
        )

    async def margin_in_force(self, a: str, b: str, when: datetime) -> int | None:
        """The latest margin between ``a`` and ``b`` (either direction) effective at ``when``; None if none."""
        m = t.fx_margins
        row = (
            await self.conn.execute(
                select(m.c.bps)
                .where(
                    or_(and_(m.c.base == a, m.c.quote == b), and_(m.c.base == b, m.c.quote == a)),
                    m.c.effective_at <= when,
                )
                .order_by(m.c.effective_at.desc(), m.c.id.desc())
                .limit(1)
            )
        ).first()
        return int(row.bps) if row else None

    async def margins_until(self, when: datetime) -> list[Any]:
        """Every margin effective at or before ``when``, oldest first."""
        m = t.fx_margins
        return list(
            (
                await self.conn.execute(
                    select(m.c.base, m.c.quote, m.c.bps, m.c.effective_at)
                    .where(m.c.effective_at <= when)
                    .order_by(m.c.effective_at, m.c.id)
                )
            ).all()
        )
