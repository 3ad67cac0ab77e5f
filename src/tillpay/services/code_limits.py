"""Wrong payment codes: counted per merchant, (merchant, device) and (merchant, terminal).

The limits themselves are rules of the pay decision (``domain/paydecision.py``); this module counts what
they look at and records a wrong code as a side effect of a refused pay (docs/security.md).
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from tillpay.services.platform import Platform
from tillpay.store.uow import Reader, Repositories

log = structlog.get_logger("tillpay.payments")


async def record_bad_code(
    p: Platform,
    r: Reader,
    merchant_id: int,
    device_no: int | None,
    terminal_id: str | None = None,
) -> None:
    """Count a wrong code against the merchant that sent it (and its device and terminal).

    The merchant's own total never blocks its tills (one bad actor would shut them all, terminal ids being
    the caller's to choose): when it reaches ``bad_code_alert_threshold`` in the window, an alert is
    logged and shown on the merchant's console dashboard (docs/security.md).

    It commits on its own: the pay that sent the code is refused, and the count must outlive it. On the
    caller's reader's connection (the pay's): SQLite has one connection per process, so a second one would wait
    forever.
    """
    async with r.then_write() as uow:
        await uow.codes.add_bad_code(merchant_id, device_no, terminal_id, p.now())
        n = await bad_codes_in_window(p, uow, merchant_id)
        await uow.commit()
    if n == p.settings.bad_code_alert_threshold:
        log.warning(
            "bad_code_anomaly",
            merchant_id=merchant_id,
            count=n,
            window_seconds=p.settings.bad_code_window_seconds,
            terminal_id=terminal_id,
        )


async def bad_codes_in_window(p: Platform, r: Repositories, merchant_id: int) -> int:
    """The merchant's wrong codes (all devices and terminals) in the bad-code window."""
    return await r.codes.bad_codes_since(
        merchant_id, p.now() - timedelta(seconds=p.settings.bad_code_window_seconds)
    )


async def bad_code_alert(p: Platform, merchant_id: int) -> int | None:
    """The merchant's wrong codes in the window if they reach the alert threshold (console), else None."""
    async with p.reader() as r:
        n = await bad_codes_in_window(p, r, merchant_id)
    return n if n >= p.settings.bad_code_alert_threshold else None
