"""Failures in the middle of a payment: the gateway dies, the network is gone, the ECR itself dies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import MACHINE, Shop, cli, run_in_thread, scan, shop, until
from textual.widgets import Static

from tillpay.ecr.app import EcrApp
from tillpay.ecr.till import make_client

pytestmark = pytest.mark.anyio
__all__ = ["shop"]
HERE = Path(__file__).parent


async def test_gateway_killed_while_waiting_then_restarted_the_ecr_learns_the_payment(shop: Shop) -> None:
    till = shop.till(merchant_timeout=30)
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, MACHINE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.state == "waiting")
        await run_in_thread(shop.gateway.kill)
        await pilot.pause(0.5)  # polls fail now; the ECR keeps waiting, it does not guess
        assert app.paying and app.last_outcome is None
        # The customer confirms in the wallet meanwhile (the wallet reaches the platform another way).
        assert (await run_in_thread(shop.confirm))["status"] == "TRADE_SUCCESS"
        await run_in_thread(shop.gateway.start)
        await until(pilot, lambda: app.last_outcome is not None)
    out = app.last_outcome
    assert out is not None and out.outcome == "PAID"
    assert till.journal.events(out.order.partner_trans_id) == ["sending", "waiting", "paid"]
    assert out.order.trade_no and out.order.trade_no.encode() in shop.receipts.read_bytes()
    till.close()


async def test_gateway_down_when_pay_is_sent_is_resolved_by_query_and_cancel(shop: Shop) -> None:
    till = shop.till(merchant_timeout=6)
    app = EcrApp(till)
    code = await run_in_thread(shop.code)
    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, MACHINE)
        await run_in_thread(shop.gateway.kill)
        await scan(pilot, code)
        await until(pilot, lambda: app.state == "unknown")
        assert "No answer from the gateway" in str(app.query_one("#state", Static).render())
        restart = threading.Thread(target=lambda: (time.sleep(1), shop.gateway.start()))
        restart.start()
        await until(pilot, lambda: app.last_outcome is not None, within=40)
        restart.join()
    out = app.last_outcome
    assert out is not None and out.outcome == "CANCELLED"
    events = till.journal.events(out.order.partner_trans_id)
    assert events[:2] == ["sending", "unknown"] and events[-2:] == ["cancelling", "cancelled"]
    ptid = out.order.partner_trans_id
    assert shop.query(ptid)["error"] == "TRADE_NOT_EXIST"  # the pay never arrived
    # ...and now it never can charge: the cancel closed the order id for good.
    with make_client(shop.cfg) as c:
        late = c.pay(ptid, shop.code(), "349.00", "USD", "late retry")
    assert late.failed and late.error == "TRADE_HAS_CLOSE"
    assert shop.balance() == "10000.00"
    till.close()


def start_ecr_until_waiting(shop: Shop, code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ecr_until_waiting.py"), shop.cfg.source, MACHINE, code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "WAITING", (
        line,
        proc.stderr.read() if proc.poll() is not None and proc.stderr else "",
    )
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no cleanup, like a power cut
    proc.communicate(timeout=20)


async def test_ecr_killed_mid_payment_resolves_its_orders_on_restart(shop: Shop) -> None:
    # 1. Killed while the customer has not confirmed.
    proc = await run_in_thread(lambda: start_ecr_until_waiting(shop, shop.code()))
    await run_in_thread(lambda: kill(proc))
    till = shop.till()
    (first,) = till.journal.orders()
    assert first.state == "waiting"
    till.close()
    # 2. Restarted: before its own sale it queries the first order (still waiting) and cancels it.
    #    Killed again in the middle of that second sale; the customer confirms while it is down.
    proc = await run_in_thread(lambda: start_ecr_until_waiting(shop, shop.code()))
    await run_in_thread(lambda: kill(proc))
    till = shop.till()
    first, second = till.journal.orders()
    assert first.state == "cancelled" and till.journal.events(first.partner_trans_id)[-2:] == [
        "cancelling",
        "cancelled",
    ]
    assert second.state == "waiting"
    assert (await run_in_thread(shop.confirm))["partner_trans_id"] == second.partner_trans_id
    # 3. Restarted: the second order is found paid; it stands and its receipt prints.
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.recovering and len(app.recovered) == 1)
        assert [o.outcome for o in app.recovered] == ["PAID"]
        assert till.journal.unfinished() == []
        await scan(pilot, "4006381333931")
        await scan(pilot, await run_in_thread(shop.code))
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.outcome == "PAID"
    assert shop.query(first.partner_trans_id)["alipay_trans_status"] == "TRADE_CLOSED"
    assert shop.query(second.partner_trans_id)["alipay_trans_status"] == "TRADE_SUCCESS"
    recovered = till.journal.order(second.partner_trans_id)
    assert recovered is not None and recovered.state == "paid"
    assert (recovered.trade_no or "x").encode() in shop.receipts.read_bytes()  # its receipt printed
    pending = cli(shop.db, "wallet", "pending", "--login", "alice@example.test").stdout
    assert '"pending": []' in pending
    till.close()
