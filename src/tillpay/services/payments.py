"""Pay, query, confirm, cancel, refund, precreate and expiry: the payment use cases.

Locking order, everywhere: the customer's wallet row, then the payment row. A pay locks only the
customer's wallet; merchant-side balances are sums of append-only postings, never a hot row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain import ledger, paycode, paydecision, risk, secmerchant
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import find_rate, make_quote
from tillpay.domain.money import convert, exponent
from tillpay.domain.paydecision import PayVerdict
from tillpay.domain.payment import Event, Status, refund_shares, transition
from tillpay.services import code_limits, paypath, secmerchants, stores
from tillpay.services import fx as fx_service
from tillpay.services import risk as risk_service
from tillpay.services.code_limits import bad_code_alert as bad_code_alert
from tillpay.services.code_limits import bad_codes_in_window as bad_codes_in_window
from tillpay.services.platform import Merchant, Platform
from tillpay.services.security import HashPoolBusy, verify_secret
from tillpay.services.views import CancelOutcome, PaymentView, PayOutcome, RefundView
from tillpay.store import ledger as ledger_store
from tillpay.store import outbox
from tillpay.store import tables as t
from tillpay.store.driver import Driver, utc
from tillpay.store.engine import insert_ignore
from tillpay.store.ledger import post_entry as post_entry

log = structlog.get_logger("tillpay.payments")

#: Largest amount one payment may carry, in major units (MAPI: 0.01 to 100000000.00).
MAX_MAJOR = 100_000_000
#: How many steps back a code is recognised as expired rather than made up.
EXPIRED_LOOKBACK_STEPS = paydecision.EXPIRED_LOOKBACK_STEPS


class _CodeTaken(Exception):
    """The payment code's (device, step, slot) is already used."""


class _KeepAndRaise(Exception):
    """Commit what the transaction did so far, then raise ``error`` (a counted wrong PIN, a timeout)."""

    def __init__(self, error: TillpayError) -> None:
        self.error = error


class _IdTaken(Exception):
    """Another payment with this merchant transaction id was inserted concurrently."""


@dataclass(frozen=True, slots=True)
class PayCommand:
    """A customer-presented-code payment, as every dialect hands it to the core."""

    merchant: Merchant
    partner_trans_id: str
    code: str
    price_amount: int
    price_currency: str
    settle_currency: str
    subject: str
    dialect: str
    notify_url: str | None = None
    sign_type: str = "RSA2"
    store_id: str | None = None
    terminal_id: str | None = None
    memo: str | None = None
    #: MAPI ``extend_info``: the secondary merchant and store the pay is for (checked by the dialect).
    secondary_merchant_id: str | None = None
    secondary_merchant_name: str | None = None
    secondary_merchant_industry: str | None = None
    store_name: str | None = None

    def secondary(self) -> secmerchant.SecondaryRef:
        """The pay's secondary merchant and store, as sent."""
        return secmerchant.SecondaryRef(
            secondary_merchant_id=self.secondary_merchant_id,
            secondary_merchant_name=self.secondary_merchant_name,
            secondary_merchant_industry=self.secondary_merchant_industry,
            store_id=self.store_id,
            store_name=self.store_name,
            terminal_id=self.terminal_id,
        )


@dataclass(frozen=True, slots=True)
class PrecreateCommand:
    """A merchant-presented QR order that a wallet user pays by opening its URL."""

    merchant: Merchant
    partner_trans_id: str
    price_amount: int
    price_currency: str
    settle_currency: str
    subject: str
    dialect: str
    notify_url: str | None = None
    sign_type: str = "RSA2"
    store_id: str | None = None
    terminal_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundCommand:
    """A refund of part or all of a paid payment, under the merchant's own refund id."""

    merchant: Merchant
    partner_refund_id: str
    amount: int
    currency: str
    dialect: str
    partner_trans_id: str | None = None
    trade_no: str | None = None
    reason: str | None = None
    notify_url: str | None = None
    sign_type: str = "RSA2"


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def check_amount(amount: int, currency: str) -> None:
    """Positive and at most 100,000,000 major units, in a known currency."""
    try:
        exp = exponent(currency)
    except ValueError:
        raise TillpayError(Code.CURRENCY_NOT_SUPPORT, f"unknown currency {currency!r}") from None
    if amount <= 0 or amount > MAX_MAJOR * 10**exp:
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, f"amount must be above 0 and at most {MAX_MAJOR:,}")


# ---------------------------------------------------------------------------------------------- reads


async def _payment_row(
    conn: AsyncConnection,
    merchant_id: int,
    *,
    partner_trans_id: str | None = None,
    trade_no: str | None = None,
    lock: bool = False,
) -> Row[Any] | None:
    q = select(t.payments).where(t.payments.c.merchant_id == merchant_id)
    # Alipay: if both ids are given, the Alipay transaction id is checked first.
    if trade_no:
        q = q.where(t.payments.c.trade_no == trade_no)
        if partner_trans_id:
            q = q.where(t.payments.c.partner_trans_id == partner_trans_id)
    elif partner_trans_id:
        q = q.where(t.payments.c.partner_trans_id == partner_trans_id)
    else:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "give the merchant's or the gateway's transaction id")
    if lock:
        q = q.with_for_update()
    return (await conn.execute(q)).first()


async def _view(conn: AsyncConnection, row: Row[Any]) -> PaymentView:
    login = None
    if row.user_id:
        login = (
            await conn.execute(select(t.wallet_users.c.login_id).where(t.wallet_users.c.id == row.user_id))
        ).scalar()
    return PaymentView.from_row(row, login)


def _outcome(view: PaymentView, *, replayed: bool = False) -> PayOutcome:
    if view.status is Status.WAIT_BUYER_PAY:
        return PayOutcome(view, Code.WAIT_BUYER_CONFIRM, replayed)
    if view.status is Status.TRADE_SUCCESS or view.paid_at is not None:
        return PayOutcome(view, None, replayed)
    return PayOutcome(view, view.result_code or Code.TRADE_HAS_CLOSE, replayed)


async def _replay(p: Platform, conn: AsyncConnection, row: Row[Any], digest: str) -> PayOutcome:
    if row.kind == "tombstone":
        # The merchant cancelled this id before any pay arrived: a late pay must never charge.
        return PayOutcome(PaymentView.from_row(row), Code.TRADE_HAS_CLOSE, replayed=True)
    if row.request_digest != digest:
        raise TillpayError(
            Code.REPEAT_REQ_INCONSISTENT,
            f"transaction id {row.partner_trans_id!r} was used before with different parameters",
        )
    if row.status == Status.WAIT_BUYER_PAY and row.expires_at and row.expires_at <= p.now():
        await _expire_on(p, conn, row.id)
        fresh = await _payment_row(conn, row.merchant_id, trade_no=row.trade_no)
        assert fresh is not None
        row = fresh
    return _outcome(await _view(conn, row), replayed=True)


async def query(
    p: Platform, merchant: Merchant, *, partner_trans_id: str | None = None, trade_no: str | None = None
) -> PaymentView:
    """The merchant's payment by either id; TRADE_NOT_EXIST if it has none such."""
    async with p.engine.connect() as conn:
        row = await _payment_row(conn, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
        if row is None or row.kind == "tombstone":
            raise TillpayError(Code.TRADE_NOT_EXIST)
        if row.status == Status.WAIT_BUYER_PAY and row.expires_at and row.expires_at <= p.now():
            await _expire_on(p, conn, row.id)
            row = await _payment_row(conn, merchant.id, trade_no=row.trade_no)
            assert row is not None
        return await _view(conn, row)


async def payment_by_trade_no(p: Platform, trade_no: str) -> PaymentView:
    """Any payment by gateway id (operator and wallet use); NOT_FOUND if none."""
    async with p.engine.connect() as conn:
        row = (await conn.execute(select(t.payments).where(t.payments.c.trade_no == trade_no))).first()
        if row is None or row.kind == "tombstone":
            raise TillpayError(Code.NOT_FOUND, f"no payment {trade_no}")
        return await _view(conn, row)


# ----------------------------------------------------------------------------------------------- pay


async def _lock_wallet(conn: AsyncConnection, user_id: int) -> Any:
    row = (
        await conn.execute(
            select(
                t.wallet_users.c.id,
                t.wallet_users.c.balance,
                t.wallet_users.c.status,
                t.wallet_users.c.currency,
                t.wallet_users.c.login_id,
            )
            .where(t.wallet_users.c.id == user_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise TillpayError(Code.BUYER_NOT_EXIST)
    return row


def _payment_postings(
    user_id: int,
    merchant_id: int,
    wallet_amount: int,
    wallet_currency: str,
    settle_amount: int,
    settle_currency: str,
    margin_amount: int,
) -> list[ledger.Posting]:
    return ledger.conversion(
        ledger.wallet_account(user_id),
        wallet_amount,
        wallet_currency,
        ledger.merchant_payable(merchant_id),
        settle_amount,
        settle_currency,
        margin=margin_amount,
    )


async def _enqueue(
    p: Platform,
    conn: AsyncConnection,
    *,
    merchant_id: int,
    url: str | None,
    event: str,
    dialect: str,
    payload: dict[str, Any],
    payment_id: int | None = None,
    refund_id: int | None = None,
    sign_type: str = "RSA2",
) -> None:
    """Put a notification in the outbox, in the caller's transaction (so it exists iff the change does)."""
    if not url:
        return
    await outbox.enqueue(
        conn,
        notify_id=p.ids.notify_id(),
        merchant_id=merchant_id,
        url=url,
        event=event,
        dialect=dialect,
        payload=payload,
        now=p.now(),
        payment_id=payment_id,
        refund_id=refund_id,
        sign_type=sign_type,
    )


#: Dialects that notify a payment only when it is paid. Antom's in-store ``notifyPayment`` is sent "when
#: the payment processing reaches a final state of success" (reference §7, ``ams/paymentrn``): a payment
#: that closes unpaid, or a paid one the merchant cancels, is learned from ``inquiryPayment``.
SUCCESS_ONLY_DIALECTS = frozenset({"antom"})


async def _notify_payment(p: Platform, conn: AsyncConnection, payment_id: int, event: str) -> None:
    row = (await conn.execute(select(t.payments).where(t.payments.c.id == payment_id))).first()
    assert row is not None
    if not row.notify_url:
        return
    if row.dialect in SUCCESS_ONLY_DIALECTS and row.status != Status.TRADE_SUCCESS.value:
        return
    view = await _view(conn, row)
    await _enqueue(
        p,
        conn,
        merchant_id=row.merchant_id,
        url=row.notify_url,
        event=event,
        dialect=row.dialect,
        payload={"payment": view.to_json()},
        payment_id=row.id,
        sign_type=row.sign_type,
    )


@dataclass(frozen=True, slots=True)
class _Payer:
    """Who pays, as admission found: the device, the code's step and slot, the wallet's currency and
    login, and the FX margin between the price and the wallet currency."""

    device_id: int
    user_id: int
    device_created_at: datetime
    step: int
    slot: int
    currency: str
    login_id: str
    margin_bps: int
    #: What the pay records about its secondary merchant and store (registration filled in).
    secondary: secmerchant.SecondaryRef


@dataclass(frozen=True, slots=True)
class _Read:
    """What a pay reads before its write transaction: the admission facts and who would pay."""

    gate: paydecision.Gate
    device_no: int | None
    device_id: int | None = None
    user_id: int | None = None
    device_created_at: datetime | None = None
    login_id: str | None = None


def _gate(
    p: Platform,
    cmd: PayCommand,
    now: datetime,
    *,
    disabled: bool,
    registered: secmerchant.Registered | None,
    rules: risk.RiskConfig,
    terminal_bad_codes: int,
    device_bad_codes: int,
    device: paydecision.Device | None,
    wallet_currency: str | None,
    margin_bps: int | None,
) -> paydecision.Gate:
    return paydecision.Gate(
        now_unix=int(now.timestamp()),
        code=cmd.code,
        store_id=cmd.store_id,
        terminal_id=cmd.terminal_id,
        disabled=disabled,
        secondary=cmd.secondary(),
        registered=registered,
        rules=rules,
        terminal_bad_codes=terminal_bad_codes,
        device_bad_codes=device_bad_codes,
        max_bad_codes_per_device=p.settings.max_bad_codes_per_device,
        device=device,
        wallet_currency=wallet_currency,
        price_currency=cmd.price_currency,
        margin_bps=margin_bps,
        default_margin_bps=p.settings.fx_default_margin_bps,
    )


async def _payer_at_once(p: Platform, conn: AsyncConnection, cmd: PayCommand, now: datetime) -> _Read | None:
    """The common case's facts in one statement (``paypath.READ``); None where the careful read is
    needed: a known transaction id (a repeat), a malformed code or an unknown device (nothing to join),
    or a terminal with a wrong code inside its rule's window (it takes a count). Reads only."""
    try:
        device_no = paycode.parse(cmd.code).device_no
    except paycode.MalformedCode:
        return None
    # One statement, outside any transaction (a statement reads one consistent snapshot).
    found = await (await Driver.of(conn)).rows(
        paypath.READ,
        {
            "merchant_id": cmd.merchant.id,
            "ptid": cmd.partner_trans_id,
            "since": now - timedelta(seconds=p.settings.bad_code_window_seconds),
            "device_no": device_no,
            "partner_id": cmd.merchant.partner_id,
            "price_currency": cmd.price_currency,
            "now": now,
            "store_id": cmd.store_id,
            "terminal_id": cmd.terminal_id,
            "smid": cmd.secondary_merchant_id,
            "sm_store_id": cmd.store_id,
        },
    )
    row = found[0] if found else None
    if row is None or row["existing"] is not None:
        return None
    base_cfg, _ = risk_service.config_of(p, row["scheme_rules"], row["merchant_rules"], None)
    bad_at = row["terminal_bad_at"]
    if (
        cmd.terminal_id
        and base_cfg.terminal_bad_codes
        and bad_at is not None
        and utc(bad_at) > now - timedelta(minutes=base_cfg.terminal_window_minutes)
    ):
        return None  # the terminal's wrong codes in the window are counted by the careful read
    gate = _gate(
        p,
        cmd,
        now,
        disabled=bool(row["disabled"]),
        registered=secmerchants.registered_of(row),
        rules=base_cfg,
        terminal_bad_codes=0,  # none inside the window (its latest is older)
        device_bad_codes=int(row["bad_pair"]),
        device=paydecision.Device(bytes(row["secret"]), row["device_status"] == "active"),
        wallet_currency=row["currency"],
        margin_bps=None if row["margin_bps"] is None else int(row["margin_bps"]),
    )
    return _Read(
        gate,
        device_no,
        row["device_id"],
        row["user_id"],
        utc(row["device_created_at"]),
        row["login_id"],
    )


async def _payer_carefully(
    p: Platform, conn: AsyncConnection, cmd: PayCommand, digest: str, now: datetime
) -> _Read | PayOutcome:
    """The same facts statement by statement (and a repeated request answered with its first result)."""
    existing = await _payment_row(conn, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
    if existing is not None:
        return await _replay(p, conn, existing, digest)
    disabled = False
    if cmd.store_id or cmd.terminal_id:
        disabled = bool(
            (
                await conn.execute(
                    select(stores.disabled_clause(cmd.merchant.id, cmd.store_id, cmd.terminal_id))
                )
            ).scalar()
        )
    registered = await secmerchants.registered(conn, cmd.merchant.id, cmd.secondary_merchant_id, cmd.store_id)
    base_cfg = risk.build(
        await risk_service.layers_for(p, conn, partner_id=cmd.merchant.partner_id, login_id=None)
    )
    terminal_bad = 0
    if cmd.terminal_id and base_cfg.terminal_bad_codes:
        terminal_bad = await code_limits.terminal_bad_codes(
            conn, cmd.merchant.id, cmd.terminal_id, now - timedelta(minutes=base_cfg.terminal_window_minutes)
        )
    try:
        device_no: int | None = paycode.parse(cmd.code).device_no
    except paycode.MalformedCode:
        device_no = None
    device_bad = 0
    device: Any = None
    user: Any = None
    margin: int | None = None
    if device_no is not None:
        device_bad = await code_limits.device_bad_codes(
            conn, cmd.merchant.id, device_no, now - timedelta(seconds=p.settings.bad_code_window_seconds)
        )
        device = (
            await conn.execute(
                select(
                    t.devices.c.id,
                    t.devices.c.user_id,
                    t.devices.c.secret,
                    t.devices.c.status,
                    t.devices.c.created_at,
                ).where(t.devices.c.device_no == device_no)
            )
        ).first()
    if device is not None:
        user = (
            await conn.execute(
                select(t.wallet_users.c.currency, t.wallet_users.c.login_id).where(
                    t.wallet_users.c.id == device.user_id
                )
            )
        ).first()
    if user is not None and user.currency != cmd.price_currency:
        margin = await fx_service.stored_margin(p, conn, cmd.price_currency, user.currency)
    gate = _gate(
        p,
        cmd,
        now,
        disabled=disabled,
        registered=registered,
        rules=base_cfg,
        terminal_bad_codes=terminal_bad,
        device_bad_codes=device_bad,
        device=None
        if device is None
        else paydecision.Device(bytes(device.secret), device.status == "active"),
        wallet_currency=None if user is None else user.currency,
        margin_bps=margin,
    )
    if device is None or user is None:
        return _Read(gate, device_no)
    return _Read(gate, device_no, device.id, device.user_id, device.created_at, user.login_id)


async def pay(p: Platform, cmd: PayCommand) -> PayOutcome:
    """Charge a customer-presented payment code, exactly once per (merchant, partner_trans_id)."""
    check_amount(cmd.price_amount, cmd.price_currency)
    if cmd.settle_currency != cmd.merchant.settlement_currency:
        raise TillpayError(
            Code.CURRENCY_NOT_SUPPORT,
            f"this merchant settles in {cmd.merchant.settlement_currency}, not {cmd.settle_currency}",
        )
    digest = _digest("pay", cmd.price_amount, cmd.price_currency, cmd.settle_currency, cmd.code)

    async with p.engine.connect() as conn:
        now = p.now()
        read = await _payer_at_once(p, conn, cmd, now)
        if read is None:
            found = await _payer_carefully(p, conn, cmd, digest, now)
            if isinstance(found, PayOutcome):
                return found
            read = found
        admitted = paydecision.decide(paydecision.PayFacts(gate=read.gate))
        if admitted.verdict is PayVerdict.REFUSE:
            if admitted.counts_bad_code:
                await code_limits.record_bad_code(
                    p, conn, cmd.merchant.id, admitted.device_no, cmd.terminal_id
                )
            raise admitted.error()
        assert admitted.step is not None and admitted.slot is not None and admitted.secondary is not None
        assert read.device_id is not None and read.user_id is not None and read.login_id is not None
        assert read.device_created_at is not None and read.gate.wallet_currency is not None
        payer = _Payer(
            read.device_id,
            read.user_id,
            read.device_created_at,
            admitted.step,
            admitted.slot,
            read.gate.wallet_currency,
            read.login_id,
            admitted.margin_bps,
            admitted.secondary,
        )
        rates = await p.rates(conn)
        if conn.in_transaction():
            await conn.rollback()  # end the read transaction before the write one
        now = p.now()
        quote = make_quote(
            cmd.price_amount, cmd.price_currency, cmd.settle_currency, payer.currency, rates, payer.margin_bps
        )
        for _ in range(2):
            try:
                async with conn.begin():
                    return await _charge(p, conn, cmd, payer, quote, digest, now)
            except _CodeTaken:
                # The code was used by another payment, or by this very request arriving twice.
                existing = await _payment_row(conn, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
                if existing is not None:
                    return await _replay(p, conn, existing, digest)
                raise TillpayError(Code.CODE_USED) from None
            except _IdTaken:
                continue  # a concurrent request with the same id won; answer with its payment
        # Only reached when the insert lost a race: answer as a repeat of the winner.
        existing = await _payment_row(conn, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
        if existing is None:
            raise TillpayError(Code.SYSTEM_ERROR, "payment vanished after a conflicting insert")
        return await _replay(p, conn, existing, digest)


async def _pg_writes(
    drv: Driver,
    values: dict[str, Any],
    decision: risk.Decision,
    inputs: risk.RiskInputs,
    cfg_text: str,
    now: datetime,
    postings: list[ledger.Posting],
    release: dict[str, Any] | None = None,
) -> int:
    """PostgreSQL: the payment, its risk decision and (when paid) its ledger entry, or (``release``)
    the code's use taken back, in one statement: exactly what the SQLite branch of ``_charge`` writes
    statement by statement."""
    d = risk_service.decision_values(0, decision, inputs, cfg_text, now)
    args: list[Any] = [*values.values(), d["verdict"], d["rule"], d["code"], d["fired"], d["inputs"]]
    args += [d["config"], now]
    if postings:
        args += ledger_store.pg_ledger_args(postings)
    elif release is not None:
        args += [release["device_id"], release["step"], release["slot"]]
    sql = paypath.pg_writes(tuple(values), bool(postings), release=not postings and release is not None)
    rows = await drv.pg_rows(sql, args)
    if not rows:
        raise _IdTaken
    if rows[0]["wallet_rows"] != 1:
        raise TillpayError(Code.BUYER_BALANCE_NOT_ENOUGH)
    return int(rows[0]["id"])


async def _charge(
    p: Platform,
    conn: AsyncConnection,
    cmd: PayCommand,
    payer: _Payer,
    quote: Any,
    digest: str,
    now: datetime,
) -> PayOutcome:
    """The write transaction of a pay: the code's single use, the wallet lock, risk, payment, ledger."""
    use = {"device_id": payer.device_id, "step": payer.step, "slot": payer.slot, "created_at": now}
    who = {"user_id": payer.user_id, "partner_id": cmd.merchant.partner_id}
    drv = await Driver.of(conn)
    wallet: Any
    if drv.sqlite:  # BEGIN IMMEDIATE has run; statements cost no round trip
        if not drv.in_transaction:
            raise RuntimeError("the pay's statements would run outside its transaction")
        if not await drv.rows(paypath.CODE_USE_RETURNING["sqlite"], use, tuple(use)):
            raise _CodeTaken
        locked = await drv.rows(paypath.LOCK, who)
        if not locked:
            raise TillpayError(Code.BUYER_NOT_EXIST)
        wallet = locked[0]
    else:  # asyncpg: SQLAlchemy begins the transaction with this first statement
        row = (await conn.execute(paypath.LOCK_AND_USE_CODE, {**use, **who})).first()
        if not drv.in_transaction:
            raise RuntimeError("the pay's statements would run outside its transaction")
        if row is None:
            raise TillpayError(Code.BUYER_NOT_EXIST)
        if not row.used:
            raise _CodeTaken
        wallet = row._mapping
    # Limits are summed with the wallet row locked: a concurrent payment of the same customer waits
    # above, then sees this one.
    cfg, cfg_text = risk_service.config_of(
        p, wallet["scheme_rules"], wallet["merchant_rules"], wallet["user_rules"]
    )
    day, month = risk_service.periods(p, now)
    since_velocity = now - timedelta(minutes=cfg.velocity_minutes)
    day_total, month_total, recent = (
        await drv.rows(
            paypath.TOTALS,
            {
                "day": day,
                "month": month,
                "velocity_since": since_velocity,
                "lower": min(month, since_velocity),
                "user_id": payer.user_id,
            },
        )
    )[0]
    inputs = risk.RiskInputs(
        wallet_amount=quote.wallet_amount,
        wallet_currency=quote.wallet_currency,
        day_total=int(day_total),
        month_total=int(month_total),
        recent_count=int(recent),
        device_age_seconds=int((now - payer.device_created_at).total_seconds()),
        code_lag_steps=max(0, paycode.step_at(int(now.timestamp())) - payer.step),
        merchant_mcc=cmd.merchant.mcc,
        buyer_active=wallet["status"] == "active",
        merchant_active=cmd.merchant.status == "active",
        balance=int(wallet["balance"]),
    )
    outcome = paydecision.decide(paydecision.PayFacts(account=paydecision.Account(cfg, inputs)))
    decision = outcome.risk
    assert decision is not None  # the rules were applied
    result_code: Code | None = None
    if outcome.verdict is PayVerdict.DECLINE:
        status, result_code = Status.TRADE_CLOSED, outcome.code
    elif outcome.verdict is PayVerdict.CONFIRM:
        status = Status.WAIT_BUYER_PAY
    else:
        status = Status.TRADE_SUCCESS
    values: dict[str, Any] = {
        "trade_no": p.ids.trade_no(now),
        "merchant_id": cmd.merchant.id,
        "partner_trans_id": cmd.partner_trans_id,
        "kind": "barcode",
        "dialect": cmd.dialect,
        "status": status.value,
        "result_code": result_code.value if result_code else None,
        "request_digest": digest,
        "subject": cmd.subject,
        "price_amount": quote.price_amount,
        "price_currency": quote.price_currency,
        "settle_amount": quote.settle_amount,
        "settle_currency": quote.settle_currency,
        "wallet_amount": quote.wallet_amount,
        "wallet_currency": quote.wallet_currency,
        "settle_rate": str(quote.settle_rate),
        "wallet_rate": str(quote.wallet_rate),
        "wallet_mid_rate": str(quote.wallet_mid_rate),
        "margin_bps": quote.margin_bps,
        "margin_amount": quote.margin_amount,
        "user_id": payer.user_id,
        "device_id": payer.device_id,
        "risk_rule": decision.rule,
        "notify_url": cmd.notify_url,
        "sign_type": cmd.sign_type,
        "store_id": cmd.store_id,
        "terminal_id": cmd.terminal_id,
        "memo": cmd.memo,
        "secondary_merchant_id": payer.secondary.secondary_merchant_id,
        "secondary_merchant_name": payer.secondary.secondary_merchant_name,
        "secondary_merchant_industry": payer.secondary.secondary_merchant_industry,
        "store_name": payer.secondary.store_name,
        "created_at": now,
        "expires_at": now + timedelta(seconds=p.settings.payment_timeout_seconds)
        if status is Status.WAIT_BUYER_PAY
        else None,
        "paid_at": now if status is Status.TRADE_SUCCESS else None,
        "closed_at": now if status is Status.TRADE_CLOSED else None,
    }
    paid = status is Status.TRADE_SUCCESS
    postings = (
        _payment_postings(
            payer.user_id,
            cmd.merchant.id,
            quote.wallet_amount,
            quote.wallet_currency,
            quote.settle_amount,
            quote.settle_currency,
            quote.margin_amount,
        )
        if paid
        else []
    )
    # A payment refused for its balance alone leaves the code unused (the customer may top up and show it
    # again): the single use recorded above is taken back in the same transaction.
    release = None if decision.spends_code else use
    if drv.sqlite:
        inserted = await drv.rows(paypath.payment_insert(conn), values, tuple(values))
        if not inserted:
            raise _IdTaken
        payment_id = int(inserted[0][0])
        decided = risk_service.decision_values(payment_id, decision, inputs, cfg_text, now)
        await drv.rows(paypath.RISK_DECISION, decided, tuple(decided))
        if release is not None:
            await drv.rows(paypath.CODE_RELEASE, release)
        if paid:
            await post_entry(
                conn,
                kind="payment",
                ref=f"payment:{payment_id}",
                postings=postings,
                now=now,
                payment_id=payment_id,
                driver=drv,
            )
    else:
        payment_id = await _pg_writes(drv, values, decision, inputs, cfg_text, now, postings, release)
    # The payment as stored, from what was just written (the columns left out have their defaults).
    view = PaymentView.from_row(
        SimpleNamespace(
            id=payment_id, refunded_price=0, refunded_settle=0, refunded_wallet=0, pin_attempts=0, **values
        ),  # type: ignore[arg-type]
        wallet["login_id"],
    )
    if paid:
        if cmd.notify_url:
            await _enqueue(
                p,
                conn,
                merchant_id=cmd.merchant.id,
                url=cmd.notify_url,
                event="payment",
                dialect=cmd.dialect,
                payload={"payment": view.to_json()},
                payment_id=payment_id,
                sign_type=cmd.sign_type,
            )
    log.info(
        "pay",
        merchant=cmd.merchant.partner_id,
        partner_trans_id=cmd.partner_trans_id,
        status=status.value,
        code=result_code,
        trade_no=view.trade_no,
    )
    return _outcome(view)


# ------------------------------------------------------------------------------------------ precreate


async def precreate(p: Platform, cmd: PrecreateCommand) -> PaymentView:
    """Create a merchant-presented QR order that waits for a wallet user to pay it."""
    check_amount(cmd.price_amount, cmd.price_currency)
    if cmd.settle_currency != cmd.merchant.settlement_currency:
        raise TillpayError(
            Code.CURRENCY_NOT_SUPPORT, f"this merchant settles in {cmd.merchant.settlement_currency}"
        )
    digest = _digest("precreate", cmd.price_amount, cmd.price_currency, cmd.settle_currency)
    now = p.now()
    async with p.engine.begin() as conn:
        existing = await _payment_row(conn, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
        if existing is not None:
            if existing.request_digest != digest:
                raise TillpayError(Code.REPEAT_REQ_INCONSISTENT)
            return await _view(conn, existing)
        await stores.refuse_if_disabled(conn, cmd.merchant.id, cmd.store_id, cmd.terminal_id)
        rate = find_rate(await p.rates(conn), cmd.price_currency, cmd.settle_currency)
        settle = (
            cmd.price_amount
            if cmd.price_currency == cmd.settle_currency
            else convert(cmd.price_amount, cmd.price_currency, cmd.settle_currency, rate)
        )
        pid = (
            await conn.execute(
                insert_ignore(conn, t.payments, "merchant_id", "partner_trans_id")
                .values(
                    trade_no=p.ids.trade_no(now),
                    merchant_id=cmd.merchant.id,
                    partner_trans_id=cmd.partner_trans_id,
                    kind="precreate",
                    dialect=cmd.dialect,
                    status=Status.WAIT_BUYER_PAY.value,
                    request_digest=digest,
                    subject=cmd.subject,
                    price_amount=cmd.price_amount,
                    price_currency=cmd.price_currency,
                    settle_amount=settle,
                    settle_currency=cmd.settle_currency,
                    settle_rate=str(rate),
                    notify_url=cmd.notify_url,
                    sign_type=cmd.sign_type,
                    store_id=cmd.store_id,
                    terminal_id=cmd.terminal_id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=p.settings.payment_timeout_seconds),
                )
                .returning(t.payments.c.id)
            )
        ).scalar()
        if pid is None:
            raise TillpayError(Code.SYSTEM_ERROR, "concurrent precreate with the same id; retry")
        row = (await conn.execute(select(t.payments).where(t.payments.c.id == pid))).one()
        return PaymentView.from_row(row)


def qr_url(p: Platform, trade_no: str) -> str:
    """The URL a precreate QR code carries; the wallet opens it to pay."""
    return f"{p.settings.public_url.rstrip('/')}/wallet/qr/{trade_no}"


def qr_picture_url(p: Platform, trade_no: str) -> str:
    """A PNG picture of that QR code (MAPI precreate's ``pic_url``)."""
    return f"{p.settings.public_url.rstrip('/')}/qr/{trade_no}.png"


# ------------------------------------------------------------------------------ customer confirmation


async def _close(
    p: Platform, conn: AsyncConnection, payment_id: int, event: Event, code: Code, *, notify: bool = True
) -> None:
    row = (await conn.execute(select(t.payments.c.status).where(t.payments.c.id == payment_id))).one()
    new = transition(Status(row.status), event)
    await conn.execute(
        update(t.payments)
        .where(t.payments.c.id == payment_id)
        .values(status=new.value, result_code=code.value, closed_at=p.now())
    )
    if notify:
        await _notify_payment(p, conn, payment_id, "payment")


async def pending_for_user(p: Platform, user_id: int) -> list[PaymentView]:
    """Payments waiting for this customer's confirmation, newest first (expired ones are closed)."""
    await expire_due(p)
    async with p.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.payments)
                .where(t.payments.c.user_id == user_id, t.payments.c.status == Status.WAIT_BUYER_PAY.value)
                .order_by(t.payments.c.id.desc())
            )
        ).all()
        return [await _view(conn, r) for r in rows]


async def confirm(
    p: Platform, user_id: int, pin: str, trade_no: str | None = None, *, precreated: bool = False
) -> PaymentView:
    """The customer confirms a waiting payment with the PIN (or pays a precreated QR order).

    Without ``trade_no`` the newest waiting payment is confirmed. A wrong PIN is counted on the payment;
    after ``max_pin_attempts`` the payment closes with USER_PAYMENT_VERIFICATION_FAILED.
    """
    async with p.engine.connect() as conn:
        user = (
            await conn.execute(
                select(
                    t.wallet_users.c.pin_hash, t.wallet_users.c.login_id, t.wallet_users.c.pin_failures
                ).where(t.wallet_users.c.id == user_id)
            )
        ).first()
        await conn.rollback()
    if user is None:
        raise TillpayError(Code.BUYER_NOT_EXIST)
    if user.pin_failures >= p.settings.max_pin_failures:
        raise TillpayError(Code.PIN_LOCKED)
    # scrypt off the event loop, in the bounded hashing pool (TRY_AGAIN when it is full).
    try:
        pin_ok = await p.hash_pool.run(verify_secret, pin, user.pin_hash)
    except HashPoolBusy:
        raise TillpayError(Code.TRY_AGAIN) from None
    async with p.engine.connect() as conn:
        tx = await conn.begin()
        try:
            view = await _confirm_in_tx(p, conn, user_id, user.login_id, pin_ok, trade_no, precreated)
        except _KeepAndRaise as e:
            await tx.commit()
            raise e.error from None
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()
        return view


async def _confirm_in_tx(
    p: Platform,
    conn: AsyncConnection,
    user_id: int,
    login_id: str,
    pin_ok: bool,
    trade_no: str | None,
    precreated: bool,
) -> PaymentView:
    now = p.now()
    if True:
        await _lock_wallet(conn, user_id)
        q = select(t.payments).where(t.payments.c.status == Status.WAIT_BUYER_PAY.value)
        if precreated:
            if not trade_no:
                raise TillpayError(Code.ILLEGAL_ARGUMENT, "which order?")
            q = q.where(t.payments.c.trade_no == trade_no, t.payments.c.kind == "precreate")
        else:
            q = q.where(t.payments.c.user_id == user_id)
            q = q.where(t.payments.c.trade_no == trade_no) if trade_no else q.order_by(t.payments.c.id.desc())
        row = (await conn.execute(q.limit(1).with_for_update())).first()
        if row is None or (precreated and row.user_id not in (None, user_id)):
            raise TillpayError(Code.CONFIRMATION_NOT_FOUND)
        if row.expires_at and row.expires_at <= now:
            await _close(p, conn, row.id, Event.EXPIRE, Code.PAYMENT_TIMEOUT)
            raise _KeepAndRaise(TillpayError(Code.PAYMENT_TIMEOUT))
        # The customer's own count of wrong PINs in a row (across payments), read under the wallet's
        # row lock taken above, so concurrent guesses are counted one after another.
        failures = (
            await conn.execute(select(t.wallet_users.c.pin_failures).where(t.wallet_users.c.id == user_id))
        ).scalar_one()
        if failures >= p.settings.max_pin_failures:
            raise TillpayError(Code.PIN_LOCKED)
        if not pin_ok:
            failures += 1
            await conn.execute(
                update(t.wallet_users).where(t.wallet_users.c.id == user_id).values(pin_failures=failures)
            )
            if failures >= p.settings.max_pin_failures:
                raise _KeepAndRaise(TillpayError(Code.PIN_LOCKED))
            if row.user_id != user_id:
                # An unclaimed QR order: a stranger's wrong PINs count against the stranger only, so
                # they cannot use up the order's attempts.
                raise _KeepAndRaise(TillpayError(Code.WRONG_PIN, "wrong PIN"))
            attempts = row.pin_attempts + 1
            await conn.execute(
                update(t.payments).where(t.payments.c.id == row.id).values(pin_attempts=attempts)
            )
            if attempts >= p.settings.max_pin_attempts:
                await _close(p, conn, row.id, Event.REJECT, Code.USER_PAYMENT_VERIFICATION_FAILED)
                raise _KeepAndRaise(
                    TillpayError(
                        Code.USER_PAYMENT_VERIFICATION_FAILED,
                        "wrong PIN too many times; the payment is closed",
                    )
                )
            left = p.settings.max_pin_attempts - attempts
            raise _KeepAndRaise(TillpayError(Code.WRONG_PIN, f"wrong PIN; {left} attempt(s) left"))
        if failures:
            await conn.execute(
                update(t.wallet_users).where(t.wallet_users.c.id == user_id).values(pin_failures=0)
            )
        wallet = (
            await conn.execute(
                select(t.wallet_users.c.balance, t.wallet_users.c.currency, t.wallet_users.c.status).where(
                    t.wallet_users.c.id == user_id
                )
            )
        ).one()
        values: dict[str, Any] = {}
        wallet_amount, wallet_currency = row.wallet_amount, row.wallet_currency
        margin_amount = row.margin_amount
        if row.kind == "precreate":
            # The customer is known only now: quote the wallet side and run the risk rules (limits; the
            # customer is confirming with the PIN already, so no confirmation rule applies).
            margin = await fx_service.margin_for(p, conn, row.price_currency, wallet.currency)
            quote = make_quote(
                row.price_amount,
                row.price_currency,
                row.settle_currency,
                wallet.currency,
                await p.rates(conn),
                margin,
            )
            wallet_amount, wallet_currency = quote.wallet_amount, quote.wallet_currency
            margin_amount = quote.margin_amount
            values.update(
                user_id=user_id,
                wallet_amount=wallet_amount,
                wallet_currency=wallet_currency,
                wallet_rate=str(quote.wallet_rate),
                wallet_mid_rate=str(quote.wallet_mid_rate),
                margin_bps=quote.margin_bps,
                margin_amount=quote.margin_amount,
            )
            merchant = (
                await conn.execute(
                    select(t.merchants.c.partner_id, t.merchants.c.mcc, t.merchants.c.status).where(
                        t.merchants.c.id == row.merchant_id
                    )
                )
            ).one()
            cfg = risk.build(
                await risk_service.layers_for(p, conn, partner_id=merchant.partner_id, login_id=login_id)
            )
            day_total, month_total, recent = await risk_service.customer_totals(p, conn, user_id, cfg)
            inputs = risk.RiskInputs(
                wallet_amount=wallet_amount,
                wallet_currency=wallet_currency,
                day_total=day_total,
                month_total=month_total,
                recent_count=recent,
                merchant_mcc=merchant.mcc,
                buyer_active=wallet.status == "active",
                merchant_active=merchant.status == "active",
                may_confirm=False,
                balance=wallet.balance,
            )
            account = paydecision.Account(cfg, inputs)
        else:
            # The rules ran when the customer was asked; the balance was enough then, but may have
            # dropped since (another payment of the same customer was paid first), or the wallet frozen.
            account = paydecision.Account(
                None,
                risk.RiskInputs(
                    wallet_amount=wallet_amount,
                    wallet_currency=wallet_currency,
                    buyer_active=wallet.status == "active",
                    balance=wallet.balance,
                ),
            )
        outcome = paydecision.decide(paydecision.PayFacts(account=account))
        if outcome.risk is not None:
            assert account.rules is not None
            await risk_service.record(conn, row.id, outcome.risk, account.inputs, account.rules, now)
        if outcome.verdict is not PayVerdict.PAY:
            # DECLINE (a customer confirming with the PIN is never asked again).
            assert outcome.code is not None
            if values:
                await conn.execute(update(t.payments).where(t.payments.c.id == row.id).values(**values))
            await _close(p, conn, row.id, Event.REJECT, outcome.code)
            closed = (await conn.execute(select(t.payments).where(t.payments.c.id == row.id))).one()
            return await _view(conn, closed)
        await conn.execute(
            update(t.payments)
            .where(t.payments.c.id == row.id)
            .values(status=transition(Status(row.status), Event.CONFIRM).value, paid_at=now, **values)
        )
        await post_entry(
            conn,
            kind="payment",
            ref=f"payment:{row.id}",
            postings=_payment_postings(
                user_id,
                row.merchant_id,
                wallet_amount,
                wallet_currency,
                row.settle_amount,
                row.settle_currency,
                margin_amount,
            ),
            now=now,
            payment_id=row.id,
        )
        await _notify_payment(p, conn, row.id, "payment")
        paid = (await conn.execute(select(t.payments).where(t.payments.c.id == row.id))).one()
        log.info("confirmed", trade_no=paid.trade_no, user=user_id)
        return PaymentView.from_row(paid, login_id)


async def reject(p: Platform, user_id: int, trade_no: str | None = None) -> PaymentView:
    """The customer rejects a waiting payment; it closes with USER_REJECTED."""
    async with p.engine.begin() as conn:
        await _lock_wallet(conn, user_id)
        q = select(t.payments).where(
            t.payments.c.user_id == user_id, t.payments.c.status == Status.WAIT_BUYER_PAY.value
        )
        q = q.where(t.payments.c.trade_no == trade_no) if trade_no else q.order_by(t.payments.c.id.desc())
        row = (await conn.execute(q.limit(1).with_for_update())).first()
        if row is None:
            raise TillpayError(Code.CONFIRMATION_NOT_FOUND)
        await _close(p, conn, row.id, Event.REJECT, Code.USER_REJECTED)
        closed = (await conn.execute(select(t.payments).where(t.payments.c.id == row.id))).one()
        return await _view(conn, closed)


# -------------------------------------------------------------------------------------------- expiry


async def expire_payment(p: Platform, payment_id: int, *, skip_locked: bool = False) -> bool:
    """Close one waiting payment whose timeout passed; False if it was no longer waiting or not due.

    With ``skip_locked`` (the workers) a payment another transaction holds is left alone: another worker
    is closing it, or the customer is confirming it; if it is still due, the next pass takes it.
    """
    async with p.engine.connect() as conn:
        return await _expire_on(p, conn, payment_id, skip_locked=skip_locked)


async def _expire_on(
    p: Platform, conn: AsyncConnection, payment_id: int, *, skip_locked: bool = False
) -> bool:
    await conn.rollback()
    async with conn.begin():
        row = (
            await conn.execute(
                select(t.payments.c.id, t.payments.c.status, t.payments.c.expires_at)
                .where(t.payments.c.id == payment_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).first()
        if (
            row is None
            or row.status != Status.WAIT_BUYER_PAY.value
            or row.expires_at is None
            or row.expires_at > p.now()
        ):
            return False
        await _close(p, conn, payment_id, Event.EXPIRE, Code.PAYMENT_TIMEOUT)
        return True


async def expire_due(p: Platform, limit: int = 500) -> int:
    """Close every waiting payment whose timeout passed; returns how many closed."""
    async with p.engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    select(t.payments.c.id)
                    .where(
                        t.payments.c.status == Status.WAIT_BUYER_PAY.value,
                        t.payments.c.expires_at <= p.now(),
                    )
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        await conn.rollback()
    closed = 0
    for pid in ids:
        closed += await expire_payment(p, pid, skip_locked=True)
    return closed


# ------------------------------------------------------------------------------------ cancel, refund


async def _apply_refund(
    p: Platform,
    conn: AsyncConnection,
    row: Row[Any],
    *,
    kind: str,
    partner_refund_id: str,
    amount: int,
    digest: str,
    reason: str | None,
    notify_url: str | None,
    dialect: str,
    sign_type: str = "RSA2",
) -> int | None:
    """Insert the refund, move the money back and update the payment; None if the id raced.

    The merchant always returns its proportional share of what it was credited. The customer gets the
    proportional share of what it paid (policy ``original``), or, under ``refund_day``, the refund's
    price converted at today's mid rate, never more than is left; the refund that completes the order
    always takes exactly the remainder, so a full refund returns every minor unit in every currency.
    The scheme's gain or loss against the locked quote goes to its FX gain/loss account.
    """
    now = p.now()
    settle = refund_shares(amount, row.refunded_price, row.price_amount, row.settle_amount)
    original = refund_shares(amount, row.refunded_price, row.price_amount, row.wallet_amount)
    margin = refund_shares(amount, row.refunded_price, row.price_amount, row.margin_amount)
    policy = "original" if kind == "cancel" else p.settings.fx_refund_policy
    wallet = original
    left = row.wallet_amount - row.refunded_wallet
    is_last = row.refunded_price + amount == row.price_amount
    if is_last:
        wallet = left
    elif policy == "refund_day" and row.price_currency != row.wallet_currency:
        day_rate = find_rate(await fx_service.rates_at(p, conn, now), row.price_currency, row.wallet_currency)
        wallet = min(convert(amount, row.price_currency, row.wallet_currency, day_rate), left)
    gain = original - wallet
    refund_id = (
        await conn.execute(
            insert_ignore(conn, t.refunds, "merchant_id", "partner_refund_id")
            .values(
                refund_no=p.ids.refund_no(now),
                payment_id=row.id,
                merchant_id=row.merchant_id,
                partner_refund_id=partner_refund_id,
                kind=kind,
                request_digest=digest,
                price_amount=amount,
                price_currency=row.price_currency,
                settle_amount=settle,
                wallet_amount=wallet,
                margin_amount=margin,
                fx_gain=gain,
                rate_policy=policy,
                reason=reason,
                notify_url=notify_url,
                sign_type=sign_type,
                created_at=now,
            )
            .returning(t.refunds.c.id)
        )
    ).scalar()
    if refund_id is None:
        return None
    refunded = row.refunded_price + amount
    values: dict[str, Any] = {
        "refunded_price": refunded,
        "refunded_settle": row.refunded_settle + settle,
        "refunded_wallet": row.refunded_wallet + wallet,
    }
    if refunded == row.price_amount:
        event = Event.CANCEL if kind == "cancel" else Event.REFUND_ALL
        values.update(status=transition(Status(row.status), event).value, closed_at=now)
        values["result_code"] = Code.TRADE_HAS_CLOSE.value
    await conn.execute(update(t.payments).where(t.payments.c.id == row.id).values(**values))
    await post_entry(
        conn,
        kind="refund",
        ref=f"refund:{refund_id}",
        postings=ledger.reverse_conversion(
            ledger.merchant_payable(row.merchant_id),
            settle,
            row.settle_currency,
            ledger.wallet_account(row.user_id),
            wallet,
            row.wallet_currency,
            margin=margin,
            gain=gain,
        ),
        now=now,
        payment_id=row.id,
    )
    refund_view = await _refund_view(conn, refund_id)
    await _enqueue(
        p,
        conn,
        merchant_id=row.merchant_id,
        url=notify_url,
        event="refund",
        dialect=dialect,
        payload={"refund": refund_view.to_json()},
        payment_id=row.id,
        refund_id=refund_id,
        sign_type=sign_type,
    )
    return int(refund_id)


async def _refund_view(conn: AsyncConnection, refund_id: int) -> RefundView:
    r = (await conn.execute(select(t.refunds).where(t.refunds.c.id == refund_id))).one()
    prow = (await conn.execute(select(t.payments).where(t.payments.c.id == r.payment_id))).one()
    return RefundView.from_row(r, await _view(conn, prow))


async def refund(p: Platform, cmd: RefundCommand) -> RefundView:
    """Refund part or all of a paid payment; the same refund id again returns the first refund."""
    if cmd.amount <= 0:
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, "refund amount must be above 0")
    for _ in range(3):
        async with p.engine.connect() as conn:
            existing = (
                await conn.execute(
                    select(t.refunds.c.id, t.refunds.c.request_digest).where(
                        t.refunds.c.merchant_id == cmd.merchant.id,
                        t.refunds.c.partner_refund_id == cmd.partner_refund_id,
                    )
                )
            ).first()
            row = await _payment_row(
                conn, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id, trade_no=cmd.trade_no
            )
            if row is None or row.kind == "tombstone":
                raise TillpayError(Code.TRADE_NOT_EXIST)
            digest = _digest("refund", row.id, cmd.amount, cmd.currency)
            if existing is not None:
                if existing.request_digest != digest:
                    raise TillpayError(
                        Code.REPEAT_REQ_INCONSISTENT,
                        f"refund id {cmd.partner_refund_id!r} was used before with different parameters",
                    )
                return await _refund_view(conn, existing.id)
            await conn.rollback()
            if cmd.partner_refund_id == row.partner_trans_id:
                raise TillpayError(Code.ILLEGAL_ARGUMENT, "the refund id must differ from the transaction id")
            if cmd.currency != row.price_currency:
                raise TillpayError(
                    Code.REFUND_CURRENCY_MISMATCH, f"refund in {row.price_currency}, the order's currency"
                )
            async with conn.begin():
                if row.user_id:
                    await _lock_wallet(conn, row.user_id)
                row = await _payment_row(conn, cmd.merchant.id, trade_no=row.trade_no, lock=True)
                assert row is not None
                if row.paid_at is None:
                    raise TillpayError(
                        Code.TRADE_STATUS_ERROR
                        if row.status == Status.WAIT_BUYER_PAY
                        else Code.TRADE_HAS_CLOSE,
                        "the order was never paid",
                    )
                if row.status != Status.TRADE_SUCCESS.value:
                    raise TillpayError(
                        Code.TRADE_HAS_CLOSE, "the order is closed (fully refunded or cancelled)"
                    )
                if row.paid_at + timedelta(days=p.settings.refund_window_days) < p.now():
                    raise TillpayError(Code.REFUND_WINDOW_EXCEED)
                left = row.price_amount - row.refunded_price
                if cmd.amount > left:
                    raise TillpayError(
                        Code.REFUND_AMOUNT_EXCEED, f"at most {left} minor units are left to refund"
                    )
                refund_id = await _apply_refund(
                    p,
                    conn,
                    row,
                    kind="refund",
                    partner_refund_id=cmd.partner_refund_id,
                    amount=cmd.amount,
                    digest=digest,
                    reason=cmd.reason,
                    notify_url=cmd.notify_url,
                    dialect=cmd.dialect,
                    sign_type=cmd.sign_type,
                )
                if refund_id is not None:
                    view = await _refund_view(conn, refund_id)
                    log.info("refund", trade_no=row.trade_no, refund_no=view.refund_no, amount=cmd.amount)
                    return view
            # lost a race on the refund id: loop and answer with the winner
    raise TillpayError(Code.SYSTEM_ERROR, "could not settle a concurrent refund; retry")


async def refund_query(
    p: Platform,
    merchant: Merchant,
    partner_refund_id: str,
    *,
    partner_trans_id: str | None = None,
    trade_no: str | None = None,
) -> RefundView:
    """One refund of the merchant by its refund id (and optionally its payment); TRADE_NOT_EXIST if none."""
    async with p.engine.connect() as conn:
        q = select(t.refunds.c.id).where(
            t.refunds.c.merchant_id == merchant.id, t.refunds.c.partner_refund_id == partner_refund_id
        )
        rid = (await conn.execute(q)).scalar()
        if rid is None:
            raise TillpayError(Code.TRADE_NOT_EXIST, f"no refund {partner_refund_id!r}")
        view = await _refund_view(conn, rid)
        if (partner_trans_id and view.payment.partner_trans_id != partner_trans_id) or (
            trade_no and view.payment.trade_no != trade_no
        ):
            raise TillpayError(Code.TRADE_NOT_EXIST, "that refund belongs to another order")
        return view


async def refunds_of(p: Platform, payment_id: int) -> list[RefundView]:
    """Every refund of a payment, oldest first."""
    async with p.engine.connect() as conn:
        ids = (
            (
                await conn.execute(
                    select(t.refunds.c.id)
                    .where(t.refunds.c.payment_id == payment_id)
                    .order_by(t.refunds.c.id)
                )
            )
            .scalars()
            .all()
        )
        return [await _refund_view(conn, i) for i in ids]


async def cancel(
    p: Platform,
    merchant: Merchant,
    *,
    partner_trans_id: str | None = None,
    trade_no: str | None = None,
    dialect: str = "mapi",
) -> CancelOutcome:
    """Cancel: an unpaid order closes, a paid one is refunded in full and closes.

    Cancelling an order that does not exist yet succeeds and leaves a closed placeholder under the
    merchant's transaction id, so a pay request that arrives late can never charge the customer.
    """
    now = p.now()
    async with p.engine.connect() as conn:
        row = await _payment_row(conn, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
        await conn.rollback()
        if row is None:
            if not partner_trans_id:
                raise TillpayError(Code.TRADE_NOT_EXIST)
            async with conn.begin():
                await conn.execute(
                    insert_ignore(conn, t.payments, "merchant_id", "partner_trans_id").values(
                        trade_no=p.ids.trade_no(now),
                        merchant_id=merchant.id,
                        partner_trans_id=partner_trans_id,
                        kind="tombstone",
                        dialect=dialect,
                        status=Status.TRADE_CLOSED.value,
                        result_code=Code.TRADE_HAS_CLOSE.value,
                        request_digest="cancelled-before-pay",
                        price_amount=0,
                        price_currency=merchant.settlement_currency,
                        settle_amount=0,
                        settle_currency=merchant.settlement_currency,
                        settle_rate="1",
                        created_at=now,
                        closed_at=now,
                    )
                )
            row = await _payment_row(conn, merchant.id, partner_trans_id=partner_trans_id)
            assert row is not None
            await conn.rollback()
            if row.kind == "tombstone":
                return CancelOutcome("none", PaymentView.from_row(row))
        async with conn.begin():
            if row.user_id:
                await _lock_wallet(conn, row.user_id)
            row = await _payment_row(conn, merchant.id, trade_no=row.trade_no, lock=True)
            assert row is not None
            if row.status == Status.WAIT_BUYER_PAY.value:
                await _close(p, conn, row.id, Event.CANCEL, Code.TRADE_HAS_CLOSE)
                action = "close"
            elif row.status == Status.TRADE_SUCCESS.value:
                left = row.price_amount - row.refunded_price
                await _apply_refund(
                    p,
                    conn,
                    row,
                    kind="cancel",
                    partner_refund_id=f"CANCEL-{row.trade_no}",
                    amount=left,
                    digest=_digest("cancel", row.id),
                    reason="cancel",
                    notify_url=None,
                    dialect=dialect,
                )
                await _notify_payment(p, conn, row.id, "payment")
                action = "refund"
            else:
                action = "none"
            final = (await conn.execute(select(t.payments).where(t.payments.c.id == row.id))).one()
            log.info("cancel", trade_no=final.trade_no, action=action)
            return CancelOutcome(action, await _view(conn, final))


async def count_payments(p: Platform, merchant_id: int, status: Status | None = None) -> int:
    """How many payments a merchant has (optionally in one state); used by tests and reports."""
    async with p.engine.connect() as conn:
        q = (
            select(func.count())
            .select_from(t.payments)
            .where(and_(t.payments.c.merchant_id == merchant_id, t.payments.c.kind != "tombstone"))
        )
        if status:
            q = q.where(t.payments.c.status == status.value)
        return int((await conn.execute(q)).scalar_one())


async def close(
    p: Platform, merchant: Merchant, *, partner_trans_id: str | None = None, trade_no: str | None = None
) -> PaymentView:
    """Close an unpaid payment so the customer can no longer pay it; never refunds.

    Unlike :func:`cancel`, a paid payment is refused with TRADE_STATUS_ERROR (refund it instead) and an
    unknown one with TRADE_NOT_EXIST. Closing an already closed, never paid payment answers it again.
    """
    async with p.engine.connect() as conn:
        row = await _payment_row(conn, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
        await conn.rollback()
        if row is None or row.kind == "tombstone":
            raise TillpayError(Code.TRADE_NOT_EXIST)
        async with conn.begin():
            if row.user_id:
                await _lock_wallet(conn, row.user_id)
            row = await _payment_row(conn, merchant.id, trade_no=row.trade_no, lock=True)
            assert row is not None
            if row.paid_at is not None:
                raise TillpayError(Code.TRADE_STATUS_ERROR, "the order is paid; refund it instead")
            if row.status == Status.WAIT_BUYER_PAY.value:
                await _close(p, conn, row.id, Event.CANCEL, Code.TRADE_HAS_CLOSE)
                log.info("close", trade_no=row.trade_no)
            final = (await conn.execute(select(t.payments).where(t.payments.c.id == row.id))).one()
            return await _view(conn, final)


async def refund_by_no(p: Platform, merchant: Merchant, refund_no: str) -> RefundView:
    """One refund of the merchant by the gateway's refund id; TRADE_NOT_EXIST if it has none such."""
    async with p.engine.connect() as conn:
        rid = (
            await conn.execute(
                select(t.refunds.c.id).where(
                    t.refunds.c.merchant_id == merchant.id, t.refunds.c.refund_no == refund_no
                )
            )
        ).scalar()
        if rid is None:
            raise TillpayError(Code.TRADE_NOT_EXIST, f"no refund {refund_no!r}")
        return await _refund_view(conn, rid)
