"""The codes repository: a payment code's single use and the wrong codes counted against merchants.

Wrong codes are counted per merchant: every count is scoped by the merchant's id, so one merchant's
tills never count against another's (docs/security.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t

_bad, _uses = t.bad_codes, t.code_uses


class CodesRepository:
    """Code uses and wrong codes over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_bad_code(
        self, merchant_id: int, device_no: int | None, terminal_id: str | None, now: datetime
    ) -> None:
        """Record a wrong code the merchant sent (from a device, if the code named one, and a terminal)."""
        await self.conn.execute(
            insert(_bad).values(
                merchant_id=merchant_id, device_no=device_no, terminal_id=terminal_id, created_at=now
            )
        )

    async def bad_codes_since(self, merchant_id: int, since: datetime) -> int:
        """The merchant's wrong codes (all devices and terminals) after ``since``."""
        q = (
            select(func.count())
            .select_from(_bad)
            .where(_bad.c.merchant_id == merchant_id, _bad.c.created_at > since)
        )
        return int((await self.conn.execute(q)).scalar_one())

    async def terminal_bad_codes(self, merchant_id: int, terminal_id: str, since: datetime) -> int:
        """The wrong codes one terminal of the merchant sent after ``since``."""
        q = (
            select(func.count())
            .select_from(_bad)
            .where(
                _bad.c.merchant_id == merchant_id,
                _bad.c.terminal_id == terminal_id,
                _bad.c.created_at > since,
            )
        )
        return int((await self.conn.execute(q)).scalar_one())

    async def device_bad_codes(self, merchant_id: int, device_no: int, since: datetime) -> int:
        """The merchant's wrong codes for one device after ``since``."""
        q = (
            select(func.count())
            .select_from(_bad)
            .where(
                _bad.c.device_no == device_no, _bad.c.merchant_id == merchant_id, _bad.c.created_at > since
            )
        )
        return int((await self.conn.execute(q)).scalar_one())

    async def add_use(self, device_id: int, step: int, slot: int, now: datetime) -> None:
        """Record a code of the device as used (IntegrityError if it was used already)."""
        await self.conn.execute(
            insert(_uses).values(device_id=device_id, step=step, slot=slot, created_at=now)
        )
