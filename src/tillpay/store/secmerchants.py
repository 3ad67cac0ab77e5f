"""The secondary merchants repository: an acquirer's secondary merchants and their stores.

Every method takes the registering merchant's id and every statement is scoped by it: one partner never
reads or changes another's secondary merchants, even under the same ``secondary_merchant_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore

_sm, _ss = t.secondary_merchants, t.secondary_stores


def _registered_select(merchant_id: Any, smid: Any, store_id: Any) -> list[Any]:
    # A NULL id matches nothing, so a pay that names no secondary merchant costs empty index probes.
    m_where = (_sm.c.merchant_id == merchant_id, _sm.c.secondary_merchant_id == smid)
    s_where = (
        _ss.c.merchant_id == merchant_id,
        _ss.c.secondary_merchant_id == smid,
        _ss.c.store_id == store_id,
    )
    return [
        select(_sm.c.name).where(*m_where).scalar_subquery().label("sm_name"),
        select(_sm.c.status).where(*m_where).scalar_subquery().label("sm_status"),
        select(_ss.c.store_name).where(*s_where).scalar_subquery().label("ss_name"),
        select(_ss.c.store_industry).where(*s_where).scalar_subquery().label("ss_industry"),
        select(_ss.c.status).where(*s_where).scalar_subquery().label("ss_status"),
    ]


def registered_columns() -> list[Any]:
    """What is registered about a pay's secondary merchant and store, as columns of the pay's one read.

    Bind parameters: ``merchant_id``, ``smid``, ``sm_store_id``.
    """
    return _registered_select(bindparam("merchant_id"), bindparam("smid"), bindparam("sm_store_id"))


_REGISTERED: Select[Any] = select(*registered_columns())


class SecondaryRepository:
    """Secondary merchants and their stores, always under the registering merchant's id."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_merchant_if_absent(
        self, merchant_id: int, smid: str, values: dict[str, Any], now: datetime
    ) -> None:
        """Insert the secondary merchant unless it exists (two racing first registrations make one row)."""
        await self.conn.execute(
            insert_ignore(self.conn, _sm, "merchant_id", "secondary_merchant_id").values(
                merchant_id=merchant_id,
                secondary_merchant_id=smid,
                status="active",
                created_at=now,
                updated_at=now,
                **values,
            )
        )

    async def add_store_if_absent(
        self, merchant_id: int, smid: str, store_id: str, values: dict[str, Any], now: datetime
    ) -> bool:
        """Insert the store unless it exists; whether it was inserted now."""
        made = await self.conn.execute(
            insert_ignore(self.conn, _ss, "merchant_id", "secondary_merchant_id", "store_id")
            .values(
                merchant_id=merchant_id,
                secondary_merchant_id=smid,
                store_id=store_id,
                status="active",
                created_at=now,
                updated_at=now,
                **values,
            )
            .returning(_ss.c.id)
        )
        return made.first() is not None

    async def lock_merchant(self, merchant_id: int, smid: str) -> Any:
        """The secondary merchant's row, locked for update."""
        return (
            await self.conn.execute(
                select(_sm)
                .where(_sm.c.merchant_id == merchant_id, _sm.c.secondary_merchant_id == smid)
                .with_for_update()
            )
        ).one()

    async def lock_store(self, merchant_id: int, smid: str, store_id: str) -> Any:
        """The store's row, locked for update."""
        return (
            await self.conn.execute(
                select(_ss)
                .where(
                    _ss.c.merchant_id == merchant_id,
                    _ss.c.secondary_merchant_id == smid,
                    _ss.c.store_id == store_id,
                )
                .with_for_update()
            )
        ).one()

    async def update_merchant(self, row_id: int, values: dict[str, Any], now: datetime) -> None:
        """Overwrite a secondary merchant's registered fields (a row found through this merchant)."""
        await self.conn.execute(update(_sm).where(_sm.c.id == row_id).values(updated_at=now, **values))

    async def update_store(self, row_id: int, values: dict[str, Any], now: datetime) -> None:
        """Overwrite a store's registered fields (a row found through this merchant)."""
        await self.conn.execute(update(_ss).where(_ss.c.id == row_id).values(updated_at=now, **values))

    async def status(self, merchant_id: int, smid: str, store_id: str) -> Any:
        """The statuses and reject reasons of a store and its secondary merchant, or None."""
        return (
            await self.conn.execute(
                select(
                    _sm.c.status,
                    _sm.c.reject_reason,
                    _ss.c.status.label("store_status"),
                    _ss.c.reject_reason.label("store_reject_reason"),
                )
                .select_from(
                    _ss.join(
                        _sm,
                        and_(
                            _sm.c.merchant_id == _ss.c.merchant_id,
                            _sm.c.secondary_merchant_id == _ss.c.secondary_merchant_id,
                        ),
                    )
                )
                .where(
                    _ss.c.merchant_id == merchant_id,
                    _ss.c.secondary_merchant_id == smid,
                    _ss.c.store_id == store_id,
                )
            )
        ).first()

    async def merchants(self, merchant_id: int) -> list[Any]:
        """The merchant's secondary merchants, by id."""
        return list(
            (
                await self.conn.execute(
                    select(_sm).where(_sm.c.merchant_id == merchant_id).order_by(_sm.c.secondary_merchant_id)
                )
            ).all()
        )

    async def stores(self, merchant_id: int) -> list[Any]:
        """Every store of the merchant's secondary merchants, by store id."""
        return list(
            (
                await self.conn.execute(
                    select(_ss).where(_ss.c.merchant_id == merchant_id).order_by(_ss.c.store_id)
                )
            ).all()
        )

    async def set_status(
        self, merchant_id: int, smid: str, store_id: str | None, values: dict[str, Any]
    ) -> bool:
        """Set the status of a secondary merchant (``store_id`` None) or one of its stores; False if none."""
        if store_id is None:
            stmt = update(_sm).where(_sm.c.merchant_id == merchant_id, _sm.c.secondary_merchant_id == smid)
        else:
            stmt = update(_ss).where(
                _ss.c.merchant_id == merchant_id,
                _ss.c.secondary_merchant_id == smid,
                _ss.c.store_id == store_id,
            )
        return (await self.conn.execute(stmt.values(**values))).rowcount == 1

    async def registered(self, merchant_id: int, smid: str, store_id: str | None) -> Any:
        """The row of :func:`registered_columns` for one pay (one statement), or None."""
        row = (
            await self.conn.execute(
                _REGISTERED, {"merchant_id": merchant_id, "smid": smid, "sm_store_id": store_id}
            )
        ).first()
        return row._mapping if row is not None else None
