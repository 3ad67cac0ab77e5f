"""Delivery of the outbox: each notification signed in its dialect and retried until acknowledged."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from sqlalchemy import insert, select, update

from tillpay.protocols.antom import notify as antom_notify
from tillpay.protocols.mapi import notify as mapi_notify
from tillpay.protocols.openapi import notify as openapi_notify
from tillpay.services.platform import Merchant, Platform
from tillpay.store import tables as t

log = structlog.get_logger("tillpay.notify")

#: A claimed notification is invisible to other workers for this long (a crashed worker's claim lapses).
LEASE_SECONDS = 60

#: (notify_id, event, payload, now, merchant, sign_type, url) → the signed request: body bytes and headers.
Renderer = Callable[[str, str, dict[str, Any], datetime, Merchant, str, str], tuple[bytes, dict[str, str]]]
Acknowledged = Callable[[bytes], bool]
FormFields = Callable[[str, str, dict[str, Any], datetime, Merchant, str], dict[str, str]]

_FORM = "application/x-www-form-urlencoded"


def form(render_fields: FormFields) -> Renderer:
    """A renderer that POSTs a dialect's signed form fields, UTF-8 URL-encoded."""

    def render(
        notify_id: str,
        event: str,
        payload: dict[str, Any],
        now: datetime,
        merchant: Merchant,
        sign_type: str,
        url: str,
    ) -> tuple[bytes, dict[str, str]]:
        fields = render_fields(notify_id, event, payload, now, merchant, sign_type)
        return urlencode(fields).encode("ascii"), {"content-type": _FORM}

    return render


def _openapi_fields(
    notify_id: str, event: str, payload: dict[str, Any], now: datetime, merchant: Merchant, sign_type: str
) -> dict[str, str]:
    return openapi_notify.render(notify_id, payload, now, merchant, sign_type)


#: dialect → (render the signed request, is the merchant's answer an acknowledgement)
DIALECTS: dict[str, tuple[Renderer, Acknowledged]] = {
    "mapi": (form(mapi_notify.render), mapi_notify.acknowledged),
    "openapi": (form(_openapi_fields), openapi_notify.acknowledged),
    "antom": (antom_notify.render, antom_notify.acknowledged),
}


def schedule(p: Platform) -> list[int]:
    """Seconds to wait before each attempt (the first is immediate)."""
    return [int(s) for s in p.settings.notify_schedule.split(",") if s.strip()]


async def _claim(p: Platform, limit: int) -> list[Any]:
    now = p.now()
    async with p.engine.begin() as conn:
        q = (
            select(t.outbox)
            .where(t.outbox.c.status == "pending", t.outbox.c.next_attempt_at <= now)
            .order_by(t.outbox.c.next_attempt_at)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            # Workers in several processes never take the same notification.
            q = q.with_for_update(skip_locked=True)
        rows = (await conn.execute(q)).all()
        if rows:
            await conn.execute(
                update(t.outbox)
                .where(t.outbox.c.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
            )
    return list(rows)


async def _partner_of(p: Platform, merchant_id: int) -> str:
    async with p.engine.connect() as conn:
        return str(
            (
                await conn.execute(select(t.merchants.c.partner_id).where(t.merchants.c.id == merchant_id))
            ).scalar_one()
        )


async def deliver_one(p: Platform, http: httpx.AsyncClient, row: Any) -> bool:
    """Send one notification and record the attempt; True if the merchant acknowledged it."""
    merchant = await p.merchant_by_partner(await _partner_of(p, row.merchant_id))
    render, acknowledged = DIALECTS[row.dialect]
    now = p.now()
    content, headers = render(
        row.notify_id, row.event, json.loads(row.payload), now, merchant, row.sign_type, row.url
    )
    status_code: int | None = None
    body = b""
    error: str | None = None
    try:
        resp = await http.post(
            row.url, content=content, headers=headers, timeout=p.settings.notify_timeout_seconds
        )
        status_code, body = resp.status_code, resp.content[:512]
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}"[:512]
    ok = status_code == 200 and acknowledged(body)
    attempts = row.attempts + 1
    plan = schedule(p)
    values: dict[str, Any] = {"attempts": attempts}
    if ok:
        values.update(status="delivered", delivered_at=now)
    elif attempts >= len(plan):
        values.update(status="failed")
    else:
        values.update(next_attempt_at=now + timedelta(seconds=plan[attempts]))
    async with p.engine.begin() as conn:
        await conn.execute(
            insert(t.notify_attempts).values(
                outbox_id=row.id,
                attempted_at=now,
                http_status=status_code,
                response=body.decode("utf-8", "replace") if status_code is not None else None,
                error=error,
            )
        )
        await conn.execute(update(t.outbox).where(t.outbox.c.id == row.id).values(**values))
    log.info("notify", notify_id=row.notify_id, url=row.url, ok=ok, attempt=attempts, status=status_code)
    return ok


async def deliver_due(p: Platform, http: httpx.AsyncClient, limit: int = 50) -> int:
    """Deliver every notification that is due now; returns how many were attempted."""
    rows = await _claim(p, limit)
    for row in rows:
        try:
            await deliver_one(p, http, row)
        except Exception:
            log.exception("notify_failed", notify_id=row.notify_id)
    return len(rows)


async def redeliver(p: Platform, notify_id: str) -> None:
    """Queue a notification for one more delivery now, even if it was delivered or gave up."""
    async with p.engine.begin() as conn:
        await conn.execute(
            update(t.outbox)
            .where(t.outbox.c.notify_id == notify_id)
            .values(status="pending", next_attempt_at=p.now())
        )
