"""The simulation repository: ``tillpay simulate --bulk`` writes a day's rows in large batches.

Only simulated data is written this way (services/simulate.py computes the rows with the services'
rules); the ledger entries go through the ledger writer's batch form, ``store.ledger.post_entries``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tillpay.store import tables as t

_pay = t.payments


async def set_sqlite_synchronous(engine: AsyncEngine, level: str) -> None:
    """SQLite: set ``PRAGMA synchronous`` on the pool's one connection (PostgreSQL: nothing)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        # On the driver's connection: SQLAlchemy's begin hook would open a transaction first, and
        # SQLite refuses to change the safety level inside one.
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute(f"PRAGMA synchronous={level}")


class SimulationRepository:
    """Simulated payments, their risk decisions and refunds, written in batches."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def payments_prefixed(self, prefix: str) -> int:
        """How many payments have a merchant transaction id starting with ``prefix``."""
        q = select(func.count()).select_from(_pay).where(_pay.c.partner_trans_id.like(prefix + "%"))
        return int((await self.conn.execute(q)).scalar_one())

    async def add_payments(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert payments; their ids, in the rows' order."""
        ids = await self.conn.execute(insert(_pay).returning(_pay.c.id, sort_by_parameter_order=True), rows)
        return list(ids.scalars().all())

    async def add_risk_decisions(self, rows: list[dict[str, Any]]) -> None:
        """Insert the payments' risk decisions."""
        await self.conn.execute(insert(t.risk_decisions), rows)

    async def add_refunds(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert refunds and cancellations; their ids, in the rows' order."""
        r = t.refunds
        ids = await self.conn.execute(insert(r).returning(r.c.id, sort_by_parameter_order=True), rows)
        return list(ids.scalars().all())

    async def set_payment(self, payment_id: int, values: dict[str, Any]) -> None:
        """Change a payment's columns (what its refunds left of it)."""
        await self.conn.execute(update(_pay).where(_pay.c.id == payment_id).values(**values))
