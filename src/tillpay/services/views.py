"""What the use cases return: plain snapshots that the dialects render."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Row

from tillpay.domain.errors import Code
from tillpay.domain.payment import Status


def buyer_user_id(user_id: int) -> str:
    """The customer's public 16-digit id, ``2088`` + 12 digits, as Alipay shows buyer ids."""
    return f"2088{user_id:012d}"


def mask_login(login_id: str) -> str:
    """A login id with its middle hidden, as Alipay shows ``alipay_buyer_login_id``."""
    name, at, domain = login_id.partition("@")
    if len(name) <= 2:
        masked = name[:1] + "***"
    else:
        masked = name[:3] + "***" + (name[-2:] if not at and len(name) > 7 else "")
    return masked + at + domain


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as every dialect can show it."""

    id: int
    trade_no: str
    merchant_id: int
    partner_trans_id: str
    kind: str
    dialect: str
    status: Status
    result_code: Code | None
    subject: str
    price_amount: int
    price_currency: str
    settle_amount: int
    settle_currency: str
    wallet_amount: int | None
    wallet_currency: str | None
    settle_rate: Decimal
    wallet_rate: Decimal | None
    wallet_mid_rate: Decimal | None
    margin_bps: int
    margin_amount: int
    refunded_price: int
    refunded_settle: int
    refunded_wallet: int
    buyer_id: str | None
    buyer_login: str | None
    created_at: datetime
    expires_at: datetime | None
    paid_at: datetime | None
    closed_at: datetime | None
    store_id: str | None
    terminal_id: str | None
    secondary_merchant_id: str | None = None
    secondary_merchant_name: str | None = None
    secondary_merchant_industry: str | None = None
    store_name: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any], login_id: str | None = None) -> PaymentView:
        """Build the view from a ``payments`` row (and the buyer's login id, if known)."""
        return cls(
            id=row.id,
            trade_no=row.trade_no,
            merchant_id=row.merchant_id,
            partner_trans_id=row.partner_trans_id,
            kind=row.kind,
            dialect=row.dialect,
            status=Status(row.status),
            result_code=Code(row.result_code) if row.result_code else None,
            subject=row.subject,
            price_amount=row.price_amount,
            price_currency=row.price_currency,
            settle_amount=row.settle_amount,
            settle_currency=row.settle_currency,
            wallet_amount=row.wallet_amount,
            wallet_currency=row.wallet_currency,
            settle_rate=Decimal(row.settle_rate),
            wallet_rate=Decimal(row.wallet_rate) if row.wallet_rate else None,
            wallet_mid_rate=Decimal(row.wallet_mid_rate) if row.wallet_mid_rate else None,
            margin_bps=row.margin_bps,
            margin_amount=row.margin_amount,
            refunded_price=row.refunded_price,
            refunded_settle=row.refunded_settle,
            refunded_wallet=row.refunded_wallet,
            buyer_id=buyer_user_id(row.user_id) if row.user_id else None,
            buyer_login=mask_login(login_id) if login_id else None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            paid_at=row.paid_at,
            closed_at=row.closed_at,
            store_id=row.store_id,
            terminal_id=row.terminal_id,
            secondary_merchant_id=row.secondary_merchant_id,
            secondary_merchant_name=row.secondary_merchant_name,
            secondary_merchant_industry=row.secondary_merchant_industry,
            store_name=row.store_name,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for the outbox and ``--json`` output)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
            elif isinstance(v, Decimal):
                d[k] = str(v)
        return d


@dataclass(frozen=True, slots=True)
class PayOutcome:
    """The answer to a pay: the payment, and why it is not (yet) a success, if it is not."""

    payment: PaymentView
    code: Code | None  # None: paid. WAIT_BUYER_CONFIRM: pending. Otherwise why it closed.
    replayed: bool = False  # True when this answers a repeated request


@dataclass(frozen=True, slots=True)
class RefundView:
    """A refund (or the refund half of a cancel) as every dialect can show it."""

    id: int
    refund_no: str
    partner_refund_id: str
    kind: str
    price_amount: int
    price_currency: str
    settle_amount: int
    wallet_amount: int
    margin_amount: int
    fx_gain: int
    rate_policy: str
    reason: str | None
    created_at: datetime
    payment: PaymentView

    @classmethod
    def from_row(cls, r: Row[Any], payment: PaymentView) -> RefundView:
        """Build the view from a ``refunds`` row and its payment's view."""
        return cls(
            id=r.id,
            refund_no=r.refund_no,
            partner_refund_id=r.partner_refund_id,
            kind=r.kind,
            price_amount=r.price_amount,
            price_currency=r.price_currency,
            settle_amount=r.settle_amount,
            wallet_amount=r.wallet_amount,
            margin_amount=r.margin_amount,
            fx_gain=r.fx_gain,
            rate_policy=r.rate_policy,
            reason=r.reason,
            created_at=r.created_at,
            payment=payment,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "id": self.id,
            "refund_no": self.refund_no,
            "partner_refund_id": self.partner_refund_id,
            "kind": self.kind,
            "price_amount": self.price_amount,
            "price_currency": self.price_currency,
            "settle_amount": self.settle_amount,
            "wallet_amount": self.wallet_amount,
            "margin_amount": self.margin_amount,
            "fx_gain": self.fx_gain,
            "rate_policy": self.rate_policy,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "payment": self.payment.to_json(),
        }


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What a cancel did: ``close`` (unpaid), ``refund`` (paid), or ``none`` (already closed or absent)."""

    action: str
    payment: PaymentView

    @property
    def reserved(self) -> bool:
        """True when no payment had used the merchant's id: the cancel only closed the id for good."""
        return self.payment.kind == "tombstone"
