"""Wrong payment codes: counted per merchant, (merchant, device) and (merchant, terminal).

The limits themselves are rules of the pay decision (``domain/paydecision.py``); this module counts what
they look at and records a wrong code as a side effect of a refused pay (docs/security.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.services.platform import Platform
from tillpay.store import tables as t

log = structlog.get_logger("tillpay.payments")

_bad = t.bad_codes


async def record_bad_code(
    p: Platform,
    conn: AsyncConnection,
    merchant_id: int,
    device_no: int | None,
    terminal_id: str | None = None,
) -> None:
    """Count a wrong code against the merchant that sent it (and its device and terminal).

    The merchant's own total never blocks its tills (one bad actor would shut them all, terminal ids being
    the caller's to choose): when it reaches ``bad_code_alert_threshold`` in the window, an alert is
    logged and shown on the merchant's console dashboard (docs/security.md).

    It commits on its own: the pay that sent the code is refused, and the count must outlive it. On the
    caller's connection: SQLite has one connection per process, so a second one would wait forever.
    """
    await conn.rollback()
    now = p.now()
    async with conn.begin():
        await conn.execute(
            insert(_bad).values(
                merchant_id=merchant_id, device_no=device_no, terminal_id=terminal_id, created_at=now
            )
        )
        n = await bad_codes_in_window(p, conn, merchant_id)
    if n == p.settings.bad_code_alert_threshold:
        log.warning(
            "bad_code_anomaly",
            merchant_id=merchant_id,
            count=n,
            window_seconds=p.settings.bad_code_window_seconds,
            terminal_id=terminal_id,
        )


async def bad_codes_in_window(p: Platform, conn: AsyncConnection, merchant_id: int) -> int:
    """The merchant's wrong codes (all devices and terminals) in the bad-code window."""
    since = p.now() - timedelta(seconds=p.settings.bad_code_window_seconds)
    q = (
        select(func.count())
        .select_from(_bad)
        .where(_bad.c.merchant_id == merchant_id, _bad.c.created_at > since)
    )
    return int((await conn.execute(q)).scalar_one())


async def bad_code_alert(p: Platform, merchant_id: int) -> int | None:
    """The merchant's wrong codes in the window if they reach the alert threshold (console), else None."""
    async with p.engine.connect() as conn:
        n = await bad_codes_in_window(p, conn, merchant_id)
    return n if n >= p.settings.bad_code_alert_threshold else None


async def terminal_bad_codes(
    conn: AsyncConnection, merchant_id: int, terminal_id: str, since: datetime
) -> int:
    """The wrong codes one terminal of the merchant sent after ``since``."""
    q = (
        select(func.count())
        .select_from(_bad)
        .where(
            _bad.c.merchant_id == merchant_id, _bad.c.terminal_id == terminal_id, _bad.c.created_at > since
        )
    )
    return int((await conn.execute(q)).scalar_one())


async def device_bad_codes(conn: AsyncConnection, merchant_id: int, device_no: int, since: datetime) -> int:
    """The merchant's wrong codes for one device after ``since``."""
    q = (
        select(func.count())
        .select_from(_bad)
        .where(_bad.c.device_no == device_no, _bad.c.merchant_id == merchant_id, _bad.c.created_at > since)
    )
    return int((await conn.execute(q)).scalar_one())
