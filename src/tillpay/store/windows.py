"""Counting what happened in a sliding time window, under a lock: what three limits share.

The sign-in attempts (store/attempts.py), a merchant's sample batches (``notify_requests``, in
store/merchants.py) and Redeliver (store/outbox.py) each count the rows of one key newer than
``now - window``, decide from the count and the oldest or newest row's time, and record the new one in
the same transaction. The count holds under concurrent requests because the transaction takes a lock
before it counts: on SQLite ``BEGIN IMMEDIATE`` (store/engine.py) is that lock; on PostgreSQL the counted
table is locked EXCLUSIVE (``lock_table``: counters of one table wait for each other, plain reads go on)
or, for Redeliver, the merchant's row (the outbox must stay open to the workers' claims).

What each does with the count differs and stays with it: sign-in attempts back off from the newest
failure (services/attempts.py); samples and Redeliver wait until the oldest leaves (``Window.wait``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True, slots=True)
class Window:
    """The rows of one key in a window: how many, and the oldest and newest one's time."""

    count: int
    oldest: datetime | None
    newest: datetime | None

    def wait(self, limit: int, length: timedelta, now: datetime) -> int:
        """Whole seconds (at least 1) until the oldest row leaves a window of ``length`` when ``limit``
        rows are in it already; 0 while there is room."""
        if self.count < limit or self.oldest is None:
            return 0
        return seconds(self.oldest + length - now)


def seconds(wait: timedelta) -> int:
    """A wait in whole seconds, rounded up, at least 1 (what Retry-After and the messages say)."""
    return max(1, math.ceil(wait.total_seconds()))


async def lock_table(conn: AsyncConnection, table: Table) -> None:
    """PostgreSQL: lock ``table`` EXCLUSIVE, so concurrent counters of it see each other's rows (plain
    reads go on); SQLite's ``BEGIN IMMEDIATE`` already holds the write lock."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"LOCK TABLE {table.name} IN EXCLUSIVE MODE"))


async def count(
    conn: AsyncConnection, at: ColumnElement[Any], key: ColumnElement[bool], since: datetime
) -> Window:
    """The rows matching ``key`` whose time ``at`` is after ``since``: one statement."""
    n, oldest, newest = (
        await conn.execute(select(func.count(), func.min(at), func.max(at)).where(key, at > since))
    ).one()
    return Window(int(n), oldest, newest)
