"""Delivery of the outbox: each notification signed in its dialect and retried until acknowledged, several
at once and fairly between merchants, through the outbound client (``tillpay.outbound``)."""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from tillpay import logs
from tillpay.outbound import USER_AGENT, Answer, OutboundClient, OutboundError, excerpt
from tillpay.protocols.antom import notify as antom_notify
from tillpay.protocols.mapi import notify as mapi_notify
from tillpay.protocols.openapi import notify as openapi_notify
from tillpay.services import magic, testmode
from tillpay.services.platform import Merchant, Platform
from tillpay.store import outbox

log = structlog.get_logger("tillpay.notify")

#: The error an attempt records when the notification could not be built from its stored payload (not
#: sent; redelivering from the console tries again, once whatever was wrong is fixed).
UNBUILDABLE = "the notification could not be built"

#: A claimed notification is invisible to other workers for this long after its attempt's deadline.
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


def lease_seconds(p: Platform) -> int:
    """How long a claimed notification stays another worker's: longer than any attempt can take, so two
    workers never send it at once; a crashed worker's claim lapses after it."""
    return LEASE_SECONDS + math.ceil(p.settings.notify_timeout_seconds)


async def _claim(p: Platform, limit: int, busy: Mapping[int, int]) -> list[Any]:
    """Take up to ``limit`` due notifications, never so many of one merchant that it would have more than
    ``notify_per_merchant`` in flight here (``busy``: merchant id → in flight now)."""
    now = p.now()
    return await outbox.claim(
        p.engine,
        now=now,
        limit=limit,
        per_merchant=p.settings.notify_per_merchant,
        busy=busy,
        lease_until=now + timedelta(seconds=lease_seconds(p)),
    )


async def _partner_of(p: Platform, merchant_id: int) -> str:
    async with p.reader() as r:
        return await r.merchants.partner_of(merchant_id)


def sent_headers(url: str, content: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """Every header of the POST as ``OutboundClient.post`` sends it: its own four, then the dialect's."""
    return {
        "Host": httpx.URL(url).netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "Content-Length": str(len(content)),
        **headers,
    }


async def deliver_one(p: Platform, client: OutboundClient, row: Any) -> bool:
    """Send one claimed notification and record the attempt; True if the merchant acknowledged it.

    The merchant's console shows the request as sent (its headers and body, signature included; the body
    cut at ``outbox.REQUEST_BODY_CHARS``), the answer's status and an excerpt of it, or why there was none. The id
    of the request that caused the notification goes with it as ``X-Request-Id`` (not signed in any
    dialect: MAPI and Open Platform sign the form fields, Antom the path, client-id, request-time and
    body) and is the ``request_id`` of every line logged while it is delivered.
    """
    rid: str | None = row.request_id
    token = logs.request_id.set(rid)
    try:
        return await _deliver_one(p, client, row, rid)
    finally:
        logs.request_id.reset(token)


async def _deliver_one(p: Platform, client: OutboundClient, row: Any, rid: str | None) -> bool:
    merchant = await p.merchant_by_partner(await _partner_of(p, row.merchant_id))
    render, acknowledged = DIALECTS[row.dialect]
    now = p.now()
    try:
        content, headers = render(
            row.notify_id, row.event, json.loads(row.payload), now, merchant, row.sign_type, row.url
        )
    except Exception as e:
        # The same row would fail the same way on every try: it ends as failed, with the reason in the
        # console, instead of coming back each time its lease lapses. Nothing was sent.
        log.error("notify_unbuildable", notify_id=row.notify_id, merchant_id=row.merchant_id, exc_info=True)
        await outbox.record_attempt(
            p.engine,
            row.id,
            outbox.Attempt(
                attempted_at=now,
                http_status=None,
                response=None,
                error=f"{UNBUILDABLE}: {type(e).__name__}",
            ),
            attempts=row.attempts + 1,
            status="failed",
        )
        return False
    if rid:
        headers = {**headers, "X-Request-Id": rid}
    # A test merchant's notifications say so, outside what any dialect signs (as X-Request-Id).
    headers = {**headers, **testmode.mode_headers(merchant)}
    answer: Answer | None = None
    error: str | None = None
    final = False
    try:
        answer = await client.post(row.url, content, headers)
    except OutboundError as e:
        error, final = e.reason, e.final
        # A refusal is worth the operator's eye: a merchant's URL that points inward, or a typo.
        report = log.warning if e.final else log.info
        report("notify_no_answer", notify_id=row.notify_id, merchant_id=row.merchant_id, detail=e.detail)
    ok = answer is not None and answer.status == 200 and acknowledged(answer.body)
    if ok and await magic.fails_delivery(p, merchant, row):
        ok, error = False, magic.FAILED_DELIVERY  # sent for real, counted as failed (docs/sandbox.md)
    attempts = row.attempts + 1
    plan = schedule(p)
    if ok:
        status, next_at = "delivered", None
    elif final or attempts >= len(plan):
        # A refused address is not tried again: the answer would be the same (the merchant can fix the
        # URL's host and redeliver from the console).
        status, next_at = "failed", None
    else:
        status, next_at = "pending", now + timedelta(seconds=plan[attempts])
    await outbox.record_attempt(
        p.engine,
        row.id,
        outbox.Attempt(
            attempted_at=now,
            http_status=answer.status if answer else None,
            response=excerpt(answer.body) if answer else None,
            error=error,
            request_headers=sent_headers(row.url, content, headers),
            request_body=outbox.kept_body(content),
        ),
        attempts=attempts,
        status=status,
        next_attempt_at=next_at,
    )
    log.info(
        "notify",
        notify_id=row.notify_id,
        url=row.url,
        ok=ok,
        attempt=attempts,
        status=answer.status if answer else None,
        error=error,
    )
    return ok


class Notifier:
    """Delivers the outbox concurrently: up to ``notify_concurrency`` notifications at once in this
    process, of which at most ``notify_per_merchant`` are one merchant's, each attempt bounded by the
    client's deadline. A merchant whose endpoints hang holds its own share of the slots, never the rest."""

    def __init__(self, p: Platform, client: OutboundClient) -> None:
        self.p = p
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()
        #: merchant id → its notifications in flight here
        self._busy: Counter[int] = Counter()
        self._finished = asyncio.Event()

    async def start_due(self) -> int:
        """Claim what is due (as far as free slots allow) and start delivering it; how many started."""
        free = self.p.settings.notify_concurrency - len(self._tasks)
        if free <= 0:
            return 0
        rows = await _claim(self.p, free, self._busy)
        for row in rows:
            self._busy[row.merchant_id] += 1
            task = asyncio.create_task(self._deliver(row))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, row.merchant_id))
        return len(rows)

    async def _deliver(self, row: Any) -> None:
        try:
            await deliver_one(self.p, self.client, row)
        except Exception:
            # Left "sending": tried again when its lease lapses.
            log.exception("notify_failed", notify_id=row.notify_id)

    def _done(self, merchant_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy[merchant_id] -= 1
        if self._busy[merchant_id] <= 0:
            del self._busy[merchant_id]
        self._finished.set()

    async def drain(self) -> None:
        """Wait for every delivery in flight (each ends by its deadline)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then finish what is in flight. Claims again as soon as a delivery
        ends or something was claimed, otherwise every ``worker_poll_seconds``."""
        while not stop.is_set():
            self._finished.clear()
            try:
                started = await self.start_due()
            except Exception:
                log.exception("notify_claim_failed")
                started = 0
            if started and len(self._tasks) < self.p.settings.notify_concurrency:
                continue  # more may be due: others' notifications behind a merchant that is now full
            await wait_any((stop, self._finished), self.p.settings.worker_poll_seconds)
        await self.drain()


async def wait_any(events: Iterable[asyncio.Event], seconds: float) -> None:  # float-ok: seconds
    """Until one of ``events`` is set or ``seconds`` passed."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def deliver_due(p: Platform, client: OutboundClient) -> int:
    """One pass: deliver what is due now (as many at once as ``run`` would) and wait for the attempts;
    returns how many were attempted."""
    notifier = Notifier(p, client)
    started = await notifier.start_due()
    await notifier.drain()
    return started
