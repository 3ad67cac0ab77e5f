"""The wallet app's use cases: sign-in with a browser device, sessions, devices, history, confirmations.

Every read here is scoped by the signed-in user's id: a payment, device or refund of another user is
answered exactly like one that does not exist (NOT_FOUND), so ids cannot be probed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import make_quote
from tillpay.domain.payment import Status
from tillpay.services import attempts, payments, wallets
from tillpay.services.platform import Platform
from tillpay.services.security import HashPoolBusy, hash_secret, verify_secret
from tillpay.services.views import PaymentView, RefundView
from tillpay.services.wallets import Device, WalletUser
from tillpay.store.payments import PaymentsRepository

#: A session lasts this long from sign-in (absolute, not sliding: a lost phone's session ends by itself).
SESSION_LIFETIME = timedelta(days=30)
#: Failed sign-ins per login id within LOGIN_FAILURE_WINDOW before each attempt must wait (backoff).
MAX_LOGIN_FAILURES = 5
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
LOGIN_LIMIT = attempts.Limit(
    MAX_LOGIN_FAILURES, LOGIN_FAILURE_WINDOW, timedelta(seconds=2), timedelta(seconds=60)
)
#: A trusted device (the user's own browser) is slowed by its own failures only, more firmly.
DEVICE_LIMIT = attempts.Limit(
    MAX_LOGIN_FAILURES, LOGIN_FAILURE_WINDOW, timedelta(seconds=30), timedelta(minutes=15)
)
#: Failed sign-ins from one address (any login) before it gets one check per CLIENT_SLOWDOWN.
MAX_CLIENT_FAILURES = 20
CLIENT_SLOWDOWN = timedelta(seconds=10)
CLIENT_LIMIT = attempts.Limit(MAX_CLIENT_FAILURES, LOGIN_FAILURE_WINDOW, CLIENT_SLOWDOWN, CLIENT_SLOWDOWN)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")


@functools.cache
def _dummy_hash() -> str:
    """A verifier no password matches, checked when the login id is unknown so timing does not tell.

    Made on first use, in the hashing pool (not at import: every CLI call would pay for it)."""
    return hash_secret(secrets.token_urlsafe(16))


def _verify_or_dummy(password: str, stored: str | None) -> bool:
    """``verify_secret`` against the stored hash, or the same work against a dummy (always False)."""
    return verify_secret(password, stored or _dummy_hash()) and bool(stored)


class SignInRefused(Exception):
    """Sign-in failed; ``reason`` is ``invalid`` (wrong login or password), ``locked`` (wait
    ``retry_after`` seconds), ``busy`` (the hashing pool is full; retry) or ``frozen``."""

    def __init__(self, reason: str, retry_after: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its user, its own device, and the token every form must echo."""

    id: int
    user: WalletUser
    device: Device
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignIn:
    """A new session: the cookie token, the session, and the browser token (new when a device was made)."""

    token: str
    session: Session
    browser_token: str
    new_device: bool


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as the devices screen lists it."""

    id: int
    device_no: int
    name: str
    status: str
    created_at: datetime
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Item:
    """A payment as the customer sees it: the merchant's name, both amounts, and its refunds."""

    payment: PaymentView
    merchant_name: str
    refunds: list[RefundView] = field(default_factory=list)
    #: The risk rule that decided the payment (``payments.risk_rule``): why a confirmation is asked.
    risk_rule: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def device_name(user_agent: str) -> str:
    """A short human name for a browser from its User-Agent, e.g. ``Chrome on Android``."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for key, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("Firefox/", "Firefox"),
                ("HeadlessChrome", "Chromium"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
            )
            if key in ua
        ),
        "Browser",
    )
    system = next(
        (
            name
            for key, name in (
                ("Android", "Android"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Windows", "Windows"),
                ("Mac OS X", "macOS"),
                ("Linux", "Linux"),
            )
            if key in ua
        ),
        None,
    )
    return f"{browser} on {system}" if system else browser


# -------------------------------------------------------------------------------------------- sign-in


async def sign_in(
    p: Platform,
    login_id: str,
    password: str,
    *,
    browser_token: str | None,
    user_agent: str,
    client: str = "unknown",
) -> SignIn:
    """Check the password and open a session on this browser's device (registering one if needed).

    The browser's device is found by ``browser_token`` (a long-lived cookie); when it is missing,
    unknown, revoked, or belongs to another user, a new device with its own code secret is registered.

    Each attempt is reserved before the password is hashed (``services/attempts.py``). Past
    MAX_LOGIN_FAILURES for the login the next attempt waits 2 s, doubling up to a minute
    (SignInRefused("locked") with ``retry_after``): strangers can slow a login, never close it. A
    browser that proves one of the user's own active devices is counted on its own instead (its
    failures, not the strangers', slow it), so the user's phone signs in whoever guesses elsewhere.
    Past MAX_CLIENT_FAILURES from one address, the address gets one check per CLIENT_SLOWDOWN.
    """
    client = client[:64]
    login_id = login_id[:64]
    trusted: int | None = None
    async with p.reader() as r:
        user = await r.wallets.user_by_login(login_id)
        if browser_token and _TOKEN_RE.match(browser_token):  # looked up for unknown logins too
            trusted = await r.wallets.browser_device(
                _hash(browser_token), user.id if user is not None else -1
            )
    if p.hash_pool.full:  # refused before any database work: a flood costs the server nothing
        raise SignInRefused("busy", 1)
    try:
        attempt = await attempts.reserve(
            p,
            "wallet",
            {"login_id": login_id, "client": client, "device_id": trusted},
            [
                # A trusted device is counted by its own failures; strangers' (no device) by theirs.
                (
                    {"login_id": login_id, "device_id": trusted},
                    DEVICE_LIMIT if trusted is not None else LOGIN_LIMIT,
                ),
                ({"client": client}, CLIENT_LIMIT),
            ],
        )
    except attempts.Throttled as e:
        raise SignInRefused("locked", e.retry_after) from None
    try:
        ok = await p.hash_pool.run(_verify_or_dummy, password, user.password_hash if user else None)
    except HashPoolBusy:
        await attempts.release(p, "wallet", attempt)
        raise SignInRefused("busy", 1) from None
    if user is None or not user.password_hash or not ok:
        raise SignInRefused("invalid")
    # The right password: the user's count starts afresh, and a PIN locked by wrong PINs is unlocked.
    await attempts.release(p, "wallet", attempt, {"login_id": login_id})
    if user.status != "active":
        raise SignInRefused("frozen")
    async with p.unit_of_work() as uow:
        await uow.wallets.clear_pin_failures(user.id)
        await uow.commit()
    now = p.now()

    device_id: int | None = None
    if browser_token and _TOKEN_RE.match(browser_token):
        async with p.reader() as r:
            device_id = await r.wallets.browser_device(_hash(browser_token), user.id)
    new_device = device_id is None
    if device_id is None:
        device = await wallets.add_device(p, user.id, device_name(user_agent))
        device_id = device.id
        browser_token = secrets.token_urlsafe(32)
        async with p.unit_of_work() as uow:
            await uow.wallets.add_browser(device_id, _hash(browser_token), user_agent or "", now)
            await uow.commit()
    assert browser_token is not None
    token = secrets.token_urlsafe(32)
    async with p.unit_of_work() as uow:
        await uow.wallets.add_session(
            _hash(token), user.id, device_id, secrets.token_urlsafe(32), now, now + SESSION_LIFETIME
        )
        await uow.commit()
    session = await session_for(p, token)
    assert session is not None
    return SignIn(token, session, browser_token, new_device)


async def session_for(p: Platform, token: str | None) -> Session | None:
    """The live session for a cookie token; None if unknown, expired, or its device or user was stopped."""
    if not token or not _TOKEN_RE.match(token):
        return None
    async with p.reader() as r:
        row = await r.wallets.session(_hash(token))
    if row is None or row.expires_at <= p.now():
        return None
    if row.device_status != "active" or row.status != "active":
        return None
    user = WalletUser(row.id, row.login_id, row.name, row.currency, row.balance, row.status, row.sandbox)
    device = Device(row.device_id, row.device_no, row.id, row.secret, row.device_name, row.device_status)
    return Session(row.session_id, user, device, row.csrf_token, row.expires_at)


async def sign_out(p: Platform, token: str | None) -> None:
    """End the session of this cookie token (the device stays registered)."""
    if not token:
        return
    async with p.unit_of_work() as uow:
        await uow.wallets.end_session(_hash(token))
        await uow.commit()


# -------------------------------------------------------------------------------------------- devices


async def devices(p: Platform, user_id: int) -> list[DeviceInfo]:
    """The user's devices, newest first, with the browser each belongs to (if it is a browser)."""
    async with p.reader() as r:
        rows = await r.wallets.devices(user_id)
    return [DeviceInfo(r.id, r.device_no, r.name, r.status, r.created_at, r.user_agent) for r in rows]


async def revoke_device(p: Platform, user_id: int, device_id: int) -> None:
    """Stop one of the user's devices: its codes are refused from now on and its sessions end."""
    async with p.unit_of_work() as uow:
        if not await uow.wallets.revoke_device(user_id, device_id):
            raise TillpayError(Code.NOT_FOUND, "no such device")
        await uow.commit()


# -------------------------------------------------------------------------------------------- history


async def _items(repo: PaymentsRepository, rows: list[Any], login_id: str) -> list[Item]:
    names = await repo.merchant_names(r.merchant_id for r in rows)
    by_payment: dict[int, list[RefundView]] = {r.id: [] for r in rows}
    refund_rows = await repo.refunds_of(by_payment)
    if refund_rows:
        views = {r.id: PaymentView.from_row(r, login_id) for r in rows}
        for rr in refund_rows:
            by_payment[rr.payment_id].append(RefundView.from_row(rr, views[rr.payment_id]))
    return [
        Item(PaymentView.from_row(r, login_id), names.get(r.merchant_id, ""), by_payment[r.id], r.risk_rule)
        for r in rows
    ]


async def history(p: Platform, user: WalletUser, *, before: int | None = None, limit: int = 30) -> list[Item]:
    """The user's payments, newest first (``before``: a payment id, for the next page)."""
    async with p.reader() as r:
        rows = await r.payments.of_customer(user.id, before=before, limit=limit)
        return await _items(r.payments, rows, user.login_id)


async def item(p: Platform, user: WalletUser, trade_no: str) -> Item:
    """One of the user's payments with its refunds; NOT_FOUND if it is not theirs."""
    async with p.reader() as r:
        row = await r.payments.customer_payment(user.id, trade_no)
        if row is None:
            raise TillpayError(Code.NOT_FOUND, "no such payment")
        return (await _items(r.payments, [row], user.login_id))[0]


@dataclass(frozen=True, slots=True)
class Order:
    """A merchant-presented QR order as its page shows it."""

    payment: PaymentView
    merchant_name: str
    #: What it would cost in the signed-in user's currency at today's rates (None: anonymous or no rate).
    wallet_amount: int | None = None
    wallet_currency: str | None = None
    wallet_rate: Decimal | None = None
    #: Whether the signed-in user paid it (a paid order is shown to its payer only).
    mine: bool = False


async def order(p: Platform, trade_no: str, user: WalletUser | None = None) -> Order:
    """A precreated (merchant-presented QR) order by its gateway id; NOT_FOUND unless it is one."""
    await _expire_if_due(p, trade_no)
    async with p.reader() as r:
        row = await r.payments.qr_order(trade_no)
        if row is None:
            raise TillpayError(Code.NOT_FOUND, "no such order")
        names = await r.payments.merchant_names([row.merchant_id])
        view = PaymentView.from_row(row)
        mine = user is not None and row.user_id == user.id
        if user is None or row.status != Status.WAIT_BUYER_PAY.value:
            return Order(view, names.get(row.merchant_id, ""), mine=mine)
        try:
            q = make_quote(
                row.price_amount,
                row.price_currency,
                row.settle_currency,
                user.currency,
                await p.rates(r),
            )
        except TillpayError:
            return Order(view, names.get(row.merchant_id, ""))
        return Order(view, names.get(row.merchant_id, ""), q.wallet_amount, q.wallet_currency, q.wallet_rate)


async def _expire_if_due(p: Platform, trade_no: str) -> None:
    async with p.reader() as r:
        pid = await r.payments.due_waiting(trade_no, p.now())
    if pid is not None:
        await payments.expire_payment(p, pid)


# ------------------------------------------------------------------------------------ live updates


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the app watches: the confirmations waiting, and the latest payments of this device."""

    pending: list[Item]
    recent: list[Item]

    def key(self) -> tuple[Any, ...]:
        """Equal keys mean nothing visible changed."""
        return (
            tuple((i.payment.trade_no, i.payment.status, i.payment.expires_at) for i in self.pending),
            tuple((i.payment.trade_no, i.payment.status, i.payment.refunded_price) for i in self.recent),
        )


async def snapshot(p: Platform, user: WalletUser, since_id: int) -> Snapshot:
    """The waiting confirmations and the payments newer than ``since_id``, both newest first."""
    await payments.expire_due(p)
    async with p.reader() as r:
        rows = await r.payments.waiting_or_newer(user.id, since_id)
        items = await _items(r.payments, rows, user.login_id)
    pending = [i for i in items if i.payment.status is Status.WAIT_BUYER_PAY]
    recent = [i for i in items if i.payment.id > since_id]
    return Snapshot(pending, recent)


async def last_payment_id(p: Platform, user_id: int) -> int:
    """The id of the user's newest payment (0 if none): live updates report what comes after it."""
    async with p.reader() as r:
        return await r.payments.newest_id(user_id)


async def pin_attempts_left(p: Platform, user_id: int, trade_no: str) -> int:
    """How many wrong PINs a waiting payment of this user still tolerates."""
    async with p.reader() as r:
        used = await r.payments.pin_attempts(trade_no, user_id)
    return max(0, p.settings.max_pin_attempts - used)


async def used_slots(p: Platform, device_id: int, since_step: int) -> list[tuple[int, int]]:
    """The (step, slot) pairs of a device's codes already used since ``since_step``."""
    async with p.reader() as r:
        return await r.wallets.used_slots(device_id, since_step)


async def order_pin_attempts_left(p: Platform, trade_no: str) -> int:
    """How many wrong PINs a waiting QR order still tolerates (counted on the order itself)."""
    async with p.reader() as r:
        used = await r.payments.pin_attempts(trade_no)
    return max(0, p.settings.max_pin_attempts - used)
