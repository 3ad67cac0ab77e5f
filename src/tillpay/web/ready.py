"""``/ready``: whether this server can take payments now (database reachable, schema at this code's head).

``/health`` says the process is alive; a load balancer or an orchestrator sends traffic only where
``/ready`` answers 200, and a 503's ``reason`` says what to fix.
"""

from __future__ import annotations

import asyncio
import functools

import structlog
from alembic.script import ScriptDirectory
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tillpay import __version__
from tillpay.services.platform import Platform
from tillpay.store.migrate import alembic_config, database_revisions

log = structlog.get_logger("tillpay.web")

#: How long the readiness check waits for the database.
READY_DB_SECONDS = 3.0  # float-ok: seconds


@functools.cache
def known_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The migration head(s) this code was written for, and every revision it knows."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())


async def problem(p: Platform) -> str | None:
    """None when ready, else why not, in a sentence an operator can act on."""
    heads, known = await asyncio.to_thread(known_revisions)
    try:
        found = await asyncio.wait_for(database_revisions(p.engine), READY_DB_SECONDS)
    except TimeoutError:
        return f"database did not answer within {READY_DB_SECONDS:g} seconds"
    except Exception as e:  # any driver's error: unreachable, refused, no such table
        log.warning("ready_database_error", error=type(e).__name__, detail=str(e)[:200])
        # The class only: a driver's message may carry the host or the user name.
        return f"database unreachable or not migrated ({type(e).__name__})"
    if found != heads:
        at, need = ", ".join(sorted(found)) or "none", ", ".join(sorted(heads))
        if found - known:
            return f"database schema at revision {at}, newer than this server's {need}: upgrade Tillpay"
        return f"database schema at revision {at}, this server needs {need}: run tillpay migrate"
    return None


async def ready(request: Request) -> Response:
    """200 when the database answers and its schema is at this code's head, else 503 with the reason."""
    p: Platform = request.app.state.platform
    reason = await problem(p)
    if reason is None:
        return JSONResponse({"status": "ready", "version": __version__})
    return JSONResponse({"status": "unready", "reason": reason, "version": __version__}, status_code=503)
