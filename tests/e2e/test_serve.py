"""End to end: ``tillpay`` CLI and ``tillpay serve`` as real processes, paid through the client library."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from serving import stop_process_group, wait_until_healthy
from tillpay.client import MapiClient

HERE = Path(__file__).parent
TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def cli(db_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``tillpay --json ARGS`` against ``db_url``."""
    env = {**os.environ, "TILLPAY_DATABASE_URL": db_url}
    proc = subprocess.run([*TILLPAY, "--json", *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"tillpay {' '.join(args)} failed ({proc.returncode}): {proc.stdout} {proc.stderr}"
        )
    return proc


def cli_json(db_url: str, *args: str) -> Any:
    return json.loads(cli(db_url, *args).stdout)


class Served:
    """A ``tillpay serve`` process."""

    def __init__(self, db_url: str, *extra: str, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TILLPAY_DATABASE_URL": db_url, "TILLPAY_WORKER_POLL_SECONDS": "0.1"}
        self.proc = subprocess.Popen(
            [*TILLPAY, "serve", "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        wait_until_healthy(self.proc, self.url)

    def stop(self) -> str:
        return stop_process_group(self.proc)


@pytest.fixture
def shop(db_url: str) -> Iterator[dict[str, Any]]:
    """A merchant and a funded wallet made with the CLI, and a running two-process server."""
    m = cli_json(db_url, "merchant", "add", "--name", "Corner Cafe", "--currency", "CNY")
    w = cli_json(db_url, "wallet", "add", "--login", "alice@example.test", "--pin", "246810")
    cli_json(
        db_url, "wallet", "topup", "--login", "alice@example.test", "--amount", "500.00", "--reference", "t-1"
    )
    server = Served(db_url, "--workers", "2")
    try:
        yield {"db": db_url, "url": server.url, "merchant": m, "wallet": w, "server": server}
    finally:
        server.stop()
    audit = cli(db_url, "audit", check=False)
    assert audit.returncode == 0, audit.stdout


def client(shop: dict[str, Any]) -> MapiClient:
    m = shop["merchant"]
    return MapiClient(
        shop["url"],
        m["partner_id"],
        sign_type="RSA2",
        private_key=m["merchant_private_key"],
        gateway_public_key=m["tillpay_public_key"],
    )


def code(shop: dict[str, Any]) -> str:
    return str(cli_json(shop["db"], "wallet", "code", "--login", "alice@example.test")["code"])


def balance(shop: dict[str, Any]) -> str:
    return str(cli_json(shop["db"], "wallet", "show", "--login", "alice@example.test")["balance"])


def test_pay_confirm_refund_through_the_server_process(shop: dict[str, Any]) -> None:
    with client(shop) as c:
        r = c.checkout("E2E-1", code(shop), "12.50", "CNY", "Latte", poll_interval=0.2, merchant_timeout=10)
        assert r.outcome == "PAID"
        assert balance(shop) == "487.50"
        # 2100.00 is more than the 487.50 left: refused at once, never sent to the customer to confirm.
        poor = c.pay("E2E-2", code(shop), "2100.00", "CNY", "Espresso machine")
        assert poor.error == "BUYER_BALANCE_NOT_ENOUGH" and poor.status != "WAIT_BUYER_PAY"
        why = cli_json(shop["db"], "risk", "explain", poor.trade_no or "")
        assert (why["verdict"], why["rule"]) == ("DECLINE", "balance")
        assert cli_json(shop["db"], "wallet", "pending", "--login", "alice@example.test")["pending"] == []
        q = c.query("E2E-2")
        assert q.status == "TRADE_CLOSED" and q.get("close_reason") == "BUYER_BALANCE_NOT_ENOUGH"
        cli_json(
            shop["db"],
            "wallet",
            "topup",
            "--login",
            "alice@example.test",
            "--amount",
            "2000.00",
            "--reference",
            "t-2",
        )
        big = c.pay("E2E-3", code(shop), "2100.00", "CNY", "Espresso machine")
        assert big.result_code == "UNKNOW" and big.status == "WAIT_BUYER_PAY"
        why = cli_json(shop["db"], "risk", "explain", big.trade_no or "")
        assert (why["verdict"], why["rule"]) == ("CONFIRM", "amount_over_confirm_limit")
        pending = cli_json(shop["db"], "wallet", "pending", "--login", "alice@example.test")["pending"]
        assert [p["partner_trans_id"] for p in pending] == ["E2E-3"]
        wrong = cli(
            shop["db"], "wallet", "confirm", "--login", "alice@example.test", "--pin", "000000", check=False
        )
        assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"] == "WRONG_PIN"
        confirmed = cli(
            shop["db"], "wallet", "confirm", "--login", "alice@example.test", "--pin", "246810", check=False
        )
        assert json.loads(confirmed.stdout)["status"] == "TRADE_SUCCESS"
        assert c.query("E2E-3").status == "TRADE_SUCCESS"
        assert c.refund("E2E-1", "E2E-1-R", "2.50", "CNY").ok
    assert balance(shop) == "390.00"  # 500.00 - 12.50 + 2000.00 - 2100.00 + 2.50


def fire(
    shop: dict[str, Any], order: str, code_: str, processes: int = 4, threads: int = 5
) -> list[dict[str, Any]]:
    m = shop["merchant"]
    creds = json.dumps(
        {"url": shop["url"], "partner": m["partner_id"], "md5_key": m["md5_key"], "currency": "CNY"}
    )
    start = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "fire_pays.py"), creds, start, str(threads), order, code_],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results: list[dict[str, Any]] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.extend(json.loads(out))
    assert len(results) == processes * threads
    assert not [r for r in results if "exception" in r], results
    return results


def test_twenty_simultaneous_identical_pays_charge_once(shop: dict[str, Any]) -> None:
    results = fire(shop, "SAME-ORDER", code(shop))
    assert {r["result_code"] for r in results} == {"SUCCESS"}
    assert len({r["trade_no"] for r in results}) == 1
    assert balance(shop) == "490.00"


def test_twenty_simultaneous_orders_with_one_code_charge_once(shop: dict[str, Any]) -> None:
    results = fire(shop, "ORDER", code(shop))
    ok = [r for r in results if r["result_code"] == "SUCCESS"]
    assert len(ok) == 1, results
    assert {r["error"] for r in results if r["result_code"] != "SUCCESS"} == {"BUYER_IDENTITY_CODE_USED"}
    assert balance(shop) == "490.00"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_errors_are_clear_and_change_nothing(db_url: str) -> None:
    cli_json(db_url, "wallet", "add", "--login", "bob@example.test", "--pin", "111111")
    for args, needle in [
        (
            ["wallet", "topup", "--login", "bob@example.test", "--amount", "1e3", "--reference", "t-3"],
            "amount",
        ),
        (
            ["wallet", "topup", "--login", "bob@example.test", "--amount", "-5", "--reference", "t-4"],
            "amount",
        ),
        (
            ["wallet", "topup", "--login", "nobody@example.test", "--amount", "5", "--reference", "t-5"],
            "NOT_FOUND",
        ),
        (["wallet", "add", "--login", "bob@example.test", "--pin", "111111"], "ALREADY_EXISTS"),
        (["wallet", "add", "--login", "carol@example.test", "--pin", "12"], "PIN"),
        (["merchant", "add", "--name", "X", "--currency", "ABC"], "CURRENCY"),
        (["merchant", "add", "--name", "X", "--currency", "USD", "--partner-id", "1234"], "2088"),
        (["fx", "set", "USD", "CNY", "1e3"], "rate"),
        (["fx", "set", "USD", "CNY", "-7"], "rate"),
    ]:
        proc = cli(db_url, *args, check=False)
        assert proc.returncode != 0, args
        assert needle.lower() in (proc.stdout + proc.stderr).lower(), (args, proc.stdout, proc.stderr)
    assert cli_json(db_url, "wallet", "show", "--login", "bob@example.test")["balance"] == "0.00"
    assert cli_json(db_url, "merchant", "list")["merchants"] == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_audit_names_what_broke(db_url: str) -> None:
    cli_json(db_url, "wallet", "add", "--login", "dan@example.test", "--pin", "111111")
    cli_json(
        db_url, "wallet", "topup", "--login", "dan@example.test", "--amount", "10.00", "--reference", "t-6"
    )
    assert cli(db_url, "audit").returncode == 0
    path = db_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE wallet_users SET balance = balance + 1")
        db.execute("INSERT INTO postings (entry_id, account, currency, amount) VALUES (1, 'bank', 'CNY', 5)")
    proc = cli(db_url, "audit", check=False)
    assert proc.returncode == 1
    broken = {f["check"] for f in json.loads(proc.stdout)["findings"]}
    assert {"entries_balance", "wallet_equals_postings"} <= broken


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_starts_and_its_wallet_pays_its_merchant(db_url: str, tmp_path: Path) -> None:
    server = Served(db_url, "--demo", cwd=tmp_path)
    try:
        creds = json.loads((Path(db_url.split("///", 1)[1]).parent / "tillpay-demo.json").read_text())
        demo_code = cli_json(db_url, "wallet", "code", "--login", creds["wallet_login"])["code"]
        with MapiClient(
            server.url,
            creds["partner"],
            sign_type="RSA2",
            private_key=creds["merchant_private_key"],
            gateway_public_key=creds["tillpay_public_key"],
        ) as c:
            r = c.checkout(
                "DEMO-1", demo_code, "4.50", "USD", "Flat white", poll_interval=0.2, merchant_timeout=10
            )
        assert r.outcome == "PAID" and r.payment is not None
        assert r.payment.trans_amount_cny is not None and r.payment.get("buyer_currency") == "CNY"
    finally:
        out = server.stop()
    assert creds["partner"] in out and "demo@tillpay.test" in out
    assert cli(db_url, "audit").returncode == 0
