"""``tillpay worker`` as a process of its own, next to ``tillpay serve --no-worker``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from test_serve import TILLPAY, Served, cli_json

from tillpay.client import MapiClient


@pytest.mark.slow
def test_a_separate_worker_closes_what_a_no_worker_server_leaves_waiting(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Payments over CNY 10.00 wait for the customer, and a waiting payment times out after one second.
    monkeypatch.setenv("TILLPAY_CONFIRM_ABOVE", "CNY:10.00")
    monkeypatch.setenv("TILLPAY_PAYMENT_TIMEOUT_SECONDS", "1")
    m = cli_json(db_url, "merchant", "add", "--name", "Night Shop", "--currency", "CNY")
    cli_json(db_url, "wallet", "add", "--login", "bob@example.test", "--pin", "135790")
    cli_json(
        db_url, "wallet", "topup", "--login", "bob@example.test", "--amount", "100.00", "--reference", "t-1"
    )
    server = Served(db_url, "--no-worker")
    env = {**os.environ, "TILLPAY_DATABASE_URL": db_url}
    try:
        code = cli_json(db_url, "wallet", "code", "--login", "bob@example.test")["code"]
        with MapiClient(
            server.url,
            m["partner_id"],
            sign_type="RSA2",
            private_key=m["merchant_private_key"],
            gateway_public_key=m["tillpay_public_key"],
        ) as c:
            r = c.pay("W-1", code, "50.00", "CNY", "Lamp")
            assert r.status == "WAIT_BUYER_PAY"
            time.sleep(2.5)
            # The server runs no worker: nothing has closed the payment.
            pending = subprocess.run(
                [*TILLPAY, "--json", "worker", "--once"], capture_output=True, text=True, env=env, timeout=60
            )
            assert pending.returncode == 0, pending.stderr
            assert json.loads(pending.stdout) == {"expired": 1, "attempted": 0}
            q = c.query("W-1")
            assert q.status == "TRADE_CLOSED" and q.get("close_reason") == "SESSION_TIMEOUT"
        # A long-running worker stops cleanly on SIGTERM.
        worker = subprocess.Popen([*TILLPAY, "worker"], env=env, start_new_session=True)
        time.sleep(2)
        assert worker.poll() is None
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        server.stop()
