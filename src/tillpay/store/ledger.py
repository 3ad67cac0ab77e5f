"""The ledger writer: journal entries, their postings and the wallets' stored balances. The only one.

Every writer of money goes through here: payments and confirmations, refunds and cancels, top-ups,
settlement, the bench's data, the careful pay and ``simulate``'s bulk days (``post_entries``, the batch
form). Each entry is balanced per currency (``domain.ledger.check_balanced``); a wallet's stored balance
changes only in the same transaction as its postings, under the guard ``balance + delta >= 0``, so an
overdraft is impossible whatever the caller checked.

On PostgreSQL an entry is one call of the function ``tillpay_post_entry`` (migration 0124), which holds
the entry's statements and the guard; PostgreSQL's common pay calls the same function from inside
``tillpay_pay``, with the arrays :func:`entry_arrays` makes. On SQLite the same rows are written statement
by statement here, with the same guard. ``tests/store/test_ledger_writer.py`` holds both databases to the
same rows and refusals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Integer, Text, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.domain import ledger
from tillpay.domain.errors import Code, TillpayError
from tillpay.store import tables as t
from tillpay.store.driver import Driver

_usr = t.wallet_users

ENTRY = t.journal_entries.insert().returning(t.journal_entries.c.id)
POSTINGS = t.postings.insert()
#: The wallet side of a posting; the guard makes an overdraft impossible whatever the caller checked.
WALLET_DELTA = (
    update(_usr)
    .where(
        _usr.c.id == bindparam("wallet_id"),
        _usr.c.currency == bindparam("wallet_currency"),
        _usr.c.balance + bindparam("delta") >= 0,
    )
    .values(balance=_usr.c.balance + bindparam("delta"))
)
WALLET_DELTA_RETURNING = WALLET_DELTA.returning(_usr.c.id)
_ENTRIES = insert(t.journal_entries).returning(t.journal_entries.c.id, sort_by_parameter_order=True)

#: PostgreSQL: one entry through the ledger's function (migration 0124); NULL when a guard refused.
POST_ENTRY = select(
    func.tillpay_post_entry(
        bindparam("kind", type_=Text),
        bindparam("ref", type_=Text),
        bindparam("payment_id", type_=Integer),
        bindparam("memo", type_=Text),
        bindparam("created_at", type_=t.journal_entries.c.created_at.type),
        bindparam("accounts", type_=ARRAY(Text)),
        bindparam("currencies", type_=ARRAY(Text)),
        bindparam("amounts", type_=ARRAY(BigInteger)),
    )
)
#: The same call on the driver, inside the careful pay's transaction.
POST_ENTRY_CALL = (
    "SELECT tillpay_post_entry($1::text, $2::text, $3::int, $4::text, $5::timestamp, $6::text[], "
    "$7::text[], $8::bigint[])"
)


def _wallet_id(account: str) -> int | None:
    """The wallet user's id of a ``wallet:<id>`` account, else None."""
    if account.startswith("wallet:"):
        return int(account.split(":", 1)[1])
    return None


async def post_entry(
    conn: AsyncConnection,
    *,
    kind: str,
    ref: str,
    postings: list[ledger.Posting],
    now: datetime,
    payment_id: int | None = None,
    memo: str | None = None,
    driver: Driver | None = None,
) -> None:
    """Write one balanced journal entry and apply its wallet postings to the stored balances.

    BUYER_BALANCE_NOT_ENOUGH (the caller's transaction rolls back) if a wallet would go below zero.
    With ``driver`` (the pay path, inside its transaction) the same statements go through the driver.
    """
    lines = ledger.check_balanced(postings)
    if conn.dialect.name == "postgresql":
        accounts, currencies, amounts = entry_arrays(lines)
        args = {
            "kind": kind,
            "ref": ref,
            "payment_id": payment_id,
            "memo": memo,
            "created_at": now,
            "accounts": accounts,
            "currencies": currencies,
            "amounts": amounts,
        }
        if driver is not None and driver.in_transaction:
            entry_id = (await driver.pg_rows(POST_ENTRY_CALL, list(args.values())))[0][0]
        else:
            entry_id = (await conn.execute(POST_ENTRY, args)).scalar_one()
        if entry_id is None:
            raise TillpayError(Code.BUYER_BALANCE_NOT_ENOUGH)
        return
    entry = {"kind": kind, "ref": ref, "payment_id": payment_id, "memo": memo, "created_at": now}
    if driver is not None and driver.in_transaction:
        entry_id = (await driver.rows(ENTRY, entry, tuple(entry)))[0][0]
        await driver.many(
            POSTINGS,
            [
                {"entry_id": entry_id, "account": ln.account, "currency": ln.currency, "amount": ln.amount}
                for ln in lines
            ],
            ("entry_id", "account", "currency", "amount"),
        )
        for ln in lines:
            wallet = _wallet_id(ln.account)
            if wallet is not None:
                changed = await driver.rows(
                    WALLET_DELTA_RETURNING,
                    {"wallet_id": wallet, "wallet_currency": ln.currency, "delta": ln.amount},
                )
                if len(changed) != 1:
                    raise TillpayError(Code.BUYER_BALANCE_NOT_ENOUGH)
        return
    entry_id = (await conn.execute(ENTRY, entry)).scalar_one()
    await conn.execute(
        POSTINGS,
        [
            {"entry_id": entry_id, "account": ln.account, "currency": ln.currency, "amount": ln.amount}
            for ln in lines
        ],
    )
    for ln in lines:
        wallet = _wallet_id(ln.account)
        if wallet is not None:
            res = await conn.execute(
                WALLET_DELTA, {"wallet_id": wallet, "wallet_currency": ln.currency, "delta": ln.amount}
            )
            if res.rowcount != 1:
                raise TillpayError(Code.BUYER_BALANCE_NOT_ENOUGH)


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry of a batch (:func:`post_entries`)."""

    kind: str
    ref: str
    postings: list[ledger.Posting]
    created_at: datetime
    payment_id: int | None = None
    memo: str | None = None


async def post_entries(conn: AsyncConnection, entries: Sequence[Entry]) -> list[int]:
    """The batch form of :func:`post_entry` (bulk days): the entries' ids, in order.

    Every entry is balanced; the wallets' rows are locked and their stored balances move by the batch's
    net change per wallet, under the same guard: BUYER_BALANCE_NOT_ENOUGH (the caller's transaction
    rolls back) if any wallet would end the batch below zero or has no balance in that currency.
    """
    if not entries:
        return []
    checked = [ledger.check_balanced(e.postings) for e in entries]
    deltas: dict[tuple[int, str], int] = defaultdict(int)
    for lines in checked:
        for ln in lines:
            wallet = _wallet_id(ln.account)
            if wallet is not None:
                deltas[wallet, ln.currency] += ln.amount
    if deltas:
        # The rows locked and read first: an executemany has no dependable row count on every driver,
        # so the guard is checked here, and the statement keeps it as the last word.
        have = {
            (r.id, r.currency): int(r.balance)
            for r in (
                await conn.execute(
                    select(_usr.c.id, _usr.c.currency, _usr.c.balance)
                    .where(_usr.c.id.in_(sorted({w for w, _ in deltas})))
                    .with_for_update()
                )
            ).all()
        }
        for key, delta in deltas.items():
            if key not in have or have[key] + delta < 0:
                raise TillpayError(Code.BUYER_BALANCE_NOT_ENOUGH, f"wallet {key[0]} would be overdrawn")
    ids = list(
        (
            await conn.execute(
                _ENTRIES,
                [
                    {
                        "kind": e.kind,
                        "ref": e.ref,
                        "payment_id": e.payment_id,
                        "memo": e.memo,
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
            )
        )
        .scalars()
        .all()
    )
    await conn.execute(
        POSTINGS,
        [
            {"entry_id": eid, "account": ln.account, "currency": ln.currency, "amount": ln.amount}
            for eid, lines in zip(ids, checked, strict=True)
            for ln in lines
        ],
    )
    moves = [{"wallet_id": w, "wallet_currency": c, "delta": d} for (w, c), d in deltas.items() if d]
    if moves:
        await conn.execute(WALLET_DELTA, moves)
    return [int(i) for i in ids]


def entry_arrays(lines: list[ledger.Posting]) -> tuple[list[str], list[str], list[int]]:
    """The accounts, currencies and amounts of a balanced entry's lines, as ``tillpay_post_entry`` takes
    them (in the order given: its wallet lines move the balances in that order)."""
    return [ln.account for ln in lines], [ln.currency for ln in lines], [ln.amount for ln in lines]


def payment_entry_arrays(
    postings: list[ledger.Posting], payer: int
) -> tuple[list[str], list[str], list[int]]:
    """:func:`entry_arrays` of a payment's postings, whose one wallet line must be the payer's."""
    lines = ledger.check_balanced(postings)
    wallets = [w for w in (_wallet_id(ln.account) for ln in lines) if w is not None]
    if wallets != [payer]:
        raise RuntimeError("a payment's wallet line is not the payer's wallet")
    return entry_arrays(lines)


class LedgerRepository:
    """The ledger writer over a unit of work's connection (``uow.ledger``), in its transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def post(
        self,
        *,
        kind: str,
        ref: str,
        postings: list[ledger.Posting],
        now: datetime,
        payment_id: int | None = None,
        memo: str | None = None,
    ) -> None:
        """One balanced journal entry (:func:`post_entry`)."""
        await post_entry(
            self.conn, kind=kind, ref=ref, postings=postings, now=now, payment_id=payment_id, memo=memo
        )

    async def post_many(self, entries: Sequence[Entry]) -> list[int]:
        """Entries in one batch (:func:`post_entries`): their ids, in order."""
        return await post_entries(self.conn, entries)
