"""``tillpay worker``: notification delivery and expiry as a process of its own (next to ``serve
--no-worker`` processes). Several workers may run against one PostgreSQL database: each claims work with
``SELECT ... FOR UPDATE SKIP LOCKED``, so no notification is sent twice at once."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import click
import structlog

from tillpay import shutdown
from tillpay.outbound import OutboundClient
from tillpay.services.platform import Platform
from tillpay.store.migrate import upgrade
from tillpay.worker import runner

if TYPE_CHECKING:  # tillpay.cli imports this module, so the context is imported for types only
    from tillpay.cli.common import Ctx

log = structlog.get_logger("tillpay.worker")


@click.command()
@click.option("--once", is_flag=True, help="Do one pass (expire, deliver what is due) and exit.")
@click.pass_obj
def worker(c: Ctx, once: bool) -> None:
    """Deliver notifications and close expired payments until stopped (SIGTERM or Ctrl-C: exit 0)."""
    if not once:
        shutdown.install((signal.SIGTERM, signal.SIGINT))
    shutdown.exit_if_requested()
    upgrade(c.settings.database_url)
    shutdown.exit_if_requested()

    async def go() -> None:
        p = Platform(c.settings)
        try:
            if once:
                async with OutboundClient.from_settings(p.settings) as client:
                    closed, sent = await runner.run_once(p, client)
                c.out({"expired": closed, "attempted": sent}, f"expired {closed}, attempted {sent}")
                return
            stop = asyncio.Event()
            shutdown.bind(stop)  # set already if a SIGTERM came during start-up
            try:
                log.info("worker_started", poll_seconds=p.settings.worker_poll_seconds)
                await runner.run(p, stop)
                log.info("worker_stopped")
            finally:
                shutdown.unbind(stop)
        finally:
            await p.close()

    asyncio.run(go())
