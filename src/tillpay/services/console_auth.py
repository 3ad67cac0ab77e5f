"""Merchant console accounts: users with roles, argon2 passwords, rate-limited sign-in, expiring sessions.

A console user belongs to exactly one merchant; its session carries that merchant's id, and every
console query is scoped by it (``services/console.py``), so a user can never see another merchant's data.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError

from tillpay.domain.errors import Code, TillpayError
from tillpay.services import attempts, merchants
from tillpay.services.platform import Platform
from tillpay.services.security import HashPoolBusy

#: The roles, most powerful first.
ROLES = ("owner", "manager", "cashier-supervisor", "read-only")

#: What each role may do. Reading transactions, the dashboard and stores is open to every role.
PERMISSIONS: dict[str, frozenset[str]] = {
    "refund": frozenset({"owner", "manager", "cashier-supervisor"}),
    "settlements": frozenset({"owner", "manager", "read-only"}),
    "integration": frozenset({"owner", "manager"}),  # notification log, redeliver, test payment
    "keys": frozenset({"owner"}),  # rotate keys, change the notify URL
    "stores": frozenset({"owner", "manager"}),  # add and disable stores and terminals
    "users": frozenset({"owner"}),
}

#: A session ends this long after sign-in whatever happens, and earlier after SESSION_IDLE unused.
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(minutes=30)
#: last_seen_at is written at most this often (a write per page view would serialise SQLite).
_TOUCH_EVERY = timedelta(seconds=60)
#: Failed sign-ins within FAILURE_WINDOW before sign-in is refused: per login, and per client address
#: (so one address cannot try one password against many logins).
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_CLIENT = 20
FAILURE_WINDOW = timedelta(minutes=15)
LOGIN_LIMIT = attempts.Limit(
    MAX_FAILURES_PER_LOGIN, FAILURE_WINDOW, timedelta(seconds=30), timedelta(minutes=15)
)
#: Past its limit an address gets one password check per CLIENT_SLOWDOWN (not a lock).
CLIENT_SLOWDOWN = timedelta(seconds=10)
CLIENT_LIMIT = attempts.Limit(MAX_FAILURES_PER_CLIENT, FAILURE_WINDOW, CLIENT_SLOWDOWN, CLIENT_SLOWDOWN)
MIN_PASSWORD = 10

LOGIN_RE = re.compile(r"^[A-Za-z0-9._+@-]{3,128}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")

# argon2id with the library's defaults (RFC 9106 "second recommended" profile: 64 MiB, 3 passes).
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the login is unknown, so the answer takes as long as for a known login.

    Made on first use, in the hashing pool (not at import: every CLI call would pay for it)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(Exception):
    """Sign-in failed; ``reason`` is ``invalid`` (wrong login or password), ``locked`` (wait
    ``retry_after`` seconds), ``busy`` (the hashing pool is full; retry) or ``disabled``."""

    def __init__(self, reason: str, retry_after: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """A console user: who, for which merchant, in which role."""

    id: int
    merchant_id: int
    partner_id: str
    merchant_name: str
    login: str
    name: str
    role: str
    status: str
    #: Viewing test data: ``merchant_id``, ``partner_id`` and ``merchant_name`` are the test merchant's
    #: (every query is scoped by them), ``live_merchant_id`` the user's own merchant.
    test: bool = False
    live_merchant_id: int | None = None

    def can(self, action: str) -> bool:
        """Whether this user's role allows ``action`` (a key of PERMISSIONS); users are managed in
        live mode only (a test merchant has no console users of its own)."""
        if self.test and action == "users":
            return False
        return self.role in PERMISSIONS[action]


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in browser: its user and the token every form must echo."""

    id: int
    user: ConsoleUser
    csrf_token: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches an argon2 hash (False for a malformed hash; None checks a dummy)."""
    try:
        return (
            _hasher.verify(stored if stored is not None else _dummy_hash(), password) and stored is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _user(row: Any) -> ConsoleUser:
    return ConsoleUser(
        row.id, row.merchant_id, row.partner_id, row.merchant_name, row.login, row.name, row.role, row.status
    )


def check_password(password: str) -> None:
    """ILLEGAL_ARGUMENT unless the password is long enough to be worth hashing."""
    if len(password) < MIN_PASSWORD or len(password) > 256:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT, f"a console password is {MIN_PASSWORD} to 256 characters long"
        )


async def add_user(
    p: Platform, *, partner_id: str, login: str, password: str, role: str, name: str | None = None
) -> ConsoleUser:
    """Create a console user of merchant ``partner_id``; ALREADY_EXISTS if the login is taken."""
    login = login.strip().lower()
    if not LOGIN_RE.match(login):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a console login is 3-128 letters, digits or . _ + @ -")
    if role not in ROLES:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"role is one of {', '.join(ROLES)}")
    check_password(password)
    merchant = await p.merchant_by_partner(partner_id, fresh=True)
    if merchant.is_test:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            "a test merchant has no console users: its live merchant's users switch to test data",
        )
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        async with p.unit_of_work() as uow:
            await uow.console_users.add_user(
                merchant.id, login, (name or login).strip()[:128], role, hashed, p.now()
            )
            await uow.commit()
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"console login {login!r} exists already") from None
    return await user_by_login(p, login)


async def user_by_login(p: Platform, login: str) -> ConsoleUser:
    """The console user with this login; NOT_FOUND if none."""
    async with p.reader() as r:
        row = await r.console_users.by_login(login.lower())
    if row is None:
        raise TillpayError(Code.NOT_FOUND, f"no console user {login!r}")
    return _user(row)


async def users_of(p: Platform, merchant_id: int) -> list[ConsoleUser]:
    """The merchant's console users, oldest first."""
    async with p.reader() as reader:
        rows = await reader.console_users.users_of(merchant_id)
    return [_user(r) for r in rows]


async def set_user_status(p: Platform, merchant_id: int, user_id: int, status: str) -> None:
    """Disable or re-enable one of the merchant's users; a disabled user's sessions end at once."""
    if status not in ("active", "disabled"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or disabled")
    async with p.unit_of_work() as uow:
        if not await uow.console_users.set_status(merchant_id, user_id, status):
            raise TillpayError(Code.NOT_FOUND, "no such user")
        if status == "disabled":
            await uow.console_users.end_sessions_of(user_id)
        await uow.commit()


async def sign_in(p: Platform, login: str, password: str, *, client: str) -> tuple[str, ConsoleSession]:
    """Check the password and open a session; returns the cookie token and the session.

    The attempt is reserved before the password is hashed (``services/attempts.py``): past
    MAX_FAILURES_PER_LOGIN failures for the login within FAILURE_WINDOW, each attempt waits a doubling
    delay (30 s up to 15 minutes); past MAX_FAILURES_PER_CLIENT from the client address, the address
    gets one password check per CLIENT_SLOWDOWN, for any login, so another user behind the same address
    still signs in (after a short wait) with the right password. A waiting attempt raises
    SignInRefused("locked") with ``retry_after`` and gives nothing away even with the right password.
    """
    now = p.now()
    login = login.strip().lower()[:128]
    client = client[:64]
    if p.hash_pool.full:  # refused before any database work: a flood costs the server nothing
        raise SignInRefused("busy", 1)
    try:
        attempt = await attempts.reserve(
            p,
            "console",
            {"login": login, "client": client},
            [({"login": login}, LOGIN_LIMIT), ({"client": client}, CLIENT_LIMIT)],
        )
    except attempts.Throttled as e:
        raise SignInRefused("locked", e.retry_after) from None
    async with p.reader() as r:
        row = await r.console_users.by_login(login)
    stored = row.password_hash if row is not None else None
    # argon2 takes tens of milliseconds of CPU: off the event loop, in the bounded hashing pool.
    try:
        ok = await p.hash_pool.run(verify_password, password, stored)
    except HashPoolBusy:
        await attempts.release(p, "console", attempt)
        raise SignInRefused("busy", 1) from None
    if row is None or not ok:
        raise SignInRefused("invalid")
    # A successful sign-in clears the login's count, so a user who mistyped is not slowed later.
    await attempts.release(p, "console", attempt, {"login": login})
    if row.status != "active":
        raise SignInRefused("disabled")
    token = secrets.token_urlsafe(32)
    async with p.unit_of_work() as uow:
        await uow.console_users.add_session(
            _hash(token), row.id, secrets.token_urlsafe(32), now, now + SESSION_LIFETIME
        )
        await uow.commit()
    session = await session_for(p, token)
    assert session is not None
    return token, session


async def session_for(p: Platform, token: str | None) -> ConsoleSession | None:
    """The live session of a cookie token; None if unknown, expired, idle too long, or its user disabled."""
    if not token or not _TOKEN_RE.match(token):
        return None
    now = p.now()
    async with p.reader() as r:
        row = await r.console_users.session(_hash(token))
    if row is None or row.expires_at <= now or row.last_seen_at + SESSION_IDLE <= now:
        return None
    if row.status != "active":
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        async with p.unit_of_work() as uow:
            await uow.console_users.touch_session(row.session_id, now)
            await uow.commit()
    user = _user(row)
    if row.test_mode and row.test_id is not None:
        # Test data: the session's every page is scoped by the test merchant (docs/console.md).
        user = replace(
            user,
            merchant_id=row.test_id,
            partner_id=row.test_partner_id,
            merchant_name=row.test_name,
            test=True,
            live_merchant_id=user.merchant_id,
        )
    return ConsoleSession(row.session_id, user, row.csrf_token, row.expires_at)


async def set_test_mode(p: Platform, session: ConsoleSession, test: bool) -> str | None:
    """Switch the session to its merchant's test data (making the test credentials on first use, which
    only an owner may) or back to live data. Returns the test merchant's private key when it was made
    now (shown once), else None."""
    private_key = None
    if test and not session.user.test:
        live_id = session.user.merchant_id
        async with p.reader() as r:
            made = await r.merchants.test_merchant_of(live_id)
        if made is None and session.user.role != "owner":
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "the owner makes the test credentials first")
        private_key = (await merchants.test_merchant_of(p, session.user.partner_id)).merchant_private_key
    async with p.unit_of_work() as uow:
        await uow.console_users.set_test_mode(session.id, test)
        await uow.commit()
    return private_key


async def sign_out(p: Platform, token: str | None) -> None:
    """End the session of this cookie token."""
    if not token:
        return
    async with p.unit_of_work() as uow:
        await uow.console_users.end_session(_hash(token))
        await uow.commit()
