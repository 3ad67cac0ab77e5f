"""Wallet users, their devices and payment codes, and top-ups."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from tillpay.domain import ledger, paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent, known_currency
from tillpay.services.payment_common import MAX_MAJOR
from tillpay.services.platform import Platform
from tillpay.services.security import hash_secret

LOGIN_RE = re.compile(r"^[A-Za-z0-9._+@-]{3,64}$")
PIN_RE = re.compile(r"^\d{6}$")


@dataclass(frozen=True, slots=True)
class WalletUser:
    """A customer's wallet."""

    id: int
    login_id: str
    name: str
    currency: str
    balance: int
    status: str
    #: Funded by a sandbox feature: its payments are never settled (``wallet_users.sandbox``).
    sandbox: bool = False


@dataclass(frozen=True, slots=True)
class Device:
    """A device of a wallet user; it makes payment codes offline from its secret."""

    id: int
    device_no: int
    user_id: int
    secret: bytes
    name: str
    status: str


def _user(row: Any) -> WalletUser:
    return WalletUser(row.id, row.login_id, row.name, row.currency, row.balance, row.status, row.sandbox)


async def add_user(
    p: Platform,
    *,
    login_id: str,
    currency: str,
    pin: str,
    name: str | None = None,
    password: str | None = None,
    sandbox: bool = False,
) -> tuple[WalletUser, Device]:
    """Create a wallet user with a six-digit PIN and a first device (``sandbox``: a test wallet)."""
    if not LOGIN_RE.match(login_id):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a login id is 3-64 letters, digits or . _ + @ -")
    if not PIN_RE.match(pin):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a PIN is six digits")
    known_currency(currency)
    try:
        async with p.unit_of_work() as uow:
            uid = await uow.wallets.add_user(
                dict(
                    login_id=login_id,
                    name=name or login_id,
                    currency=currency,
                    pin_hash=hash_secret(pin),
                    password_hash=hash_secret(password) if password else None,
                    balance=0,
                    status="active",
                    created_at=p.now(),
                    sandbox=sandbox,
                )
            )
            await uow.commit()
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"wallet user {login_id!r} exists already") from None
    device = await add_device(p, uid)
    return await user_by_login(p, login_id), device


async def add_device(p: Platform, user_id: int, name: str = "device") -> Device:
    """Register a new device for a user, with its own random number and secret."""
    for _ in range(20):
        async with p.unit_of_work() as uow:
            row = await uow.wallets.add_device_if_free(
                dict(
                    device_no=p.ids.device_no(),
                    user_id=user_id,
                    secret=p.ids.device_secret(),
                    name=name,
                    status="active",
                    created_at=p.now(),
                )
            )
            await uow.commit()
        if row is not None:
            return Device(row.id, row.device_no, row.user_id, row.secret, row.name, row.status)
    raise TillpayError(Code.SYSTEM_ERROR, "could not allocate a device number")


async def user_by_login(p: Platform, login_id: str) -> WalletUser:
    """The wallet user with this login id; NOT_FOUND if none."""
    async with p.reader() as r:
        row = await r.wallets.user_by_login(login_id)
    if row is None:
        raise TillpayError(Code.NOT_FOUND, f"no wallet user {login_id!r}")
    return _user(row)


async def devices_of(p: Platform, user_id: int) -> list[Device]:
    """A user's devices, oldest first."""
    async with p.reader() as r:
        rows = await r.wallets.devices_of(user_id)
    return [Device(r.id, r.device_no, r.user_id, r.secret, r.name, r.status) for r in rows]


async def current_code(p: Platform, device: Device, at: datetime | None = None) -> str:
    """The device's payment code now: the current minute's first slot not yet used by a payment."""
    when = at or p.now()
    unix = int(when.timestamp())
    step = paycode.step_at(unix)
    async with p.reader() as r:
        used = await r.wallets.slots_used_at(device.id, step)
    free = [s for s in range(10) if s not in used]
    if not free:
        raise TillpayError(Code.CODE_USED, "all of this minute's codes are used; wait for the next minute")
    return paycode.generate(device.secret, device.device_no, unix, free[0])


#: An operator's top-up reference (a bank transfer id, a ticket number): printable ASCII, no spaces.
REFERENCE_RE = re.compile(r"[!-~]{1,64}")


@dataclass(frozen=True, slots=True)
class TopUp:
    """The outcome of a top-up: the wallet after it, the journal entry, and whether this call added it."""

    user: WalletUser
    reference: str
    entry_id: int
    added: bool


async def topup(
    p: Platform, login_id: str, amount: int, reference: str | None = None, *, sandbox: bool = False
) -> WalletUser:
    """Fund a wallet from the bank (simulated); the same ``reference`` twice funds once."""
    return (await fund(p, login_id, amount, reference or p.ids.notify_id(), sandbox=sandbox)).user


async def fund(p: Platform, login_id: str, amount: int, reference: str, *, sandbox: bool = False) -> TopUp:
    """Fund a wallet once per ``reference``, recorded with the journal entry (``topup:<reference>``).

    A repeat with the same wallet and amount adds nothing and answers the first top-up (``added`` is
    False); the same reference for another wallet or amount is refused. ``sandbox`` marks the wallet a
    sandbox wallet in the same transaction (money a sandbox feature made up never settles).
    """
    if not REFERENCE_RE.fullmatch(reference):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a reference is 1-64 printable ASCII characters, no spaces")
    user = await user_by_login(p, login_id)
    if amount <= 0 or amount > MAX_MAJOR * 10 ** exponent(user.currency):
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, "a top-up must be above 0 and at most 100,000,000")
    try:
        return await _fund_once(p, user, amount, reference, sandbox)
    except IntegrityError:
        # A concurrent top-up with the same reference committed first (unique ``journal_entries.ref``):
        # answer as a repeat of it, or refuse if it differs.
        return await _fund_once(p, user, amount, reference, sandbox)


async def _fund_once(p: Platform, user: WalletUser, amount: int, reference: str, sandbox: bool) -> TopUp:
    ref = f"topup:{reference}"
    account = ledger.wallet_account(user.id)
    async with p.unit_of_work() as uow:
        entry_id = await uow.wallets.entry_by_ref(ref)
        added = entry_id is None
        if entry_id is None:
            if sandbox:
                await uow.wallets.mark_sandbox(user.id)
            await uow.ledger.post(
                kind="topup",
                ref=ref,
                postings=[
                    ledger.Posting(ledger.BANK, user.currency, -amount),
                    ledger.Posting(account, user.currency, amount),
                ],
                now=p.now(),
                memo=f"top-up {reference}",
            )
            entry_id = await uow.wallets.entry_by_ref(ref)
            assert entry_id is not None
        elif not await uow.wallets.entry_credits(entry_id, account, amount):
            raise TillpayError(
                Code.REPEAT_REQ_INCONSISTENT,
                f"reference {reference!r} was used for another top-up; nothing added",
            )
        await uow.commit()
    return TopUp(await user_by_login(p, user.login_id), reference, entry_id, added)


@dataclass(frozen=True, slots=True)
class TopUpEntry:
    """One top-up as recorded in the journal."""

    entry_id: int
    reference: str
    amount: int
    created_at: datetime


async def topups_of(p: Platform, user: WalletUser, limit: int = 10) -> list[TopUpEntry]:
    """The wallet's latest top-ups, newest first, with the reference each was made with."""
    async with p.reader() as r:
        rows = await r.wallets.topups(ledger.wallet_account(user.id), limit)
    return [TopUpEntry(r.id, r.ref.removeprefix("topup:"), r.amount, r.created_at) for r in rows]


async def set_status(p: Platform, login_id: str, status: str) -> WalletUser:
    """Freeze (``frozen``) or re-activate (``active``) a wallet."""
    if status not in ("active", "frozen"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or frozen")
    async with p.unit_of_work() as uow:
        found = await uow.wallets.set_user(login_id, status=status)
        await uow.commit()
    if not found:
        raise TillpayError(Code.NOT_FOUND, f"no wallet user {login_id!r}")
    return await user_by_login(p, login_id)


async def unlock_pin(p: Platform, login_id: str) -> WalletUser:
    """Clear the customer's count of wrong PINs, unlocking a PIN locked by ``max_pin_failures``."""
    async with p.unit_of_work() as uow:
        found = await uow.wallets.set_user(login_id, pin_failures=0)
        await uow.commit()
    if not found:
        raise TillpayError(Code.NOT_FOUND, f"no wallet user {login_id!r}")
    return await user_by_login(p, login_id)
