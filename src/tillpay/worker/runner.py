"""The worker: closes expired payments and delivers notifications, in two loops of their own, until told
to stop. A notification that hangs never delays the closing of a payment nobody confirmed."""

from __future__ import annotations

import asyncio

import structlog

from tillpay.outbound import OutboundClient
from tillpay.services import magic, payments
from tillpay.services.platform import Platform
from tillpay.worker.notifier import Notifier, deliver_due, wait_any

log = structlog.get_logger("tillpay.worker")

#: Payments ``expire_due`` closes per pass; a full pass is followed by another at once.
EXPIRE_BATCH = 500


async def run_once(p: Platform, client: OutboundClient) -> tuple[int, int]:
    """One pass: (payments closed by timeout, notifications attempted)."""
    closed = await payments.expire_due(p, EXPIRE_BATCH)
    await magic.answer_due(p)
    sent = await deliver_due(p, client)
    return closed, sent


async def expire_loop(p: Platform, stop: asyncio.Event) -> None:
    """Close expired payments every ``worker_poll_seconds`` until ``stop``; errors are logged, not fatal."""
    while not stop.is_set():
        try:
            closed = await payments.expire_due(p, EXPIRE_BATCH)
            await magic.answer_due(p)  # a sandbox customer's answers to magic codes' confirmations
        except Exception:
            log.exception("expiry_pass_failed")
            closed = 0
        if closed < EXPIRE_BATCH:
            await wait_any((stop,), p.settings.worker_poll_seconds)


async def run(p: Platform, stop: asyncio.Event) -> None:
    """Expire and deliver until ``stop`` is set; notifications in flight then finish (by their deadline)."""
    async with OutboundClient.from_settings(p.settings) as client, asyncio.TaskGroup() as tasks:
        tasks.create_task(expire_loop(p, stop))
        tasks.create_task(Notifier(p, client).run(stop))
