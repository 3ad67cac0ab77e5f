"""The merchant console's use cases: transactions, details, refunds, dashboard, notifications, keys.

Every function takes the signed-in merchant's id (from the console session) and reads through the
console's read model (store/console.py), which puts it in the WHERE clause of every query: a payment,
refund, notification, batch or file of another merchant is answered exactly like one that does not exist
(NOT_FOUND), whatever id the browser sends.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent, format_amount, known_currency
from tillpay.domain.payment import Status
from tillpay.domain.risk import Verdict
from tillpay.outbound import excerpt, notify_url_problem
from tillpay.services import attempts, merchants, payments, settlement, wallets
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, RefundView
from tillpay.store.console import ConsoleReads, PaymentQuery

PAGE_SIZE = 50
DIALECTS = ("mapi", "openapi", "antom")
_ID_RE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,64}$")
_URL_RE = re.compile(r"^https?://[^\s<>\"']{1,240}$")


# --------------------------------------------------------------------------------------- transactions


@dataclass(frozen=True, slots=True)
class TxFilter:
    """The transaction list's filters; every field is optional.

    ``min_amount``/``max_amount`` are minor units of ``currency`` (the price currency) when a currency is
    chosen, else of the merchant's settlement currency (every payment has a settlement amount).
    """

    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    store_id: str | None = None
    terminal_id: str | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    currency: str | None = None
    wallet_currency: str | None = None
    dialect: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class TxPage:
    """One page of the list, newest first, and the cursor of the next (None on the last page)."""

    items: list[PaymentView]
    next_before: int | None


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def _query(f: TxFilter, tz: ZoneInfo) -> PaymentQuery:
    return PaymentQuery(
        created_from=_day_start(f.date_from, tz) if f.date_from else None,
        created_before=_day_start(f.date_to + timedelta(days=1), tz) if f.date_to else None,
        status=f.status,
        store_id=f.store_id,
        terminal_id=f.terminal_id,
        min_amount=f.min_amount,
        max_amount=f.max_amount,
        currency=f.currency,
        wallet_currency=f.wallet_currency,
        dialect=f.dialect,
        q=f.q,
    )


def parse_filter(params: dict[str, str], settlement_currency: str) -> TxFilter:
    """A TxFilter from query parameters; ILLEGAL_ARGUMENT naming the first bad one."""

    def text(name: str) -> str | None:
        v = (params.get(name) or "").strip()
        if not v:
            return None
        if not _ID_RE.match(v):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name}: letters, digits and . _ : / @ + - only")
        return v

    def day(name: str) -> date | None:
        v = (params.get(name) or "").strip()
        if not v:
            return None
        try:
            return date.fromisoformat(v)
        except ValueError:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name}: a date is YYYY-MM-DD") from None

    currency = text("currency")
    wallet_currency = text("wallet_currency")
    for c in (currency, wallet_currency):
        if c is not None:
            known_currency(c)

    def amount(name: str) -> int | None:
        from tillpay.domain.money import InvalidAmount, parse_amount

        v = (params.get(name) or "").strip()
        if not v:
            return None
        try:
            return parse_amount(v, currency or settlement_currency)
        except InvalidAmount:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name}: an amount like 12.50") from None

    status = text("status")
    if status is not None and status not in {s.value for s in Status}:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status: WAIT_BUYER_PAY, TRADE_SUCCESS or TRADE_CLOSED")
    dialect = text("dialect")
    if dialect is not None and dialect not in DIALECTS:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"dialect: one of {', '.join(DIALECTS)}")
    return TxFilter(
        date_from=day("from"),
        date_to=day("to"),
        status=status,
        store_id=text("store"),
        terminal_id=text("terminal"),
        min_amount=amount("min"),
        max_amount=amount("max"),
        currency=currency,
        wallet_currency=wallet_currency,
        dialect=dialect,
        q=text("q"),
    )


async def _views(reads: ConsoleReads, rows: list[Any]) -> list[PaymentView]:
    logins = await reads.logins(x.user_id for x in rows if x.user_id)
    return [PaymentView.from_row(x, logins.get(x.user_id)) for x in rows]


async def list_payments(
    p: Platform, merchant_id: int, f: TxFilter, *, before: int | None = None, limit: int = PAGE_SIZE
) -> TxPage:
    """One page of the merchant's payments matching ``f``, newest first (keyset-paginated by id)."""
    query = _query(f, ZoneInfo(p.settings.timezone))
    async with p.reader(snapshot=True) as r:  # each row and what ``_views`` adds to it: one moment
        rows = await r.console.payments(merchant_id, query, before=before, limit=limit + 1)
        more = len(rows) > limit
        views = await _views(r.console, rows[:limit])
    return TxPage(views, views[-1].id if more and views else None)


CSV_COLUMNS = (
    "trade_no",
    "partner_trans_id",
    "created_at",
    "paid_at",
    "status",
    "result_code",
    "dialect",
    "store_id",
    "terminal_id",
    "subject",
    "price_amount",
    "price_currency",
    "settle_amount",
    "settle_currency",
    "wallet_amount",
    "wallet_currency",
    "settle_rate",
    "wallet_rate",
    "refunded_price",
    "buyer_id",
    # Where the pay happened, from MAPI extend_info (appended, so earlier columns keep their places).
    "store_name",
    "secondary_merchant_id",
    "secondary_merchant_name",
    "secondary_merchant_industry",
)


def _csv_row(v: PaymentView) -> list[str]:
    def money(amount: int | None, cur: str | None) -> str:
        return format_amount(amount, cur) if amount is not None and cur else ""

    return [
        v.trade_no,
        v.partner_trans_id,
        v.created_at.isoformat(),
        v.paid_at.isoformat() if v.paid_at else "",
        v.status.value,
        v.result_code.value if v.result_code else "",
        v.dialect,
        v.store_id or "",
        v.terminal_id or "",
        v.subject,
        money(v.price_amount, v.price_currency),
        v.price_currency,
        money(v.settle_amount, v.settle_currency),
        v.settle_currency,
        money(v.wallet_amount, v.wallet_currency),
        v.wallet_currency or "",
        str(v.settle_rate),
        str(v.wallet_rate or ""),
        money(v.refunded_price, v.price_currency),
        v.buyer_id or "",
        v.store_name or "",
        v.secondary_merchant_id or "",
        v.secondary_merchant_name or "",
        v.secondary_merchant_industry or "",
    ]


def _csv_safe(cell: str) -> str:
    # A spreadsheet runs cells starting with = + - @ as formulas (CSV injection): quote them as text.
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER_RE.match(cell) else cell


_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")


async def export_csv(p: Platform, merchant_id: int, f: TxFilter) -> AsyncIterator[str]:
    """Every payment matching ``f`` as CSV text chunks (header first), newest first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    before: int | None = None
    while True:
        page = await list_payments(p, merchant_id, f, before=before, limit=1000)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        for v in page.items:
            w.writerow([_csv_safe(c) for c in _csv_row(v)])
        yield buf.getvalue()
        if page.next_before is None:
            return
        before = page.next_before


# --------------------------------------------------------------------------------------------- detail


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt of a notification and what the merchant's server answered; the request as it
    was sent (every header, the body cut at ``outbox.REQUEST_BODY_CHARS``; None for attempts recorded
    before Tillpay kept them)."""

    attempted_at: datetime
    http_status: int | None
    response: str | None
    error: str | None
    request_headers: dict[str, str] | None = None
    request_body: str | None = None
    #: The signature the request carried: the ``sign`` form field (MAPI, Open Platform) or the
    #: ``signature`` header (Antom).
    signature: str | None = None
    #: The body's form fields in order (MAPI, Open Platform); empty for a JSON body.
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification in the outbox and its attempts."""

    notify_id: str
    event: str
    dialect: str
    url: str
    status: str
    attempts: list[Attempt]
    created_at: datetime
    delivered_at: datetime | None
    trade_no: str | None
    #: The X-Request-Id of the request that caused it, sent with each attempt (None: no request did).
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a payment's timeline."""

    at: datetime
    kind: str  # created | risk | confirmed | paid | closed | notify | refund | settled
    text: str


@dataclass(frozen=True, slots=True)
class Risk:
    """The risk decision of a payment."""

    verdict: str
    rule: str
    code: str | None
    fired: list[str]
    at: datetime


@dataclass(frozen=True, slots=True)
class Batch:
    """The settlement batch a payment (or one of its refunds) went into."""

    item_kind: str
    settle_date: date
    currency: str
    payout_status: str
    payout_date: date


@dataclass
class Detail:
    """Everything the detail page shows about one payment."""

    payment: PaymentView
    refunds: list[RefundView]
    risk: Risk | None
    notifications: list[Notification]
    batches: list[Batch]
    timeline: list[Event] = field(default_factory=list)

    @property
    def refundable(self) -> int:
        """Price-currency minor units that can still be refunded (0 unless paid and open)."""
        if self.payment.status is not Status.TRADE_SUCCESS:
            return 0
        return self.payment.price_amount - self.payment.refunded_price


async def _payment_row(reads: ConsoleReads, merchant_id: int, trade_no: str) -> Any:
    row = await reads.payment(merchant_id, trade_no)
    if row is None or row.kind == "tombstone":
        raise TillpayError(Code.NOT_FOUND, "no such payment")
    return row


def _attempt(r: Any, response: str | None, with_request: bool) -> Attempt:
    if not with_request:
        return Attempt(r.attempted_at, r.http_status, response, r.error)
    headers = json.loads(r.request_headers) if r.request_headers is not None else None
    body: str | None = r.request_body
    signature: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    content_type = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
    if body is not None and content_type.startswith("application/x-www-form-urlencoded"):
        fields = tuple(parse_qsl(body, keep_blank_values=True))
        signature = next((v for k, v in fields if k == "sign"), None)
    elif headers is not None:
        signature = next((v for k, v in headers.items() if k.lower() == "signature"), None)
    return Attempt(r.attempted_at, r.http_status, response, r.error, headers, body, signature, fields)


def _notifications(rows: list[Any], attempt_rows: list[Any], *, with_requests: bool) -> list[Notification]:
    """The notifications and their attempts; the requests as sent (up to 16 KiB each) only for the
    inspector (``with_requests``): the lists show the answers alone."""
    attempts: dict[int, list[Attempt]] = {}
    for r in attempt_rows:
        # excerpt again: attempts recorded before answers were cut to one kept up to 512 raw characters
        response = excerpt(r.response) if r.response is not None else None
        attempts.setdefault(r.outbox_id, []).append(_attempt(r, response, with_requests))
    return [
        Notification(
            r.notify_id,
            r.event,
            r.dialect,
            r.url,
            r.status,
            attempts.get(r.id, []),
            r.created_at,
            r.delivered_at,
            r.trade_no,
            r.request_id,
        )
        for r in rows
    ]


async def payment_detail(p: Platform, merchant_id: int, trade_no: str) -> Detail:
    """One of the merchant's payments with its refunds, risk decision, notifications and settlement."""
    async with p.reader(snapshot=True) as r:  # the refunded amount and the refunds listed agree
        row = await _payment_row(r.console, merchant_id, trade_no)
        view = (await _views(r.console, [row]))[0]
        refunds = [RefundView.from_row(x, view) for x in await r.console.refunds(merchant_id, row.id)]
        risk_row = await r.console.risk_decision(merchant_id, row.id)
        risk = (
            Risk(
                risk_row.verdict,
                risk_row.rule,
                risk_row.code,
                json.loads(risk_row.fired),
                risk_row.created_at,
            )
            if risk_row
            else None
        )
        notes = _notifications(
            *await r.console.notifications(merchant_id, 200, payment_id=row.id), with_requests=False
        )
        batches = [
            Batch(b.kind, b.settle_date, b.currency, b.payout_status, b.payout_date)
            for b in await r.console.settlement_of(merchant_id, row.id)
        ]
    d = Detail(view, refunds, risk, notes, batches)
    d.timeline = _timeline(d, p)
    return d


def _timeline(d: Detail, p: Platform) -> list[Event]:
    v = d.payment
    ev = [Event(v.created_at, "created", f"created through {v.dialect} ({v.kind})")]
    if d.risk:
        ev.append(
            Event(
                d.risk.at,
                "risk",
                f"risk decision: {d.risk.verdict} by rule {d.risk.rule}"
                + (f" ({d.risk.code})" if d.risk.code else ""),
            )
        )
        if d.risk.verdict == Verdict.CONFIRM and v.paid_at:
            ev.append(Event(v.paid_at, "confirmed", "the customer confirmed with the PIN"))
    if v.paid_at:
        ev.append(Event(v.paid_at, "paid", "paid"))
    if v.closed_at:
        ev.append(
            Event(v.closed_at, "closed", "closed" + (f": {v.result_code.value}" if v.result_code else ""))
        )
    for n in d.notifications:
        for a in n.attempts:
            answer = f"HTTP {a.http_status}" if a.http_status else (a.error or "no answer")
            ev.append(Event(a.attempted_at, "notify", f"notification {n.event} to {n.url}: {answer}"))
    for r in d.refunds:
        ev.append(
            Event(
                r.created_at,
                "refund",
                f"{r.kind} {r.refund_no} ({r.partner_refund_id}): "
                f"{format_amount(r.price_amount, r.price_currency)} {r.price_currency}",
            )
        )
    for b in d.batches:
        what = {"P": "payment", "R": "refund", "C": "cancellation"}.get(b.item_kind, b.item_kind)
        cutoff = settlement.day_cutoff(p, b.settle_date)
        ev.append(
            Event(
                cutoff,
                "settled",
                f"{what} settled on business day {b.settle_date} ({b.currency}), "
                f"payout {b.payout_status} on {b.payout_date}",
            )
        )
    return sorted(ev, key=lambda e: e.at)


def new_refund_id() -> str:
    """A refund id for a detail page render: submitting the page twice refunds once."""
    return "console-" + secrets.token_urlsafe(12)


_REFUND_ID_RE = re.compile(r"^console-[A-Za-z0-9_-]{16}$")


async def refund(
    p: Platform, merchant: Merchant, trade_no: str, amount: int, refund_id: str, reason: str | None
) -> RefundView:
    """Refund part or all of one of the merchant's payments under the page's refund id (idempotent)."""
    if not _REFUND_ID_RE.match(refund_id):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the form's refund id is missing; reload the page")
    async with p.reader() as r:
        row = await _payment_row(r.console, merchant.id, trade_no)
    return await payments.refund(
        p,
        payments.RefundCommand(
            merchant=merchant,
            partner_refund_id=refund_id,
            amount=amount,
            currency=row.price_currency,
            dialect=row.dialect,
            trade_no=trade_no,
            reason=(reason or "refund from the merchant console")[:128],
            # No notification: the refund was made by the merchant itself, not asked for by a till.
            notify_url=None,
            sign_type=row.sign_type,
        ),
    )


async def payment_api(p: Platform, merchant_id: int, trade_no: str) -> dict[str, Any]:
    """The payment as the console's JSON API returns it."""
    d = await payment_detail(p, merchant_id, trade_no)
    data = d.payment.to_json()
    data["refunds"] = [
        {
            "refund_no": r.refund_no,
            "partner_refund_id": r.partner_refund_id,
            "kind": r.kind,
            "price_amount": r.price_amount,
            "price_currency": r.price_currency,
            "created_at": r.created_at.isoformat(),
        }
        for r in d.refunds
    ]
    return data


# ------------------------------------------------------------------------------------------ dashboard


@dataclass(frozen=True, slots=True)
class Totals:
    """Sales, refunds and net of one period in one currency (price currency, minor units)."""

    currency: str
    sales: int
    sales_count: int
    refunds: int
    refund_count: int

    @property
    def net(self) -> int:
        return self.sales - self.refunds


@dataclass
class Dashboard:
    """The dashboard's figures: all in the scheme's time zone."""

    today: list[Totals]
    month: list[Totals]
    #: (day, currency) → sales of the last 30 days; (hour, currency) → today's sales.
    per_day: list[tuple[date, dict[str, int]]]
    per_hour: list[tuple[int, dict[str, int]]]
    confirm_share: tuple[int, int]  # payments that needed confirmation, payments decided (this month)
    declines: list[PaymentView]


async def _totals(reads: ConsoleReads, merchant_id: int, since: datetime, until: datetime) -> list[Totals]:
    sales = await reads.sales(merchant_id, since, until)
    refunds = await reads.refunded(merchant_id, since, until)
    by: dict[str, list[int]] = {}
    for cur, amount, n in sales:
        by.setdefault(cur, [0, 0, 0, 0])[0:2] = [int(amount or 0), int(n)]
    for cur, amount, n in refunds:
        by.setdefault(cur, [0, 0, 0, 0])[2:4] = [int(amount or 0), int(n)]
    return [Totals(c, v[0], v[1], v[2], v[3]) for c, v in sorted(by.items())]


async def dashboard(p: Platform, merchant_id: int, *, now: datetime | None = None) -> Dashboard:
    """Today's and this month's totals, sales per day and hour, confirmation share, recent declines.

    ``now`` is the merchant's time (a test merchant's test clock), real time when not given."""
    tz = ZoneInfo(p.settings.timezone)
    now = now or p.now()
    local = now.astimezone(tz)
    today = local.date()
    day0 = _day_start(today, tz)
    month0 = _day_start(today.replace(day=1), tz)
    start30 = _day_start(today - timedelta(days=29), tz)
    async with p.reader(snapshot=True) as r:  # one moment: the totals and the charts add up
        tot_today = await _totals(r.console, merchant_id, day0, now + timedelta(seconds=1))
        tot_month = await _totals(r.console, merchant_id, month0, now + timedelta(seconds=1))
        paid = await r.console.paid_since(merchant_id, start30)
        decided, confirmed = await r.console.confirm_share(merchant_id, month0)
        declines = await _views(r.console, await r.console.declines(merchant_id, 10))
    # Bucketing in Python: the time zone arithmetic differs between SQLite and PostgreSQL, and 30 days
    # of one merchant's paid payments is a modest number of rows.
    days: dict[date, dict[str, int]] = {today - timedelta(days=i): {} for i in range(29, -1, -1)}
    hours: dict[int, dict[str, int]] = {h: {} for h in range(24)}
    for paid_at, cur, amount in paid:
        lt = paid_at.astimezone(tz)
        if lt.date() in days:
            days[lt.date()][cur] = days[lt.date()].get(cur, 0) + amount
        if lt.date() == today:
            hours[lt.hour][cur] = hours[lt.hour].get(cur, 0) + amount
    return Dashboard(
        tot_today,
        tot_month,
        list(days.items()),
        list(hours.items()),
        (confirmed, decided),
        declines,
    )


# -------------------------------------------------------------------------------------- notifications


async def notifications(p: Platform, merchant_id: int, limit: int = 100) -> list[Notification]:
    """The merchant's latest notifications with every attempt."""
    async with p.reader(snapshot=True) as r:  # each notification's status agrees with its attempts
        rows, attempt_rows = await r.console.notifications(merchant_id, limit)
    return _notifications(rows, attempt_rows, with_requests=False)


async def notification(p: Platform, merchant_id: int, notify_id: str) -> Notification:
    """One of the merchant's notifications with every attempt's request and answer (the inspector);
    NOT_FOUND for anyone else's."""
    async with p.reader(snapshot=True) as r:
        rows, attempt_rows = await r.console.notification(merchant_id, notify_id)
    found = _notifications(rows, attempt_rows, with_requests=True)
    if not found:
        raise TillpayError(Code.NOT_FOUND, "no such notification")
    return found[0]


async def redeliver(p: Platform, merchant_id: int, notify_id: str) -> bool:
    """Send one of the merchant's notifications once more, now; NOT_FOUND for anyone else's.

    False if it is being sent right now (a worker holds it): that attempt is not doubled. Throttled
    (nothing changed) past Redeliver's rate limits: ``redeliver_interval_seconds`` per notification,
    ``redeliver_per_minute`` per merchant.
    """
    async with p.unit_of_work() as uow:
        found = await uow.console.redeliver(
            merchant_id,
            notify_id,
            p.now(),
            interval=timedelta(seconds=p.settings.redeliver_interval_seconds),
            per_minute=p.settings.redeliver_per_minute,
        )
        await uow.commit()
    if found is None:
        raise TillpayError(Code.NOT_FOUND, "no such notification")
    if found.outcome == "wait":
        raise attempts.Throttled(found.retry_after)
    return found.outcome == "queued"


# ---------------------------------------------------------------------------------------- integration


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One of the merchant's public keys."""

    version: int
    fingerprint: str
    created_at: datetime
    current: bool
    #: current | active | expiring | expired | revoked (see merchants.key_versions_of)
    status: str = "current"
    expires_at: datetime | None = None


async def key_versions(p: Platform, merchant: Merchant) -> list[KeyVersion]:
    """The merchant's public keys, newest first, with a SHA-256 fingerprint of each."""
    async with p.reader() as r:
        rows = await r.console.keys(merchant.id)
    states = {k.version: k for k in await merchants.key_versions_of(p, merchant.id)}
    return [
        KeyVersion(
            r.key_version,
            hashlib.sha256(r.public_key.strip().encode()).hexdigest()[:32],
            r.created_at,
            i == 0,
            states[r.key_version].status if r.key_version in states else "active",
            r.expires_at,
        )
        for i, r in enumerate(rows)
    ]


async def revoke_key(p: Platform, merchant: Merchant, version_text: str) -> int:
    """Revoke one of the merchant's older key versions (Antom requests naming it are refused)."""
    if not version_text.isdigit() or len(version_text) > 6:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "choose a key version")
    version = int(version_text)
    await merchants.revoke_key_version(p, merchant.partner_id, version)
    return version


async def rotate_key(p: Platform, merchant: Merchant, public_key_pem: str) -> int:
    """Add the merchant's new public key (it becomes current); returns its version.

    Antom requests keep verifying with any earlier ``keyVersion`` they name, so a merchant rolls its
    tills over to the new key at its own pace there; MAPI and the Open Platform verify with the current key.
    """
    if len(public_key_pem) > 8000:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "that is not a public key (too long)")
    try:
        signing.load_public_key(public_key_pem)
    except signing.KeyFormatError as e:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"merchant public key: {e}") from None
    return await merchants.add_key_version(p, merchant.partner_id, public_key_pem)


async def set_sign_types(p: Platform, merchant: Merchant, chosen: list[str]) -> Merchant:
    """Allow only the ``chosen`` sign types (all four: every one). Refused when none is left that the
    merchant can sign with: MD5 always can, the RSA types only with an uploaded public key."""
    wanted = sorted({s.strip().upper() for s in chosen if s.strip()})
    if any(s not in merchants.SIGN_TYPES for s in wanted):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"sign types are {', '.join(merchants.SIGN_TYPES)}")
    usable = {"MD5"} | ({"RSA", "RSA2", "RSA256"} if merchant.public_key else set())
    if not usable & set(wanted):
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            "keep MD5 allowed, or upload an RSA public key first: your tills could sign nothing",
        )
    every = set(wanted) == set(merchants.SIGN_TYPES)
    return await merchants.set_sign_types(p, merchant.partner_id, None if every else wanted)


async def rotate_md5_key(p: Platform, merchant: Merchant, *, end_old_now: bool) -> str:
    """A new MD5 key for the merchant, shown once; the old one verifies for ``key_grace_seconds`` unless
    ``end_old_now``. Refused while MD5 is not an allowed sign type (the key would sign nothing)."""
    if merchant.sign_types is not None and "MD5" not in merchant.sign_types:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "MD5 is not allowed for this merchant; allow it first")
    return await merchants.rotate_md5_key(p, merchant.partner_id, 0 if end_old_now else None)


async def set_notify_url(p: Platform, merchant: Merchant, url: str | None) -> None:
    """Change (or clear) the merchant's default notify URL."""
    url = (url or "").strip() or None
    if url is not None and (problem := notify_url_problem(p.settings, url)):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"the notify URL {problem}")
    if url is not None and not _URL_RE.match(url):
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT, "a notify URL is http:// or https:// and at most 240 characters"
        )
    async with p.unit_of_work() as uow:
        await uow.merchants.set_notify_url(merchant.id, url)
        await uow.commit()
    p.forget_merchant(merchant.partner_id)


# ------------------------------------------------------------------------------------- test payments

#: The sandbox wallet of a merchant's test payments pays in the merchant's settlement currency (so no
#: rate is needed) and is topped up whenever it runs low.
SANDBOX_PIN = "000000"
SANDBOX_TOPUP = 100_000


def sandbox_login(merchant: Merchant) -> str:
    """The login id of a merchant's sandbox wallet (one per merchant, made on first use)."""
    return f"sandbox-{merchant.partner_id}@sandbox.tillpay.test"


async def test_payment(p: Platform, merchant: Merchant, amount: int) -> PaymentView:
    """Pay ``amount`` (settlement currency) to the merchant from its sandbox wallet, like a till would.

    The sandbox wallet's payment code is made here and charged through ``payments.pay`` with the
    merchant's own settings (risk rules, notify URL): it shows in the list, notifies and can be refunded,
    but its wallet is a sandbox wallet, so it is never settled or paid out. If the risk rules ask for
    confirmation, the sandbox confirms. Only a sandbox server (``TILLPAY_MODE=sandbox``) makes them.
    """
    if not p.settings.sandbox:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "test payments exist only on a sandbox server")
    payments.check_amount(amount, merchant.settlement_currency)
    login = sandbox_login(merchant)
    try:
        user = await wallets.user_by_login(p, login)
        device = next(d for d in await wallets.devices_of(p, user.id) if d.status == "active")
    except TillpayError:
        user, device = await wallets.add_user(
            p,
            login_id=login,
            currency=merchant.settlement_currency,
            pin=SANDBOX_PIN,
            name="Sandbox customer",
            sandbox=True,
        )
    if user.balance < amount:
        top = max(SANDBOX_TOPUP * 10 ** exponent(user.currency), amount)
        await wallets.fund(
            p, login, top, f"sandbox:{merchant.partner_id}:{secrets.token_hex(8)}", sandbox=True
        )
    code = await wallets.current_code(p, device)
    outcome = await payments.pay(
        p,
        payments.PayCommand(
            merchant=merchant,
            partner_trans_id="console-test-" + secrets.token_hex(8),
            code=code,
            price_amount=amount,
            price_currency=merchant.settlement_currency,
            settle_currency=merchant.settlement_currency,
            subject="Test payment from the merchant console",
            dialect="mapi",
            notify_url=merchant.notify_url,
            sign_type="RSA2" if merchant.public_key else "MD5",
            terminal_id=None,
        ),
    )
    view = outcome.payment
    if outcome.code is Code.WAIT_BUYER_CONFIRM:
        view = await payments.confirm(p, user.id, SANDBOX_PIN, view.trade_no)
    return view


# ---------------------------------------------------------------------------------------- settlement


async def test_partner_of(p: Platform, merchant: Merchant) -> str | None:
    """The partner id of the live merchant's test merchant (its test credentials), if made."""
    async with p.reader() as r:
        return await r.console.test_partner_of(merchant.id)


async def batches(p: Platform, merchant: Merchant) -> list[settlement.BatchView]:
    """The merchant's settlement batches, newest day first."""
    return await settlement.list_batches(p, partner_id=merchant.partner_id, limit=200)


async def files(p: Platform, merchant: Merchant) -> list[settlement.FileView]:
    """The merchant's transaction and settlement files (never the bank's payout files)."""
    return await settlement.list_files(p, partner_id=merchant.partner_id, merchant_only=True)


async def file(p: Platform, merchant: Merchant, name: str) -> tuple[settlement.FileView, bytes]:
    """One of the merchant's files and its bytes; NOT_FOUND for another merchant's (or no) file."""
    view, path = await settlement.file_for_merchant(p, merchant.partner_id, name)
    return view, path.read_bytes()


# ------------------------------------------------------------------------------------ reconciliation


async def reconcile_report(
    p: Platform, merchant: Merchant, day_files: list[settlement.FileView], journal: bytes
) -> str:
    """Reconcile the merchant's uploaded journal (CSV) against its files of one day: the HTML report.

    ValueError (reconcile.SourceError) when the journal cannot be read.
    """
    import asyncio
    import tempfile
    from pathlib import Path

    from tillpay.services import reconcile as reconcile_service

    paths = [(await settlement.file_for_merchant(p, merchant.partner_id, f.name))[1] for f in day_files]
    with tempfile.TemporaryDirectory() as tmp:
        jpath = Path(tmp) / "journal.csv"
        jpath.write_bytes(journal)
        report = await asyncio.to_thread(reconcile_service.reconcile_merchant, jpath, paths)
    report.summary.setdefault("inputs", {})["journal"] = "uploaded journal"
    return reconcile_service.render_html(report)
