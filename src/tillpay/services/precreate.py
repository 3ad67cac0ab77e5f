"""Precreate: a merchant-presented QR order that waits for a wallet user to pay it."""

from __future__ import annotations

from datetime import timedelta

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import find_rate
from tillpay.domain.money import convert
from tillpay.domain.payment import Status
from tillpay.services import magic, stores
from tillpay.services.payment_common import (
    PrecreateCommand,
    check_amount,
    payment_row,
    request_digest,
    view_of,
)
from tillpay.services.platform import Platform
from tillpay.services.views import PaymentView


async def precreate(p: Platform, cmd: PrecreateCommand) -> PaymentView:
    """Create a merchant-presented QR order that waits for a wallet user to pay it."""
    check_amount(cmd.price_amount, cmd.price_currency)
    if cmd.settle_currency != cmd.merchant.settlement_currency:
        raise TillpayError(
            Code.CURRENCY_NOT_SUPPORT, f"this merchant settles in {cmd.merchant.settlement_currency}"
        )
    digest = request_digest("precreate", cmd.price_amount, cmd.price_currency, cmd.settle_currency)
    now = cmd.merchant.clock(p.now())  # a test merchant's own time (docs/sandbox.md)
    async with p.unit_of_work() as uow:
        existing = await payment_row(uow, cmd.merchant.id, partner_trans_id=cmd.partner_trans_id)
        if existing is not None:
            if existing.request_digest != digest:
                raise TillpayError(Code.REPEAT_REQ_INCONSISTENT)
            return await view_of(uow, existing)
        await stores.refuse_if_disabled(uow, cmd.merchant.id, cmd.store_id, cmd.terminal_id)
        rate = find_rate(await p.rates(uow), cmd.price_currency, cmd.settle_currency)
        settle = (
            cmd.price_amount
            if cmd.price_currency == cmd.settle_currency
            else convert(cmd.price_amount, cmd.price_currency, cmd.settle_currency, rate)
        )
        pid = await uow.payments.add_if_new(
            dict(
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
        )
        if pid is None:
            raise TillpayError(Code.SYSTEM_ERROR, "concurrent precreate with the same id; retry")
        row = await uow.payments.by_id(pid)
        await uow.commit()
    view = PaymentView.from_row(row)
    await magic.precreated(p, cmd.merchant, view)  # a magic amount (docs/sandbox.md), where honoured
    return view


def qr_url(p: Platform, trade_no: str) -> str:
    """The URL a precreate QR code carries; the wallet opens it to pay."""
    return f"{p.settings.public_url.rstrip('/')}/wallet/qr/{trade_no}"


def qr_picture_url(p: Platform, trade_no: str) -> str:
    """A PNG picture of that QR code (MAPI precreate's ``pic_url``)."""
    return f"{p.settings.public_url.rstrip('/')}/qr/{trade_no}.png"
