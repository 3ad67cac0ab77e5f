"""``tillpay simulate``: a realistic business day of N transactions, and the merchants' own journals.

The day: several merchants in several currencies (some orders priced in CNY), customers with CNY and
USD wallets, opening hours with a lunch and an evening peak, ticket sizes that vary by currency, large
tickets the customer confirms with a PIN (and sometimes rejects), cancellations a few seconds after a
payment, partial refunds later in the day (some after the cut-off, when it is earlier than 23:30).

Two ways to write it, the same rules either way:

- through the services (default): every payment is ``payments.pay`` with a real payment code made
  for the simulated minute, every confirmation ``payments.confirm``, every cancellation
  ``payments.cancel`` and every refund ``payments.refund``, with the platform clock set to the
  simulated time. A few hundred transactions a second.
- ``bulk``: for a million transactions. Rows are computed with the same domain rules (quotes,
  ``refund_shares``, ``ledger.transfer`` checked by ``ledger.check_balanced``) and written in large
  batches, each batch one database transaction whose ledger entries go through the ledger writer's
  batch form (``store.ledger.post_entries``: balanced entries, the overdraft guard per wallet); only
  simulated data is written this way, and ``tillpay audit`` holds afterwards. Codes, risk checks and
  notifications are skipped.

Each merchant's journal is written as the merchant's ECR would have kept it, in the CSV layout that
``tillpay reconcile`` reads (docs/settlement.md).
"""

from __future__ import annotations

import csv
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import structlog

from tillpay.domain import ledger, paycode, risk
from tillpay.domain import settlement as sdom
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.fx import make_quote
from tillpay.domain.money import exponent, format_amount
from tillpay.domain.payment import refund_shares
from tillpay.services import fx, merchants, payments, settlement, wallets
from tillpay.services.payments import PayCommand, RefundCommand
from tillpay.services.platform import Merchant, Platform
from tillpay.services.security import hash_secret
from tillpay.services.views import PayOutcome
from tillpay.store import ledger as ledger_store
from tillpay.store.simulation import set_sqlite_synchronous

log = structlog.get_logger("tillpay.simulate")

Progress = Callable[[str, int, int], None]

CURRENCIES = ("USD", "EUR", "JPY", "SGD", "HKD")
RATES = (
    ("USD", "CNY", "7.1023"),
    ("EUR", "CNY", "7.7461"),
    ("USD", "JPY", "151.37"),
    ("USD", "SGD", "1.3412"),
    ("USD", "HKD", "7.7812"),
    ("EUR", "USD", "1.0906"),
)
#: Median ticket in major units per currency (a coffee to a lunch).
TYPICAL = {"USD": 18, "EUR": 16, "JPY": 2400, "SGD": 24, "HKD": 140, "CNY": 120}
#: Relative traffic per local hour from 08:00 to 21:00.
HOURLY = (3, 5, 6, 7, 12, 12, 7, 6, 6, 8, 11, 11, 8, 4)
SIM_PIN = "246810"
SIM_PARTNER_PREFIX = "208899"


class SimClock:
    """The simulated time; the platform reads it while the day is played."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at


@dataclass
class SimMerchant:
    """A merchant taking part, and its journal."""

    merchant: Merchant
    journal: list[dict[str, str]] = field(default_factory=list)


@dataclass
class SimResult:
    """What a simulated day produced."""

    day: date
    merchants: list[Merchant]
    payments: int = 0
    failed: int = 0
    refunds: int = 0
    cancels: int = 0
    journals: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "day": self.day.isoformat(),
            "merchants": [
                {
                    "partner_id": m.partner_id,
                    "name": m.name,
                    "currency": m.settlement_currency,
                    "md5_key": m.md5_key,
                }
                for m in self.merchants
            ],
            "payments": self.payments,
            "failed": self.failed,
            "refunds": self.refunds,
            "cancels": self.cancels,
            "journals": [str(j) for j in self.journals],
        }


def _noop(stage: str, done: int, total: int) -> None:
    return None


# ------------------------------------------------------------------------------------------- set-up


async def _merchants(p: Platform, count: int, extra: list[str]) -> list[Merchant]:
    out = []
    for i in range(1, count + 1):
        pid = f"{SIM_PARTNER_PREFIX}{i:010d}"
        try:
            m = await p.merchant_by_partner(pid, fresh=True)
        except TillpayError:
            cur = CURRENCIES[(i - 1) % len(CURRENCIES)]
            m = (
                await merchants.add_merchant(
                    p,
                    name=f"Sim Store {i} ({cur})",
                    settlement_currency=cur,
                    partner_id=pid,
                    mcc=("5812", "5411", "5732", "5999")[i % 4],
                )
            ).merchant
            await settlement.set_fee(p, pid, 150 + 25 * (i % 5))
            iban = sdom.make_iban("DE", f"{37040044:08d}{i:010d}")
            await settlement.set_account(p, pid, iban=iban, bic="COBADEFFXXX", name=f"Sim Store {i} GmbH")
        out.append(m)
    for pid in extra:
        out.append(await p.merchant_by_partner(pid, fresh=True))
    if not out:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "simulate needs at least one merchant")
    return out


@dataclass
class SimCustomer:
    user_id: int
    login: str
    currency: str
    device_id: int
    device_no: int
    secret: bytes
    balance: int


async def _customers(p: Platform, count: int) -> list[SimCustomer]:
    """Customers ``sim-N@tillpay.test`` (reused if present), each funded with plenty."""
    out = []
    pin_hash: str | None = None
    for i in range(count):
        login = f"sim-{i}@tillpay.test"
        currency = "USD" if i % 10 == 9 else "CNY"
        try:
            user = await wallets.user_by_login(p, login)
        except TillpayError:
            # Simulated customers share one scrypt hash of the simulation PIN (salted once) instead of
            # ~0.1 s of hashing each; the row is the one wallets.add_user writes, the device and the
            # funding go through the wallet services.
            pin_hash = pin_hash or hash_secret(SIM_PIN)
            async with p.unit_of_work() as uow:
                await uow.wallets.add_user(
                    dict(
                        login_id=login,
                        name=f"Sim {i}",
                        currency=currency,
                        pin_hash=pin_hash,
                        balance=0,
                        status="active",
                        created_at=p.now(),
                    )
                )
                await uow.commit()
            user = await wallets.user_by_login(p, login)
            await wallets.add_device(p, user.id)
        funding = 5_000_000 * 10 ** exponent(user.currency)
        if user.balance < funding // 2:
            user = await wallets.topup(p, login, funding - user.balance)
        devices = [d for d in await wallets.devices_of(p, user.id) if d.status == "active"]
        if not devices:
            devices = [await wallets.add_device(p, user.id)]
        d = devices[0]
        out.append(SimCustomer(user.id, login, user.currency, d.id, d.device_no, d.secret, user.balance))
    return out


# ------------------------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    """One order of the day and what will happen to it."""

    index: int
    at: datetime
    merchant: int
    customer: int
    price_currency: str
    amount: int
    big: bool
    reject: bool
    cancel_after: int | None
    refunds: list[tuple[int, int]]  # (seconds after payment, share of the price in percent)


def _ticket(rng: random.Random, currency: str) -> int:
    typical = TYPICAL.get(currency, 20)
    major = typical * math.exp(
        rng.gauss(0, 0.7)
    )  # float-ok: a random ticket size, turned into minor units below
    exp = exponent(currency)
    scale: int = 10**exp
    minor = max(scale, round(major * scale))
    if exp:  # prices end in .x0 or .x5, mostly
        minor = max(5, minor - minor % 5)
    return minor


def plan_day(
    day: date,
    n: int,
    n_merchants: int,
    customers: list[SimCustomer],
    currencies: list[str],
    tz: str,
    seed: int,
) -> list[Plan]:
    """The orders of a day, in time order (deterministic for a seed)."""
    rng = random.Random(seed)
    z = sdom.zone(tz)
    opening = datetime.combine(day, time(8, 0), z)
    # Refunds stay within the day's trading hours (before 23:30): with an earlier cut-off, the last
    # ones fall into the next business day, as late refunds do.
    last_refund = datetime.combine(day, time(23, 30), z).astimezone(UTC)
    weights = [w for w in HOURLY for _ in range(60)]
    minutes = rng.choices(range(len(weights)), weights=weights, k=n)
    minutes.sort()
    merchant_weights = [1 / (i + 1) ** 0.5 for i in range(n_merchants)]
    plans = []
    for i, minute in enumerate(minutes):
        at = (opening + timedelta(minutes=minute, seconds=rng.randrange(60))).astimezone(UTC)
        m = rng.choices(range(n_merchants), weights=merchant_weights)[0]
        settle_cur = currencies[m]
        price_cur = "CNY" if rng.random() < 0.08 and settle_cur != "CNY" else settle_cur
        big = rng.random() < 0.01
        amount = _ticket(rng, price_cur) * (12 if big else 1)
        cancel = rng.randrange(5, 60) if rng.random() < 0.03 else None
        refunds: list[tuple[int, int]] = []
        room = int((last_refund - at).total_seconds())
        if cancel is None and rng.random() < 0.05 and room > 600:
            first = min(rng.randrange(300, 6 * 3600), room - 300)
            refunds.append((first, rng.randrange(10, 60)))
            if rng.random() < 0.2:
                refunds.append((min(first + rng.randrange(60, 3600), room), rng.randrange(5, 30)))
        plans.append(
            Plan(
                i,
                at,
                m,
                rng.randrange(len(customers)),
                price_cur,
                amount,
                big,
                big and rng.random() < 0.2,
                cancel,
                refunds,
            )
        )
    return plans


def _refund_amount(plan: Plan, share: int, left: int) -> int:
    exp = exponent(plan.price_currency)
    amount = plan.amount * share // 100
    if exp:
        amount -= amount % 5
    return max(1, min(amount, left))


# ------------------------------------------------------------------------------------------ journals


def _journal_row(
    kind: str, ptid: str, prid: str, trade_no: str, amount: int, currency: str, status: str, at: datetime
) -> dict[str, str]:
    return {
        "record_type": kind,
        "partner_transaction_id": ptid,
        "partner_refund_id": prid,
        "transaction_id": trade_no,
        "amount": format_amount(amount, currency),
        "currency": currency,
        "status": status,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fee": "",
        "_at": at,  # type: ignore[dict-item]  # dropped when written; groups records by business day
    }


JOURNAL_HEADER = (
    "record_type",
    "partner_transaction_id",
    "partner_refund_id",
    "transaction_id",
    "amount",
    "currency",
    "status",
    "time",
    "fee",
)


def _write_journals(directory: Path, sims: list[SimMerchant], tz: str, cutoff: str) -> list[Path]:
    """One journal per merchant and business day (a refund after the cut-off belongs to the next day)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in sims:
        by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
        for row in s.journal:
            by_day[sdom.business_day(row["_at"], tz, cutoff)].append(row)  # type: ignore[arg-type]
        for d, rows in sorted(by_day.items()):
            path = directory / f"journal_{s.merchant.partner_id}_{d.strftime('%Y%m%d')}.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=JOURNAL_HEADER, lineterminator="\n", extrasaction="ignore")
                w.writeheader()
                w.writerows(
                    sorted(rows, key=lambda r: (r["time"], r["record_type"], r["partner_transaction_id"]))
                )
            paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------- the day


async def simulate(
    p: Platform,
    day: date,
    n: int,
    *,
    n_merchants: int = 3,
    partners: list[str] | None = None,
    seed: int = 1,
    bulk: bool = False,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
) -> SimResult:
    """Play a day of ``n`` orders; write the merchants' journals into ``journal_dir`` if given."""
    if n <= 0:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "simulate at least one transaction")
    if n_merchants < 0 or (n_merchants == 0 and not partners):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "simulate needs at least one merchant")
    prog = progress or _noop
    real_clock = p.clock
    tz = p.settings.settlement_timezone
    start = datetime.combine(day, time(7, 0), sdom.zone(tz)).astimezone(UTC)
    clock = SimClock(start - timedelta(days=1))
    p.clock = clock
    await _durability(p, "NORMAL")
    try:
        for base, quote, rate in RATES:
            await fx.set_rate(p, base, quote, rate, effective_at=start - timedelta(days=1))
        ms = await _merchants(p, n_merchants, partners or [])
        prefix = f"SIM{day.strftime('%Y%m%d')}-{seed}-"
        async with p.reader() as r:
            taken = await r.simulation.payments_prefixed(prefix)
        if taken:
            raise TillpayError(
                Code.ALREADY_EXISTS, f"day {day} was already simulated with seed {seed}; pick another --seed"
            )
        customers = await _customers(p, max(50, min(2000, n // 500)))
        plans = plan_day(day, n, len(ms), customers, [m.settlement_currency for m in ms], tz, seed)
        sims = [SimMerchant(m) for m in ms]
        result = SimResult(day, ms)
        if bulk:
            await _bulk(p, plans, prefix, sims, customers, result, prog)
        else:
            await _through_services(p, clock, plans, prefix, sims, customers, result, prog)
        if journal_dir is not None:
            result.journals = _write_journals(journal_dir, sims, tz, p.settings.settlement_cutoff)
        return result
    finally:
        p.clock = real_clock
        p.forget_rates()
        await _durability(p, "FULL")


async def _durability(p: Platform, level: str) -> None:
    """SQLite: simulated days commit without an fsync each (WAL, ``synchronous=NORMAL``).

    A crash can lose the last simulated transactions but never corrupts the database; real traffic
    keeps ``FULL``. The pool holds one connection, so the setting applies to every use case that
    runs while the day is simulated. PostgreSQL is left as configured.
    """
    await set_sqlite_synchronous(p.engine, level)


async def _through_services(
    p: Platform,
    clock: SimClock,
    plans: list[Plan],
    prefix: str,
    sims: list[SimMerchant],
    customers: list[SimCustomer],
    result: SimResult,
    prog: Progress,
) -> None:
    import heapq

    # Events: (time, order, seq, action); orders act in time order, each order's steps in sequence.
    events: list[tuple[datetime, int, int, str, Any]] = [(pl.at, pl.index, 0, "pay", None) for pl in plans]
    heapq.heapify(events)
    slots: dict[tuple[int, int], int] = defaultdict(int)
    paid: dict[int, tuple[str, int]] = {}  # order → (trade_no, price left to refund)
    done = 0
    seq = 1
    while events:
        at, idx, _, action, arg = heapq.heappop(events)
        plan = plans[idx]
        clock.at = at
        sim = sims[plan.merchant]
        m = sim.merchant
        ptid = f"{prefix}{idx:07d}"
        if action == "pay":
            done += 1
            if done % 200 == 0:
                prog("simulate", done, len(plans))
            outcome = await _pay_with_code(p, m, plan, ptid, customers, slots, at)
            if outcome is None:
                result.failed += 1
                sim.journal.append(
                    _journal_row("PAYMENT", ptid, "", "", plan.amount, plan.price_currency, "FAILED", at)
                )
                continue
            if outcome.code is Code.WAIT_BUYER_CONFIRM:
                heapq.heappush(
                    events, (at + timedelta(seconds=25), idx, seq, "confirm", outcome.payment.trade_no)
                )
                seq += 1
                continue
            if outcome.code is not None:
                result.failed += 1
                sim.journal.append(
                    _journal_row(
                        "PAYMENT",
                        ptid,
                        "",
                        outcome.payment.trade_no,
                        plan.amount,
                        plan.price_currency,
                        "FAILED",
                        at,
                    )
                )
                continue
            seq = _after_payment(events, plan, at, outcome.payment.trade_no, paid, seq)
            result.payments += 1
            sim.journal.append(
                _journal_row(
                    "PAYMENT",
                    ptid,
                    "",
                    outcome.payment.trade_no,
                    plan.amount,
                    plan.price_currency,
                    "SUCCESS",
                    at,
                )
            )
        elif action == "confirm":
            c = customers[plan.customer]
            if plan.reject:
                view = await payments.reject(p, c.user_id, arg)
            else:
                view = await payments.confirm(p, c.user_id, SIM_PIN, arg)
            ok = view.paid_at is not None
            first_at = plan.at
            sim.journal.append(
                _journal_row(
                    "PAYMENT",
                    ptid,
                    "",
                    view.trade_no,
                    plan.amount,
                    plan.price_currency,
                    "SUCCESS" if ok else "FAILED",
                    first_at,
                )
            )
            if ok:
                result.payments += 1
                seq = _after_payment(events, plan, at, view.trade_no, paid, seq)
            else:
                result.failed += 1
        elif action == "cancel":
            trade_no, left = paid[idx]
            cancelled = await payments.cancel(p, m, partner_trans_id=ptid)
            if cancelled.action == "refund":
                result.cancels += 1
                sim.journal.append(
                    _journal_row("REVERSAL", ptid, "", trade_no, left, plan.price_currency, "SUCCESS", at)
                )
                paid[idx] = (trade_no, 0)
        elif action == "refund":
            trade_no, left = paid[idx]
            n_refund, share = arg
            if left <= 0:
                continue
            amount = _refund_amount(plan, share, left)
            prid = f"{ptid}-R{n_refund}"
            await payments.refund(
                p,
                RefundCommand(
                    merchant=m,
                    partner_refund_id=prid,
                    amount=amount,
                    currency=plan.price_currency,
                    dialect="mapi",
                    partner_trans_id=ptid,
                    reason="customer return",
                ),
            )
            result.refunds += 1
            paid[idx] = (trade_no, left - amount)
            sim.journal.append(
                _journal_row("REFUND", ptid, prid, trade_no, amount, plan.price_currency, "SUCCESS", at)
            )
    prog("simulate", len(plans), len(plans))


def _after_payment(
    events: list[tuple[datetime, int, int, str, Any]],
    plan: Plan,
    at: datetime,
    trade_no: str,
    paid: dict[int, tuple[str, int]],
    seq: int,
) -> int:
    import heapq

    paid[plan.index] = (trade_no, plan.amount)
    if plan.cancel_after is not None:
        heapq.heappush(events, (at + timedelta(seconds=plan.cancel_after), plan.index, seq, "cancel", None))
        seq += 1
    for n_refund, (after, share) in enumerate(plan.refunds, start=1):
        heapq.heappush(events, (at + timedelta(seconds=after), plan.index, seq, "refund", (n_refund, share)))
        seq += 1
    return seq


async def _pay_with_code(
    p: Platform,
    m: Merchant,
    plan: Plan,
    ptid: str,
    customers: list[SimCustomer],
    slots: dict[tuple[int, int], int],
    at: datetime,
) -> PayOutcome | None:
    """Pay with the customer's code for this minute (the next customer if its ten codes are used)."""
    unix = int(at.timestamp())
    step = paycode.step_at(unix)
    for k in range(len(customers)):
        c = customers[(plan.customer + k) % len(customers)]
        slot = slots[(c.device_id, step)]
        if slot < paycode.SLOTS:
            slots[(c.device_id, step)] = slot + 1
            code = paycode.generate(c.secret, c.device_no, unix, slot)
            try:
                return await payments.pay(
                    p,
                    PayCommand(
                        merchant=m,
                        partner_trans_id=ptid,
                        code=code,
                        price_amount=plan.amount,
                        price_currency=plan.price_currency,
                        settle_currency=m.settlement_currency,
                        subject="Simulated order",
                        dialect="mapi",
                        store_id=f"STORE-{m.partner_id[-2:]}",
                        terminal_id=f"POS-{plan.index % 4 + 1}",
                    ),
                )
            except TillpayError as e:
                log.info("simulated pay refused", code=e.code.value)
                return None
    return None


# ------------------------------------------------------------------------------------------- bulk

BULK_CHUNK = 20_000


async def _bulk(
    p: Platform,
    plans: list[Plan],
    prefix: str,
    sims: list[SimMerchant],
    customers: list[SimCustomer],
    result: SimResult,
    prog: Progress,
) -> None:
    """Write the day in large transactions with the services' rules (see the module doc)."""
    rng = random.Random(f"{prefix}{len(plans)}")  # ids differ between simulated days and seeds
    async with p.reader() as r:
        rates = await p.rates(r)
    balances = {c.user_id: c.balance for c in customers}
    for lo in range(0, len(plans), BULK_CHUNK):
        chunk = plans[lo : lo + BULK_CHUNK]
        pay_rows: list[dict[str, Any]] = []
        meta: list[tuple[Plan, Any, SimCustomer]] = []
        for plan in chunk:
            m = sims[plan.merchant].merchant
            c = customers[plan.customer]
            q = make_quote(plan.amount, plan.price_currency, m.settlement_currency, c.currency, rates)
            ptid = f"{prefix}{plan.index:07d}"
            ok = not plan.reject and risk.covers(balances[c.user_id], q.wallet_amount)
            if ok:
                balances[c.user_id] -= q.wallet_amount
            pay_rows.append(
                {
                    "trade_no": plan.at.strftime("%Y%m%d") + "22" + f"{rng.randrange(10**18):018d}",
                    "merchant_id": m.id,
                    "partner_trans_id": ptid,
                    "kind": "barcode",
                    "dialect": "mapi",
                    "status": "TRADE_SUCCESS" if ok else "TRADE_CLOSED",
                    "result_code": None
                    if ok
                    else (Code.USER_REJECTED if plan.reject else Code.BUYER_BALANCE_NOT_ENOUGH).value,
                    "request_digest": f"simulated:{ptid}",
                    "subject": "Simulated order",
                    "price_amount": q.price_amount,
                    "price_currency": q.price_currency,
                    "settle_amount": q.settle_amount,
                    "settle_currency": q.settle_currency,
                    "wallet_amount": q.wallet_amount,
                    "wallet_currency": q.wallet_currency,
                    "settle_rate": str(q.settle_rate),
                    "wallet_rate": str(q.wallet_rate),
                    "user_id": c.user_id,
                    "device_id": c.device_id,
                    "sign_type": "RSA2",
                    "store_id": f"STORE-{m.partner_id[-2:]}",
                    "terminal_id": f"POS-{plan.index % 4 + 1}",
                    "created_at": plan.at,
                    "paid_at": plan.at if ok else None,
                    "closed_at": None if ok else plan.at,
                    "refunded_price": 0,
                    "refunded_settle": 0,
                    "refunded_wallet": 0,
                    "pin_attempts": 0,
                }
            )
            meta.append((plan, q, c))
        async with p.unit_of_work() as uow:
            ids = await uow.simulation.add_payments(pay_rows)
            # Bulk days skip the rules, but every customer payment still records its decision.
            await uow.simulation.add_risk_decisions(
                [
                    {
                        "payment_id": pid,
                        "verdict": "ALLOW",
                        "rule": "simulated",
                        "code": None,
                        "fired": "[]",
                        "inputs": "{}",
                        "config": "{}",
                        "created_at": row["created_at"],
                    }
                    for pid, row in zip(ids, pay_rows, strict=True)
                ],
            )
            refund_rows, entries, postings_of, updates = _bulk_followups(
                ids, pay_rows, meta, sims, prefix, rng, result, balances
            )
            refund_ids: list[int] = []
            if refund_rows:
                refund_ids = await uow.simulation.add_refunds(refund_rows)
            for i, rid in enumerate(refund_ids):
                entries[len(entries) - len(refund_ids) + i]["ref"] = f"refund:{rid}"
            for pid, values in updates.items():
                await uow.simulation.set_payment(pid, values)
            # The one ledger writer, batch form: the same balance check and overdraft guard.
            await uow.ledger.post_many(
                [
                    ledger_store.Entry(
                        kind=e["kind"],
                        ref=e["ref"],
                        postings=lines,
                        created_at=e["created_at"],
                        payment_id=e["payment_id"],
                    )
                    for e, lines in zip(entries, postings_of, strict=True)
                ],
            )
            await uow.commit()
        prog("simulate", min(lo + BULK_CHUNK, len(plans)), len(plans))


def _bulk_followups(
    ids: Any,
    pay_rows: list[dict[str, Any]],
    meta: list[tuple[Plan, Any, SimCustomer]],
    sims: list[SimMerchant],
    prefix: str,
    rng: random.Random,
    result: SimResult,
    balances: dict[int, int],
) -> tuple[
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[list[ledger.Posting]],
    dict[int, dict[str, Any]],
]:
    """Refunds, journal entries, postings and payment updates for one chunk."""
    refund_rows: list[dict[str, Any]] = []
    pay_entries: list[dict[str, Any]] = []
    pay_postings: list[list[ledger.Posting]] = []
    ref_entries: list[dict[str, Any]] = []
    ref_postings: list[list[ledger.Posting]] = []
    updates: dict[int, dict[str, Any]] = {}
    for pid, row, (plan, q, c) in zip(ids, pay_rows, meta, strict=True):
        sim = sims[plan.merchant]
        m = sim.merchant
        ptid = row["partner_trans_id"]
        if row["paid_at"] is None:
            result.failed += 1
            sim.journal.append(
                _journal_row(
                    "PAYMENT", ptid, "", row["trade_no"], plan.amount, plan.price_currency, "FAILED", plan.at
                )
            )
            continue
        result.payments += 1
        sim.journal.append(
            _journal_row(
                "PAYMENT", ptid, "", row["trade_no"], plan.amount, plan.price_currency, "SUCCESS", plan.at
            )
        )
        lines = ledger.check_balanced(
            ledger.transfer(
                ledger.wallet_account(c.user_id),
                q.wallet_amount,
                q.wallet_currency,
                ledger.merchant_payable(m.id),
                q.settle_amount,
                q.settle_currency,
            )
        )
        pay_entries.append(
            {
                "kind": "payment",
                "ref": f"payment:{pid}",
                "payment_id": pid,
                "memo": None,
                "created_at": plan.at,
            }
        )
        pay_postings.append(lines)
        refunded = [0, 0, 0]  # price, settle, wallet
        steps: list[tuple[str, int, int, str]] = []
        if plan.cancel_after is not None:
            steps.append(("cancel", plan.cancel_after, plan.amount, f"CANCEL-{row['trade_no']}"))
        left = plan.amount
        for n_refund, (after, share) in enumerate(plan.refunds, start=1):
            amount = _refund_amount(plan, share, left)
            if left - amount < 0 or amount <= 0:
                break
            left -= amount
            steps.append(("refund", after, amount, f"{ptid}-R{n_refund}"))
        for kind, after, amount, prid in steps:
            at = plan.at + timedelta(seconds=after)
            settle = refund_shares(amount, refunded[0], q.price_amount, q.settle_amount)
            wallet = refund_shares(amount, refunded[0], q.price_amount, q.wallet_amount)
            refunded = [refunded[0] + amount, refunded[1] + settle, refunded[2] + wallet]
            refund_rows.append(
                {
                    "refund_no": at.strftime("%Y%m%d") + "25" + f"{rng.randrange(10**18):018d}",
                    "payment_id": pid,
                    "merchant_id": m.id,
                    "partner_refund_id": prid,
                    "kind": kind,
                    "request_digest": f"simulated:{prid}",
                    "price_amount": amount,
                    "price_currency": q.price_currency,
                    "settle_amount": settle,
                    "wallet_amount": wallet,
                    "reason": "cancel" if kind == "cancel" else "customer return",
                    "sign_type": "RSA2",
                    "created_at": at,
                }
            )
            ref_entries.append(
                {"kind": "refund", "ref": "", "payment_id": pid, "memo": None, "created_at": at}
            )
            ref_postings.append(
                ledger.check_balanced(
                    ledger.transfer(
                        ledger.merchant_payable(m.id),
                        settle,
                        q.settle_currency,
                        ledger.wallet_account(c.user_id),
                        wallet,
                        q.wallet_currency,
                    )
                )
            )
            balances[c.user_id] += wallet
            if kind == "cancel":
                result.cancels += 1
                sim.journal.append(
                    _journal_row(
                        "REVERSAL", ptid, "", row["trade_no"], amount, plan.price_currency, "SUCCESS", at
                    )
                )
            else:
                result.refunds += 1
                sim.journal.append(
                    _journal_row(
                        "REFUND", ptid, prid, row["trade_no"], amount, plan.price_currency, "SUCCESS", at
                    )
                )
        if steps:
            values: dict[str, Any] = {
                "refunded_price": refunded[0],
                "refunded_settle": refunded[1],
                "refunded_wallet": refunded[2],
            }
            if refunded[0] == q.price_amount:
                last_at = plan.at + timedelta(seconds=steps[-1][1])
                values.update(
                    status="TRADE_CLOSED", closed_at=last_at, result_code=Code.TRADE_HAS_CLOSE.value
                )
            updates[pid] = values
    return refund_rows, pay_entries + ref_entries, pay_postings + ref_postings, updates


__all__ = ["SimResult", "plan_day", "simulate"]
