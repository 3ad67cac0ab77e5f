"""Each risk rule, seen through the MAPI dialect, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conftest import LiveServer
from mapi_helpers import Shop, make_shop
from tillpay.domain import paycode
from tillpay.services import merchants, payments, risk, wallets
from tillpay.services.platform import MERCHANT_CACHE_SECONDS


def rules(live: LiveServer, scope: str, subject: str, **values: Any) -> None:
    live.run(lambda p: risk.set_rules(p, scope, subject, values))


def explain(live: LiveServer, trade_no: str | None) -> risk.Explanation:
    assert trade_no
    return live.run(lambda p: risk.explain(p, trade_no))  # type: ignore[no-any-return]


def code_at_slot(live: LiveServer, shop: Shop, slot: int, minutes_ago: int = 0) -> str:
    dev = shop.customer.device
    now = int(live.run(lambda p: _now(p)))
    return paycode.generate(dev.secret, dev.device_no, now - 60 * minutes_ago, slot)


async def _now(p: Any) -> int:
    return int(p.now().timestamp())


def test_amount_over_the_confirm_limit_waits_and_the_decision_is_explained(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    with shop.client(live) as c:
        r = c.pay("R-1", shop.code(live), "2000.01", "CNY", "TV")
        assert r.result_code == "UNKNOW" and r.status == "WAIT_BUYER_PAY"
    e = explain(live, r.trade_no)
    assert (e.verdict, e.rule) == ("CONFIRM", "amount_over_confirm_limit")
    assert e.inputs["wallet_amount"] == 200001 and e.config["confirm_above"]["CNY"] == "2000.00"


def test_per_payment_limit_declines(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    rules(live, "scheme", "", per_payment_limit={"CNY": "500.00"})
    with shop.client(live) as c:
        assert c.pay("L-1", shop.code(live), "500.00", "CNY", "ok").ok
        r = c.pay("L-2", shop.code(live), "500.01", "CNY", "too much")
        assert r.failed and r.error == "BEYOND_PER_RECEIPT_RESTRICTION"
        assert c.query("L-2").status == "TRADE_CLOSED"
    assert shop.balance(live) == 1_000_000 - 50_000
    assert explain(live, r.trade_no).code == "PAYMENT_AMOUNT_EXCEED_LIMIT"


def test_daily_limit_counts_paid_and_waiting_payments(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=10_000_000)
    rules(live, "scheme", "", daily_limit={"CNY": "3000.00"})
    with shop.client(live) as c:
        assert c.pay("D-1", shop.code(live), "1000.00", "CNY", "a").ok
        waiting = c.pay("D-2", shop.code(live), "2000.00", "CNY", "b")  # still under: waits (not > 2000)
        assert waiting.ok
        over = c.pay("D-3", shop.code(live), "1000.00", "CNY", "c")
        assert over.failed and over.error == "BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR"
        big = c.pay("D-4", shop.code(live), "2100.00", "CNY", "d")
        assert big.error == "BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR"


def test_monthly_limit_declines(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=10_000_000)
    rules(live, "scheme", "", monthly_limit={"CNY": "100.00"})
    with shop.client(live) as c:
        assert c.pay("M-1", shop.code(live), "60.00", "CNY", "a").ok
        r = c.pay("M-2", shop.code(live), "50.00", "CNY", "b")
        assert r.error == "BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR"


def test_user_override_beats_the_scheme_and_merchant_override_applies_to_its_payments(
    live: LiveServer,
) -> None:
    shop = make_shop(live, currency="CNY")
    other = make_shop(live, currency="CNY")
    rules(live, "scheme", "", per_payment_limit={"CNY": "10.00"})
    rules(live, "user", shop.customer.user.login_id, per_payment_limit={"CNY": "100.00"})
    rules(live, "merchant", other.partner, confirm_above={"CNY": "1.00"})
    with shop.client(live) as c:
        assert c.pay("U-1", shop.code(live), "50.00", "CNY", "allowed by the user override").ok
    with other.client(live) as c:
        r = c.pay("U-2", other.code(live), "5.00", "CNY", "confirm at this merchant")
        assert r.status == "WAIT_BUYER_PAY"


@pytest.mark.parametrize("action", ["CONFIRM", "DECLINE"])
def test_velocity(live: LiveServer, action: str) -> None:
    shop = make_shop(live, currency="CNY")
    rules(live, "scheme", "", velocity_count=2, velocity_minutes=10, velocity_action=action)
    with shop.client(live) as c:
        assert c.pay("V-1", shop.code(live), "1.00", "CNY", "a").ok
        assert c.pay("V-2", shop.code(live), "1.00", "CNY", "b").ok
        third = c.pay("V-3", shop.code(live), "1.00", "CNY", "c")
    if action == "CONFIRM":
        assert third.status == "WAIT_BUYER_PAY"
    else:
        assert third.error == "PAYMENT_REQUEST_HAS_RISK"
    assert explain(live, third.trade_no).rule == "velocity"


def test_a_new_device_must_confirm(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    rules(live, "scheme", "", new_device_hours=24)
    with shop.client(live) as c:
        r = c.pay("N-1", shop.code(live), "1.00", "CNY", "a")
    assert r.status == "WAIT_BUYER_PAY" and explain(live, r.trade_no).rule == "new_device"


def test_a_code_from_the_minute_just_ended_passes_an_older_one_must_confirm(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    rules(live, "scheme", "", offline_code_confirm=True)
    while time.time() % 60 > 50:  # the codes' ages must not change between making and paying them
        time.sleep(0.5)
    with shop.client(live) as c:
        fresh = c.pay("O-1", code_at_slot(live, shop, 0), "1.00", "CNY", "a")
        last_minute = c.pay("O-2", code_at_slot(live, shop, 1, minutes_ago=1), "1.00", "CNY", "b")
        old = c.pay("O-3", code_at_slot(live, shop, 2, minutes_ago=2), "1.00", "CNY", "c")
    assert fresh.ok and fresh.status == "TRADE_SUCCESS"
    assert last_minute.ok and last_minute.status == "TRADE_SUCCESS"  # shown at :58, scanned at :01
    assert old.status == "WAIT_BUYER_PAY"
    e = explain(live, old.trade_no)
    assert e.rule == "offline_code" and e.inputs["code_lag_steps"] == 2
    rules(live, "scheme", "", offline_code_confirm=True, offline_code_min_steps=1)
    while time.time() % 60 > 55:
        time.sleep(0.5)
    with shop.client(live) as c:
        strict = c.pay("O-4", code_at_slot(live, shop, 3, minutes_ago=1), "1.00", "CNY", "d")
    assert strict.status == "WAIT_BUYER_PAY"


def test_frozen_user_and_frozen_merchant_are_declined(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    live.run(lambda p: wallets.set_status(p, shop.customer.user.login_id, "frozen"))
    with shop.client(live) as c:
        r = c.pay("F-1", shop.code(live), "1.00", "CNY", "a")
        assert r.error == "BUYER_ENABLE_STATUS_FORBID"
    live.run(lambda p: wallets.set_status(p, shop.customer.user.login_id, "active"))
    live.run(lambda p: merchants.set_merchant_status(p, shop.partner, "frozen"))
    time.sleep(MERCHANT_CACHE_SECONDS + 0.1)  # servers cache merchants this long
    with shop.client(live) as c:
        r = c.pay("F-2", shop.code(live), "1.00", "CNY", "b")
        assert r.error == "ACCESS_FORBIDDEN"
    assert shop.balance(live) == 1_000_000


def test_blocked_merchant_category_is_declined(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")  # factories create merchants with MCC 5411
    rules(live, "scheme", "", blocked_mcc=["5411"])
    with shop.client(live) as c:
        r = c.pay("B-1", shop.code(live), "1.00", "CNY", "a")
    assert r.error == "PAYMENT_REQUEST_HAS_RISK" and explain(live, r.trade_no).rule == "blocked_mcc"


def test_a_terminal_sending_invalid_codes_is_blocked_for_a_while(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    rules(live, "scheme", "", terminal_bad_codes=3, terminal_window_minutes=10)
    with shop.client(live) as c:
        for i in range(3):
            bad = c.pay(f"T-{i}", f"2899999999{i}0000000", "1.00", "CNY", "x", terminal_id="T9")
            assert bad.error == "INVALID_BUYER_IDENTITY_CODE"
        blocked = c.pay(
            "T-9", shop.code(live), "1.00", "CNY", "good code, blocked terminal", terminal_id="T9"
        )
        assert blocked.error == "INVALID_CODE_LIMIT_EXCEEDED" and "T9" in (blocked.detail or "")
        other = c.pay("T-10", shop.code(live), "1.00", "CNY", "another terminal", terminal_id="T1")
        assert other.ok


def test_two_parallel_payments_cannot_both_slip_under_the_daily_limit(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY", balance=10_000_000)
    rules(live, "scheme", "", daily_limit={"CNY": "500.00"})
    codes = [code_at_slot(live, shop, slot) for slot in range(8)]
    results: list[Any] = []
    barrier = threading.Barrier(len(codes))

    def pay(i: int) -> None:
        with shop.client(live) as c:
            barrier.wait()
            results.append(c.pay(f"P-{i}", codes[i], "200.00", "CNY", "race"))

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(len(codes))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ok = [r for r in results if r.ok]
    assert len(ok) == 2, [(r.result_code, r.error) for r in results]  # 2 x 200 <= 500 < 3 x 200
    assert {r.error for r in results if not r.ok} == {"BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR"}
    assert shop.balance(live) == 10_000_000 - 40_000
    assert live.run(lambda p: payments.count_payments(p, shop.new.merchant.id)) == len(codes)


def test_a_payment_the_balance_cannot_cover_is_declined_at_once_even_above_the_confirm_limit(
    live: LiveServer,
) -> None:
    # 300.00 USD is 2130.69 CNY: above the 2000.00 CNY confirm limit and above the 2000.00 CNY balance,
    # though the price alone (300.00) is not.
    shop = make_shop(live, currency="USD", balance=200_000)
    code = shop.code(live)
    with shop.client(live) as c:
        r = c.pay("O-1", code, "300.00", "USD", "TV")
        assert not r.ok and r.error == "BUYER_BALANCE_NOT_ENOUGH" and r.status != "WAIT_BUYER_PAY"
        assert c.query("O-1").status == "TRADE_CLOSED"
    e = explain(live, r.trade_no)
    assert (e.verdict, e.rule, e.code) == ("DECLINE", "balance", "BUYER_BALANCE_NOT_ENOUGH")
    assert e.inputs["wallet_amount"] == 213_069 and e.inputs["balance"] == 200_000
    assert "amount_over_confirm_limit" in e.fired
    pending = live.run(lambda p: payments.pending_for_user(p, shop.customer.user.id))
    assert pending == [] and shop.balance(live) == 200_000
    assert shop.code(live) == code  # the code is still unused: after a top-up it pays
    live.run(lambda p: wallets.topup(p, shop.customer.user.login_id, 13_069))
    with shop.client(live) as c:
        assert c.pay("O-2", code, "300.00", "USD", "TV").status == "WAIT_BUYER_PAY"
