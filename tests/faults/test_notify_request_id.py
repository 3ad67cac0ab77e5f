"""The request id of a pay goes with the notification it causes: stored in the outbox, sent as
``X-Request-Id`` to the merchant (the signature still verifies), and on the worker's log lines of its
delivery. End to end: a real ``tillpay serve`` and a receiver on loopback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fault_receiver import FaultReceiver
from faultkit import Proc, free_port, prepare
from sqlalchemy import create_engine, text

import factories as f
from conftest import LOOPBACK_RECEIVERS, LOOPBACK_RECEIVERS_ENV
from tillpay import logs
from tillpay.client import MapiClient
from tillpay.domain import paycode
from tillpay.outbound import OutboundClient
from tillpay.services import console, payments
from tillpay.services.platform import Platform
from tillpay.store.engine import sync_url
from tillpay.worker.notifier import deliver_due


@pytest.mark.slow
@pytest.mark.loopback_receivers
def test_a_pays_request_id_reaches_its_notification_and_the_delivery_log(tmp_path: Path) -> None:
    shop = prepare(f"sqlite:///{tmp_path / 'tillpay.db'}", users=4)
    receiver = FaultReceiver()
    server = Proc(shop.db_url, "serve", port=free_port(), env=LOOPBACK_RECEIVERS_ENV)
    try:
        client = MapiClient(server.url, shop.partner_id, sign_type="MD5", md5_key=shop.md5_key)
        now = int(time.time())
        codes = [paycode.generate(d.secret, d.device_no, now, 0) for d in shop.devices[:2]]
        client._http.headers["X-Request-Id"] = "till-7.0001"  # the till's own id for its request
        assert client.pay("RID-1", codes[0], "1.00", "CNY", "Tea", notify_url=receiver.url).ok
        del client._http.headers["X-Request-Id"]  # none given: the server makes one
        assert client.pay("RID-2", codes[1], "1.00", "CNY", "Tea", notify_url=receiver.url).ok

        engine = create_engine(sync_url(shop.db_url))
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT o.notify_id, o.request_id, p.partner_trans_id FROM outbox o "
                    "JOIN payments p ON p.id = o.payment_id ORDER BY o.id"
                )
            ).all()
        engine.dispose()
        assert [r.partner_trans_id for r in rows] == ["RID-1", "RID-2"]
        assert rows[0].request_id == "till-7.0001"
        assert re.fullmatch(r"[0-9a-f]{32}", rows[1].request_id)

        receiver.wait_acknowledged({r.notify_id for r in rows}, timeout=30)
        by_id = {s.fields["notify_id"]: s for s in receiver.seen}
        for r in rows:
            seen = by_id[r.notify_id]
            assert seen.headers["x-request-id"] == r.request_id
            # A header is not part of the signed content: the merchant's check still passes.
            assert client.verify_notification(seen.fields)
        client.close()

        # The delivery's log line carries the request's id (the worker logs it just after the answer).
        deadline = time.monotonic() + 30
        wanted = [f"request_id='{r.request_id}'" for r in rows]

        def delivered_lines() -> list[str]:
            return [ln for ln in server.output().splitlines() if "notify" in ln and "ok=True" in ln]

        while not all(any(w in ln for ln in delivered_lines()) for w in wanted):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        for r in rows:
            (line,) = [ln for ln in delivered_lines() if r.notify_id in ln]
            assert f"request_id='{r.request_id}'" in line
    finally:
        server.stop()
        receiver.close()


@pytest.mark.anyio
@pytest.mark.loopback_receivers
async def test_the_console_lists_the_request_id_and_a_redelivery_sends_it_again(platform: Platform) -> None:
    receiver = FaultReceiver()
    platform.settings = platform.settings.model_copy(update=LOOPBACK_RECEIVERS)
    try:
        await f.rates(platform)
        m = await f.merchant(platform, notify_url=receiver.url)
        c = await f.customer(platform)
        cmd = payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id="RID-C",
            code=await f.code(platform, c),
            price_amount=1000,
            price_currency="USD",
            settle_currency="USD",
            subject="Tea",
            dialect="mapi",
            notify_url=receiver.url,
        )
        token = logs.request_id.set("till-9:abc")  # as the web middleware sets it for a request
        try:
            await payments.pay(platform, cmd)
        finally:
            logs.request_id.reset(token)
        async with OutboundClient.from_settings(platform.settings) as client:
            assert await deliver_due(platform, client) == 1
            (n,) = await console.notifications(platform, m.merchant.id)
            assert n.request_id == "till-9:abc" and n.status == "delivered"
            # Redelivered from the console later, outside any request: the same id goes with it.
            assert await console.redeliver(platform, m.merchant.id, n.notify_id)
            assert await deliver_due(platform, client) == 1
        assert [s.headers["x-request-id"] for s in receiver.seen] == ["till-9:abc", "till-9:abc"]
        assert logs.request_id.get() is None  # the delivery's id does not leak into the caller
    finally:
        receiver.close()
