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

Items are inserted with ``INSERT ... SELECT`` and netted with ``GROUP BY`` inside the database
(store/settlement.py), so a day of a million transactions never passes through Python rows until the
files are written, which stream in chunks. Each step is its own unit of work or short reader; the
ledger entries go through ``store.ledger.post_entry``.
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
from sqlalchemy.exc import IntegrityError

from tillpay.config import Settings
from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.services.platform import Platform
from tillpay.store.uow import UnitOfWork

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
    """A file of a closed day: its name below the settlement directory and its digest.

    ``test``: a test merchant's test file (services/sandbox_settlement.py), made again on every run
    and never recorded.
    """

    name: str
    kind: str
    settle_date: date
    partner_id: str | None
    sha256: str
    size: int
    test: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (a test file's says ``test`` instead of naming its partner)."""
        if self.test:
            return {
                "name": self.name,
                "kind": self.kind,
                "settle_date": self.settle_date.isoformat(),
                "sha256": self.sha256,
                "size": self.size,
                "test": True,
            }
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


def batch_view(row: Any) -> BatchView:
    """A batch row (with its merchant's partner id) as a view."""
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
    async with p.unit_of_work() as uow:
        found = await uow.settlement.set_fee(partner_id, bps)
        await uow.commit()
    if not found:
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
    async with p.unit_of_work() as uow:
        found = await uow.settlement.set_payee(
            partner_id, clean_iban, clean_bic, name.strip() if name else None
        )
        await uow.commit()
    if not found:
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
    async with p.reader() as r:
        rerun = await r.settlement.run_of(day) is not None
    if not rerun:
        await _settle_merchants(p, day, cutoff, prog)
        try:
            await _pay_due(p, day, cutoff)
        except IntegrityError:
            # Another process closed the same day at the same moment; its run stands, ours rolled back.
            log.warning("settlement run raced", day=str(day))
    async with p.reader() as r:
        batches = [batch_view(x) for x in await r.settlement.batches_of_day(day)]
        payouts = [batch_view(x) for x in await r.settlement.payouts_of_run(day)]
        held = [b for b in map(batch_view, await r.settlement.with_payout("held")) if b.payout_date <= day]
    files = await _write_day_files(p, day, out, batches, payouts, prog)
    log.info("settlement run", day=str(day), rerun=rerun, batches=len(batches), payouts=len(payouts))
    return RunResult(day, cutoff, rerun, batches, payouts, held, files)


async def _settle_merchants(p: Platform, day: date, cutoff: datetime, prog: Progress) -> None:
    async with p.reader() as r:
        prev = await r.settlement.last_cutoff_before(day)
        lower = None if prev is None else prev - timedelta(days=p.settings.settlement_lookback_days)
        merchants = await r.settlement.live_merchants()
    for i, m in enumerate(merchants):
        prog("settle", i, len(merchants))
        bps = m.mdr_bps if m.mdr_bps is not None else p.settings.settlement_default_mdr_bps
        async with p.reader() as r:
            currencies = await r.settlement.currencies_due(m.id, cutoff, lower)
        for currency in currencies:
            try:
                await _settle_one(p, m, currency, bps, day, cutoff, lower)
            except IntegrityError:
                # A concurrent run settled this merchant's day (the batch or an item was taken first):
                # our transaction rolled back whole, theirs stands.
                log.warning("settlement batch raced", merchant=m.id, day=str(day))
    prog("settle", len(merchants), len(merchants))


async def _settle_one(
    p: Platform,
    m: Any,
    currency: str,
    bps: int,
    day: date,
    cutoff: datetime,
    lower: datetime | None,
) -> None:
    now = p.now()
    async with p.unit_of_work() as uow:
        tot = await _batch_once(p, uow, m, currency, bps, day, cutoff, lower, now)
        await uow.commit()
    if tot is not None:
        log.info("batch", merchant=m.id, day=str(day), currency=currency, net=tot.net, fee=tot.fee)


async def _batch_once(
    p: Platform,
    uow: UnitOfWork,
    m: Any,
    currency: str,
    bps: int,
    day: date,
    cutoff: datetime,
    lower: datetime | None,
    now: datetime,
) -> dom.Totals | None:
    """The merchant's batch of the day in one currency, netted and posted; None if it made none."""
    repo = uow.settlement
    if await repo.has_batch(m.id, currency, day):
        return None  # a run that stopped half-way is being resumed: this merchant is done
    prev = await repo.previous_batch(m.id, currency, day)
    carried_in = min(0, prev.net + prev.carried_in) if prev else 0
    batch_id = await repo.add_batch(
        dict(
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
    )
    await repo.take_items(batch_id, m.id, currency, bps, cutoff, lower)
    sums = await repo.item_sums(batch_id)
    if not sums:
        # Nothing new (everything before the cut-off was settled already): no batch.
        await repo.drop_batch(batch_id)
        return None
    tot = dom.totals(
        {r[0]: int(r[1]) for r in sums},
        {r[0]: int(r[2]) for r in sums},
        {r[0]: int(r[3]) for r in sums},
        carried_in,
    )
    await repo.set_batch(
        batch_id,
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
    postings = dom.settlement_postings(m.id, currency, tot.fee, tot.payout_amount)
    if postings:
        await uow.ledger.post(
            kind="settlement",
            ref=f"settlement:{batch_id}",
            postings=postings,
            now=now,
            memo=f"settlement {day} {currency}",
        )
    return tot


async def _pay_due(p: Platform, day: date, cutoff: datetime) -> None:
    now = p.now()
    s = p.settings
    try:
        debtor_iban = dom.check_iban(s.payout_debtor_iban)
        debtor_bic = dom.check_bic(s.payout_debtor_bic)
    except dom.SettlementConfigError as e:
        raise _cfg_error(e) from None
    async with p.unit_of_work() as uow:
        repo = uow.settlement
        paid = 0
        for row in await repo.payouts_due(day):
            if not row.payee_iban:
                await repo.set_batch(row.id, payout_status="held")
                continue
            await repo.set_batch(
                row.id,
                payout_status="paid",
                payout_run_date=day,
                paid_at=now,
                payee_iban=row.payee_iban,
                payee_bic=row.payee_bic,
                payee_name=row.payee_name,
            )
            await uow.ledger.post(
                kind="payout",
                ref=f"payout:{row.id}",
                postings=dom.payout_postings(row.currency, row.payout_amount),
                now=now,
                memo=f"payout run {day}",
            )
            paid += 1
        await repo.add_run(
            dict(
                settle_date=day,
                cutoff_at=cutoff,
                batch_count=await repo.batch_count(day),
                payout_count=paid,
                debtor_name=s.payout_debtor_name[:70],
                debtor_iban=debtor_iban,
                debtor_bic=debtor_bic,
                created_at=now,
            )
        )
        await uow.commit()


# ----------------------------------------------------------------------------------------- the files


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
    p: Platform, batch: BatchView, root: Path, prog: Progress
) -> list[tuple[str, str, str, int]]:
    async with p.reader() as r:
        meta = await r.settlement.batch_merchant(batch.id)
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
            # A reader per chunk: short read transactions, never holding SQLite's lock across chunks.
            async with p.reader() as r:
                rows = await r.settlement.file_rows(batch.id, after, CHUNK)
            if not rows:
                break
            tx_lines, st_lines = [], []
            for row in rows:
                fr = _file_row(row, meta.mcc, meta.merchant_name)
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


async def _pain001(p: Platform, day: date, payouts: list[BatchView]) -> bytes | None:
    if not payouts:
        return None
    async with p.reader() as r:
        run = await r.settlement.run_of(day)
        accounts = await r.settlement.payees(x.id for x in payouts)
    if run is None:  # payouts of a run are only ever made by recording the run
        raise TillpayError(Code.SYSTEM_ERROR, f"day {day} has payouts but no run")
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
    day: date,
    root: Path,
    batches: list[BatchView],
    payouts: list[BatchView],
    prog: Progress,
) -> list[FileView]:
    written: list[tuple[str, str, str, int, BatchView | None]] = []
    for batch in batches:
        for name, kind, digest, size in await _write_batch_files(p, batch, root, prog):
            written.append((name, kind, digest, size, batch))
    pain = await _pain001(p, day, payouts)
    if pain is not None:
        name = dom.pain001_name(day)
        sink = _Sink(root, name)
        sink.write(pain.decode("utf-8"))
        digest, size = sink.close()
        written.append((name, "pain001", digest, size, None))
    views = []
    async with p.unit_of_work() as uow:
        repo = uow.settlement
        recorded = await repo.recorded_files(day)
        merchant_ids = await repo.merchant_ids({b.partner_id for b in batches})
        for name, kind, digest, size, owner in written:
            if name not in recorded:
                # ON CONFLICT DO NOTHING: a concurrent run of the same day may record it first.
                await repo.record_file(
                    dict(
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
        recorded = await repo.recorded_files(day)
        for name, kind, digest, size, owner in written:
            if recorded.get(name) != digest:
                raise TillpayError(
                    Code.SYSTEM_ERROR,
                    f"{name} came out different from the file recorded when day {day} closed: "
                    "a closed day must never change; run tillpay audit",
                )
            views.append(FileView(name, kind, day, owner.partner_id if owner else None, digest, size))
        await uow.commit()
    return views


# ------------------------------------------------------------------------------------------ listing


async def list_batches(
    p: Platform, *, day: date | None = None, partner_id: str | None = None, limit: int = 500
) -> list[BatchView]:
    """Batches, newest day first, optionally of one day and one merchant."""
    async with p.reader() as r:
        rows = await r.settlement.batches(day=day, partner_id=partner_id, limit=limit)
    return [batch_view(x) for x in rows]


async def list_files(
    p: Platform, *, day: date | None = None, partner_id: str | None = None, merchant_only: bool = False
) -> list[FileView]:
    """Recorded files, newest day first; ``merchant_only`` leaves out the bank's payout files."""
    async with p.reader() as r:
        rows = await r.settlement.files(day=day, partner_id=partner_id, merchant_only=merchant_only)
    return [FileView(x.name, x.kind, x.settle_date, x.partner_id, x.sha256, x.size) for x in rows]


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
