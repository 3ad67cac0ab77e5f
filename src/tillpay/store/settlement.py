"""The settlement repository: runs, batches, items and files, and the reads of payments, refunds and
merchants that closing a business day needs.

Items are taken with ``INSERT ... SELECT`` and netted with ``GROUP BY`` inside the database, so a day of
a million transactions never passes through Python rows until the files are written, which read them in
chunks (:meth:`SettlementRepository.file_rows`). A sandbox wallet's payments and refunds are never
settled, and a test merchant is never in a live run (docs/security.md, docs/sandbox.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.domain import settlement as dom
from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore

_runs, _batches, _items, _files = (
    t.settlement_runs,
    t.settlement_batches,
    t.settlement_items,
    t.settlement_files,
)
_pay, _ref, _mer = t.payments, t.refunds, t.merchants

_ITEM_COLUMNS = ["batch_id", "kind", "ref", "payment_id", "refund_id", "amount", "fee", "occurred_at"]

#: A payment's columns in a test merchant's files (services/sandbox_settlement.py).
_TEST_COLUMNS = (
    _pay.c.id,
    _pay.c.partner_trans_id,
    _pay.c.trade_no,
    _pay.c.settle_amount,
    _pay.c.price_amount,
    _pay.c.price_currency,
    _pay.c.settle_currency,
    _pay.c.settle_rate,
    _pay.c.kind,
    _pay.c.store_id,
    _pay.c.terminal_id,
    _pay.c.secondary_merchant_id,
    _pay.c.secondary_merchant_name,
    _pay.c.secondary_merchant_industry,
    _pay.c.store_name,
)


def _not_sandbox(pay: Any) -> ColumnElement[bool]:
    """Payments not made by a sandbox wallet: made-up money is never settled (docs/security.md)."""
    u = t.wallet_users
    return ~exists().where(u.c.id == pay.c.user_id, u.c.sandbox.is_(True))


def _batch_query() -> Select[Any]:
    return select(_batches, _mer.c.partner_id).join(_mer, _mer.c.id == _batches.c.merchant_id)


def _items_select(
    batch_id: int, merchant_id: int, currency: str, bps: int, cutoff: datetime, lower: datetime | None
) -> Select[Any]:
    """Every unsettled payment and refund of the merchant before the cut-off, as settlement items."""
    pay, ref, si = _pay, _ref, _items
    pay_ref = literal("payment:") + cast(pay.c.id, String)
    # Integer arithmetic in the database: (amount * bps + 5000) / 10000 is amount x bps rounded half up
    # for non-negative amounts, exactly domain.settlement.payment_fee.
    fee_of_payment = (pay.c.settle_amount * bps + 5000) // 10000
    payments = select(
        literal(batch_id).label("batch_id"),
        literal(dom.PAYMENT).label("kind"),
        pay_ref.label("ref"),
        pay.c.id.label("payment_id"),
        cast(null(), Integer).label("refund_id"),
        pay.c.settle_amount.label("amount"),
        fee_of_payment.label("fee"),
        pay.c.paid_at.label("occurred_at"),
    ).where(
        pay.c.merchant_id == merchant_id,
        pay.c.settle_currency == currency,
        pay.c.paid_at.is_not(None),
        pay.c.paid_at < cutoff,
        ~exists().where(si.c.ref == pay_ref),
        _not_sandbox(pay),
    )
    refund_ref = literal("refund:") + cast(ref.c.id, String)
    earlier = si.alias("earlier")
    # A cancellation returns the fee the payment was charged: the settled item's fee if the payment was
    # settled in an earlier batch, else (same batch, same rate) the same formula.
    returned_fee = func.coalesce(
        select(earlier.c.fee)
        .where(earlier.c.ref == literal("payment:") + cast(ref.c.payment_id, String))
        .scalar_subquery(),
        fee_of_payment,
    )
    refunds = (
        select(
            literal(batch_id).label("batch_id"),
            case((ref.c.kind == "cancel", literal(dom.REVERSAL)), else_=literal(dom.REFUND)).label("kind"),
            refund_ref.label("ref"),
            ref.c.payment_id.label("payment_id"),
            ref.c.id.label("refund_id"),
            ref.c.settle_amount.label("amount"),
            case((ref.c.kind == "cancel", returned_fee), else_=literal(0)).label("fee"),
            ref.c.created_at.label("occurred_at"),
        )
        .select_from(ref.join(pay, pay.c.id == ref.c.payment_id))
        .where(
            ref.c.merchant_id == merchant_id,
            pay.c.settle_currency == currency,
            ref.c.created_at < cutoff,
            ~exists().where(si.c.ref == refund_ref),
            _not_sandbox(pay),
        )
    )
    if lower is not None:
        payments = payments.where(pay.c.paid_at >= lower)
        refunds = refunds.where(ref.c.created_at >= lower)
    both = union_all(payments, refunds).subquery("due")
    # Ordered so that item ids follow time: the files are written in id order, chunk by chunk.
    return select(both).order_by(both.c.occurred_at, both.c.kind, both.c.payment_id, both.c.refund_id)


class SettlementRepository:
    """Settlement runs, batches, items and files over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # Merchants' settlement terms.

    async def set_fee(self, partner_id: str, bps: int | None) -> bool:
        """Set a merchant's discount rate (None: the scheme default); False if there is no such partner."""
        res = await self.conn.execute(update(_mer).where(_mer.c.partner_id == partner_id).values(mdr_bps=bps))
        return res.rowcount == 1

    async def set_payee(self, partner_id: str, iban: str, bic: str | None, name: str | None) -> bool:
        """Set the bank account a merchant's payouts go to; False if there is no such partner."""
        res = await self.conn.execute(
            update(_mer)
            .where(_mer.c.partner_id == partner_id)
            .values(payee_iban=iban, payee_bic=bic, payee_name=name)
        )
        return res.rowcount == 1

    async def fee_of(self, merchant_id: int) -> int | None:
        """The merchant's own discount rate in basis points, or None (the scheme default)."""
        bps = (await self.conn.execute(select(_mer.c.mdr_bps).where(_mer.c.id == merchant_id))).scalar()
        return None if bps is None else int(bps)

    # Runs.

    async def run_of(self, day: date) -> Any:
        """The run that closed business day ``day``, or None."""
        return (await self.conn.execute(select(_runs).where(_runs.c.settle_date == day))).first()

    async def last_cutoff_before(self, day: date) -> datetime | None:
        """The latest cut-off of a run of a day before ``day``, or None."""
        last: datetime | None = (
            await self.conn.execute(select(func.max(_runs.c.cutoff_at)).where(_runs.c.settle_date < day))
        ).scalar()
        return last

    async def add_run(self, values: dict[str, Any]) -> None:
        """Record a run: the day is closed (IntegrityError if a concurrent run recorded it first)."""
        await self.conn.execute(insert(_runs).values(**values))

    # Batches and their items.

    async def live_merchants(self) -> list[Any]:
        """Every merchant a live run settles (never a test merchant), by id."""
        return list(
            (
                await self.conn.execute(
                    select(_mer.c.id, _mer.c.name, _mer.c.mcc, _mer.c.mdr_bps, _mer.c.settlement_currency)
                    # A test merchant is never in a live run: its days close by its own clock, into
                    # test files only (services/sandbox_settlement.py).
                    .where(_mer.c.test_of.is_(None))
                    .order_by(_mer.c.id)
                )
            ).all()
        )

    async def currencies_due(self, merchant_id: int, cutoff: datetime, lower: datetime | None) -> list[str]:
        """The settlement currencies of the merchant's payments and refunds before the cut-off (and from
        ``lower`` on, if given), sorted."""
        q = select(_pay.c.settle_currency).where(
            _pay.c.merchant_id == merchant_id,
            _pay.c.paid_at.is_not(None),
            _pay.c.paid_at < cutoff,
            _not_sandbox(_pay),
        )
        if lower is not None:
            q = q.where(_pay.c.paid_at >= lower)
        rq = (
            select(_pay.c.settle_currency)
            .select_from(_ref.join(_pay, _pay.c.id == _ref.c.payment_id))
            .where(_ref.c.merchant_id == merchant_id, _ref.c.created_at < cutoff, _not_sandbox(_pay))
        )
        if lower is not None:
            rq = rq.where(_ref.c.created_at >= lower)
        rows = (await self.conn.execute(q.distinct().union(rq.distinct()))).scalars().all()
        return sorted(set(rows))

    async def has_batch(self, merchant_id: int, currency: str, day: date) -> bool:
        """Whether the merchant's day in this currency has a batch already."""
        b = _batches
        q = select(b.c.id).where(
            b.c.merchant_id == merchant_id, b.c.currency == currency, b.c.settle_date == day
        )
        return (await self.conn.execute(q)).first() is not None

    async def previous_batch(self, merchant_id: int, currency: str, day: date) -> Any:
        """The net and carried-in amount of the merchant's latest batch before ``day``, or None."""
        b = _batches
        return (
            await self.conn.execute(
                select(b.c.net, b.c.carried_in)
                .where(b.c.merchant_id == merchant_id, b.c.currency == currency, b.c.settle_date < day)
                .order_by(b.c.settle_date.desc())
                .limit(1)
            )
        ).first()

    async def add_batch(self, values: dict[str, Any]) -> int:
        """Insert a batch; its id (IntegrityError if a concurrent run took the day first)."""
        return int(
            (await self.conn.execute(insert(_batches).values(**values).returning(_batches.c.id))).scalar_one()
        )

    async def take_items(
        self,
        batch_id: int,
        merchant_id: int,
        currency: str,
        bps: int,
        cutoff: datetime,
        lower: datetime | None,
    ) -> None:
        """Put every unsettled payment and refund of the merchant before the cut-off into the batch."""
        await self.conn.execute(
            insert(_items).from_select(
                _ITEM_COLUMNS, _items_select(batch_id, merchant_id, currency, bps, cutoff, lower)
            )
        )

    async def item_sums(self, batch_id: int) -> list[Any]:
        """Per item kind of the batch: (kind, count, amount, fee)."""
        si = _items
        return list(
            (
                await self.conn.execute(
                    select(si.c.kind, func.count(), func.sum(si.c.amount), func.sum(si.c.fee))
                    .where(si.c.batch_id == batch_id)
                    .group_by(si.c.kind)
                )
            ).all()
        )

    async def drop_batch(self, batch_id: int) -> None:
        """Delete a batch that took no item."""
        await self.conn.execute(delete(_batches).where(_batches.c.id == batch_id))

    async def set_batch(self, batch_id: int, **values: Any) -> None:
        """Change a batch's columns (its totals, its payout)."""
        await self.conn.execute(update(_batches).where(_batches.c.id == batch_id).values(**values))

    async def payouts_due(self, day: date) -> list[Any]:
        """Scheduled and held payouts of live merchants whose value date is ``day`` or earlier and that
        no run paid yet, by batch id, with the merchant's current bank account."""
        b, m = _batches, _mer
        return list(
            (
                await self.conn.execute(
                    select(
                        b.c.id, b.c.currency, b.c.payout_amount, m.c.payee_iban, m.c.payee_bic, m.c.payee_name
                    )
                    .join(m, m.c.id == b.c.merchant_id)
                    .where(
                        b.c.payout_status.in_(("scheduled", "held")),
                        b.c.payout_date <= day,
                        b.c.payout_run_date.is_(None),
                        m.c.test_of.is_(None),  # never a bank payout for a test merchant
                    )
                    .order_by(b.c.id)
                )
            ).all()
        )

    async def batch_count(self, day: date) -> int:
        """How many batches business day ``day`` has."""
        b = _batches
        return int(
            (
                await self.conn.execute(select(func.count()).select_from(b).where(b.c.settle_date == day))
            ).scalar_one()
        )

    # Batches as they are shown (with the merchant's partner id).

    async def batches_of_day(self, day: date) -> list[Any]:
        """The batches of business day ``day``, by id."""
        b = _batches
        return list(
            (await self.conn.execute(_batch_query().where(b.c.settle_date == day).order_by(b.c.id))).all()
        )

    async def payouts_of_run(self, day: date) -> list[Any]:
        """The batches whose payout the run of ``day`` paid, by id."""
        b = _batches
        return list(
            (await self.conn.execute(_batch_query().where(b.c.payout_run_date == day).order_by(b.c.id))).all()
        )

    async def with_payout(self, status: str) -> list[Any]:
        """Every batch whose payout has this status (``held``, ``paid``), by id."""
        b = _batches
        return list(
            (
                await self.conn.execute(_batch_query().where(b.c.payout_status == status).order_by(b.c.id))
            ).all()
        )

    async def batches(self, *, day: date | None, partner_id: str | None, limit: int) -> list[Any]:
        """Batches, newest day first, optionally of one day and one merchant."""
        b = _batches
        q = _batch_query()
        if day:
            q = q.where(b.c.settle_date == day)
        if partner_id:
            q = q.where(_mer.c.partner_id == partner_id)
        q = q.order_by(b.c.settle_date.desc(), b.c.id).limit(limit)
        return list((await self.conn.execute(q)).all())

    # The files.

    async def batch_merchant(self, batch_id: int) -> Any:
        """The MCC and merchant name a batch was settled under."""
        b = _batches
        return (await self.conn.execute(select(b.c.mcc, b.c.merchant_name).where(b.c.id == batch_id))).one()

    async def file_rows(self, batch_id: int, after: int, limit: int) -> list[Any]:
        """Up to ``limit`` items of the batch after item id ``after``, in id order, with their payment
        and refund."""
        si, pay, ref = _items, _pay, _ref
        q = (
            select(
                si.c.id,
                si.c.kind,
                si.c.amount,
                si.c.fee,
                si.c.occurred_at,
                pay.c.partner_trans_id,
                pay.c.trade_no,
                pay.c.price_amount,
                pay.c.price_currency,
                pay.c.settle_currency,
                pay.c.settle_rate,
                pay.c.kind.label("payment_kind"),
                pay.c.store_id,
                pay.c.terminal_id,
                pay.c.secondary_merchant_id,
                pay.c.secondary_merchant_name,
                pay.c.secondary_merchant_industry,
                pay.c.store_name,
                ref.c.partner_refund_id,
                ref.c.price_amount.label("refund_price_amount"),
            )
            .select_from(si.join(pay, pay.c.id == si.c.payment_id).outerjoin(ref, ref.c.id == si.c.refund_id))
            .where(si.c.batch_id == batch_id, si.c.id > after)
            .order_by(si.c.id)
            .limit(limit)
        )
        return list((await self.conn.execute(q)).all())

    async def payees(self, batch_ids: Iterable[int]) -> dict[int, Any]:
        """The bank account each batch's payout was paid to, by batch id."""
        b = _batches
        rows = (
            await self.conn.execute(
                select(b.c.id, b.c.payee_name, b.c.payee_iban, b.c.payee_bic, b.c.merchant_name).where(
                    b.c.id.in_(list(batch_ids))
                )
            )
        ).all()
        return {r.id: r for r in rows}

    async def recorded_files(self, day: date) -> dict[str, str]:
        """The files recorded for business day ``day``: name → SHA-256."""
        f = _files
        return {
            r.name: r.sha256
            for r in (
                await self.conn.execute(select(f.c.name, f.c.sha256).where(f.c.settle_date == day))
            ).all()
        }

    async def merchant_ids(self, partner_ids: set[str]) -> dict[str, int]:
        """Partner id → merchant id, for the given partners."""
        rows = (
            await self.conn.execute(
                select(_mer.c.partner_id, _mer.c.id).where(_mer.c.partner_id.in_(partner_ids or {""}))
            )
        ).all()
        return {r.partner_id: r.id for r in rows}

    async def record_file(self, values: dict[str, Any]) -> None:
        """Record a written file unless a concurrent run of the same day recorded it first."""
        await self.conn.execute(insert_ignore(self.conn, _files, "name").values(**values))

    async def files(self, *, day: date | None, partner_id: str | None, merchant_only: bool) -> list[Any]:
        """Recorded files with their merchant's partner id, newest day first; ``merchant_only`` leaves
        out the bank's payout files."""
        f = _files
        q = select(f, _mer.c.partner_id).outerjoin(_mer, _mer.c.id == f.c.merchant_id)
        if day:
            q = q.where(f.c.settle_date == day)
        if partner_id:
            q = q.where(_mer.c.partner_id == partner_id)
        if merchant_only:
            q = q.where(f.c.merchant_id.is_not(None))
        q = q.order_by(f.c.settle_date.desc(), f.c.name)
        return list((await self.conn.execute(q)).all())

    # A test merchant's days (services/sandbox_settlement.py): read, never stored.

    async def test_payments(self, merchant_id: int, upto: datetime) -> list[Any]:
        """The merchant's payments paid before ``upto``, in time order."""
        return list(
            (
                await self.conn.execute(
                    select(*_TEST_COLUMNS, _pay.c.paid_at)
                    .where(
                        _pay.c.merchant_id == merchant_id, _pay.c.paid_at.is_not(None), _pay.c.paid_at < upto
                    )
                    .order_by(_pay.c.paid_at, _pay.c.id)
                )
            ).all()
        )

    async def test_refunds(self, merchant_id: int, upto: datetime) -> list[Any]:
        """The merchant's refunds and cancellations made before ``upto``, in time order, with their
        payment."""
        return list(
            (
                await self.conn.execute(
                    select(
                        *_TEST_COLUMNS,
                        _ref.c.id.label("refund_id"),
                        _ref.c.kind.label("refund_kind"),
                        _ref.c.partner_refund_id,
                        _ref.c.settle_amount.label("refund_settle_amount"),
                        _ref.c.price_amount.label("refund_price_amount"),
                        _ref.c.created_at.label("refunded_at"),
                    )
                    .select_from(_ref.join(_pay, _pay.c.id == _ref.c.payment_id))
                    .where(_ref.c.merchant_id == merchant_id, _ref.c.created_at < upto)
                    .order_by(_ref.c.created_at, _ref.c.id)
                )
            ).all()
        )
