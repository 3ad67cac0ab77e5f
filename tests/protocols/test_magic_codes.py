"""Every magic payment code (domain/magic.py) through each dialect over real HTTP, on SQLite and PostgreSQL.

The merchant is a test merchant (``test_merchant_of``) on a production server, so the codes are honoured
for it; a live merchant's magic code is refused and changes nothing. N is kept to one or two seconds, and
the confirmation answers are also driven by moving the test merchant's clock.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

import factories as f
from conftest import LOOPBACK_RECEIVERS, LiveServer
from dialect_clients import Shop, counts
from tillpay.domain.errors import Code
from tillpay.domain.magic import QR_AMOUNTS, TABLE, Magic, Wallet, code_for
from tillpay.protocols.antom.codes import antom_result
from tillpay.protocols.mapi.codes import mapi_error
from tillpay.protocols.openapi.codes import open_code
from tillpay.services import magic, merchants, settlement, wallets
from tillpay.services.audit import audit
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import tables as t

DIALECTS = ["mapi", "openapi", "antom"]
#: Short enough for a test, long enough for a confirmation nobody answers to still be waiting.
#: Longer than every magic answer's N below, so only a moved test clock or a never-answered code expires.
PAYMENT_TIMEOUT = 300


class Receiver:
    """A merchant's notify endpoint on loopback that acknowledges every notification in its dialect."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(body)
                json_body = body.startswith(b"{")
                answer = (
                    b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
                    if json_body
                    else b"success"
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@dataclass
class Answer:
    """A dialect's answer to a pay, query or cancel, in common terms, and the dialect's own error code."""

    kind: str  # paid | waiting | unknown | failed | closed | not-found | cancelled
    error: str | None = None
    action: str | None = None


class Till:
    """One dialect's pay, query and cancel over HTTP, answers normalised to ``Answer``."""

    def __init__(self, shop: Shop, dialect: str, notify_url: str | None = None) -> None:
        self.shop, self.dialect, self.notify_url = shop, dialect, notify_url

    def expected_error(self, code: Code) -> str:
        """The dialect's spelling of a refusal or decline (its codes table: the one place it is mapped)."""
        if self.dialect == "mapi":
            return mapi_error(code)[0]
        if self.dialect == "openapi":
            return open_code(code).sub_code
        return antom_result(code).code

    def pay(self, ptid: str, code: str) -> Answer:
        if self.dialect == "mapi":
            with self.shop.mapi() as m:
                r = m.pay(ptid, code, "12.50", "USD", "Magic", notify_url=self.notify_url)
            if r.ok:
                return Answer("paid" if r.status == "TRADE_SUCCESS" else "closed", r.error)
            if r.unknown:
                return Answer("waiting" if r.error == "WAIT_BUYER_PAY" else "unknown", r.error)
            return Answer("failed", r.error)
        if self.dialect == "openapi":
            o = self.shop.open().call(
                "alipay.trade.pay",
                {
                    "out_trade_no": ptid,
                    "scene": "bar_code",
                    "auth_code": code,
                    "subject": "Magic",
                    "total_amount": "12.50",
                },
                **({"notify_url": self.notify_url} if self.notify_url else {}),
            )
            kind = {"10000": "paid", "10003": "waiting", "20000": "unknown"}.get(o.code, "failed")
            if kind == "paid" and o.node.get("trade_status", "TRADE_SUCCESS") != "TRADE_SUCCESS":
                kind = "closed"
            return Answer(kind, o.sub_code)
        extra = {"paymentNotifyUrl": self.notify_url} if self.notify_url else {}
        a = self.shop.antom().pay(ptid, code, 1250, "USD", "Magic", **extra)
        status, result = a.result
        if status == "S":
            return Answer("paid")
        if status == "U":
            return Answer("waiting" if result == "PAYMENT_IN_PROCESS" else "unknown", result)
        return Answer("failed", result)

    def query(self, ptid: str) -> Answer:
        if self.dialect == "mapi":
            with self.shop.mapi() as m:
                r = m.query(ptid)
            if not r.ok:
                return Answer("not-found" if r.error == "TRADE_NOT_EXIST" else "failed", r.error)
            kinds = {"TRADE_SUCCESS": "paid", "WAIT_BUYER_PAY": "waiting", "TRADE_CLOSED": "closed"}
            return Answer(kinds[r.status or ""], r.get("error_code"))
        if self.dialect == "openapi":
            o = self.shop.open().call("alipay.trade.query", {"out_trade_no": ptid})
            if o.code != "10000":
                return Answer("not-found" if o.sub_code == "ACQ.TRADE_NOT_EXIST" else "failed", o.sub_code)
            kinds = {"TRADE_SUCCESS": "paid", "WAIT_BUYER_PAY": "waiting", "TRADE_CLOSED": "closed"}
            return Answer(kinds[o["trade_status"]])
        a = self.shop.antom().call("inquiryPayment", {"paymentRequestId": ptid})
        if a.result[0] != "S":
            return Answer("not-found" if a.result[1] == "ORDER_NOT_EXIST" else "failed", a.result[1])
        kinds = {"SUCCESS": "paid", "PROCESSING": "waiting", "FAIL": "closed", "CANCELLED": "cancelled"}
        return Answer(kinds[a["paymentStatus"]], a.body.get("paymentResultCode"))

    def cancel(self, ptid: str) -> Answer:
        if self.dialect == "mapi":
            with self.shop.mapi() as m:
                c = m.cancel(ptid)
            return Answer("cancelled" if c.ok else "failed", c.error, c.action)
        if self.dialect == "openapi":
            o = self.shop.open().call("alipay.trade.cancel", {"out_trade_no": ptid})
            return Answer("cancelled" if o.code == "10000" else "failed", o.sub_code, o.node.get("action"))
        a = self.shop.antom().call("cancel", {"paymentRequestId": ptid})
        return Answer("cancelled" if a.result[0] == "S" else "failed", a.result[1])


def until(what: Callable[[], bool], seconds: float = 20) -> None:  # float-ok: seconds
    """Wait for a state the worker brings about (it polls every 50 ms); fail if it never comes."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.05)


@pytest.fixture
def server(db_url: str) -> Iterator[LiveServer]:
    """A production server (magic codes only for test merchants) with a short payment timeout and
    notification retries at once; the ledger audit is clean afterwards."""
    live = LiveServer(
        db_url,
        payment_timeout_seconds=PAYMENT_TIMEOUT,
        notify_schedule="0,0,0,0,0,0",
        **LOOPBACK_RECEIVERS,
    )
    try:
        yield live
    finally:
        live.stop()
    findings = live.run(audit)
    assert not findings, f"ledger audit failed after the test: {findings}"


def test_shop(live: LiveServer) -> Shop:
    """A live merchant and its test merchant's credentials, on ``live``."""

    async def go(p: Any) -> Shop:
        await f.rates(p)
        real = await f.merchant(p, "USD")
        test = await merchants.test_merchant_of(p, real.merchant.partner_id)
        return Shop(live, test, None)

    return live.run(go)  # type: ignore[no-any-return]


test_shop.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def notify_attempts(live: LiveServer, ptid: str) -> list[tuple[int | None, str | None]]:
    """The delivery attempts of a payment's notifications: (HTTP status, error) in order."""

    async def go(p: Any) -> list[tuple[int | None, str | None]]:
        async with p.engine.connect() as conn:
            rows = await conn.execute(
                select(t.notify_attempts.c.http_status, t.notify_attempts.c.error)
                .join(t.outbox, t.outbox.c.id == t.notify_attempts.c.outbox_id)
                .join(t.payments, t.payments.c.id == t.outbox.c.payment_id)
                .where(t.payments.c.partner_trans_id == ptid, t.outbox.c.refund_id.is_(None))
                .order_by(t.notify_attempts.c.id)
            )
            return [(r.http_status, r.error) for r in rows]

    return live.run(go)  # type: ignore[no-any-return]


def closed_with(live: LiveServer, shop: Shop, ptid: str) -> str | None:
    """Why the test merchant's payment ``ptid`` closed, as stored."""

    async def go(p: Any) -> str | None:
        async with p.engine.connect() as conn:
            return (  # type: ignore[no-any-return]
                await conn.execute(
                    select(t.payments.c.result_code).where(
                        t.payments.c.merchant_id == shop.merchant.id, t.payments.c.partner_trans_id == ptid
                    )
                )
            ).scalar_one()

    return live.run(go)  # type: ignore[no-any-return]


def move_clock(live: LiveServer, shop: Shop, seconds: int) -> None:
    """Move the test merchant's clock forward (what ``tillpay merchant clock`` does)."""

    async def go(p: Any) -> None:
        async with p.engine.begin() as conn:
            await conn.execute(
                update(t.merchants)
                .where(t.merchants.c.id == shop.merchant.id)
                .values(clock_offset_seconds=t.merchants.c.clock_offset_seconds + seconds)
            )

    live.run(go)


def run_every_row(live: LiveServer, dialect: str) -> set[Magic]:
    """Each row of the table through ``dialect``; returns the outcomes exercised."""
    shop = test_shop(live)
    receiver = Receiver()
    till = Till(shop, dialect, receiver.url)
    seen: set[Magic] = set()
    try:
        # success
        assert till.pay("M-1", code_for(Magic.SUCCESS)).kind == "paid"
        assert till.query("M-1").kind == "paid"
        seen.add(Magic.SUCCESS)

        # confirmation, then confirmed after N seconds (N = 1)
        assert till.pay("M-2", code_for(Magic.CONFIRM_THEN_CONFIRMED, 1)).kind == "waiting"
        until(lambda: till.query("M-2").kind == "paid")
        seen.add(Magic.CONFIRM_THEN_CONFIRMED)

        # confirmation, then rejected: N = 90 seconds, brought forward by moving the merchant's clock
        assert till.pay("M-3", code_for(Magic.CONFIRM_THEN_REJECTED, 90)).kind == "waiting"
        assert till.query("M-3").kind == "waiting"
        move_clock(live, shop, 120)
        until(lambda: till.query("M-3").kind in ("closed", "cancelled"))
        assert closed_with(live, shop, "M-3") == Code.USER_REJECTED
        seen.add(Magic.CONFIRM_THEN_REJECTED)

        # confirmation never answered: closes when the payment timeout passes on the merchant's clock
        assert till.pay("M-4", code_for(Magic.CONFIRM_NEVER_ANSWERED)).kind == "waiting"
        assert till.query("M-4").kind == "waiting"
        move_clock(live, shop, PAYMENT_TIMEOUT + 10)
        until(lambda: till.query("M-4").kind in ("closed", "cancelled"))
        assert closed_with(live, shop, "M-4") == Code.PAYMENT_TIMEOUT
        seen.add(Magic.CONFIRM_NEVER_ANSWERED)

        # refusals and declines, each with the dialect's own code
        for ptid, outcome, code in (
            ("M-5", Magic.BALANCE_NOT_ENOUGH, Code.BUYER_BALANCE_NOT_ENOUGH),
            ("M-6", Magic.CODE_EXPIRED, Code.EXPIRED_CODE),
            ("M-7", Magic.CODE_USED, Code.CODE_USED),
            ("M-8", Magic.RISK_DECLINE, Code.RISK_REJECT),
            ("M-9", Magic.BUYER_FROZEN, Code.BUYER_FROZEN),
        ):
            answer = till.pay(ptid, code_for(outcome))
            assert (answer.kind, answer.error) == ("failed", till.expected_error(code)), outcome
            seen.add(outcome)

        # an answer slower than the till's timeout: the till gives up, the pay still lands later
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(till.pay, "M-10", code_for(Magic.SLOW_ANSWER, 2))
            assert slow.result().kind == "paid"
            assert time.monotonic() - started >= 2  # the gateway held the answer for N seconds
        seen.add(Magic.SLOW_ANSWER)

        # UNKNOW, then the query finds it paid (N = 0) or processing and then paid (N = 1)
        assert till.pay("M-11", code_for(Magic.UNKNOWN_THEN_SUCCESS)).kind == "unknown"
        assert till.query("M-11").kind == "paid"
        assert till.pay("M-11b", code_for(Magic.UNKNOWN_THEN_SUCCESS, 1)).kind == "unknown"
        assert till.query("M-11b").kind in ("waiting", "paid")
        until(lambda: till.query("M-11b").kind == "paid")
        seen.add(Magic.UNKNOWN_THEN_SUCCESS)

        # a success that lands after the till's cancel: the cancel refunds it
        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(till.pay, "M-12", code_for(Magic.SUCCESS_AFTER_CANCEL, 2))
            until(lambda: till.query("M-12").kind == "paid")  # paid while the till still waits
            cancelled = till.cancel("M-12")
            assert cancelled.kind == "cancelled"
            if dialect != "antom":
                assert cancelled.action == "refund"
            assert late.result().kind == "paid"  # the success the till no longer listens to
        assert till.query("M-12").kind in ("closed", "cancelled")
        seen.add(Magic.SUCCESS_AFTER_CANCEL)

        # a notification recorded as failed twice, then delivered: the handler saw it three times
        assert till.pay("M-13", code_for(Magic.NOTIFY_FAILS, 2)).kind == "paid"
        until(lambda: len(notify_attempts(live, "M-13")) >= 3)
        attempts = notify_attempts(live, "M-13")
        assert [a[1] for a in attempts] == [magic.FAILED_DELIVERY, magic.FAILED_DELIVERY, None]
        assert all(a[0] == 200 for a in attempts)
        seen.add(Magic.NOTIFY_FAILS)

        # a repeat of a magic pay answers with the first result, and charges nothing more
        assert till.pay("M-1", code_for(Magic.SUCCESS)).kind == "paid"
    finally:
        receiver.close()
    assert_sandbox_money_only(live, shop)
    return seen


def assert_sandbox_money_only(live: LiveServer, shop: Shop) -> None:
    """Every magic payment was paid by a sandbox wallet, and settling today settles none of them."""

    async def go(p: Any) -> tuple[int, int]:
        async with p.engine.connect() as conn:
            not_sandbox = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.payments.join(t.wallet_users, t.wallet_users.c.id == t.payments.c.user_id))
                    .where(t.payments.c.merchant_id == shop.merchant.id, t.wallet_users.c.sandbox.is_(False))
                )
            ).scalar_one()
        batches = await settlement.list_batches(p, partner_id=shop.merchant.partner_id, limit=10)
        return int(not_sandbox), len(batches)

    assert live.run(go) == (0, 0)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_magic_code_gives_its_outcome(server: LiveServer, dialect: str) -> None:
    assert run_every_row(server, dialect) == {row.outcome for row in TABLE}


def test_a_magic_code_of_a_live_merchant_on_a_production_server_is_refused_and_changes_nothing(
    live: LiveServer,
) -> None:
    async def go(p: Any) -> Any:
        await f.rates(p)
        return await f.merchant(p, "USD")

    shop = Shop(live, live.run(go), None)
    before = counts(live)
    wallets_before = live.run(lambda p: _wallet_count(p))
    for dialect in DIALECTS:
        till = Till(shop, dialect)
        for row in TABLE:
            answer = till.pay(f"L-{dialect}-{row.number}", row.example)
            assert (answer.kind, answer.error) == ("failed", till.expected_error(Code.INVALID_CODE))
    after = counts(live)
    # Refused as any code no device has: only the wrong-code count moves (as it does today).
    assert {k: v for k, v in after.items() if k != "bad_codes"} == {
        k: v for k, v in before.items() if k != "bad_codes"
    }
    assert live.run(lambda p: _wallet_count(p)) == wallets_before


async def _wallet_count(p: Any) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.wallet_users))).scalar_one())


def test_a_magic_code_on_a_sandbox_server_pays_a_live_merchant_with_sandbox_money_never_settled(
    live_sandbox: LiveServer, tmp_path: Path
) -> None:
    async def go(p: Any) -> Any:
        await f.rates(p)
        return await f.merchant(p, "USD"), await f.customer(p, "CNY")

    new, customer = live_sandbox.run(go)
    shop = Shop(live_sandbox, new, customer)
    till = Till(shop, "mapi")
    assert till.pay("S-1", code_for(Magic.SUCCESS)).kind == "paid"
    assert till.pay("S-2", code_for(Magic.CONFIRM_THEN_CONFIRMED)).kind == "waiting"
    until(lambda: till.query("S-2").kind == "paid")
    answer = till.pay("S-3", code_for(Magic.BALANCE_NOT_ENOUGH))
    assert (answer.kind, answer.error) == ("failed", "BUYER_BALANCE_NOT_ENOUGH")
    assert till.pay("S-4", shop.code()).kind == "paid"  # a real customer's payment, for comparison

    async def login(p: Any) -> bool:
        return (await wallets.user_by_login(p, magic.login_of(shop.merchant, Wallet.FUNDED))).sandbox

    assert live_sandbox.run(login)

    async def settle(p: Any) -> tuple[list[int], list[int]]:
        # Days later, so the day's cut-off has passed: the day is settled, and its payouts made.
        later = Platform(p.settings, clock=FakeClock(p.now() + timedelta(days=5)))
        try:
            day = settlement.last_closed_day(later) - timedelta(days=4)
            for d in range(5):
                await settlement.run_day(later, day + timedelta(days=d), directory=tmp_path)
        finally:
            await later.close()
        batches = await settlement.list_batches(p, partner_id=shop.merchant.partner_id)
        return [b.payment_count for b in batches], [b.payments_amount for b in batches]

    counts_, amounts = live_sandbox.run(settle)
    # Only the real customer's payment is settled: 12.50 USD once, none of the magic ones.
    assert (sum(counts_), sum(amounts)) == (1, 1250)


def test_a_till_whose_timeout_is_shorter_than_the_answer_gets_there_through_the_client(
    server: LiveServer,
) -> None:
    from tillpay.client import MapiClient, TransportError

    shop = test_shop(server)
    m = shop.merchant
    impatient = MapiClient(
        server.url,
        m.partner_id,
        sign_type="RSA2",
        private_key=shop.new.merchant_private_key,
        gateway_public_key=m.gateway_public_key,
        timeout=0.5,
    )
    with impatient:
        # The recommended flow: the pay times out, the queries find the slow payment paid.
        slow = impatient.checkout(
            "T-1",
            code_for(Magic.SLOW_ANSWER, 2),
            "12.50",
            "USD",
            "Latte",
            poll_interval=0.2,
            merchant_timeout=30,
        )
        assert slow.outcome == "PAID" and "unknown" in slow.history
        # A till that cancels when its pay times out: the success it did not wait for is refunded.
        with pytest.raises(TransportError):
            impatient.pay("T-2", code_for(Magic.SUCCESS_AFTER_CANCEL, 2), "12.50", "USD", "Latte")
        until(lambda: impatient.query("T-2").status == "TRADE_SUCCESS")
        assert impatient.cancel("T-2").action == "refund"
        assert impatient.query("T-2").status == "TRADE_CLOSED"


def make_qr(till: Till, ptid: str, minor: int) -> str:
    """A merchant-presented QR order of ``minor`` cents (USD) through the till's dialect; its state."""
    amount = f"{minor // 100}.{minor % 100:02d}"
    if till.dialect == "mapi":
        with till.shop.mapi() as m:
            r = m.precreate(ptid, amount, "USD", "Magic QR")
        assert r.ok and r.qr_code
    elif till.dialect == "openapi":
        o = till.shop.open().call(
            "alipay.trade.precreate", {"out_trade_no": ptid, "total_amount": amount, "subject": "Magic QR"}
        )
        assert o.code == "10000" and o["qr_code"]
    else:
        body = {
            "productCode": "IN_STORE_PAYMENT",
            "paymentRequestId": ptid,
            "paymentAmount": {"currency": "USD", "value": str(minor)},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET"},
            "paymentFactor": {"inStorePaymentScenario": "OrderCode"},
            "order": {
                "orderDescription": "Magic QR",
                "orderAmount": {"currency": "USD", "value": str(minor)},
            },
        }
        a = till.shop.antom().call("pay", body)
        assert a.result == ("U", "PAYMENT_IN_PROCESS") and a["orderCodeForm"]["codeDetails"]
    return till.query(ptid).kind


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_magic_qr_amount_gives_its_outcome(server: LiveServer, dialect: str) -> None:
    shop = test_shop(server)
    till = Till(shop, dialect)
    for row in QR_AMOUNTS:
        ptid = f"Q-{row.minor}"
        assert make_qr(till, ptid, row.minor) == "waiting"
        want = "paid" if row.outcome is Magic.SUCCESS else "closed"
        until(lambda ptid=ptid, want=want: till.query(ptid).kind == want)
        if row.outcome is not Magic.SUCCESS:
            expected = {
                Magic.BALANCE_NOT_ENOUGH: Code.BUYER_BALANCE_NOT_ENOUGH,
                Magic.RISK_DECLINE: Code.RISK_REJECT,
                Magic.BUYER_FROZEN: Code.BUYER_FROZEN,
            }[row.outcome]
            assert closed_with(server, shop, ptid) == expected
    # any other amount waits for a real customer
    assert make_qr(till, "Q-other", 1250) == "waiting"
    assert_sandbox_money_only(server, shop)
