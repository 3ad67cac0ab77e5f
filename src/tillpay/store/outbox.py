"""The outbox's SQL: enqueue (in the change's own transaction), claim, record an attempt, redeliver.

A notification exists iff the change it tells of was committed: ``enqueue`` runs on the caller's
connection, inside its transaction. The worker claims due rows (``claim``: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers in several processes never take the same one; SQLite has one writer) and marks
each ``sending`` until a lease passes; ``record_attempt`` then writes the attempt and the row's next
state (delivered, failed, or pending again at its next time).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tillpay import logs
from tillpay.store import tables as t
from tillpay.store import windows

_o = t.outbox


async def enqueue(
    conn: AsyncConnection,
    *,
    notify_id: str,
    merchant_id: int,
    url: str,
    event: str,
    dialect: str,
    payload: dict[str, Any],
    now: datetime,
    payment_id: int | None = None,
    refund_id: int | None = None,
    sign_type: str = "RSA2",
) -> None:
    """Put a notification in the outbox, in the caller's transaction, due now, with the id of the request
    being answered (``logs.request_id``), which its deliveries send and log."""
    await conn.execute(
        insert(_o).values(
            notify_id=notify_id,
            merchant_id=merchant_id,
            payment_id=payment_id,
            refund_id=refund_id,
            event=event,
            dialect=dialect,
            url=url,
            sign_type=sign_type,
            payload=json.dumps(payload, separators=(",", ":")),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            request_id=logs.request_id.get(),
        )
    )


async def claim(
    engine: AsyncEngine,
    *,
    now: datetime,
    limit: int,
    per_merchant: int,
    busy: Mapping[int, int],
    lease_until: datetime,
) -> list[Row[Any]]:
    """Take up to ``limit`` due notifications in one transaction and mark them ``sending`` until
    ``lease_until``; never so many of one merchant that it would have more than ``per_merchant`` in
    flight (``busy``: merchant id → in flight now)."""
    saturated = [m for m, n in busy.items() if n >= per_merchant]
    async with engine.begin() as conn:
        # "sending" past its lease: the worker that claimed it stopped before recording the attempt.
        q = select(_o).where(_o.c.status.in_(("pending", "sending")), _o.c.next_attempt_at <= now)
        if saturated:
            # Left out in SQL, not after: one merchant's backlog must not fill the window others are in.
            q = q.where(_o.c.merchant_id.not_in(saturated))
        q = q.order_by(_o.c.next_attempt_at, _o.c.id).limit(2 * limit)
        if conn.dialect.name == "postgresql":
            # Workers in several processes never take the same notification.
            q = q.with_for_update(skip_locked=True)
        taken = Counter(busy)
        rows: list[Row[Any]] = []
        for r in (await conn.execute(q)).all():
            if len(rows) < limit and taken[r.merchant_id] < per_merchant:
                rows.append(r)
                taken[r.merchant_id] += 1
        if rows:
            await conn.execute(
                update(_o)
                .where(_o.c.id.in_([r.id for r in rows]))
                .values(status="sending", next_attempt_at=lease_until)
            )
    return rows


#: The longest request body an attempt keeps, in characters; a longer one is cut and ends in CUT_MARK.
REQUEST_BODY_CHARS = 16 * 1024
CUT_MARK = "…[cut]"

#: Headers never kept even if a caller set them (a notification carries no secret in its headers: the
#: dialects put a signature there at most, never a key; this is the guard should that ever change).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a sent request as an attempt keeps them: all but the credential-bearing ones."""
    return {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def kept_body(body: bytes) -> str:
    """The body of a sent request as an attempt keeps it: UTF-8 text, at most ``REQUEST_BODY_CHARS``."""
    text = body.decode("utf-8", "replace")
    if len(text) <= REQUEST_BODY_CHARS:
        return text
    return text[: REQUEST_BODY_CHARS - len(CUT_MARK)] + CUT_MARK


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt as the merchant's console shows it: the request as sent (headers and body,
    see ``kept_headers`` and ``kept_body``) and what came back."""

    attempted_at: datetime
    http_status: int | None
    response: str | None
    error: str | None
    request_headers: dict[str, str] | None = None
    request_body: str | None = None


async def record_attempt(
    engine: AsyncEngine,
    outbox_id: int,
    attempt: Attempt,
    *,
    attempts: int,
    status: str,
    next_attempt_at: datetime | None = None,
) -> None:
    """Write an attempt and the notification's next state: ``delivered`` (now), ``failed``, or
    ``pending`` again at ``next_attempt_at``."""
    if status not in ("delivered", "failed", "pending"):
        raise ValueError(f"not a state after an attempt: {status!r}")
    if (status == "pending") != (next_attempt_at is not None):
        raise ValueError("a notification is pending again exactly when it has a next attempt time")
    values: dict[str, Any] = {"attempts": attempts, "status": status}
    if status == "delivered":
        values["delivered_at"] = attempt.attempted_at
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    async with engine.begin() as conn:
        await conn.execute(
            insert(t.notify_attempts).values(
                outbox_id=outbox_id,
                attempted_at=attempt.attempted_at,
                http_status=attempt.http_status,
                response=attempt.response,
                error=attempt.error,
                request_headers=(
                    None
                    if attempt.request_headers is None
                    else json.dumps(kept_headers(attempt.request_headers), ensure_ascii=False)
                ),
                request_body=attempt.request_body,
            )
        )
        await conn.execute(update(_o).where(_o.c.id == outbox_id).values(**values))


@dataclass(frozen=True, slots=True)
class Redelivery:
    """What Redeliver did: ``queued``; ``sending`` (a worker holds it right now: not doubled); ``wait``
    (a rate limit: try again after ``retry_after`` seconds; nothing changed)."""

    outcome: str
    retry_after: int = 0


async def redeliver(
    conn: AsyncConnection,
    merchant_id: int,
    notify_id: str,
    now: datetime,
    *,
    interval: timedelta,
    per_minute: int,
) -> Redelivery | None:
    """Make one of the merchant's notifications due now, at most once per ``interval`` per notification
    and ``per_minute`` times a minute per merchant; None if the merchant has no such notification.

    Counted and checked in the caller's transaction (the windowed counter of store/windows.py): the
    write lock on SQLite (BEGIN IMMEDIATE), the merchant's row lock on PostgreSQL (not a lock of the
    outbox table, which the workers claim from), so concurrent Redelivers of one merchant see each other.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(select(t.merchants.c.id).where(t.merchants.c.id == merchant_id).with_for_update())
    row = (
        await conn.execute(
            select(_o.c.id, _o.c.status, _o.c.next_attempt_at, _o.c.redelivered_at).where(
                _o.c.merchant_id == merchant_id, _o.c.notify_id == notify_id
            )
        )
    ).first()
    if row is None:
        return None
    if row.redelivered_at is not None and row.redelivered_at + interval > now:
        return Redelivery("wait", windows.seconds(row.redelivered_at + interval - now))
    if row.status == "sending" and row.next_attempt_at > now:  # a lapsed claim may go
        return Redelivery("sending")
    recent = await windows.count(conn, _o.c.redelivered_at, _o.c.merchant_id == merchant_id, now - _MINUTE)
    if wait := recent.wait(per_minute, _MINUTE, now):
        return Redelivery("wait", wait)
    await conn.execute(
        update(_o).where(_o.c.id == row.id).values(status="pending", next_attempt_at=now, redelivered_at=now)
    )
    return Redelivery("queued")


_MINUTE = timedelta(minutes=1)


class OutboxRepository:
    """The outbox over a unit of work's connection (``uow.outbox``), in its transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def enqueue(
        self,
        *,
        notify_id: str,
        merchant_id: int,
        url: str,
        event: str,
        dialect: str,
        payload: dict[str, Any],
        now: datetime,
        payment_id: int | None = None,
        refund_id: int | None = None,
        sign_type: str = "RSA2",
    ) -> None:
        """A notification due now (:func:`enqueue`), existing iff the unit of work commits."""
        await enqueue(
            self.conn,
            notify_id=notify_id,
            merchant_id=merchant_id,
            url=url,
            event=event,
            dialect=dialect,
            payload=payload,
            now=now,
            payment_id=payment_id,
            refund_id=refund_id,
            sign_type=sign_type,
        )
