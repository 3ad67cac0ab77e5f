"""Refund and cancel (and close): money back to the customer, the order closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.engine import Row

from tillpay.domain import ledger
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import find_rate
from tillpay.domain.money import convert
from tillpay.domain.payment import Event, Status, refund_shares, transition
from tillpay.services import fx as fx_service
from tillpay.services.payment_common import (
    RefundCommand,
    close_payment,
    enqueue,
    lock_wallet,
    notify_payment,
    payment_row,
    request_digest,
    view_of,
)
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import CancelOutcome, PaymentView, RefundView
from tillpay.store.uow import Repositories, UnitOfWork

log = structlog.get_logger("tillpay.payments")


async def _apply_refund(
    p: Platform,
    uow: UnitOfWork,
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
    now: datetime | None = None,
) -> int | None:
    """Insert the refund, move the money back and update the payment; None if the id raced.

    The merchant always returns its proportional share of what it was credited. The customer gets the
    proportional share of what it paid (policy ``original``), or, under ``refund_day``, the refund's
    price converted at today's mid rate, never more than is left; the refund that completes the order
    always takes exactly the remainder, so a full refund returns every minor unit in every currency.
    The scheme's gain or loss against the locked quote goes to its FX gain/loss account. ``now`` is
    the merchant's time (a test merchant's test clock), real time when not given.
    """
    now = now or p.now()
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
        day_rate = find_rate(await fx_service.rates_at(p, uow, now), row.price_currency, row.wallet_currency)
        wallet = min(convert(amount, row.price_currency, row.wallet_currency, day_rate), left)
    gain = original - wallet
    refund_id = await uow.payments.add_refund_if_new(
        dict(
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
    )
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
    await uow.payments.change(row.id, **values)
    await uow.ledger.post(
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
    refund_view = await _refund_view(uow, refund_id)
    await enqueue(
        p,
        uow,
        merchant_id=row.merchant_id,
        url=notify_url,
        event="refund",
        dialect=dialect,
        payload={"refund": refund_view.to_json()},
        payment_id=row.id,
        refund_id=refund_id,
        sign_type=sign_type,
    )
    return refund_id


async def _refund_view(r: Repositories, refund_id: int) -> RefundView:
    refund_row = await r.payments.refund(refund_id)
    return RefundView.from_row(refund_row, await view_of(r, await r.payments.by_id(refund_row.payment_id)))


async def refund(p: Platform, cmd: RefundCommand) -> RefundView:
    """Refund part or all of a paid payment; the same refund id again returns the first refund."""
    if cmd.amount <= 0:
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, "refund amount must be above 0")
    for _ in range(3):
        async with p.reader() as r:
            existing = await r.payments.merchant_refund(cmd.merchant.id, cmd.partner_refund_id)
            row = await payment_row(
                r, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id, trade_no=cmd.trade_no
            )
            if row is None or row.kind == "tombstone":
                raise TillpayError(Code.TRADE_NOT_EXIST)
            digest = request_digest("refund", row.id, cmd.amount, cmd.currency)
            if existing is not None:
                if existing.request_digest != digest:
                    raise TillpayError(
                        Code.REPEAT_REQ_INCONSISTENT,
                        f"refund id {cmd.partner_refund_id!r} was used before with different parameters",
                    )
                return await _refund_view(r, existing.id)
        if cmd.partner_refund_id == row.partner_trans_id:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "the refund id must differ from the transaction id")
        if cmd.currency != row.price_currency:
            raise TillpayError(
                Code.REFUND_CURRENCY_MISMATCH, f"refund in {row.price_currency}, the order's currency"
            )
        async with p.unit_of_work() as uow:
            if row.user_id:
                await lock_wallet(uow, row.user_id)
            row = await payment_row(uow, cmd.merchant.id, trade_no=row.trade_no, lock=True)
            assert row is not None
            if row.paid_at is None:
                raise TillpayError(
                    Code.TRADE_STATUS_ERROR if row.status == Status.WAIT_BUYER_PAY else Code.TRADE_HAS_CLOSE,
                    "the order was never paid",
                )
            if row.status != Status.TRADE_SUCCESS.value:
                raise TillpayError(Code.TRADE_HAS_CLOSE, "the order is closed (fully refunded or cancelled)")
            if row.paid_at + timedelta(days=p.settings.refund_window_days) < cmd.merchant.clock(p.now()):
                raise TillpayError(Code.REFUND_WINDOW_EXCEED)
            left = row.price_amount - row.refunded_price
            if cmd.amount > left:
                raise TillpayError(
                    Code.REFUND_AMOUNT_EXCEED, f"at most {left} minor units are left to refund"
                )
            refund_id = await _apply_refund(
                p,
                uow,
                row,
                kind="refund",
                partner_refund_id=cmd.partner_refund_id,
                amount=cmd.amount,
                digest=digest,
                reason=cmd.reason,
                notify_url=cmd.notify_url,
                dialect=cmd.dialect,
                sign_type=cmd.sign_type,
                now=cmd.merchant.clock(p.now()),
            )
            if refund_id is not None:
                view = await _refund_view(uow, refund_id)
                log.info("refund", trade_no=row.trade_no, refund_no=view.refund_no, amount=cmd.amount)
                await uow.commit()
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
    async with p.reader() as r:
        found = await r.payments.merchant_refund(merchant.id, partner_refund_id)
        if found is None:
            raise TillpayError(Code.TRADE_NOT_EXIST, f"no refund {partner_refund_id!r}")
        view = await _refund_view(r, found.id)
    if (partner_trans_id and view.payment.partner_trans_id != partner_trans_id) or (
        trade_no and view.payment.trade_no != trade_no
    ):
        raise TillpayError(Code.TRADE_NOT_EXIST, "that refund belongs to another order")
    return view


async def refunds_of(p: Platform, payment_id: int) -> list[RefundView]:
    """Every refund of a payment, oldest first (three statements however many refunds there are)."""
    async with p.reader() as r:
        rows = await r.payments.refunds_of([payment_id])
        if not rows:
            return []
        payment = await view_of(r, await r.payments.by_id(payment_id))
        return [RefundView.from_row(row, payment) for row in rows]


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
    now = merchant.clock(p.now())  # a test merchant's own time (docs/sandbox.md)
    async with p.reader() as r:
        row = await payment_row(r, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
    if row is None:
        if not partner_trans_id:
            raise TillpayError(Code.TRADE_NOT_EXIST)
        async with p.unit_of_work() as uow:
            await uow.payments.add_if_new(
                dict(
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
            await uow.commit()
        # The placeholder, or the payment a concurrent pay inserted first.
        async with p.reader() as r:
            row = await payment_row(r, merchant.id, partner_trans_id=partner_trans_id)
        assert row is not None
        if row.kind == "tombstone":
            return CancelOutcome("none", PaymentView.from_row(row))
    async with p.unit_of_work() as uow:
        if row.user_id:
            await lock_wallet(uow, row.user_id)
        row = await payment_row(uow, merchant.id, trade_no=row.trade_no, lock=True)
        assert row is not None
        if row.status == Status.WAIT_BUYER_PAY.value:
            await close_payment(p, uow, row.id, Event.CANCEL, Code.TRADE_HAS_CLOSE, now=now)
            action = "close"
        elif row.status == Status.TRADE_SUCCESS.value:
            left = row.price_amount - row.refunded_price
            await _apply_refund(
                p,
                uow,
                row,
                kind="cancel",
                partner_refund_id=f"CANCEL-{row.trade_no}",
                amount=left,
                digest=request_digest("cancel", row.id),
                reason="cancel",
                notify_url=None,
                dialect=dialect,
                now=now,
            )
            await notify_payment(p, uow, row.id, "payment")
            action = "refund"
        else:
            action = "none"
        final = await uow.payments.by_id(row.id)
        log.info("cancel", trade_no=final.trade_no, action=action)
        outcome = CancelOutcome(action, await view_of(uow, final))
        await uow.commit()
    return outcome


async def close(
    p: Platform, merchant: Merchant, *, partner_trans_id: str | None = None, trade_no: str | None = None
) -> PaymentView:
    """Close an unpaid payment so the customer can no longer pay it; never refunds.

    Unlike :func:`cancel`, a paid payment is refused with TRADE_STATUS_ERROR (refund it instead) and an
    unknown one with TRADE_NOT_EXIST. Closing an already closed, never paid payment answers it again.
    """
    async with p.reader() as r:
        row = await payment_row(r, merchant.id, partner_trans_id=partner_trans_id, trade_no=trade_no)
    if row is None or row.kind == "tombstone":
        raise TillpayError(Code.TRADE_NOT_EXIST)
    async with p.unit_of_work() as uow:
        if row.user_id:
            await lock_wallet(uow, row.user_id)
        row = await payment_row(uow, merchant.id, trade_no=row.trade_no, lock=True)
        assert row is not None
        if row.paid_at is not None:
            raise TillpayError(Code.TRADE_STATUS_ERROR, "the order is paid; refund it instead")
        if row.status == Status.WAIT_BUYER_PAY.value:
            await close_payment(
                p, uow, row.id, Event.CANCEL, Code.TRADE_HAS_CLOSE, now=merchant.clock(p.now())
            )
            log.info("close", trade_no=row.trade_no)
        view = await view_of(uow, await uow.payments.by_id(row.id))
        await uow.commit()
    return view


async def refund_by_no(p: Platform, merchant: Merchant, refund_no: str) -> RefundView:
    """One refund of the merchant by the gateway's refund id; TRADE_NOT_EXIST if it has none such."""
    async with p.reader() as r:
        rid = await r.payments.refund_id_by_no(merchant.id, refund_no)
        if rid is None:
            raise TillpayError(Code.TRADE_NOT_EXIST, f"no refund {refund_no!r}")
        return await _refund_view(r, rid)
