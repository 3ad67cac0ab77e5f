"""Settlement: close a business day per merchant, post it, pay out at T+N, and write the day's files.

A run for day D (``tillpay settle run --date D``):

1. refuses while D's cut-off has not passed;
2. per merchant and settlement currency, in one short transaction: a batch takes every payment paid and
   every refund made before the cut-off that no batch holds yet (so a refund after the cut-off, or one
   committed late, lands in the next batch), nets them, and posts payable → fee revenue (the fee) and
   payable → settlement clearing (the payout);
3. pays every scheduled payout whose value date (T+N) is D or earlier: clearing → bank, and one
   ISO 20022 pain.001 file for the run;
4. records the run: the day is closed. Running it again creates nothing and rewrites the same files,
   byte for byte, from what was stored (a file that would come out different is an error).

Items are inserted with ``INSERT ... SELECT`` and netted with ``GROUP BY`` inside the database, so a
day of a million transactions never passes through Python rows until the files are written, which
stream in chunks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    Integer,
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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.config import Settings
from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.services.platform import Platform
from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore
from tillpay.store.ledger import post_entry

log = structlog.get_logger("tillpay.settlement")

#: ``progress(stage, done, total)``: how far a long step is (the CLI draws bars from it).
Progress = Callable[[str, int, int], None]
#: Rows fetched per round trip while writing files.
CHUNK = 20_000


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class BatchView:
    """A settlement batch as the CLI, the API and the tests show it."""

    id: int
    partner_id: str
    merchant_name: str
    currency: str
    settle_date: date
    cutoff_at: datetime
    mdr_bps: int
    payment_count: int
    refund_count: int
    reversal_count: int
    payments_amount: int
    refunds_amount: int
    reversals_amount: int
    fee: int
    net: int
    carried_in: int
    payout_amount: int
    payout_date: date
    payout_status: str
    payout_run_date: date | None

    @property
    def end_to_end_id(self) -> str:
        """The payout's reference on the bank side."""
        return dom.end_to_end_id(self.settle_date, self.partner_id, self.currency)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts in minor units, dates as ISO text)."""
        return {
            "id": self.id,
            "partner_id": self.partner_id,
            "merchant_name": self.merchant_name,
            "currency": self.currency,
            "settle_date": self.settle_date.isoformat(),
            "cutoff_at": self.cutoff_at.isoformat(),
            "mdr_bps": self.mdr_bps,
            "payment_count": self.payment_count,
            "refund_count": self.refund_count,
            "reversal_count": self.reversal_count,
            "payments_amount": self.payments_amount,
            "refunds_amount": self.refunds_amount,
            "reversals_amount": self.reversals_amount,
            "fee": self.fee,
            "net": self.net,
            "carried_in": self.carried_in,
            "payout_amount": self.payout_amount,
            "payout_date": self.payout_date.isoformat(),
            "payout_status": self.payout_status,
            "payout_run_date": self.payout_run_date.isoformat() if self.payout_run_date else None,
            "end_to_end_id": self.end_to_end_id,
        }


@dataclass(frozen=True, slots=True)
class FileView:
    """A file of a closed day: its name below the settlement directory and its digest."""

    name: str
    kind: str
    settle_date: date
    partner_id: str | None
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "settle_date": self.settle_date.isoformat(),
            "partner_id": self.partner_id,
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did: the day's batches, the payouts it made, and the files."""

    settle_date: date
    cutoff_at: datetime
    rerun: bool
    batches: list[BatchView]
    payouts: list[BatchView]
    held: list[BatchView]
    files: list[FileView]


def _batch_query() -> Any:
    b, m = t.settlement_batches, t.merchants
    return select(b, m.c.partner_id).join(m, m.c.id == b.c.merchant_id)


def _batch(row: Any) -> BatchView:
    return BatchView(
        id=row.id,
        partner_id=row.partner_id,
        merchant_name=row.merchant_name,
        currency=row.currency,
        settle_date=row.settle_date,
        cutoff_at=row.cutoff_at,
        mdr_bps=row.mdr_bps,
        payment_count=row.payment_count,
        refund_count=row.refund_count,
        reversal_count=row.reversal_count,
        payments_amount=row.payments_amount,
        refunds_amount=row.refunds_amount,
        reversals_amount=row.reversals_amount,
        fee=row.fee,
        net=row.net,
        carried_in=row.carried_in,
        payout_amount=row.payout_amount,
        payout_date=row.payout_date,
        payout_status=row.payout_status,
        payout_run_date=row.payout_run_date,
    )


# -------------------------------------------------------------------------------------------- config


def _cfg_error(e: dom.SettlementConfigError) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, str(e))


def day_cutoff(p: Platform, day: date) -> datetime:
    """The UTC instant business day ``day`` closes, from the settings."""
    try:
        return dom.cutoff_at(day, p.settings.settlement_timezone, p.settings.settlement_cutoff)
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None


def last_closed_day(p: Platform) -> date:
    """The latest business day whose cut-off has passed."""
    try:
        today = dom.business_day(p.now(), p.settings.settlement_timezone, p.settings.settlement_cutoff)
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None
    return today - timedelta(days=1)


def settlement_dir(p: Platform, directory: str | Path | None = None) -> Path:
    """Where files are written: the argument, else the ``settlement_dir`` setting."""
    return settlement_dir_for(p.settings, directory)


def settlement_dir_for(settings: Settings, directory: str | Path | None = None) -> Path:
    """The settlement directory for ``settings`` (or the given one)."""
    return Path(directory or settings.settlement_dir)


async def set_fee(p: Platform, partner_id: str, bps: int | None) -> int:
    """Set a merchant's discount rate in basis points (None: back to the scheme default); returns it."""
    if bps is not None:
        try:
            dom.check_bps(bps)
        except dom.SettlementConfigError as e:
            raise _cfg_error(e) from None
    async with p.engine.begin() as conn:
        res = await conn.execute(
            update(t.merchants).where(t.merchants.c.partner_id == partner_id).values(mdr_bps=bps)
        )
    if res.rowcount != 1:
        raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown partner {partner_id!r}")
    return bps if bps is not None else p.settings.settlement_default_mdr_bps


async def set_account(p: Platform, partner_id: str, *, iban: str, bic: str | None, name: str | None) -> str:
    """Set the bank account a merchant's payouts go to; returns the normalised IBAN."""
    try:
        clean_iban = dom.check_iban(iban)
        clean_bic = dom.check_bic(bic) if bic else None
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None
    if name is not None and not name.strip():
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "an account holder name must not be empty")
    async with p.engine.begin() as conn:
        res = await conn.execute(
            update(t.merchants)
            .where(t.merchants.c.partner_id == partner_id)
            .values(payee_iban=clean_iban, payee_bic=clean_bic, payee_name=name.strip() if name else None)
        )
    if res.rowcount != 1:
        raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown partner {partner_id!r}")
    return clean_iban


# ------------------------------------------------------------------------------------------- the run


async def run_day(
    p: Platform,
    day: date | None = None,
    *,
    directory: str | Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Settle business day ``day`` (default: the last closed one), pay what is due, write the files."""
    prog = progress or _no_progress
    day = day or last_closed_day(p)
    cutoff = day_cutoff(p, day)
    if cutoff > p.now():
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            f"business day {day} closes at {cutoff.isoformat()}; it cannot be settled before that",
        )
    try:
        dom.payout_date(day, p.settings.settlement_days)
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None
    out = settlement_dir(p, directory)
    async with p.engine.connect() as conn:
        run = (
            await conn.execute(select(t.settlement_runs).where(t.settlement_runs.c.settle_date == day))
        ).first()
        await conn.rollback()
        rerun = run is not None
        if not rerun:
            await _settle_merchants(p, conn, day, cutoff, prog)
            try:
                await _pay_due(p, conn, day, cutoff)
            except IntegrityError:
                # Another process closed the same day at the same moment; its run stands, ours rolled back.
                log.warning("settlement run raced", day=str(day))
        batches = await _batches_of_day(conn, day)
        payouts = await _payouts_of_run(conn, day)
        held = [b for b in await _all_held(conn) if b.payout_date <= day]
        files = await _write_day_files(p, conn, day, out, batches, payouts, prog)
        await conn.rollback()
    log.info("settlement run", day=str(day), rerun=rerun, batches=len(batches), payouts=len(payouts))
    return RunResult(day, cutoff, rerun, batches, payouts, held, files)


async def _lower_bound(conn: AsyncConnection, p: Platform, day: date) -> datetime | None:
    prev = (
        await conn.execute(
            select(func.max(t.settlement_runs.c.cutoff_at)).where(t.settlement_runs.c.settle_date < day)
        )
    ).scalar()
    if prev is None:
        return None
    lower: datetime = prev - timedelta(days=p.settings.settlement_lookback_days)
    return lower


async def _settle_merchants(
    p: Platform, conn: AsyncConnection, day: date, cutoff: datetime, prog: Progress
) -> None:
    lower = await _lower_bound(conn, p, day)
    merchants = (
        await conn.execute(
            select(
                t.merchants.c.id,
                t.merchants.c.name,
                t.merchants.c.mcc,
                t.merchants.c.mdr_bps,
                t.merchants.c.settlement_currency,
            )
            # A test merchant is never in a live run: its days close by its own clock, into test
            # files only (services/sandbox_settlement.py).
            .where(t.merchants.c.test_of.is_(None))
            .order_by(t.merchants.c.id)
        )
    ).all()
    await conn.rollback()
    for i, m in enumerate(merchants):
        prog("settle", i, len(merchants))
        bps = m.mdr_bps if m.mdr_bps is not None else p.settings.settlement_default_mdr_bps
        currencies = await _currencies_due(conn, m.id, cutoff, lower)
        for currency in currencies:
            try:
                await _settle_one(p, conn, m, currency, bps, day, cutoff, lower)
            except IntegrityError:
                # A concurrent run settled this merchant's day (the batch or an item was taken first):
                # our transaction rolled back whole, theirs stands.
                log.warning("settlement batch raced", merchant=m.id, day=str(day))
    prog("settle", len(merchants), len(merchants))


async def _currencies_due(
    conn: AsyncConnection, merchant_id: int, cutoff: datetime, lower: datetime | None
) -> list[str]:
    pay = t.payments
    q = select(pay.c.settle_currency).where(
        pay.c.merchant_id == merchant_id,
        pay.c.paid_at.is_not(None),
        pay.c.paid_at < cutoff,
        _not_sandbox(pay),
    )
    if lower is not None:
        q = q.where(pay.c.paid_at >= lower)
    rq = (
        select(pay.c.settle_currency)
        .select_from(t.refunds.join(pay, pay.c.id == t.refunds.c.payment_id))
        .where(t.refunds.c.merchant_id == merchant_id, t.refunds.c.created_at < cutoff, _not_sandbox(pay))
    )
    if lower is not None:
        rq = rq.where(t.refunds.c.created_at >= lower)
    rows = (await conn.execute(q.distinct().union(rq.distinct()))).scalars().all()
    await conn.rollback()
    return sorted(set(rows))


def _not_sandbox(pay: Any) -> Any:
    """Payments not made by a sandbox wallet: made-up money is never settled (docs/security.md)."""
    u = t.wallet_users
    return ~exists().where(u.c.id == pay.c.user_id, u.c.sandbox.is_(True))


def _items_select(
    batch_id: int, merchant_id: int, currency: str, bps: int, cutoff: datetime, lower: datetime | None
) -> Any:
    """Every unsettled payment and refund of the merchant before the cut-off, as settlement items."""
    pay, ref, si = t.payments, t.refunds, t.settlement_items
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


_ITEM_COLUMNS = ["batch_id", "kind", "ref", "payment_id", "refund_id", "amount", "fee", "occurred_at"]


async def _settle_one(
    p: Platform,
    conn: AsyncConnection,
    m: Any,
    currency: str,
    bps: int,
    day: date,
    cutoff: datetime,
    lower: datetime | None,
) -> None:
    b = t.settlement_batches
    now = p.now()
    async with conn.begin():
        exists_already = (
            await conn.execute(
                select(b.c.id).where(
                    b.c.merchant_id == m.id, b.c.currency == currency, b.c.settle_date == day
                )
            )
        ).first()
        if exists_already is not None:
            return  # a run that stopped half-way is being resumed: this merchant is done
        prev = (
            await conn.execute(
                select(b.c.net, b.c.carried_in)
                .where(b.c.merchant_id == m.id, b.c.currency == currency, b.c.settle_date < day)
                .order_by(b.c.settle_date.desc())
                .limit(1)
            )
        ).first()
        carried_in = min(0, prev.net + prev.carried_in) if prev else 0
        batch_id = (
            await conn.execute(
                insert(b)
                .values(
                    merchant_id=m.id,
                    currency=currency,
                    settle_date=day,
                    cutoff_at=cutoff,
                    merchant_name=m.name,
                    mcc=m.mcc,
                    mdr_bps=bps,
                    payment_count=0,
                    refund_count=0,
                    reversal_count=0,
                    payments_amount=0,
                    refunds_amount=0,
                    reversals_amount=0,
                    fee=0,
                    net=0,
                    carried_in=carried_in,
                    payout_amount=0,
                    payout_date=dom.payout_date(day, p.settings.settlement_days),
                    payout_status="none",
                    created_at=now,
                )
                .returning(b.c.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(t.settlement_items).from_select(
                _ITEM_COLUMNS, _items_select(batch_id, m.id, currency, bps, cutoff, lower)
            )
        )
        si = t.settlement_items
        sums = (
            await conn.execute(
                select(si.c.kind, func.count(), func.sum(si.c.amount), func.sum(si.c.fee))
                .where(si.c.batch_id == batch_id)
                .group_by(si.c.kind)
            )
        ).all()
        if not sums:
            # Nothing new (everything before the cut-off was settled already): no batch.
            await conn.execute(delete(b).where(b.c.id == batch_id))
            return
        tot = dom.totals(
            {r[0]: int(r[1]) for r in sums},
            {r[0]: int(r[2]) for r in sums},
            {r[0]: int(r[3]) for r in sums},
            carried_in,
        )
        await conn.execute(
            update(b)
            .where(b.c.id == batch_id)
            .values(
                payment_count=tot.payment_count,
                refund_count=tot.refund_count,
                reversal_count=tot.reversal_count,
                payments_amount=tot.payments_amount,
                refunds_amount=tot.refunds_amount,
                reversals_amount=tot.reversals_amount,
                fee=tot.fee,
                net=tot.net,
                payout_amount=tot.payout_amount,
                payout_status="scheduled" if tot.payout_amount > 0 else "none",
            )
        )
        postings = dom.settlement_postings(m.id, currency, tot.fee, tot.payout_amount)
        if postings:
            await post_entry(
                conn,
                kind="settlement",
                ref=f"settlement:{batch_id}",
                postings=postings,
                now=now,
                memo=f"settlement {day} {currency}",
            )
    log.info("batch", merchant=m.id, day=str(day), currency=currency, net=tot.net, fee=tot.fee)


async def _pay_due(p: Platform, conn: AsyncConnection, day: date, cutoff: datetime) -> None:
    b, m = t.settlement_batches, t.merchants
    now = p.now()
    s = p.settings
    try:
        debtor_iban = dom.check_iban(s.payout_debtor_iban)
        debtor_bic = dom.check_bic(s.payout_debtor_bic)
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None
    async with conn.begin():
        due = (
            await conn.execute(
                select(b.c.id, b.c.currency, b.c.payout_amount, m.c.payee_iban, m.c.payee_bic, m.c.payee_name)
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
        paid = 0
        for row in due:
            if not row.payee_iban:
                await conn.execute(update(b).where(b.c.id == row.id).values(payout_status="held"))
                continue
            await conn.execute(
                update(b)
                .where(b.c.id == row.id)
                .values(
                    payout_status="paid",
                    payout_run_date=day,
                    paid_at=now,
                    payee_iban=row.payee_iban,
                    payee_bic=row.payee_bic,
                    payee_name=row.payee_name,
                )
            )
            await post_entry(
                conn,
                kind="payout",
                ref=f"payout:{row.id}",
                postings=dom.payout_postings(row.currency, row.payout_amount),
                now=now,
                memo=f"payout run {day}",
            )
            paid += 1
        batch_count = (
            await conn.execute(select(func.count()).select_from(b).where(b.c.settle_date == day))
        ).scalar_one()
        await conn.execute(
            insert(t.settlement_runs).values(
                settle_date=day,
                cutoff_at=cutoff,
                batch_count=batch_count,
                payout_count=paid,
                debtor_name=s.payout_debtor_name[:70],
                debtor_iban=debtor_iban,
                debtor_bic=debtor_bic,
                created_at=now,
            )
        )


async def _batches_of_day(conn: AsyncConnection, day: date) -> list[BatchView]:
    b = t.settlement_batches
    rows = (await conn.execute(_batch_query().where(b.c.settle_date == day).order_by(b.c.id))).all()
    return [_batch(r) for r in rows]


async def _payouts_of_run(conn: AsyncConnection, day: date) -> list[BatchView]:
    b = t.settlement_batches
    rows = (await conn.execute(_batch_query().where(b.c.payout_run_date == day).order_by(b.c.id))).all()
    return [_batch(r) for r in rows]


async def _all_held(conn: AsyncConnection) -> list[BatchView]:
    b = t.settlement_batches
    rows = (await conn.execute(_batch_query().where(b.c.payout_status == "held").order_by(b.c.id))).all()
    return [_batch(r) for r in rows]


# ----------------------------------------------------------------------------------------- the files


def _file_rows_query(batch_id: int, after: int, limit: int) -> Any:
    si, pay, ref = t.settlement_items, t.payments, t.refunds
    return (
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


def _file_row(r: Any, mcc: str, merchant_name: str) -> dom.FileRow:
    refund = r.kind == dom.REFUND
    return dom.FileRow(
        kind=r.kind,
        partner_transaction_id=r.partner_refund_id if refund else r.partner_trans_id,
        transaction_id=r.trade_no,
        amount=r.amount,
        fee=r.fee,
        currency=r.settle_currency,
        occurred_at=r.occurred_at,
        trans_currency=r.price_currency,
        trans_amount=r.price_amount if r.kind == dom.PAYMENT else r.refund_price_amount,
        forex_rate=r.settle_rate,
        mcc=mcc,
        merchant_name=merchant_name,
        store_id=r.store_id,
        terminal_id=r.terminal_id,
        payment_kind=r.payment_kind,
        secondary_merchant_id=r.secondary_merchant_id,
        secondary_merchant_name=r.secondary_merchant_name,
        secondary_merchant_industry=r.secondary_merchant_industry,
        store_name=r.store_name,
    )


class _Sink:
    """A file being written to a temporary name, hashed as it goes, renamed into place at the end."""

    def __init__(self, root: Path, name: str) -> None:
        import hashlib

        self.path = root / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "wb")
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.f.write(data)
        self.h.update(data)
        self.size += len(data)

    def close(self) -> tuple[str, int]:
        self.f.close()
        os.replace(self.tmp, self.path)
        digest = self.h.hexdigest()
        self.path.with_name(self.path.name + ".sha256").write_text(dom.digest_text(digest, self.path.name))
        return digest, self.size

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


async def _write_batch_files(
    p: Platform, conn: AsyncConnection, batch: BatchView, root: Path, prog: Progress
) -> list[tuple[str, str, str, int]]:
    b = t.settlement_batches
    meta = (await conn.execute(select(b.c.mcc, b.c.merchant_name).where(b.c.id == batch.id))).one()
    z = dom.zone(p.settings.settlement_timezone)
    total = batch.payment_count + batch.refund_count + batch.reversal_count
    tx_name, st_name = dom.file_names(batch.partner_id, batch.settle_date, batch.currency)
    tx, st = _Sink(root, tx_name), _Sink(root, st_name)
    try:
        tx.write(dom.transaction_header(batch.partner_id, batch.settle_date, total))
        tx.write(dom.column_line(dom.TRANSACTION_COLUMNS))
        st.write(dom.column_line(dom.SETTLEMENT_COLUMNS))
        after, done = 0, 0
        while True:
            rows = (await conn.execute(_file_rows_query(batch.id, after, CHUNK))).all()
            await conn.rollback()  # short read transactions: never hold SQLite's lock across chunks
            if not rows:
                break
            tx_lines, st_lines = [], []
            for r in rows:
                fr = _file_row(r, meta.mcc, meta.merchant_name)
                tx_lines.append(dom.transaction_line(fr, z))
                st_lines.append(dom.settlement_line(fr, batch.cutoff_at, z))
            tx.write("".join(tx_lines))
            st.write("".join(st_lines))
            after = rows[-1].id
            done += len(rows)
            prog(f"files {batch.partner_id}", done, total)
        if done != total:
            raise TillpayError(
                Code.SYSTEM_ERROR, f"batch {batch.id} holds {done} items but its totals count {total}"
            )
    except BaseException:
        tx.abort()
        st.abort()
        raise
    tx_digest, tx_size = tx.close()
    st_digest, st_size = st.close()
    return [
        (tx_name, "transaction", tx_digest, tx_size),
        (st_name, "settlement", st_digest, st_size),
    ]


async def _pain001(conn: AsyncConnection, day: date, payouts: list[BatchView]) -> bytes | None:
    if not payouts:
        return None
    run = (await conn.execute(select(t.settlement_runs).where(t.settlement_runs.c.settle_date == day))).one()
    b = t.settlement_batches
    accounts = {
        r.id: r
        for r in (
            await conn.execute(
                select(b.c.id, b.c.payee_name, b.c.payee_iban, b.c.payee_bic, b.c.merchant_name).where(
                    b.c.id.in_([x.id for x in payouts])
                )
            )
        ).all()
    }
    items = [
        dom.Payout(
            end_to_end_id=x.end_to_end_id,
            amount=x.payout_amount,
            currency=x.currency,
            value_date=x.payout_date if x.payout_date >= day else day,
            creditor_name=accounts[x.id].payee_name or accounts[x.id].merchant_name,
            creditor_iban=accounts[x.id].payee_iban,
            creditor_bic=accounts[x.id].payee_bic,
            remittance=f"Tillpay settlement {x.settle_date.isoformat()} partner {x.partner_id} {x.currency}",
        )
        for x in payouts
    ]
    return dom.render_pain001(
        message_id=f"TILLPAY-PAYOUT-{day.strftime('%Y%m%d')}",
        created_at=run.cutoff_at,
        debtor_name=run.debtor_name,
        debtor_iban=run.debtor_iban,
        debtor_bic=run.debtor_bic,
        payouts=items,
    )


async def _write_day_files(
    p: Platform,
    conn: AsyncConnection,
    day: date,
    root: Path,
    batches: list[BatchView],
    payouts: list[BatchView],
    prog: Progress,
) -> list[FileView]:
    written: list[tuple[str, str, str, int, BatchView | None]] = []
    for batch in batches:
        for name, kind, digest, size in await _write_batch_files(p, conn, batch, root, prog):
            written.append((name, kind, digest, size, batch))
    pain = await _pain001(conn, day, payouts)
    await conn.rollback()
    if pain is not None:
        name = dom.pain001_name(day)
        sink = _Sink(root, name)
        sink.write(pain.decode("utf-8"))
        digest, size = sink.close()
        written.append((name, "pain001", digest, size, None))
    f = t.settlement_files
    views = []
    async with conn.begin():
        recorded = {
            r.name: r.sha256
            for r in (await conn.execute(select(f.c.name, f.c.sha256).where(f.c.settle_date == day))).all()
        }
        merchant_ids = dict(
            (
                await conn.execute(
                    select(t.merchants.c.partner_id, t.merchants.c.id).where(
                        t.merchants.c.partner_id.in_({b.partner_id for b in batches} or {""})
                    )
                )
            ).all()
        )
        for name, kind, digest, size, owner in written:
            if name not in recorded:
                # ON CONFLICT DO NOTHING: a concurrent run of the same day may record it first.
                await conn.execute(
                    insert_ignore(conn, f, "name").values(
                        name=name,
                        kind=kind,
                        merchant_id=merchant_ids.get(owner.partner_id) if owner else None,
                        batch_id=owner.id if owner else None,
                        settle_date=day,
                        sha256=digest,
                        size=size,
                        created_at=p.now(),
                    )
                )
        recorded = {
            r.name: r.sha256
            for r in (await conn.execute(select(f.c.name, f.c.sha256).where(f.c.settle_date == day))).all()
        }
        for name, kind, digest, size, owner in written:
            if recorded.get(name) != digest:
                raise TillpayError(
                    Code.SYSTEM_ERROR,
                    f"{name} came out different from the file recorded when day {day} closed: "
                    "a closed day must never change; run tillpay audit",
                )
            views.append(FileView(name, kind, day, owner.partner_id if owner else None, digest, size))
    return views


# ------------------------------------------------------------------------------------------ listing


async def list_batches(
    p: Platform, *, day: date | None = None, partner_id: str | None = None, limit: int = 500
) -> list[BatchView]:
    """Batches, newest day first, optionally of one day and one merchant."""
    b, m = t.settlement_batches, t.merchants
    q = _batch_query()
    if day:
        q = q.where(b.c.settle_date == day)
    if partner_id:
        q = q.where(m.c.partner_id == partner_id)
    q = q.order_by(b.c.settle_date.desc(), b.c.id).limit(limit)
    async with p.engine.connect() as conn:
        return [_batch(r) for r in (await conn.execute(q)).all()]


async def list_files(
    p: Platform, *, day: date | None = None, partner_id: str | None = None, merchant_only: bool = False
) -> list[FileView]:
    """Recorded files, newest day first; ``merchant_only`` leaves out the bank's payout files."""
    f, m = t.settlement_files, t.merchants
    q = select(f, m.c.partner_id).outerjoin(m, m.c.id == f.c.merchant_id)
    if day:
        q = q.where(f.c.settle_date == day)
    if partner_id:
        q = q.where(m.c.partner_id == partner_id)
    if merchant_only:
        q = q.where(f.c.merchant_id.is_not(None))
    q = q.order_by(f.c.settle_date.desc(), f.c.name)
    async with p.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [FileView(r.name, r.kind, r.settle_date, r.partner_id, r.sha256, r.size) for r in rows]


async def file_for_merchant(
    p: Platform, partner_id: str, name: str, directory: str | Path | None = None
) -> tuple[FileView, Path]:
    """One of the merchant's files and where it is on disk; rewritten from the database if missing.

    NOT_FOUND for unknown names and for other merchants' files (never telling which).
    """
    files = [x for x in await list_files(p, partner_id=partner_id, merchant_only=True) if x.name == name]
    if not files:
        raise TillpayError(Code.NOT_FOUND, "no such file")
    view = files[0]
    path = settlement_dir(p, directory) / view.name
    if not path.exists():
        # Another server wrote it, or it was cleaned up: the day's files are reproducible byte for byte.
        await run_day(p, view.settle_date, directory=directory)
    return view, path


async def verify_files(p: Platform, day: date, directory: str | Path | None = None) -> list[str]:
    """Problems with a closed day's files on disk: missing, or a digest unlike the recorded one."""
    root = settlement_dir(p, directory)
    problems = []
    for view in await list_files(p, day=day):
        path = root / view.name
        if not path.exists():
            problems.append(f"{view.name}: missing")
            continue
        if dom.sha256_hex(path.read_bytes()) != view.sha256:
            problems.append(f"{view.name}: digest differs from the one recorded at close")
    return problems
