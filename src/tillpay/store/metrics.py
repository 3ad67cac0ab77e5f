"""The reads of a metrics scrape: a few counts on indexes, each bounded by ``COUNT_CAP``.

Scrapes come every few seconds whatever the database is doing, so every read here is cheap whatever the
tables hold: a count stops at ``COUNT_CAP`` rows, an oldest-row read takes the minimum of an indexed
column, and risk decisions are counted by id range (``web/metrics.py``'s ``RiskTally`` keeps the
watermark below which they are not read again).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.store import tables as t

#: Counts read on a scrape stop here: an outage's backlog is "at least this many" and the read stays short.
COUNT_CAP = 100_000

_pay, _o, _rd = t.payments, t.outbox, t.risk_decisions
_WAITING = _pay.c.status == "WAIT_BUYER_PAY"  # the leading column of ix_payments_status_expires
_QUEUED = _o.c.status.in_(("pending", "sending"))  # ix_outbox_due
_RISK_COUNTS = select(_rd.c.verdict, _rd.c.rule, func.count()).group_by(_rd.c.verdict, _rd.c.rule)


class MetricsReads:
    """Bounded counts across payments, the outbox, risk decisions and settlement, for ``/metrics``."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _capped(self, *where: ColumnElement[bool]) -> int:
        inner = select(literal(1)).where(*where).limit(COUNT_CAP).subquery()
        return await self.conn.scalar(select(func.count()).select_from(inner)) or 0

    # Risk decisions, by id range

    async def first_decision_after(self, above_id: int, since: datetime) -> int | None:
        """The lowest id above ``above_id`` of a decision recorded after ``since``, or None."""
        value = await self.conn.scalar(
            select(func.min(_rd.c.id)).where(_rd.c.id > above_id, _rd.c.created_at > since)
        )
        return int(value) if value is not None else None

    async def last_decision(self) -> int | None:
        """The highest decision id, or None."""
        value = await self.conn.scalar(select(func.max(_rd.c.id)))
        return int(value) if value is not None else None

    async def decision_counts(self, above_id: int, up_to_id: int | None = None) -> list[Any]:
        """(verdict, rule, count) of the decisions with ids above ``above_id`` (up to ``up_to_id``)."""
        q = _RISK_COUNTS.where(_rd.c.id > above_id)
        if up_to_id is not None:
            q = q.where(_rd.c.id <= up_to_id)
        return list((await self.conn.execute(q)).all())

    # Payments waiting

    async def waiting(self, kind: str) -> int:
        """Payments of ``kind`` (barcode: the customer's confirmation; precreate: QR orders) waiting."""
        return await self._capped(_WAITING, _pay.c.kind == kind)

    async def oldest_waiting(self, kind: str) -> datetime | None:
        """When the oldest payment of ``kind`` still waiting was created, or None."""
        oldest: datetime | None = await self.conn.scalar(
            select(func.min(_pay.c.created_at)).where(_WAITING, _pay.c.kind == kind)
        )
        return oldest

    # Notifications

    async def notifications(self, status: str) -> int:
        """Notifications in ``status`` (pending, sending, failed)."""
        return await self._capped(_o.c.status == status)

    async def notifications_due(self, now: datetime) -> int:
        """Queued notifications whose next attempt is due at ``now``."""
        return await self._capped(_QUEUED, _o.c.next_attempt_at <= now)

    async def oldest_queued(self) -> datetime | None:
        """When the oldest notification still queued was created, or None."""
        oldest: datetime | None = await self.conn.scalar(select(func.min(_o.c.created_at)).where(_QUEUED))
        return oldest

    # Settlement

    async def settlement_runs(self) -> tuple[int, datetime | None]:
        """How many settlement runs are recorded, and when the latest was."""
        count, last = (
            await self.conn.execute(select(func.count(), func.max(t.settlement_runs.c.created_at)))
        ).one()
        return int(count or 0), last

    async def payouts_held(self) -> int:
        """Settlement batches whose payout is held."""
        return await self._capped(t.settlement_batches.c.payout_status == "held")
