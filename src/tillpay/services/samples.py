"""Sample notifications: one of each kind a merchant's dialects send, to the merchant's notify URL, and
the per-merchant rate limit on samples and redeliveries (docs/console.md).

A sample goes through the outbox like any notification, so it is signed at delivery with the
merchant's real keys, retried on the same schedule and shown in the notification log and the
inspector. It names no real payment: its notification id, trade number, order id and refund ids all
start with ``SAMPLE``, and the outbox row has no payment. Samples are fake trades, so they go only to a
test merchant (its test credentials) or, on a sandbox server, to any merchant; a live merchant of a
production server is refused (its systems would book them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import exponent
from tillpay.domain.payment import Status
from tillpay.outbound import notify_url_problem
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, RefundView

#: The marker every id of a sample starts with.
MARK = "SAMPLE"

#: The window the per-minute limit counts in.
_MINUTE = timedelta(minutes=1)

#: The dialects a merchant's credentials cover, in the order samples are queued.
DIALECTS = ("mapi", "openapi", "antom")


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of notification a dialect sends: what it tells of, and the outbox event it is."""

    name: str
    event: str
    title: str


#: dialect → the kinds it sends. MAPI and Open Platform tell of a payment that succeeded and one that
#: closed unpaid (``services.payment_common.notify_payment``) and of each refund; MAPI marks a paid
#: payment's cancel as ``reverseAction``. Antom's in-store ``notifyPayment`` reports success only
#: (``protocols/antom/notify.py``), but its format defines a failed result, which a handler meets on
#: Antom's other products: the sample lets a merchant check its handler copes.
KINDS: dict[str, tuple[Kind, ...]] = {
    "mapi": (
        Kind("success", "payment", "trade_status_sync TRADE_SUCCESS"),
        Kind("closed", "payment", "trade_status_sync TRADE_CLOSED"),
        Kind("cancel", "refund", "trade_status_sync reverseAction (a paid payment cancelled)"),
        Kind("refund", "refund", "trade_status_sync refundFPAction"),
    ),
    "openapi": (
        Kind("success", "payment", "trade_status_sync TRADE_SUCCESS"),
        Kind("closed", "payment", "trade_status_sync TRADE_CLOSED"),
        Kind("refund", "refund", "trade_status_sync with refund_fee"),
    ),
    "antom": (
        Kind("success", "payment", "notifyPayment PAYMENT_RESULT success"),
        Kind("failure", "payment", "notifyPayment PAYMENT_RESULT failure"),
        Kind("refund", "refund", "notifyRefund REFUND_RESULT"),
    ),
}


@dataclass(frozen=True, slots=True)
class Queued:
    """A sample put in the outbox."""

    notify_id: str
    dialect: str
    kind: str
    title: str
    url: str


def allowed(p: Platform, merchant: Merchant) -> bool:
    """Whether samples may go to this merchant: a test merchant, or any merchant of a sandbox server."""
    return merchant.is_test or p.settings.sandbox


def _sample_id(length: int = 26) -> str:
    """``SAMPLE`` and random lower-case hex: never an id Tillpay hands out for a real payment."""
    return MARK + secrets.token_hex(length)[: length - len(MARK)]


def _payment(merchant: Merchant, kind: str, now: datetime, sign: str) -> PaymentView:
    cur = merchant.settlement_currency
    amount = 100 * 10 ** exponent(cur)  # 100.00 (100 in a currency without minor units)
    paid = kind in ("success", "cancel", "refund")
    status = Status.TRADE_SUCCESS if paid else Status.TRADE_CLOSED
    if kind == "cancel":
        status = Status.TRADE_CLOSED
    created = now - timedelta(minutes=5)
    return PaymentView(
        id=0,
        trade_no=f"{MARK}{now:%Y%m%d}{sign}",
        merchant_id=merchant.id,
        partner_trans_id=f"{MARK}-{kind}-{sign}",
        kind="barcode",
        dialect="sample",
        status=status,
        result_code=None
        if paid
        else (Code.USER_REJECTED if kind == "closed" else Code.BUYER_BALANCE_NOT_ENOUGH),
        subject="Sample notification: no money moved",
        price_amount=amount,
        price_currency=cur,
        settle_amount=amount,
        settle_currency=cur,
        wallet_amount=amount if paid else None,
        wallet_currency=cur if paid else None,
        settle_rate=Decimal(1),
        wallet_rate=Decimal(1) if paid else None,
        wallet_mid_rate=Decimal(1) if paid else None,
        margin_bps=0,
        margin_amount=0,
        refunded_price=amount // 4 if kind == "refund" else (amount if kind == "cancel" else 0),
        refunded_settle=amount // 4 if kind == "refund" else (amount if kind == "cancel" else 0),
        refunded_wallet=amount // 4 if kind == "refund" else (amount if kind == "cancel" else 0),
        buyer_id=f"{MARK}BUYER",
        buyer_login="sam***@sample.tillpay.test",
        created_at=created,
        expires_at=None,
        paid_at=created + timedelta(seconds=3) if paid else None,
        closed_at=now if status is Status.TRADE_CLOSED else None,
        store_id=f"{MARK}-STORE",
        terminal_id=f"{MARK}-T1",
    )


def payload(merchant: Merchant, kind: Kind, now: datetime) -> dict[str, object]:
    """The outbox payload of one sample, in the shape the dialects' renderers read."""
    sign = secrets.token_hex(6).upper()
    pay = _payment(merchant, kind.name, now, sign)
    if kind.event == "payment":
        return {"payment": pay.to_json()}
    refund = RefundView(
        id=0,
        refund_no=f"{MARK}{now:%Y%m%d}R{sign}",
        partner_refund_id=f"{MARK}-{kind.name}-{sign}",
        kind="cancel" if kind.name == "cancel" else "refund",
        price_amount=pay.refunded_price,
        price_currency=pay.price_currency,
        settle_amount=pay.refunded_settle,
        wallet_amount=pay.refunded_wallet,
        margin_amount=0,
        fx_gain=0,
        rate_policy="original",
        reason="Sample notification",
        created_at=now,
        payment=pay,
    )
    return {"refund": refund.to_json()}


def _sign_type(merchant: Merchant, dialect: str) -> str:
    """The sign type a real notification of this dialect would carry for this merchant."""
    if dialect == "mapi" and not merchant.public_key:
        return "MD5"  # an MD5-only merchant gets MD5-signed MAPI notifications
    if dialect == "mapi" and not merchant.allows("RSA2") and merchant.allows("MD5"):
        return "MD5"
    return "RSA2"


async def take_allowance(p: Platform, merchant_id: int, action: str = "samples") -> None:
    """Count one batch of samples against the merchant's per-minute limit; raise TRY_AGAIN (with when)
    if the limit is reached. Counted and checked in one transaction (store/windows.py). (Redeliver has
    limits of its own: ``store/outbox.redeliver``.)"""
    limit = p.settings.notify_samples_per_minute
    now = p.now()
    since = now - _MINUTE
    async with p.unit_of_work() as uow:
        # Concurrent requests see each other's rows: at most ``limit`` pass, however they are timed.
        await uow.merchants.lock_allowances()
        used = await uow.merchants.allowance_used(merchant_id, action, since)
        if wait := used.wait(limit, _MINUTE, now):
            raise TillpayError(
                Code.TRY_AGAIN,
                f"at most {limit} sample batches a minute for a merchant: try again in {wait} s",
            )
        await uow.merchants.use_allowance(merchant_id, action, now, since)
        await uow.commit()


async def send_samples(p: Platform, merchant: Merchant, dialects: tuple[str, ...] = DIALECTS) -> list[Queued]:
    """Queue one notification of each kind ``dialects`` send to the merchant's notify URL.

    Refused for a live merchant of a production server, without a notify URL, and past the rate limit.
    """
    if not allowed(p, merchant):
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            "samples are fake trades and go only to test credentials (or to any merchant of a sandbox "
            "server); this is a live merchant of a production server: use its test merchant "
            "(tillpay merchant test-credentials)",
        )
    unknown = [d for d in dialects if d not in KINDS]
    if unknown or not dialects:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"dialects are {', '.join(DIALECTS)}")
    url = merchant.notify_url
    if not url:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the merchant has no notify URL: set one first")
    if problem := notify_url_problem(p.settings, url):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"the notify URL {problem}")
    await take_allowance(p, merchant.id, "samples")
    now = p.now()
    queued: list[Queued] = []
    async with p.unit_of_work() as uow:
        for dialect in dialects:
            for kind in KINDS[dialect]:
                nid = _sample_id()
                await uow.outbox.enqueue(
                    notify_id=nid,
                    merchant_id=merchant.id,
                    url=url,
                    event=kind.event,
                    dialect=dialect,
                    payload=payload(merchant, kind, merchant.clock(now)),
                    now=now,
                    sign_type=_sign_type(merchant, dialect),
                )
                queued.append(Queued(nid, dialect, kind.name, kind.title, url))
        await uow.commit()
    return queued
