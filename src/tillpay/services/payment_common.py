"""What the payment use cases share: their commands, the amount check, reading a payment, its view,
the wallet lock, the ledger postings of a payment, and notifying a change through the outbox. The SQL is
the repositories' (store/payments.py, store/wallets.py, store/outbox.py); these steps run inside the
caller's unit of work (or reader), never a transaction of their own.

Locking order, everywhere: the customer's wallet row, then the payment row. A pay locks only the
customer's wallet; merchant-side balances are sums of append-only postings, never a hot row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from tillpay.domain import ledger, secmerchant
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import known_currency
from tillpay.domain.payment import Event, Status, transition
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView, PayOutcome
from tillpay.store.uow import Repositories, UnitOfWork

#: Largest amount one payment may carry, in major units (MAPI: 0.01 to 100000000.00).
MAX_MAJOR = 100_000_000


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
    #: The code as the till sent it, when ``code`` stands in for it (a magic code, docs/sandbox.md): a
    #: repeated request is compared with what the till sent.
    sent_code: str | None = None

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


def request_digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def check_amount(amount: int, currency: str) -> None:
    """Positive and at most 100,000,000 major units, in a known currency."""
    exp = known_currency(currency)
    if amount <= 0 or amount > MAX_MAJOR * 10**exp:
        raise TillpayError(Code.AMOUNT_OUT_OF_RANGE, f"amount must be above 0 and at most {MAX_MAJOR:,}")


# ---------------------------------------------------------------------------------------------- reads


async def payment_row(
    r: Repositories,
    merchant_id: int,
    *,
    partner_trans_id: str | None = None,
    trade_no: str | None = None,
    lock: bool = False,
) -> Row[Any] | None:
    """The merchant's payment by either id (``lock``: its row locked), or None."""
    if not trade_no and not partner_trans_id:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "give the merchant's or the gateway's transaction id")
    row: Row[Any] | None = await r.payments.of_merchant(
        merchant_id, partner_trans_id=partner_trans_id, trade_no=trade_no, lock=lock
    )
    return row


async def view_of(r: Repositories, row: Row[Any]) -> PaymentView:
    """The payment as its merchant and customer see it (with the customer's login id)."""
    login = await r.wallets.login_of(row.user_id) if row.user_id else None
    return PaymentView.from_row(row, login)


def outcome_of(view: PaymentView, *, replayed: bool = False) -> PayOutcome:
    if view.status is Status.WAIT_BUYER_PAY:
        return PayOutcome(view, Code.WAIT_BUYER_CONFIRM, replayed)
    if view.status is Status.TRADE_SUCCESS or view.paid_at is not None:
        return PayOutcome(view, None, replayed)
    return PayOutcome(view, view.result_code or Code.TRADE_HAS_CLOSE, replayed)


async def lock_wallet(uow: UnitOfWork, user_id: int) -> Any:
    """The customer's wallet row, locked (BUYER_NOT_EXIST if there is none)."""
    row = await uow.wallets.lock_wallet(user_id)
    if row is None:
        raise TillpayError(Code.BUYER_NOT_EXIST)
    return row


def payment_postings(
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


async def enqueue(
    p: Platform,
    uow: UnitOfWork,
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
    """Put a notification in the outbox on the connection of the caller's unit of work, in its
    transaction (so it exists iff the change does)."""
    if not url:
        return
    await uow.outbox.enqueue(
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


async def notify_payment(p: Platform, uow: UnitOfWork, payment_id: int, event: str) -> None:
    """Tell the payment's merchant of its change (as it stands now), in the unit of work's transaction."""
    row = await uow.payments.by_id(payment_id)
    if not row.notify_url:
        return
    if row.dialect in SUCCESS_ONLY_DIALECTS and row.status != Status.TRADE_SUCCESS.value:
        return
    view = await view_of(uow, row)
    await enqueue(
        p,
        uow,
        merchant_id=row.merchant_id,
        url=row.notify_url,
        event=event,
        dialect=row.dialect,
        payload={"payment": view.to_json()},
        payment_id=row.id,
        sign_type=row.sign_type,
    )


async def close_payment(
    p: Platform,
    uow: UnitOfWork,
    payment_id: int,
    event: Event,
    code: Code,
    *,
    notify: bool = True,
    now: datetime | None = None,
) -> None:
    """Move a payment to its closed state; ``now`` is the merchant's time (its test clock), else real."""
    new = transition(Status(await uow.payments.status_of(payment_id)), event)
    await uow.payments.change(payment_id, status=new.value, result_code=code.value, closed_at=now or p.now())
    if notify:
        await notify_payment(p, uow, payment_id, "payment")
