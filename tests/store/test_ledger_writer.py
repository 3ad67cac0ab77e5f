"""The one ledger writer (store/ledger.py): one entry (``post_entry``, on PostgreSQL one call of
``tillpay_post_entry``, migration 0124) and the batch form (what ``simulate``'s bulk days write through),
on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

import factories as f
from tillpay.domain import ledger
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import wallets
from tillpay.services.platform import Platform
from tillpay.store import ledger as ledger_store
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def pay(user_id: int, to_user_id: int, amount: int, ref: str) -> ledger_store.Entry:
    """One wallet pays another (the audit checks each wallet's balance against its postings)."""
    return ledger_store.Entry(
        "adjustment",
        ref,
        ledger.transfer(
            ledger.wallet_account(user_id), amount, "CNY", ledger.wallet_account(to_user_id), amount, "CNY"
        ),
        AT,
    )


async def entries(p: Platform) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.journal_entries))).scalar_one())


async def test_a_batch_writes_every_entry_and_moves_each_wallet_by_its_net_change(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=500)
    c = await f.customer(platform, "CNY", balance=0)
    before = await entries(platform)
    async with platform.engine.begin() as conn:
        ids = await ledger_store.post_entries(
            conn,
            [
                pay(a.user.id, c.user.id, 600, "x:1"),
                pay(a.user.id, c.user.id, 400, "x:2"),
                pay(b.user.id, a.user.id, 50, "x:3"),
            ],
        )
    assert len(ids) == 3 and len(set(ids)) == 3
    assert await entries(platform) == before + 3
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 50
    assert (await wallets.user_by_login(platform, b.user.login_id)).balance == 450
    assert (await wallets.user_by_login(platform, c.user.login_id)).balance == 1000


async def test_a_batch_that_would_overdraw_a_wallet_writes_nothing(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=0)
    before = await entries(platform)
    with pytest.raises(TillpayError) as e:
        async with platform.engine.begin() as conn:
            await ledger_store.post_entries(
                conn, [pay(a.user.id, b.user.id, 600, "y:1"), pay(a.user.id, b.user.id, 401, "y:2")]
            )
    assert e.value.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await entries(platform) == before
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 1000


async def test_an_unbalanced_entry_is_refused_before_anything_is_written(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=0)
    lopsided = ledger_store.Entry(
        "adjustment",
        "z:1",
        [
            ledger.Posting(ledger.wallet_account(a.user.id), "CNY", -5),
            ledger.Posting(ledger.wallet_account(b.user.id), "CNY", 4),
        ],
        AT,
    )
    before = await entries(platform)
    with pytest.raises(ValueError):
        async with platform.engine.begin() as conn:
            await ledger_store.post_entries(conn, [lopsided])
    assert await entries(platform) == before


async def test_an_empty_batch_writes_nothing(platform: Platform) -> None:
    async with platform.engine.begin() as conn:
        assert await ledger_store.post_entries(conn, []) == []


async def postings_of(p: Platform, ref: str) -> list[tuple[str, str, int]]:
    async with p.engine.connect() as conn:
        rows = await conn.execute(
            select(t.postings.c.account, t.postings.c.currency, t.postings.c.amount)
            .join(t.journal_entries, t.journal_entries.c.id == t.postings.c.entry_id)
            .where(t.journal_entries.c.ref == ref)
            .order_by(t.postings.c.id)
        )
        return [(r.account, r.currency, int(r.amount)) for r in rows]


async def test_one_entry_writes_its_postings_in_order_and_moves_the_wallets(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=0)
    lines = ledger.transfer(
        ledger.wallet_account(a.user.id), 300, "CNY", ledger.wallet_account(b.user.id), 300, "CNY"
    )
    async with platform.unit_of_work() as uow:
        await uow.ledger.post(kind="adjustment", ref="one:1", postings=lines, now=AT, memo="moved")
        await uow.commit()
    assert await postings_of(platform, "one:1") == [(x.account, x.currency, x.amount) for x in lines]
    async with platform.engine.connect() as conn:
        entry = (
            await conn.execute(select(t.journal_entries).where(t.journal_entries.c.ref == "one:1"))
        ).one()
    assert (entry.kind, entry.memo, entry.payment_id) == ("adjustment", "moved", None)
    assert entry.created_at.replace(tzinfo=UTC) == AT
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 700
    assert (await wallets.user_by_login(platform, b.user.login_id)).balance == 300


async def test_an_entry_whose_later_wallet_line_would_overdraw_writes_nothing(platform: Platform) -> None:
    """The first wallet line can move, the second cannot: the entry is refused and, with the caller's
    transaction rolled back, nothing of it remains (on PostgreSQL the function has already taken the
    first line back and answered NULL)."""
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=5)
    lines = [
        ledger.Posting(ledger.wallet_account(a.user.id), "CNY", 10),
        ledger.Posting(ledger.wallet_account(b.user.id), "CNY", -10),
    ]
    with pytest.raises(TillpayError) as e:
        async with platform.unit_of_work() as uow:
            await uow.ledger.post(kind="adjustment", ref="two:1", postings=lines, now=AT)
    assert e.value.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await postings_of(platform, "two:1") == []
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 1000
    assert (await wallets.user_by_login(platform, b.user.login_id)).balance == 5


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgresql_function_takes_back_what_it_moved_when_a_guard_refuses(platform: Platform) -> None:
    """Called directly, inside a transaction that goes on: NULL, the first wallet line moved back, no
    entry and no postings."""
    a = await f.customer(platform, "CNY", balance=1000)
    b = await f.customer(platform, "CNY", balance=5)
    call = text(
        "SELECT tillpay_post_entry('adjustment', 'three:1', NULL, NULL, now()::timestamp, "
        "ARRAY[:a, :b], ARRAY['CNY', 'CNY'], ARRAY[10, -10]::bigint[])"
    )
    async with platform.engine.begin() as conn:
        got = (
            await conn.execute(
                call, {"a": ledger.wallet_account(a.user.id), "b": ledger.wallet_account(b.user.id)}
            )
        ).scalar()
        assert got is None
        balances = dict(
            (
                await conn.execute(
                    select(t.wallet_users.c.id, t.wallet_users.c.balance).where(
                        t.wallet_users.c.id.in_([a.user.id, b.user.id])
                    )
                )
            ).all()
        )
        assert balances == {a.user.id: 1000, b.user.id: 5}
        assert (
            await conn.execute(
                select(func.count())
                .select_from(t.journal_entries)
                .where(t.journal_entries.c.ref == "three:1")
            )
        ).scalar_one() == 0


async def test_a_wallet_line_in_another_currency_is_refused(platform: Platform) -> None:
    a = await f.customer(platform, "CNY", balance=1000)
    lines = [
        ledger.Posting(ledger.wallet_account(a.user.id), "USD", 10),
        ledger.Posting(ledger.BANK, "USD", -10),
    ]
    with pytest.raises(TillpayError) as e:
        async with platform.unit_of_work() as uow:
            await uow.ledger.post(kind="topup", ref="cur:1", postings=lines, now=AT)
    assert e.value.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await postings_of(platform, "cur:1") == []
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 1000


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgresql_function_refuses_an_unbalanced_entry_itself(platform: Platform) -> None:
    """The callers check the balance first; the function is the last word for anything that calls it."""
    a = await f.customer(platform, "CNY", balance=1000)
    call = text(
        "SELECT tillpay_post_entry('adjustment', 'bad:1', NULL, NULL, now()::timestamp, "
        "ARRAY[:acct, 'bank'], ARRAY['CNY', 'CNY'], ARRAY[-5, 4]::bigint[])"
    )
    with pytest.raises(DBAPIError, match="unbalanced journal entry"):
        async with platform.engine.begin() as conn:
            await conn.execute(call, {"acct": ledger.wallet_account(a.user.id)})
    assert await postings_of(platform, "bad:1") == []
    assert (await wallets.user_by_login(platform, a.user.login_id)).balance == 1000
