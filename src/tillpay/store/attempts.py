"""The sign-in attempts repository: failed sign-ins of the wallet app and of the console, by who.

A book is ``wallet`` or ``console``; what an attempt is counted by is a set of column values
(``{"login_id": ..., "device_id": None}``: a None matches a NULL). The statements are built here, so a
caller never handles the tables. The lock and the count are the windowed counter of store/windows.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.store import tables as t
from tillpay.store import windows

Book = Literal["wallet", "console"]
_TABLES: dict[str, Table] = {"wallet": t.wallet_login_failures, "console": t.console_login_failures}


def _matching(table: Table, by: Mapping[str, Any]) -> ColumnElement[bool]:
    return and_(*(table.c[k].is_(None) if v is None else table.c[k] == v for k, v in by.items()))


class AttemptsRepository:
    """Failed (or reserved) sign-in attempts, counted per login, device or client address."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def lock(self, book: Book) -> None:
        """PostgreSQL: make concurrent reservations wait for each other (plain reads go on); SQLite's
        ``BEGIN IMMEDIATE`` already did."""
        await windows.lock_table(self.conn, _TABLES[book])

    async def recent(self, book: Book, by: Mapping[str, Any], since: datetime) -> tuple[int, datetime | None]:
        """How many attempts matching ``by`` were recorded after ``since``, and the newest one's time."""
        table = _TABLES[book]
        window = await windows.count(self.conn, table.c.created_at, _matching(table, by), since)
        return window.count, window.newest

    async def add(self, book: Book, row: Mapping[str, Any], now: datetime) -> int:
        """Record an attempt; its id."""
        key = (
            await self.conn.execute(insert(_TABLES[book]).values(created_at=now, **row))
        ).inserted_primary_key
        if key is None:
            raise RuntimeError("the attempt's row has no id")
        return int(key[0])

    async def remove(self, book: Book, attempt_id: int, *also: Mapping[str, Any]) -> None:
        """Take back one attempt, and every attempt matching each of ``also``."""
        table = _TABLES[book]
        await self.conn.execute(delete(table).where(table.c.id == attempt_id))
        for by in also:
            await self.conn.execute(delete(table).where(_matching(table, by)))
