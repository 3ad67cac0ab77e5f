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

from conftest import LOOPBACK_RECEIVERS_ENV
from tillpay.client import MapiClient
from tillpay.domain import paycode
from tillpay.store.engine import sync_url


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
