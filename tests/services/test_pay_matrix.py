"""One matrix for the pay: the same requests through every branch, on SQLite and PostgreSQL.

Each case checks the answer, the rows stored (payment, risk decision, code use, journal entry, outbox,
balance) and, through the ``platform`` fixture, a clean ledger audit. Races on one wallet and on one
transaction id run for real on both databases; a change to the wallet (or to the customer's totals)
between a pay's read and its write is made at that point by a real second request. On PostgreSQL the
round trips of the common pay are counted on the wire, between Tillpay and the server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, update

import factories as f
from conftest import make_database, test_settings
from tillpay.domain import paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import merchants, payments, stores, wallets
from tillpay.services import risk as risk_service
from tillpay.services.audit import audit
from tillpay.services.payments import PayCommand
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.services.views import PayOutcome
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

MIGRATION = (
    Path(__file__).resolve().parents[2] / "src/tillpay/store/migrations/versions/0124_post_entry_function.py"
)


def pay_cmd(m: Merchant, code: str, amount: int = 1250, ptid: str = "ORDER-1", **kw: Any) -> PayCommand:
    args: dict[str, Any] = dict(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=amount,
        price_currency=m.settlement_currency,
        settle_currency=m.settlement_currency,
        subject="Coffee",
        dialect="mapi",
    )
    args.update(kw)
    return PayCommand(**args)


def codes(p: Platform, c: f.Customer, n: int) -> list[str]:
    """``n`` different codes of the customer's device, this minute (slots 0 to n-1, none used yet)."""
    return [
        paycode.generate(c.device.secret, c.device.device_no, int(p.now().timestamp()), s) for s in range(n)
    ]


async def balance(p: Platform, c: f.Customer) -> int:
    return (await wallets.user_by_login(p, c.user.login_id)).balance


async def rows(p: Platform, table: t.Table, **where: Any) -> list[Any]:
    async with p.engine.connect() as conn:
        q = select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return list((await conn.execute(q)).all())


async def count(p: Platform, table: t.Table) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def stored(p: Platform, out: PayOutcome) -> dict[str, Any]:
    """What one payment left in the database."""
    [pay] = await rows(p, t.payments, trade_no=out.payment.trade_no)
    return {
        "payment": pay,
        "decisions": await rows(p, t.risk_decisions, payment_id=pay.id),
        "entries": await rows(p, t.journal_entries, payment_id=pay.id),
        "outbox": await rows(p, t.outbox, payment_id=pay.id),
    }


# ------------------------------------------------------------------------------------ the outcomes


async def test_success_writes_payment_decision_code_use_entry_and_notification(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY", notify_url="http://127.0.0.1:9/n")).merchant
    c = await f.customer(platform, "CNY", balance=10_000)
    out = await payments.pay(
        platform,
        pay_cmd(
            m, await f.code(platform, c), store_id="S1", terminal_id="T1", notify_url="http://127.0.0.1:9/n"
        ),
    )
    assert out.code is None and not out.replayed
    assert out.payment.status is Status.TRADE_SUCCESS and out.payment.wallet_amount == 1250
    s = await stored(platform, out)
    assert s["payment"].paid_at is not None and s["payment"].id == out.payment.id
    assert (s["payment"].store_id, s["payment"].terminal_id) == ("S1", "T1")
    assert [d.verdict for d in s["decisions"]] == ["ALLOW"]
    assert [e.ref for e in s["entries"]] == [f"payment:{out.payment.id}"]
    [note] = s["outbox"]
    assert note.status == "pending" and note.event == "payment" and note.url == "http://127.0.0.1:9/n"
    # The notification carries the payment as answered, its id included.
    assert json.loads(note.payload) == {"payment": out.payment.to_json()}
    assert await count(platform, t.code_uses) == 1
    assert await balance(platform, c) == 10_000 - 1250


async def test_amount_over_the_confirm_limit_waits_for_the_customer(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY", notify_url="http://127.0.0.1:9/n")).merchant
    c = await f.customer(platform, "CNY", balance=500_000)
    out = await payments.pay(
        platform, pay_cmd(m, await f.code(platform, c), amount=250_000, notify_url="http://127.0.0.1:9/n")
    )
    assert out.code is Code.WAIT_BUYER_CONFIRM and out.payment.status is Status.WAIT_BUYER_PAY
    s = await stored(platform, out)
    assert [d.verdict for d in s["decisions"]] == ["CONFIRM"] and s["entries"] == [] and s["outbox"] == []
    assert s["payment"].expires_at is not None
    assert await count(platform, t.code_uses) == 1 and await balance(platform, c) == 500_000
    paid = await payments.confirm(platform, c.user.id, c.pin)
    assert paid.status is Status.TRADE_SUCCESS and await balance(platform, c) == 250_000


@pytest.mark.parametrize(
    ("rules", "amount", "earlier", "code"),
    [
        ({"per_payment_limit": {"CNY": "10.00"}}, 1250, 0, Code.PAYMENT_AMOUNT_EXCEED_LIMIT),
        ({"daily_limit": {"CNY": "20.00"}}, 1250, 1, Code.DAY_LIMIT_EXCEEDED),
        ({"monthly_limit": {"CNY": "20.00"}}, 1250, 1, Code.MONTH_LIMIT_EXCEEDED),
        ({"velocity_count": 1, "velocity_action": "DECLINE"}, 1250, 1, Code.RISK_REJECT),
        (
            {"velocity_count": 1, "velocity_action": "DECLINE", "velocity_minutes": 30},
            1250,
            1,
            Code.RISK_REJECT,
        ),
    ],
    ids=["per_payment", "daily", "monthly", "velocity", "velocity_30min"],
)
async def test_each_rule_declines_and_spends_the_code(
    platform: Platform, rules: dict[str, Any], amount: int, earlier: int, code: Code
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await risk_service.set_rules(platform, "scheme", "", rules)
    for i in range(earlier):
        first = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), ptid=f"E{i}"))
        assert first.code is None
    before = await balance(platform, c)
    shown = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, shown, amount=amount))
    assert out.code is code and out.payment.status is Status.TRADE_CLOSED
    s = await stored(platform, out)
    assert [d.verdict for d in s["decisions"]] == ["DECLINE"] and s["entries"] == []
    assert s["payment"].result_code == code.value
    assert await balance(platform, c) == before
    assert await count(platform, t.code_uses) == earlier + 1 and await f.code(platform, c) != shown


async def test_a_rule_of_the_customer_alone_declines(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await risk_service.set_rules(platform, "user", c.user.login_id, {"per_payment_limit": {"CNY": "5.00"}})
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert out.code is Code.PAYMENT_AMOUNT_EXCEED_LIMIT
    other = await f.customer(platform, "CNY", balance=100_000)
    assert (await payments.pay(platform, pay_cmd(m, await f.code(platform, other), ptid="B"))).code is None


async def test_frozen_wallet_and_frozen_merchant_decline(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await wallets.set_status(platform, c.user.login_id, "frozen")
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    assert out.code is Code.BUYER_FROZEN and out.payment.status is Status.TRADE_CLOSED
    await wallets.set_status(platform, c.user.login_id, "active")
    m = await merchants.set_merchant_status(platform, m.partner_id, "frozen")
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c), ptid="B"))
    assert out.code is Code.MERCHANT_FROZEN
    assert await balance(platform, c) == 100_000


async def test_balance_too_low_closes_the_payment_and_leaves_the_code_unused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1000)
    shown = await f.code(platform, c)
    out = await payments.pay(platform, pay_cmd(m, shown))
    assert out.code is Code.BUYER_BALANCE_NOT_ENOUGH and out.payment.status is Status.TRADE_CLOSED
    s = await stored(platform, out)
    assert [(d.verdict, d.rule) for d in s["decisions"]] == [("DECLINE", "balance")] and s["entries"] == []
    assert await count(platform, t.code_uses) == 0 and await f.code(platform, c) == shown
    assert await balance(platform, c) == 1000


async def test_unknown_and_revoked_devices_and_wrong_codes_are_refused_and_counted(
    platform: Platform,
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)
    # A code of a device that does not exist, a made-up code of a real device, a malformed one.
    made_up = shown[:-7] + f"{(int(shown[-7:]) + 1) % 10**7:07d}"
    for i, code in enumerate(["289999999900000000", made_up, "not a code"]):
        with pytest.raises(TillpayError) as e:
            await payments.pay(platform, pay_cmd(m, code, ptid=f"BAD{i}"))
        assert e.value.code is Code.INVALID_CODE
    async with platform.engine.begin() as conn:
        await conn.execute(update(t.devices).where(t.devices.c.id == c.device.id).values(status="revoked"))
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, shown, ptid="REVOKED"))
    assert e.value.code is Code.INVALID_CODE
    assert await count(platform, t.bad_codes) == 4
    assert await count(platform, t.payments) == 0 and await count(platform, t.code_uses) == 0


async def test_a_used_code_is_refused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)
    assert (await payments.pay(platform, pay_cmd(m, shown, ptid="A"))).code is None
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, shown, ptid="B"))
    assert e.value.code is Code.CODE_USED
    assert await count(platform, t.payments) == 1 and await balance(platform, c) == 100_000 - 1250


async def test_a_terminal_over_its_wrong_codes_is_blocked(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await risk_service.set_rules(platform, "scheme", "", {"terminal_bad_codes": 2})
    for i in range(2):
        with pytest.raises(TillpayError):
            await payments.pay(platform, pay_cmd(m, "not a code", ptid=f"BAD{i}", terminal_id="T1"))
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, await f.code(platform, c), terminal_id="T1"))
    assert e.value.code is Code.CODE_ATTEMPTS_EXCEEDED
    # Another terminal of the merchant still takes the same customer's code.
    assert (
        await payments.pay(platform, pay_cmd(m, await f.code(platform, c), terminal_id="T2"))
    ).code is None


async def test_a_disabled_store_takes_no_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await stores.add_store(platform, m.id, "S1", "Front")
    await stores.set_status(platform, m.id, "store", "S1", "disabled")
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, await f.code(platform, c), store_id="S1"))
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    assert await count(platform, t.payments) == 0 and await count(platform, t.code_uses) == 0


async def test_a_repeat_replays_and_a_repeat_with_other_content_is_refused(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)
    first = await payments.pay(platform, pay_cmd(m, shown))
    again = await payments.pay(platform, pay_cmd(m, shown))
    assert again.replayed and again.payment == first.payment
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, shown, amount=1251))
    assert e.value.code is Code.REPEAT_REQ_INCONSISTENT
    assert await count(platform, t.payments) == 1 and await balance(platform, c) == 100_000 - 1250


# ------------------------------------------------------------------------------------------- races


async def test_concurrent_pays_on_one_wallet_pay_exactly_what_the_balance_covers(platform: Platform) -> None:
    ms = [(await f.merchant(platform, "CNY")).merchant for _ in range(2)]
    c = await f.customer(platform, "CNY", balance=5000)
    outs = await asyncio.gather(
        *(
            payments.pay(platform, pay_cmd(ms[i % 2], code, ptid=f"R{i}"))
            for i, code in enumerate(codes(platform, c, 8))
        )
    )
    paid = [o for o in outs if o.code is None]
    assert len(paid) == 4
    assert all(o.code is Code.BUYER_BALANCE_NOT_ENOUGH for o in outs if o.code is not None)
    assert await balance(platform, c) == 0
    assert await count(platform, t.code_uses) == 4 and await count(platform, t.journal_entries) == 5


async def test_concurrent_pays_respect_the_daily_limit(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await risk_service.set_rules(platform, "scheme", "", {"daily_limit": {"CNY": "50.00"}})
    outs = await asyncio.gather(
        *(
            payments.pay(platform, pay_cmd(m, code, ptid=f"D{i}"))
            for i, code in enumerate(codes(platform, c, 6))
        )
    )
    assert sorted(str(o.code) for o in outs) == sorted(["None"] * 4 + [str(Code.DAY_LIMIT_EXCEEDED)] * 2)
    assert await balance(platform, c) == 100_000 - 4 * 1250


async def test_concurrent_repeats_of_one_id_make_one_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)
    outs = await asyncio.gather(*(payments.pay(platform, pay_cmd(m, shown)) for _ in range(6)))
    assert len({o.payment.trade_no for o in outs}) == 1 and all(o.code is None for o in outs)
    assert sum(not o.replayed for o in outs) == 1
    assert await count(platform, t.payments) == 1 and await balance(platform, c) == 100_000 - 1250


async def test_one_id_raced_with_two_codes_makes_one_payment(platform: Platform) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    a, b = codes(platform, c, 2)
    outs = await asyncio.gather(
        payments.pay(platform, pay_cmd(m, a)), payments.pay(platform, pay_cmd(m, b)), return_exceptions=True
    )
    # One pays; the other is a repeat with other content (another code), or its replay if it came first.
    answers = [o for o in outs if isinstance(o, PayOutcome)]
    refused = [o for o in outs if isinstance(o, TillpayError)]
    assert len(answers) == 1 and answers[0].code is None
    assert [e.code for e in refused] == [Code.REPEAT_REQ_INCONSISTENT]
    assert await count(platform, t.payments) == 1 and await count(platform, t.code_uses) == 1


@pytest.fixture
async def other(db_url: str, clock: FakeClock) -> AsyncIterator[Platform]:
    """A second platform on the same database and clock, as another server process would be."""
    p = Platform(test_settings(db_url), clock=clock)
    try:
        yield p
    finally:
        await p.close()


def _between_read_and_write(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]
) -> dict[str, int]:
    """Run ``meanwhile`` (a real second request, through ``other``) once, after the next pay's read and
    before its write; count the pay's write attempts: at once (PostgreSQL) and careful (locks and
    decides again)."""
    calls = {"at_once": 0, "careful": 0}
    read, at_once, careful = payments._payer_at_once, payments._charge_at_once, payments._charge
    done = False

    async def reading(*a: Any, **kw: Any) -> Any:
        nonlocal done
        found = await read(*a, **kw)
        if not done:
            done = True
            await meanwhile()
        return found

    async def writing_at_once(*a: Any, **kw: Any) -> Any:
        calls["at_once"] += 1
        return await at_once(*a, **kw)

    async def writing_carefully(*a: Any, **kw: Any) -> Any:
        calls["careful"] += 1
        return await careful(*a, **kw)

    monkeypatch.setattr(payments, "_payer_at_once", reading)
    monkeypatch.setattr(payments, "_charge_at_once", writing_at_once)
    monkeypatch.setattr(payments, "_charge", writing_carefully)
    return calls


async def test_a_balance_spent_between_read_and_write_is_seen(
    platform: Platform, other: Platform, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    elsewhere = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=2000)
    first, second = codes(platform, c, 2)

    async def spend() -> None:
        out = await payments.pay(other, pay_cmd(elsewhere, second, ptid="OTHER"))
        assert out.code is None

    calls = _between_read_and_write(monkeypatch, spend)
    out = await payments.pay(platform, pay_cmd(m, first))
    # Read with 20.00, written after 12.50 went elsewhere: the careful write sees 7.50 and declines.
    assert out.code is Code.BUYER_BALANCE_NOT_ENOUGH
    assert await balance(platform, c) == 750
    postgres = db_url.startswith("postgresql")
    # On PostgreSQL: one at-once attempt for each pay; the first's guard failed, it fell back.
    assert calls == ({"at_once": 2, "careful": 1} if postgres else {"at_once": 0, "careful": 2})


async def test_totals_changed_between_read_and_write_are_seen(
    platform: Platform, other: Platform, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    await risk_service.set_rules(platform, "scheme", "", {"daily_limit": {"CNY": "20.00"}})
    first, second = codes(platform, c, 2)

    async def waiting_payment() -> None:
        # A payment waiting for its confirmation counts in the totals and does not touch the balance.
        await risk_service.set_rules(other, "user", c.user.login_id, {"confirm_above": {"CNY": "1.00"}})
        out = await payments.pay(other, pay_cmd(m, second, ptid="WAITING"))
        assert out.code is Code.WAIT_BUYER_CONFIRM

    calls = _between_read_and_write(monkeypatch, waiting_payment)
    out = await payments.pay(platform, pay_cmd(m, first))
    assert out.code is Code.DAY_LIMIT_EXCEEDED
    assert await balance(platform, c) == 100_000
    postgres = db_url.startswith("postgresql")
    assert calls == ({"at_once": 2, "careful": 1} if postgres else {"at_once": 0, "careful": 2})


async def test_a_top_up_between_read_and_write_falls_back_and_pays(
    platform: Platform, other: Platform, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=1000)

    async def top_up() -> None:
        await wallets.topup(other, c.user.login_id, 1000)

    calls = _between_read_and_write(monkeypatch, top_up)
    out = await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))
    # Read with 10.00 (too little); the careful write, with the lock, sees 20.00 and pays.
    assert out.code is None and await balance(platform, c) == 750
    postgres = db_url.startswith("postgresql")
    assert calls == ({"at_once": 1, "careful": 1} if postgres else {"at_once": 0, "careful": 1})


async def test_a_code_used_between_read_and_write_is_refused(
    platform: Platform, other: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)

    async def same_code_elsewhere() -> None:
        assert (await payments.pay(other, pay_cmd(m, shown, ptid="FIRST"))).code is None

    _between_read_and_write(monkeypatch, same_code_elsewhere)
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, pay_cmd(m, shown, ptid="SECOND"))
    assert e.value.code is Code.CODE_USED
    assert await count(platform, t.payments) == 1 and await balance(platform, c) == 100_000 - 1250


async def test_an_id_taken_between_read_and_write_answers_as_a_repeat(
    platform: Platform, other: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    shown = await f.code(platform, c)
    holder: dict[str, PayOutcome] = {}

    async def same_request() -> None:
        holder["first"] = await payments.pay(other, pay_cmd(m, shown))

    _between_read_and_write(monkeypatch, same_request)
    again = await payments.pay(platform, pay_cmd(m, shown))
    assert again.replayed and again.payment.trade_no == holder["first"].payment.trade_no
    assert await count(platform, t.payments) == 1 and await balance(platform, c) == 100_000 - 1250


# --------------------------------------------------------------------- PostgreSQL: round trips


class _Wire:
    """A loopback TCP proxy in front of PostgreSQL that counts the client's round trips: each Sync
    (extended protocol) and each Query (simple protocol, BEGIN and COMMIT included) ends in one
    ReadyForQuery from the server."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.messages: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def round_trips(self) -> int:
        return sum(1 for m in self.messages if m in (b"S", b"Q"))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)

        async def pipe_back() -> None:
            while data := await up_r.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        back = asyncio.create_task(pipe_back())
        try:
            # Untyped startup messages first (SSLRequest, GSSENCRequest, StartupMessage).
            while True:
                head = await reader.readexactly(8)
                length, code = struct.unpack("!ii", head)
                body = await reader.readexactly(length - 8)
                up_w.write(head + body)
                await up_w.drain()
                if code not in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    break
            while True:
                kind = await reader.readexactly(1)
                raw = await reader.readexactly(4)
                (length,) = struct.unpack("!i", raw)
                body = await reader.readexactly(length - 4)
                self.messages.append(kind)
                up_w.write(kind + raw + body)
                await up_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_w.close()
            back.cancel()


@pytest.fixture
async def wired(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Platform, _Wire]]:
    """A platform on a fresh PostgreSQL database, reached through ``_Wire``."""
    database = make_database("postgres", request, tmp_path)
    url = next(database)
    parts = urlsplit(url)
    wire = _Wire(parts.hostname or "127.0.0.1", parts.port or 5432)
    await wire.start()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{wire.port}"
    p = Platform(test_settings(urlunsplit(parts._replace(netloc=netloc))), clock=FakeClock())
    try:
        yield p, wire
        assert not await audit(p)
    finally:
        await p.close()
        await wire.close()
        for _ in database:
            pass


async def test_postgresql_common_pay_takes_two_round_trips(wired: tuple[Platform, _Wire]) -> None:
    p, wire = wired
    m = (await f.merchant(p, "CNY", notify_url="http://127.0.0.1:9/n")).merchant
    c = await f.customer(p, "CNY", balance=1_000_000)
    # The first pay on a connection prepares its statements and loads the FX rates (cached a second).
    assert (await payments.pay(p, pay_cmd(m, await f.code(p, c), ptid="WARM"))).code is None
    for i, (amount, code) in enumerate([(1250, None), (250_000, Code.WAIT_BUYER_CONFIRM)]):
        shown = await f.code(p, c)
        wire.messages.clear()
        out = await payments.pay(p, pay_cmd(m, shown, amount=amount, ptid=f"P{i}"))
        assert out.code is code
        # The read, then the write that commits by itself: no BEGIN, no COMMIT.
        assert wire.round_trips == 2, wire.messages
    assert await balance(p, c) == 1_000_000 - 2 * 1250


async def test_postgresql_careful_pay_takes_more_round_trips(wired: tuple[Platform, _Wire]) -> None:
    """The counter sees the careful path's BEGIN, lock, totals, writes and COMMIT (it can fail)."""
    p, wire = wired
    m = (await f.merchant(p, "CNY")).merchant
    c = await f.customer(p, "CNY", balance=100_000)
    await risk_service.set_rules(p, "scheme", "", {"terminal_bad_codes": 5})
    with pytest.raises(TillpayError):
        await payments.pay(p, pay_cmd(m, "not a code", ptid="BAD", terminal_id="T1"))
    assert (await payments.pay(p, pay_cmd(m, await f.code(p, c), ptid="WARM", terminal_id="T1"))).code is None
    wire.messages.clear()
    out = await payments.pay(p, pay_cmd(m, await f.code(p, c), ptid="P", terminal_id="T1"))
    assert out.code is None
    assert wire.round_trips > 2


async def test_the_pay_function_writes_every_column_the_pay_sets(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[Any] = []
    real = payments._decide_payment

    def spy(*a: Any, **kw: Any) -> Any:
        decided.append(real(*a, **kw))
        return decided[-1]

    monkeypatch.setattr(payments, "_decide_payment", spy)
    m = (await f.merchant(platform, "CNY")).merchant
    c = await f.customer(platform, "CNY", balance=100_000)
    assert (await payments.pay(platform, pay_cmd(m, await f.code(platform, c)))).code is None
    spec = importlib.util.spec_from_file_location("pay_at_once_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    written = [c.strip() for c in migration.PAYMENT_COLUMNS.split(",")]
    assert written == list(decided[0].values)
