"""The pay: charge a customer-presented payment code (and query a payment).

A pay reads everything its decision needs (one statement in the common case, ``_payer_at_once``; else
statement by statement, ``_payer_carefully``, which also answers a repeated request), decides admission
with ``domain.paydecision``, then in one write transaction records the code's single use, locks the
wallet, decides the payment with the customer's totals and writes it (on PostgreSQL in one statement).
Counting a wrong code and replaying a repeat are side effects around the decision.

On PostgreSQL the common pay takes two round trips: its one read also fetches the account's facts
(``paypath.PG_READ``), both steps of the decision run here, and ``_charge_at_once`` writes everything in
one call of ``tillpay_pay`` that commits by itself and re-checks, with the wallet row locked, what a
concurrent request could have changed. When a guard fails nothing of it remains, and the pay goes on as
the careful write would: a used code, the replay of a repeat, or the careful write itself (``_charge``),
which locks the wallet and decides again with the same function.

The other payment use cases live in their own modules and are importable from here too:
``precreate``, ``confirmation`` (confirm, reject), ``refunds`` (refund, cancel, close), ``expiry``,
``code_limits``; what they share is ``payment_common``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
from sqlalchemy.engine import Row

from tillpay import logs
from tillpay.domain import ledger, paycode, paydecision, risk, secmerchant
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import make_quote
from tillpay.domain.paydecision import PayVerdict
from tillpay.domain.payment import Status
from tillpay.services import code_limits, secmerchants, testmode
from tillpay.services import fx as fx_service
from tillpay.services import magic as magic_service
from tillpay.services import risk as risk_service
from tillpay.services.code_limits import bad_code_alert as bad_code_alert
from tillpay.services.code_limits import bad_codes_in_window as bad_codes_in_window
from tillpay.services.confirmation import confirm as confirm
from tillpay.services.confirmation import pending_for_user as pending_for_user
from tillpay.services.confirmation import reject as reject
from tillpay.services.expiry import expire_due as expire_due
from tillpay.services.expiry import expire_on
from tillpay.services.expiry import expire_payment as expire_payment
from tillpay.services.payment_common import MAX_MAJOR as MAX_MAJOR
from tillpay.services.payment_common import SUCCESS_ONLY_DIALECTS as SUCCESS_ONLY_DIALECTS
from tillpay.services.payment_common import PayCommand as PayCommand
from tillpay.services.payment_common import PrecreateCommand as PrecreateCommand
from tillpay.services.payment_common import RefundCommand as RefundCommand
from tillpay.services.payment_common import check_amount as check_amount
from tillpay.services.payment_common import (
    enqueue,
    outcome_of,
    payment_postings,
    payment_row,
    request_digest,
    view_of,
)
from tillpay.services.platform import Merchant, Platform
from tillpay.services.precreate import precreate as precreate
from tillpay.services.precreate import qr_picture_url as qr_picture_url
from tillpay.services.precreate import qr_url as qr_url
from tillpay.services.refunds import cancel as cancel
from tillpay.services.refunds import close as close
from tillpay.services.refunds import refund as refund
from tillpay.services.refunds import refund_by_no as refund_by_no
from tillpay.services.refunds import refund_query as refund_query
from tillpay.services.refunds import refunds_of as refunds_of
from tillpay.services.views import PaymentView
from tillpay.services.views import PayOutcome as PayOutcome
from tillpay.store import ledger as ledger_store
from tillpay.store import paypath
from tillpay.store.driver import Driver, Refused, utc
from tillpay.store.ledger import post_entry as post_entry
from tillpay.store.uow import Reader, UnitOfWork

log = structlog.get_logger("tillpay.payments")


#: How many steps back a code is recognised as expired rather than made up.
EXPIRED_LOOKBACK_STEPS = paydecision.EXPIRED_LOOKBACK_STEPS
#: The velocity window when no rule layer sets one.
_DEFAULT_VELOCITY_MINUTES = risk.RiskConfig().velocity_minutes


class _CodeTaken(Exception):
    """The payment code's (device, step, slot) is already used."""


class _IdTaken(Exception):
    """Another payment with this merchant transaction id was inserted concurrently."""


async def _replay(p: Platform, r: Reader, row: Row[Any], digest: str) -> PayOutcome:
    if row.kind == "tombstone":
        # The merchant cancelled this id before any pay arrived: a late pay must never charge.
        return PayOutcome(PaymentView.from_row(row), Code.TRADE_HAS_CLOSE, replayed=True)
    if row.request_digest != digest:
        raise TillpayError(
            Code.REPEAT_REQ_INCONSISTENT,
            f"transaction id {row.partner_trans_id!r} was used before with different parameters",
        )
    # expire_on judges by the merchant's own time (a test merchant's clock may be ahead of real time).
    if row.status == Status.WAIT_BUYER_PAY and row.expires_at and await expire_on(p, r, row.id):
        fresh = await payment_row(r, row.merchant_id, trade_no=row.trade_no)
        assert fresh is not None
        row = fresh
    return outcome_of(await view_of(r, row), replayed=True)


async def query(
    p: Platform, merchant: Merchant, *, partner_trans_id: str | None = None, trade_no: str | None = None
) -> PaymentView:
    """The merchant's payment by either id; TRADE_NOT_EXIST if it has none such."""
    async with p.reader() as r:
        row = await payment_row(r, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
        if row is None or row.kind == "tombstone":
            raise TillpayError(Code.TRADE_NOT_EXIST)
        if (
            row.status == Status.WAIT_BUYER_PAY
            and row.expires_at
            and row.expires_at <= merchant.clock(p.now())
        ):
            await expire_on(p, r, row.id)
            row = await payment_row(r, merchant.id, trade_no=row.trade_no)
            assert row is not None
        return await view_of(r, row)


async def payment_by_trade_no(p: Platform, trade_no: str) -> PaymentView:
    """Any payment by gateway id (operator and wallet use); NOT_FOUND if none."""
    async with p.reader() as r:
        row = await r.payments.by_trade_no(trade_no)
        if row is None or row.kind == "tombstone":
            raise TillpayError(Code.NOT_FOUND, f"no payment {trade_no}")
        return await view_of(r, row)


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
class _Account:
    """PostgreSQL: the account's facts ``PG_READ`` read with the admission facts, in one snapshot, for
    the payment's own decision; ``tillpay_pay`` re-checks them with the wallet row locked."""

    #: The scheme's, merchant's and customer's rule layers as stored.
    rules: tuple[str | None, str | None, str | None]
    balance: int
    wallet_status: str
    #: The wallet row's version (its ``xmin``).
    version: str
    #: The periods the totals were summed over, and the totals.
    day: datetime
    month: datetime
    velocity_since: datetime
    day_total: int
    month_total: int
    recent: int


@dataclass(frozen=True, slots=True)
class _Read:
    """What a pay reads before its write transaction: the admission facts and who would pay."""

    gate: paydecision.Gate
    device_no: int | None
    device_id: int | None = None
    user_id: int | None = None
    device_created_at: datetime | None = None
    login_id: str | None = None
    #: Whether the payer's wallet is a sandbox wallet (the money rules of test merchants read it here).
    sandbox: bool | None = None
    #: PostgreSQL's common case: the account's facts too (None: the write transaction reads them).
    account: _Account | None = None


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


async def _payer_at_once(p: Platform, r: Reader, cmd: PayCommand, now: datetime) -> _Read | None:
    """The common case's facts in one statement (``paypath.READ``); None where the careful read is
    needed: a known transaction id (a repeat), a malformed code or an unknown device (nothing to join),
    or a terminal with a wrong code inside its rule's window (it takes a count). Reads only."""
    try:
        device_no = paycode.parse(cmd.code).device_no
    except paycode.MalformedCode:
        return None
    # One statement, outside any transaction (a statement reads one consistent snapshot). On PostgreSQL
    # it also reads the account's facts, so that the common pay writes in one call (``_charge_at_once``).
    drv = await r.driver()
    # The customer's totals are summed in the merchant's time (what a payment is stamped with: a test
    # merchant's clock may be ahead); the code and the bad-code window follow real time (``now``).
    merchant_now = cmd.merchant.clock(now)
    day, month = (now, now) if drv.sqlite else risk_service.periods(p, merchant_now)
    found = await drv.rows(
        paypath.READ if drv.sqlite else paypath.PG_READ,
        {
            "day": day,  # these four: PG_READ's only
            "month": month,
            "totals_now": merchant_now,
            "default_velocity_minutes": _DEFAULT_VELOCITY_MINUTES,
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
    account = None
    if not drv.sqlite:
        rules = (row["scheme_rules"], row["merchant_rules"], row["user_rules"])
        cfg, _ = risk_service.config_of(p, *rules)
        # The window the statement summed over is the one the rules set (else the write transaction
        # sums the totals again with the rules it reads).
        if cfg.velocity_minutes == row["velocity_minutes"]:
            account = _Account(
                rules,
                int(row["balance"]),
                row["wallet_status"],
                row["version"],
                day,
                month,
                merchant_now - timedelta(minutes=cfg.velocity_minutes),
                int(row["day_total"]),
                int(row["month_total"]),
                int(row["recent"]),
            )
    return _Read(
        gate,
        device_no,
        row["device_id"],
        row["user_id"],
        utc(row["device_created_at"]),
        row["login_id"],
        bool(row["sandbox"]),
        account,
    )


async def _payer_carefully(
    p: Platform, r: Reader, cmd: PayCommand, digest: str, now: datetime
) -> _Read | PayOutcome:
    """The same facts statement by statement (and a repeated request answered with its first result)."""
    existing = await payment_row(r, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
    if existing is not None:
        return await _replay(p, r, existing, digest)
    disabled = False
    if cmd.store_id or cmd.terminal_id:
        disabled = await r.stores.disabled(cmd.merchant.id, cmd.store_id, cmd.terminal_id)
    registered = await secmerchants.registered(r, cmd.merchant.id, cmd.secondary_merchant_id, cmd.store_id)
    base_cfg = risk.build(
        await risk_service.layers_for(p, r, partner_id=cmd.merchant.partner_id, login_id=None)
    )
    terminal_bad = 0
    if cmd.terminal_id and base_cfg.terminal_bad_codes:
        terminal_bad = await r.codes.terminal_bad_codes(
            cmd.merchant.id, cmd.terminal_id, now - timedelta(minutes=base_cfg.terminal_window_minutes)
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
        device_bad = await r.codes.device_bad_codes(
            cmd.merchant.id, device_no, now - timedelta(seconds=p.settings.bad_code_window_seconds)
        )
        device = await r.wallets.device_by_no(device_no)
    if device is not None:
        user = await r.wallets.payer(device.user_id)
    if user is not None and user.currency != cmd.price_currency:
        margin = await fx_service.stored_margin(p, r, cmd.price_currency, user.currency)
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
    return _Read(
        gate, device_no, device.id, device.user_id, device.created_at, user.login_id, bool(user.sandbox)
    )


async def pay(p: Platform, cmd: PayCommand, *, magic: bool = True) -> PayOutcome:
    """Charge a customer-presented payment code, exactly once per (merchant, partner_trans_id).

    A magic code (docs/sandbox.md) for a test merchant or on a sandbox server is paid by
    ``services.magic``, which comes back here with a real code (``magic=False``).
    """
    if magic and (looked := magic_service.honoured(p, cmd.merchant, cmd.code)) is not None:
        return await magic_service.pay(p, cmd, looked, pay)
    check_amount(cmd.price_amount, cmd.price_currency)
    if cmd.settle_currency != cmd.merchant.settlement_currency:
        raise TillpayError(
            Code.CURRENCY_NOT_SUPPORT,
            f"this merchant settles in {cmd.merchant.settlement_currency}, not {cmd.settle_currency}",
        )
    digest = request_digest(
        "pay", cmd.price_amount, cmd.price_currency, cmd.settle_currency, cmd.sent_code or cmd.code
    )

    async with p.reader() as r:
        now = p.now()
        read = await _payer_at_once(p, r, cmd, now)
        if read is None:
            found = await _payer_carefully(p, r, cmd, digest, now)
            if isinstance(found, PayOutcome):
                return found
            read = found
        admitted = paydecision.decide(paydecision.PayFacts(gate=read.gate))
        if admitted.verdict is PayVerdict.REFUSE:
            if admitted.counts_bad_code:
                await code_limits.record_bad_code(p, r, cmd.merchant.id, admitted.device_no, cmd.terminal_id)
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
        # The money rules of test merchants (services/testmode.py), before anything is recorded, from
        # the wallet's sandbox mark the read fetched.
        await testmode.check_payer(p, r, cmd.merchant.is_test, read.user_id, sandbox=read.sandbox)
        rates = await p.rates(r)
        await r.end_read()  # the write below must not run inside the read's transaction
        # The code was checked at real time (a wallet's codes follow real time); what is recorded is
        # stamped with the merchant's time (a test merchant's test clock).
        real = p.now()
        now = cmd.merchant.clock(real)
        quote = make_quote(
            cmd.price_amount, cmd.price_currency, cmd.settle_currency, payer.currency, rates, payer.margin_bps
        )
        # PostgreSQL's common pay: one call that commits by itself; when its guards find the wallet or
        # the totals changed since the read, the careful write below locks the wallet and decides again.
        at_once = read.account is not None
        for _ in range(2):
            try:
                if at_once and read.account is not None:
                    at_once = False
                    try:
                        return await _charge_at_once(
                            p, await r.driver(), cmd, payer, quote, digest, now, read.account, real
                        )
                    except _WalletChanged:
                        pass  # nothing was written: the careful write decides again
                async with r.then_write() as uow:
                    decided, payment_id, login_id = await _charge(
                        p, uow, cmd, payer, quote, digest, now, code_now=real
                    )
                    await uow.commit()
                # Answered (and logged) once committed, outside the write transaction.
                return _answered(cmd, decided, _view(decided, payment_id, login_id))
            except _CodeTaken:
                # The code was used by another payment, or by this very request arriving twice.
                existing = await payment_row(r, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
                if existing is not None:
                    return await _replay(p, r, existing, digest)
                raise TillpayError(Code.CODE_USED) from None
            except _IdTaken:
                continue  # a concurrent request with the same id won; answer with its payment
        # Only reached when the insert lost a race: answer as a repeat of the winner.
        existing = await payment_row(r, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
        if existing is None:
            raise TillpayError(Code.SYSTEM_ERROR, "payment vanished after a conflicting insert")
        return await _replay(p, r, existing, digest)


async def _pg_writes(
    drv: Driver,
    values: dict[str, Any],
    decision: risk.Decision,
    inputs: risk.RiskInputs,
    cfg_text: str,
    now: datetime,
    release: dict[str, Any] | None = None,
) -> int:
    """PostgreSQL: the payment and its risk decision, and (``release``) the code's use taken back, in
    one statement: exactly what the SQLite branch of ``_charge`` writes statement by statement. The
    ledger entry follows through the ledger writer."""
    d = risk_service.decision_values(0, decision, inputs, cfg_text, now)
    args: list[Any] = [*values.values(), d["verdict"], d["rule"], d["code"], d["fired"], d["inputs"]]
    args += [d["config"], now]
    if release is not None:
        args += [release["device_id"], release["step"], release["slot"]]
    rows = await drv.pg_rows(paypath.pg_writes(tuple(values), release=release is not None), args)
    if not rows:
        raise _IdTaken
    return int(rows[0]["id"])


@dataclass(frozen=True, slots=True)
class _Decided:
    """A payment decided with its account's facts: the rows to write and what the answer shows."""

    status: Status
    result_code: Code | None
    decision: risk.Decision
    inputs: risk.RiskInputs
    cfg_text: str
    values: dict[str, Any]
    postings: list[ledger.Posting]
    #: False: refused for its balance alone, so the code's single use is taken back.
    spends_code: bool

    @property
    def paid(self) -> bool:
        return self.status is Status.TRADE_SUCCESS


def _decide_payment(
    p: Platform,
    cmd: PayCommand,
    payer: _Payer,
    quote: Any,
    digest: str,
    now: datetime,
    rules: tuple[str | None, str | None, str | None],
    totals: tuple[int, int, int],
    balance: int,
    wallet_status: str,
    code_at: datetime,
) -> _Decided:
    """The payment's own decision (``paydecision.decide`` with the account's facts) and its rows.

    ``now`` stamps the rows (the merchant's time); ``code_at`` is the real time the device and its code
    are judged at (a test merchant's clock may be ahead of it)."""
    cfg, cfg_text = risk_service.config_of(p, *rules)
    day_total, month_total, recent = totals
    inputs = risk.RiskInputs(
        wallet_amount=quote.wallet_amount,
        wallet_currency=quote.wallet_currency,
        day_total=day_total,
        month_total=month_total,
        recent_count=recent,
        device_age_seconds=int((code_at - payer.device_created_at).total_seconds()),
        code_lag_steps=max(0, paycode.step_at(int(code_at.timestamp())) - payer.step),
        merchant_mcc=cmd.merchant.mcc,
        buyer_active=wallet_status == "active",
        merchant_active=cmd.merchant.status == "active",
        balance=balance,
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
    postings = (
        payment_postings(
            payer.user_id,
            cmd.merchant.id,
            quote.wallet_amount,
            quote.wallet_currency,
            quote.settle_amount,
            quote.settle_currency,
            quote.margin_amount,
        )
        if status is Status.TRADE_SUCCESS
        else []
    )
    # A payment refused for its balance alone leaves the code unused (the customer may top up and show it
    # again): its single use is taken back in the same transaction.
    return _Decided(status, result_code, decision, inputs, cfg_text, values, postings, decision.spends_code)


def _view(decided: _Decided, payment_id: int, login_id: str) -> PaymentView:
    """The payment as stored, from what was just written (the columns left out have their defaults)."""
    return PaymentView.from_row(
        SimpleNamespace(
            id=payment_id,
            refunded_price=0,
            refunded_settle=0,
            refunded_wallet=0,
            pin_attempts=0,
            **decided.values,
        ),  # type: ignore[arg-type]
        login_id,
    )


def _answered(cmd: PayCommand, decided: _Decided, view: PaymentView) -> PayOutcome:
    log.info(
        "pay",
        merchant=cmd.merchant.partner_id,
        partner_trans_id=cmd.partner_trans_id,
        status=decided.status.value,
        code=decided.result_code,
        trade_no=view.trade_no,
    )
    return outcome_of(view)


class _WalletChanged(Exception):
    """The at-once write found the wallet or the customer's totals changed since the read."""


#: How the outbox's payload of a paid payment starts: ``PaymentView``'s first field is its id, which the
#: at-once write fills in between this and the rest.
_PAYLOAD_HEAD = '{"payment":{"id":'


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).isoformat()
    return v


async def _charge_at_once(
    p: Platform,
    drv: Driver,
    cmd: PayCommand,
    payer: _Payer,
    quote: Any,
    digest: str,
    now: datetime,
    account: _Account,
    code_now: datetime,
) -> PayOutcome:
    """PostgreSQL, the common pay: decide with the facts ``PG_READ`` read and write everything in one
    call of ``tillpay_pay`` that commits by itself. Its guards raise ``_CodeTaken``, ``_IdTaken`` or
    ``_WalletChanged``, and then nothing of it was written."""
    decided = _decide_payment(
        p,
        cmd,
        payer,
        quote,
        digest,
        now,
        account.rules,
        (account.day_total, account.month_total, account.recent),
        account.balance,
        account.wallet_status,
        code_now,
    )
    d = risk_service.decision_values(0, decided.decision, decided.inputs, decided.cfg_text, now)
    ledger_args: list[Any] = [None, None, None]
    if decided.postings:
        ledger_args = list(ledger_store.payment_entry_arrays(decided.postings, payer.user_id))
    outbox_args: list[str | None] | None = None
    if decided.paid and cmd.notify_url:
        payload = json.dumps({"payment": _view(decided, 0, payer.login_id).to_json()}, separators=(",", ":"))
        if not payload.startswith(_PAYLOAD_HEAD + "0,"):
            raise RuntimeError("the payment's id is no longer the payload's first field")
        outbox_args = [
            p.ids.notify_id(),
            cmd.notify_url,
            "payment",
            cmd.dialect,
            cmd.sign_type,
            _PAYLOAD_HEAD,
            payload[len(_PAYLOAD_HEAD) + 1 :],
            logs.request_id.get(),
        ]
    args: list[Any] = [
        json.dumps({k: _json_value(v) for k, v in decided.values.items()}),
        [d["verdict"], d["rule"], d["code"], d["fired"], d["inputs"], d["config"]],
        payer.device_id,
        payer.step,
        payer.slot,
        decided.spends_code,
        payer.user_id,
        account.version,
        account.day,
        account.month,
        account.velocity_since,
        account.day_total,
        account.month_total,
        account.recent,
        *ledger_args,
        outbox_args,
        p.now(),
        now,
    ]
    try:
        payment_id = int(await drv.pg_commit(paypath.PAY_AT_ONCE, args))
    except Refused as e:
        if e.sqlstate == paypath.CODE_TAKEN:
            raise _CodeTaken from None
        if e.sqlstate == paypath.ID_TAKEN:
            raise _IdTaken from None
        if e.sqlstate == paypath.WALLET_CHANGED:
            raise _WalletChanged from None
        raise
    return _answered(cmd, decided, _view(decided, payment_id, payer.login_id))


async def _charge(
    p: Platform,
    uow: UnitOfWork,
    cmd: PayCommand,
    payer: _Payer,
    quote: Any,
    digest: str,
    now: datetime,
    *,
    code_now: datetime | None = None,
) -> tuple[_Decided, int, str]:
    """The write transaction of a pay: the code's single use, the wallet lock, risk, payment, ledger;
    the decision, the payment's id and the payer's login (the caller answers once it has committed).

    ``now`` stamps what is recorded (the merchant's time); ``code_now`` is the real time the device and
    its code are judged at, when a test merchant's clock is ahead of it. The pay's own statements
    (store/paypath.py) run on the unit of work's connection through its driver.
    """
    conn = uow.conn  # the pay's statements below take the connection itself
    use = {"device_id": payer.device_id, "step": payer.step, "slot": payer.slot, "created_at": now}
    who = {"user_id": payer.user_id, "partner_id": cmd.merchant.partner_id}
    drv = await uow.driver()
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
    cfg, _ = risk_service.config_of(p, wallet["scheme_rules"], wallet["merchant_rules"], wallet["user_rules"])
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
    decided = _decide_payment(
        p,
        cmd,
        payer,
        quote,
        digest,
        now,
        (wallet["scheme_rules"], wallet["merchant_rules"], wallet["user_rules"]),
        (int(day_total), int(month_total), int(recent)),
        int(wallet["balance"]),
        wallet["status"],
        code_now or now,
    )
    values, postings = decided.values, decided.postings
    release = None if decided.spends_code else use
    if drv.sqlite:
        inserted = await drv.rows(paypath.payment_insert(conn), values, tuple(values))
        if not inserted:
            raise _IdTaken
        payment_id = int(inserted[0][0])
        decided_row = risk_service.decision_values(
            payment_id, decided.decision, decided.inputs, decided.cfg_text, now
        )
        await drv.rows(paypath.RISK_DECISION, decided_row, tuple(decided_row))
        if release is not None:
            await drv.rows(paypath.CODE_RELEASE, release)
    else:
        payment_id = await _pg_writes(
            drv, values, decided.decision, decided.inputs, decided.cfg_text, now, release
        )
    if decided.paid:
        # The ledger writer (on PostgreSQL one call of its function; on SQLite its statements).
        await post_entry(
            conn,
            kind="payment",
            ref=f"payment:{payment_id}",
            postings=postings,
            now=now,
            payment_id=payment_id,
            driver=drv,
        )
    if decided.paid and cmd.notify_url:
        view = _view(decided, payment_id, wallet["login_id"])
        await enqueue(
            p,
            uow,
            merchant_id=cmd.merchant.id,
            url=cmd.notify_url,
            event="payment",
            dialect=cmd.dialect,
            payload={"payment": view.to_json()},
            payment_id=payment_id,
            sign_type=cmd.sign_type,
        )
    return decided, payment_id, wallet["login_id"]


async def count_payments(p: Platform, merchant_id: int, status: Status | None = None) -> int:
    """How many payments a merchant has (optionally in one state); used by tests and reports."""
    async with p.reader() as r:
        return await r.payments.count_of_merchant(merchant_id, status)
