"""The stores repository: a merchant's stores, terminals and terminal heartbeats.

Every method takes the merchant's id and every statement is scoped by it: one merchant never reads or
changes another's stores (the tenant scoping lives here, not in the callers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore


def disabled_clause(merchant_id: Any, store_id: Any, terminal_id: Any) -> ColumnElement[bool]:
    """True when the terminal, any store it is registered in, or the store is disabled.

    The arguments are values or bind parameters (the pay path's one-statement read uses the latter); a
    NULL store or terminal id matches nothing.
    """
    x, st = t.terminals, t.stores
    return or_(
        exists().where(
            x.c.merchant_id == merchant_id, x.c.terminal_id == terminal_id, x.c.status == "disabled"
        ),
        # A terminal registered in a disabled store is off too, even when the till omits the store id.
        exists().where(
            x.c.merchant_id == merchant_id,
            x.c.terminal_id == terminal_id,
            st.c.merchant_id == merchant_id,
            st.c.store_id == x.c.store_id,
            st.c.status == "disabled",
        ),
        exists().where(st.c.merchant_id == merchant_id, st.c.store_id == store_id, st.c.status == "disabled"),
    )


class StoresRepository:
    """Stores, terminals and heartbeats of merchants, always under one merchant's id."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def stores(self, merchant_id: int) -> list[Any]:
        """The merchant's stores, by store id."""
        s = t.stores
        return list(
            (
                await self.conn.execute(
                    select(s).where(s.c.merchant_id == merchant_id).order_by(s.c.store_id)
                )
            ).all()
        )

    async def terminals(self, merchant_id: int) -> list[Any]:
        """The merchant's terminals, by terminal id."""
        x = t.terminals
        return list(
            (
                await self.conn.execute(
                    select(x).where(x.c.merchant_id == merchant_id).order_by(x.c.terminal_id)
                )
            ).all()
        )

    async def add_store(self, merchant_id: int, store_id: str, name: str, now: datetime) -> None:
        """Insert a store (IntegrityError if the merchant has one with this id)."""
        await self.conn.execute(
            insert(t.stores).values(
                merchant_id=merchant_id, store_id=store_id, name=name, status="active", created_at=now
            )
        )

    async def add_terminal(
        self, merchant_id: int, terminal_id: str, store_id: str | None, name: str, now: datetime
    ) -> None:
        """Insert a terminal (IntegrityError if the merchant has one with this id)."""
        await self.conn.execute(
            insert(t.terminals).values(
                merchant_id=merchant_id,
                terminal_id=terminal_id,
                store_id=store_id,
                name=name,
                status="active",
                created_at=now,
            )
        )

    async def set_status(self, merchant_id: int, kind: str, ident: str, status: str) -> bool:
        """Set a store's or terminal's status; False if the merchant has no such one."""
        table, column = (
            (t.stores, t.stores.c.store_id) if kind == "store" else (t.terminals, t.terminals.c.terminal_id)
        )
        res = await self.conn.execute(
            update(table).where(table.c.merchant_id == merchant_id, column == ident).values(status=status)
        )
        return res.rowcount == 1

    async def disabled(self, merchant_id: int, store_id: str | None, terminal_id: str | None) -> bool:
        """Whether a pay from this store or terminal is switched off: one indexed lookup."""
        return bool(
            (await self.conn.execute(select(disabled_clause(merchant_id, store_id, terminal_id)))).scalar()
        )

    # Heartbeats: one row per (merchant, terminal id), updated in place.

    async def touch_heartbeat(
        self, merchant_id: int, terminal_id: str, latest: dict[str, Any], signed_at: datetime | None
    ) -> bool:
        """Record a beat of a terminal already heard from, if it is newer than the last one recorded:
        a beat with a signed time ``signed_at`` only after an older signed one (or none), an unsigned
        beat only while the terminal has sent no signed time. False if nothing was recorded."""
        h = t.terminal_heartbeats
        mine = (h.c.merchant_id == merchant_id) & (h.c.terminal_id == terminal_id)
        newer: ColumnElement[bool] = (
            h.c.signed_at.is_(None)
            if signed_at is None
            else or_(h.c.signed_at.is_(None), h.c.signed_at < signed_at)
        )
        res = await self.conn.execute(update(h).where(mine, newer).values(**latest, beats=h.c.beats + 1))
        return res.rowcount == 1

    async def has_heartbeat(self, merchant_id: int, terminal_id: str) -> bool:
        """Whether the terminal has a heartbeat row."""
        h = t.terminal_heartbeats
        mine = (h.c.merchant_id == merchant_id) & (h.c.terminal_id == terminal_id)
        return (await self.conn.execute(select(h.c.id).where(mine))).first() is not None

    async def heard_from(self, merchant_id: int) -> int:
        """How many terminals of the merchant have a heartbeat row."""
        h = t.terminal_heartbeats
        return int(
            (
                await self.conn.execute(
                    select(func.count()).select_from(h).where(h.c.merchant_id == merchant_id)
                )
            ).scalar_one()
        )

    async def first_heartbeat(
        self, merchant_id: int, terminal_id: str, latest: dict[str, Any], now: datetime
    ) -> bool:
        """Insert a terminal's first beat; False if a concurrent request inserted it first."""
        h = t.terminal_heartbeats
        ins = insert_ignore(self.conn, h, "merchant_id", "terminal_id").values(
            merchant_id=merchant_id, terminal_id=terminal_id, first_seen_at=now, beats=1, **latest
        )
        return (await self.conn.execute(ins)).rowcount == 1

    async def heartbeats(self, merchant_id: int) -> list[Any]:
        """The merchant's heartbeat rows."""
        h = t.terminal_heartbeats
        return list((await self.conn.execute(select(h).where(h.c.merchant_id == merchant_id))).all())
