"""The customer's confirmation: confirm a waiting payment (or pay a QR order) with the PIN, or reject it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from tillpay.domain import paydecision, risk
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import make_quote
from tillpay.domain.paydecision import PayVerdict
from tillpay.domain.payment import Event, Status, transition
from tillpay.services import fx as fx_service
from tillpay.services import risk as risk_service
from tillpay.services import testmode
from tillpay.services.expiry import expire_due
from tillpay.services.payment_common import (
    close_payment,
    lock_wallet,
    notify_payment,
    payment_postings,
    view_of,
)
from tillpay.services.platform import Platform
from tillpay.services.security import HashPoolBusy, verify_secret
from tillpay.services.views import PaymentView
from tillpay.store.uow import UnitOfWork

log = structlog.get_logger("tillpay.payments")


class _KeepAndRaise(Exception):
    """Commit what the transaction did so far, then raise ``error`` (a counted wrong PIN, a timeout)."""

    def __init__(self, error: TillpayError) -> None:
        self.error = error


async def pending_for_user(p: Platform, user_id: int) -> list[PaymentView]:
    """Payments waiting for this customer's confirmation, newest first (expired ones are closed)."""
    await expire_due(p)
    async with p.reader() as r:
        return [await view_of(r, row) for row in await r.payments.waiting_for(user_id)]


async def confirm(
    p: Platform, user_id: int, pin: str, trade_no: str | None = None, *, precreated: bool = False
) -> PaymentView:
    """The customer confirms a waiting payment with the PIN (or pays a precreated QR order).

    Without ``trade_no`` the newest waiting payment is confirmed. A wrong PIN is counted on the payment;
    after ``max_pin_attempts`` the payment closes with USER_PAYMENT_VERIFICATION_FAILED.
    """
    async with p.reader() as r:
        user = await r.wallets.pin_of(user_id)
    if user is None:
        raise TillpayError(Code.BUYER_NOT_EXIST)
    if user.pin_failures >= p.settings.max_pin_failures:
        raise TillpayError(Code.PIN_LOCKED)
    # scrypt off the event loop, in the bounded hashing pool (TRY_AGAIN when it is full).
    try:
        pin_ok = await p.hash_pool.run(verify_secret, pin, user.pin_hash)
    except HashPoolBusy:
        raise TillpayError(Code.TRY_AGAIN) from None
    async with p.unit_of_work() as uow:
        try:
            view = await _confirm_in_tx(p, uow, user_id, user.login_id, pin_ok, trade_no, precreated)
        except _KeepAndRaise as e:
            await uow.commit()
            raise e.error from None
        await uow.commit()
        return view


async def _confirm_in_tx(
    p: Platform,
    uow: UnitOfWork,
    user_id: int,
    login_id: str,
    pin_ok: bool,
    trade_no: str | None,
    precreated: bool,
) -> PaymentView:
    now = p.now()
    await lock_wallet(uow, user_id)
    if precreated and not trade_no:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "which order?")
    row = await uow.payments.lock_to_answer(user_id, trade_no, precreated=precreated)
    if row is None or (precreated and row.user_id not in (None, user_id)):
        raise TillpayError(Code.CONFIRMATION_NOT_FOUND)
    test_merchant, offset = await testmode.merchant_of_payment(uow, row.merchant_id)
    if offset:
        now += timedelta(seconds=offset)  # the merchant's time: its test clock (docs/sandbox.md)
    if precreated:
        # A QR order's payer is known only now: the money rules of test merchants, before anything is
        # recorded (the error rolls the transaction back).
        await testmode.check_payer(p, uow, test_merchant, user_id)
    if row.expires_at and row.expires_at <= now:
        await close_payment(p, uow, row.id, Event.EXPIRE, Code.PAYMENT_TIMEOUT, now=now)
        raise _KeepAndRaise(TillpayError(Code.PAYMENT_TIMEOUT))
    # The customer's own count of wrong PINs in a row (across payments), read under the wallet's
    # row lock taken above, so concurrent guesses are counted one after another.
    failures = await uow.wallets.pin_failures(user_id)
    if failures >= p.settings.max_pin_failures:
        raise TillpayError(Code.PIN_LOCKED)
    if not pin_ok:
        failures += 1
        await uow.wallets.set_pin_failures(user_id, failures)
        if failures >= p.settings.max_pin_failures:
            raise _KeepAndRaise(TillpayError(Code.PIN_LOCKED))
        if row.user_id != user_id:
            # An unclaimed QR order: a stranger's wrong PINs count against the stranger only, so
            # they cannot use up the order's attempts.
            raise _KeepAndRaise(TillpayError(Code.WRONG_PIN, "wrong PIN"))
        attempts = row.pin_attempts + 1
        await uow.payments.change(row.id, pin_attempts=attempts)
        if attempts >= p.settings.max_pin_attempts:
            await close_payment(p, uow, row.id, Event.REJECT, Code.USER_PAYMENT_VERIFICATION_FAILED, now=now)
            raise _KeepAndRaise(
                TillpayError(
                    Code.USER_PAYMENT_VERIFICATION_FAILED,
                    "wrong PIN too many times; the payment is closed",
                )
            )
        left = p.settings.max_pin_attempts - attempts
        raise _KeepAndRaise(TillpayError(Code.WRONG_PIN, f"wrong PIN; {left} attempt(s) left"))
    if failures:
        await uow.wallets.set_pin_failures(user_id, 0)
    wallet = await uow.wallets.account(user_id)
    values: dict[str, Any] = {}
    wallet_amount, wallet_currency = row.wallet_amount, row.wallet_currency
    margin_amount = row.margin_amount
    if row.kind == "precreate":
        # The customer is known only now: quote the wallet side and run the risk rules (limits; the
        # customer is confirming with the PIN already, so no confirmation rule applies).
        margin = await fx_service.margin_for(p, uow, row.price_currency, wallet.currency)
        quote = make_quote(
            row.price_amount,
            row.price_currency,
            row.settle_currency,
            wallet.currency,
            await p.rates(uow),
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
        merchant = await uow.merchants.risk_facts(row.merchant_id)
        cfg = risk.build(
            await risk_service.layers_for(p, uow, partner_id=merchant.partner_id, login_id=login_id)
        )
        day_total, month_total, recent = await risk_service.customer_totals(p, uow, user_id, cfg)
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
        await risk_service.record(uow, row.id, outcome.risk, account.inputs, account.rules, now)
    if outcome.verdict is not PayVerdict.PAY:
        # DECLINE (a customer confirming with the PIN is never asked again).
        assert outcome.code is not None
        if values:
            await uow.payments.change(row.id, **values)
        await close_payment(p, uow, row.id, Event.REJECT, outcome.code, now=now)
        return await view_of(uow, await uow.payments.by_id(row.id))
    await uow.payments.change(
        row.id, status=transition(Status(row.status), Event.CONFIRM).value, paid_at=now, **values
    )
    await uow.ledger.post(
        kind="payment",
        ref=f"payment:{row.id}",
        postings=payment_postings(
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
    await notify_payment(p, uow, row.id, "payment")
    paid = await uow.payments.by_id(row.id)
    log.info("confirmed", trade_no=paid.trade_no, user=user_id)
    return PaymentView.from_row(paid, login_id)


async def reject(p: Platform, user_id: int, trade_no: str | None = None) -> PaymentView:
    """The customer rejects a waiting payment; it closes with USER_REJECTED."""
    async with p.unit_of_work() as uow:
        await lock_wallet(uow, user_id)
        row = await uow.payments.lock_to_answer(user_id, trade_no)
        if row is None:
            raise TillpayError(Code.CONFIRMATION_NOT_FOUND)
        _, offset = await testmode.merchant_of_payment(uow, row.merchant_id)
        now = p.now() + timedelta(seconds=offset)  # the merchant's time (docs/sandbox.md)
        await close_payment(p, uow, row.id, Event.REJECT, Code.USER_REJECTED, now=now)
        view = await view_of(uow, await uow.payments.by_id(row.id))
        await uow.commit()
    return view
