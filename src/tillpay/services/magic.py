"""Magic payment codes at work (the table is ``domain/magic.py``; docs/sandbox.md).

A magic code is honoured only for a test merchant or on a sandbox server. It is paid by one of the
merchant's sandbox wallets (made on first use, topped up with sandbox money through ``wallets.fund`` with
a reference, in the merchant's settlement currency): the pay swaps the magic code for a real code of that
wallet and runs the real pay, so the decision, the ledger and the notification are the ones any payment
gets. What the outcome needs beyond that is forced here and nowhere else:

- the wallet's own risk rules (never confirm, always confirm, always decline), its balance and status;
- an expired or used code: a real code of the wallet from ten minutes ago, or one whose use is recorded;
- a delay before or after the pay (``asyncio.sleep`` with no connection or transaction open);
- an ``UNKNOW`` answer (``SYSTEM_ERROR``) for a payment that went through;
- the customer's answer to a confirmation at a time on the merchant's clock (``answer_due``, run by the
  worker), and notifications recorded as failed (``fails_delivery``, asked by the notifier).

A magic payment's wallet is a sandbox wallet, so nothing of it is ever settled or paid out.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import structlog

from tillpay.domain import paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.magic import (
    QR_ANSWER_SECONDS,
    Looked,
    Magic,
    Wallet,
    delay_seconds,
    lookup,
    lookup_amount,
)
from tillpay.domain.money import exponent, format_amount
from tillpay.services import confirmation, wallets
from tillpay.services import risk as risk_service
from tillpay.services.payment_common import PayCommand
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, PayOutcome

log = structlog.get_logger("tillpay.magic")

#: The PIN of every magic wallet: the sandbox answers its confirmations with it.
MAGIC_PIN = "000000"
#: A funded magic wallet is topped up by ``_TOPUP_MAJOR`` whenever it holds less than ``_FLOOR_MAJOR``.
_FLOOR_MAJOR = 10_000_000
_TOPUP_MAJOR = 100_000_000
#: How old the code of ``CODE_EXPIRED`` is (well past the two minutes a code is valid).
_EXPIRED_AGE = timedelta(minutes=10)
#: The action of a magic QR order: this, then the kind of the wallet that answers it (``qr-funded``).
_QR = "qr-"
#: How many codes of the wallet a magic pay tries when concurrent ones took the slot it picked.
_TRIES = 8
#: What the notification inspector shows for a delivery a magic code recorded as failed.
FAILED_DELIVERY = "sandbox: delivered, recorded as failed (magic code notify-fails)"

Charge = Callable[..., Awaitable[PayOutcome]]


def honoured(p: Platform, merchant: Merchant, code: str) -> Looked | None:
    """The magic code's row when ``code`` is one and this merchant may use it (a test merchant, or any
    merchant on a sandbox server); None otherwise, and then the code is refused as no device's."""
    looked = lookup(code)
    if looked is None or not (merchant.is_test or p.settings.sandbox):
        return None
    return looked


def login_of(merchant: Merchant, kind: Wallet) -> str:
    """The login id of the merchant's magic wallet of ``kind``."""
    return f"magic-{kind.value}-{merchant.partner_id}@sandbox.tillpay.test"


def _rules(kind: Wallet, currency: str) -> dict[str, Any]:
    """The wallet's own risk rules: none of the scheme's or merchant's limits stands in the way, and the
    one rule the outcome needs fires every time."""
    big = format_amount(99_999_999_999 * 10 ** exponent(currency), currency)
    rules: dict[str, Any] = {
        "confirm_above": {currency: big},
        "per_payment_limit": {currency: big},
        "daily_limit": {currency: big},
        "monthly_limit": {currency: big},
        "velocity_count": None,
        "new_device_hours": None,
        "offline_code_confirm": False,
        "blocked_mcc": [],
    }
    if kind is Wallet.CONFIRMS:
        rules["confirm_above"] = {currency: format_amount(0, currency)}
    elif kind is Wallet.RISKY:
        rules.update(velocity_count=0, velocity_action="DECLINE")
    return rules


#: Per platform, one lock per magic wallet login: a wallet is set up (rules, status) before a concurrent
#: pay of the same process can use it. Across processes a pay racing the very first one may find it
#: without its rules for a moment; a sandbox accepts that.
_SETUP: weakref.WeakKeyDictionary[Platform, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


async def wallet(p: Platform, merchant: Merchant, kind: Wallet) -> wallets.WalletUser:
    """The merchant's magic wallet of ``kind``, made on first use, funded unless it is the empty one."""
    login = login_of(merchant, kind)
    lock = _SETUP.setdefault(p, {}).setdefault(login, asyncio.Lock())
    async with lock:
        return await _wallet(p, merchant, kind, login)


async def _wallet(p: Platform, merchant: Merchant, kind: Wallet, login: str) -> wallets.WalletUser:
    try:
        user = await wallets.user_by_login(p, login)
    except TillpayError:
        try:
            user, _ = await wallets.add_user(
                p,
                login_id=login,
                currency=merchant.settlement_currency,
                pin=MAGIC_PIN,
                name=f"Sandbox customer ({kind.value})",
                sandbox=True,
            )
        except TillpayError as e:
            if e.code is not Code.ALREADY_EXISTS:
                raise
            user = await wallets.user_by_login(p, login)  # made by a concurrent pay meanwhile
        else:
            await risk_service.set_rules(p, "user", login, _rules(kind, user.currency), replace=True)
            if kind is Wallet.FROZEN:
                user = await wallets.set_status(p, login, "frozen")
    unit = 10 ** exponent(user.currency)
    if kind is not Wallet.EMPTY and user.balance < _FLOOR_MAJOR * unit:
        reference = f"magic:{merchant.partner_id}:{kind.value}:{secrets.token_hex(6)}"
        user = (await wallets.fund(p, login, _TOPUP_MAJOR * unit, reference, sandbox=True)).user
    return user


async def _free_slot(p: Platform, device: wallets.Device, step: int) -> int | None:
    """A slot of the device's minute no payment used, picked at random (concurrent magic pays of one
    wallet then rarely pick the same one; one that loses is tried again with another)."""
    async with p.reader() as r:
        used = await r.wallets.slots_used_at(device.id, step)
    free = [s for s in range(paycode.SLOTS) if s not in used]
    return secrets.choice(free) if free else None


async def _code(p: Platform, user_id: int, outcome: Magic) -> str:
    """A real code of the wallet that admission takes (or, for CODE_EXPIRED, refuses as expired)."""
    at = p.now() - _EXPIRED_AGE if outcome is Magic.CODE_EXPIRED else p.now()
    unix = int(at.timestamp())
    step = paycode.step_at(unix)
    for device in await wallets.devices_of(p, user_id):
        slot = await _free_slot(p, device, step)
        if slot is not None:
            break
    else:  # every code of this minute of every device is used: one more device
        device = await wallets.add_device(p, user_id, name="magic")
        slot = 0
    if outcome is Magic.CODE_USED:
        # Recorded as used, as if a payment had taken it: the pay's own single-use check refuses it.
        async with p.unit_of_work() as uow:
            await uow.codes.add_use(device.id, step, slot, p.now())
            await uow.commit()
    return paycode.generate(device.secret, device.device_no, unix, slot)


def _wallet_kind(looked: Looked) -> Wallet:
    if looked.row.outcome is Magic.UNKNOWN_THEN_SUCCESS and looked.n:
        return Wallet.CONFIRMS  # processing for N seconds: a confirmation the sandbox answers
    return looked.row.wallet


async def pay(p: Platform, cmd: PayCommand, looked: Looked, charge: Charge) -> PayOutcome:
    """Pay a magic code through the real pay (``charge``), with the outcome of its row."""
    outcome = looked.row.outcome
    async with p.reader() as r:
        repeat = await r.payments.of_merchant(cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
    if repeat is not None:
        # A repeated request: the pay answers it with the first result (its digest is of the code the
        # till sent, ``sent_code``), or refuses it if it differs.
        return await charge(p, cmd, magic=False)
    if outcome is Magic.SLOW_ANSWER:
        await asyncio.sleep(delay_seconds(looked))  # no connection is open while the till waits
    user = await wallet(p, cmd.merchant, _wallet_kind(looked))
    for attempt in range(_TRIES):
        real = replace(cmd, code=await _code(p, user.id, outcome), sent_code=cmd.code)
        try:
            result = await charge(p, real, magic=False)
            break
        except TillpayError as e:
            # A concurrent magic pay took the same slot: another code of the wallet.
            if e.code is not Code.CODE_USED or outcome is Magic.CODE_USED or attempt == _TRIES - 1:
                raise
    view = result.payment
    if result.replayed:
        return result  # the till cancelled the id while a slow answer waited: the pay found it closed
    now = p.now()
    action: dict[str, Any] | None = None
    if result.code is Code.WAIT_BUYER_CONFIRM and outcome in (
        Magic.CONFIRM_THEN_CONFIRMED,
        Magic.CONFIRM_THEN_REJECTED,
        Magic.UNKNOWN_THEN_SUCCESS,
    ):
        answer = "reject" if outcome is Magic.CONFIRM_THEN_REJECTED else "confirm"
        action = {"action": answer, "due_at": cmd.merchant.clock(now) + timedelta(seconds=looked.n)}
    elif outcome is Magic.NOTIFY_FAILS and result.code is None and looked.n:
        action = {"action": "fail_notify", "remaining": looked.n}
    if action is not None:
        async with p.unit_of_work() as uow:
            await uow.sandbox_actions.add(view.id, cmd.merchant.id, now, **action)
            await uow.commit()
    log.info("magic_pay", merchant=cmd.merchant.partner_id, outcome=outcome.value, trade_no=view.trade_no)
    if outcome is Magic.SUCCESS_AFTER_CANCEL:
        await asyncio.sleep(delay_seconds(looked))  # paid; the answer comes after the till gave up
    if outcome is Magic.UNKNOWN_THEN_SUCCESS:
        raise TillpayError(Code.SYSTEM_ERROR, "sandbox: the outcome is unknown; query the payment")
    return result


async def precreated(p: Platform, merchant: Merchant, view: PaymentView) -> None:
    """A QR order just made: if its amount is a magic one here, a sandbox customer answers it
    ``QR_ANSWER_SECONDS`` later on the merchant's clock (``answer_due``)."""
    row = lookup_amount(view.price_amount)
    if row is None or not (merchant.is_test or p.settings.sandbox):
        return
    now = p.now()
    async with p.unit_of_work() as uow:
        await uow.sandbox_actions.add(
            view.id,
            merchant.id,
            now,
            action=f"{_QR}{row.wallet.value}",
            due_at=merchant.clock(now) + timedelta(seconds=QR_ANSWER_SECONDS),
        )
        await uow.commit()


async def _answer(p: Platform, merchant: Merchant, action: str, user_id: int | None, trade_no: str) -> None:
    if action.startswith(_QR):
        payer = await wallet(p, merchant, Wallet(action.removeprefix(_QR)))
        await confirmation.confirm(p, payer.id, MAGIC_PIN, trade_no, precreated=True)
    elif user_id is None:
        return
    elif action == "confirm":
        await confirmation.confirm(p, user_id, MAGIC_PIN, trade_no)
    else:
        await confirmation.reject(p, user_id, trade_no)


async def answer_due(p: Platform) -> int:
    """The worker's pass: the customer answers each magic confirmation whose time came on its merchant's
    clock (a moved test clock brings it forward); how many were answered."""
    async with p.reader() as r:
        rows = await r.sandbox_actions.open_answers()
    clocks: dict[str, Merchant] = {}
    answered = 0
    for row in rows:
        merchant = clocks.get(row.partner_id)
        if merchant is None:
            merchant = clocks[row.partner_id] = await p.merchant_by_partner(row.partner_id, fresh=True)
        if row.due_at > merchant.clock(p.now()):
            continue
        async with p.unit_of_work() as uow:
            claimed = await uow.sandbox_actions.claim(row.id, p.now())
            await uow.commit()
        if not claimed:
            continue  # another worker answers it
        try:
            await _answer(p, merchant, row.action, row.user_id, row.trade_no)
            answered += 1
        except TillpayError as e:
            # The till cancelled it, or it expired, before the customer's answer: nothing left to answer.
            log.info("magic_answer_too_late", trade_no=row.trade_no, code=e.code.value)
    return answered


async def fails_delivery(p: Platform, merchant: Merchant, outbox_row: Any) -> bool:
    """Whether this delivery of a payment's notification, which the merchant acknowledged, is recorded as
    failed all the same (magic code ``notify-fails``); counts it down. Free for live merchants on a
    production server: they never have magic payments."""
    if not (merchant.is_test or p.settings.sandbox) or outbox_row.payment_id is None:
        return False
    if outbox_row.refund_id is not None:
        return False
    async with p.unit_of_work() as uow:
        counted = await uow.sandbox_actions.count_down_failure(outbox_row.payment_id)
        await uow.commit()
    return counted


__all__ = [
    "FAILED_DELIVERY",
    "MAGIC_PIN",
    "answer_due",
    "fails_delivery",
    "honoured",
    "pay",
    "precreated",
    "wallet",
]
