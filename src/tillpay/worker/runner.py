"""The worker loop: close expired payments and deliver notifications, until told to stop."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from tillpay.services import payments
from tillpay.services.platform import Platform
from tillpay.worker.notifier import deliver_due

log = structlog.get_logger("tillpay.worker")


async def run_once(p: Platform, http: httpx.AsyncClient) -> tuple[int, int]:
    """One pass: (payments closed by timeout, notifications attempted)."""
    closed = await payments.expire_due(p)
    sent = await deliver_due(p, http)
    return closed, sent


async def run(p: Platform, stop: asyncio.Event) -> None:
    """Run passes every ``worker_poll_seconds`` until ``stop`` is set; errors are logged, not fatal."""
    async with httpx.AsyncClient(headers={"User-Agent": "Tillpay-Notify/1"}) as http:
        while not stop.is_set():
            try:
                _closed, sent = await run_once(p, http)
                busy = sent > 0
            except Exception:
                log.exception("worker_pass_failed")
                busy = False
            if not busy:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=p.settings.worker_poll_seconds)
                except TimeoutError:
                    pass
