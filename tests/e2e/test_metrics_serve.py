"""``/metrics`` of a real ``tillpay serve`` (one process, and two summed), moved by pays, queries, refunds
and a settlement run sent through the project's clients; request ids in its log lines."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve import Served, cli, cli_json

from conftest import test_settings
from dialect_clients import make_shop
from metrics_scrape import Samples, delta, scrape, value
from tillpay.services.platform import Platform

MAPI_PAY = "alipay.acquire.overseas.spot.pay"
COUNTERS = (
    "tillpay_http_requests_total",
    "tillpay_pay_answers_total",
    "tillpay_http_request_duration_seconds_count",
)


class ServerDatabase:
    """What ``dialect_clients.make_shop`` needs of a server: its URL, and a platform over its database."""

    def __init__(self, db_url: str, url: str) -> None:
        self.url = url
        self.settings = test_settings(db_url, public_url=url)

    def run(self, fn: Any) -> Any:
        async def go() -> Any:
            p = Platform(self.settings)
            try:
                return await fn(p)
            finally:
                await p.close()

        return asyncio.run(go())


def counters(samples: Samples) -> Samples:
    """The request and pay counters, but for the scrapes themselves."""
    return {k: v for k, v in samples.items() if k[0] in COUNTERS and ("dialect", "metrics") not in k[1]}


@pytest.mark.parametrize(("db_url", "workers"), [("sqlite", 1), ("postgres", 2)], indirect=["db_url"])
def test_served_metrics_count_what_the_clients_did(
    db_url: str, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(24)
    monkeypatch.setenv("TILLPAY_METRICS_TOKEN", token)
    auth = {"authorization": f"Bearer {token}"}
    server = Served(db_url, "--workers", str(workers))
    rid = "e2e-" + secrets.token_hex(8)
    try:
        assert (
            httpx.get(server.url + "/metrics").status_code == 401
        )  # the token is asked for, even on loopback
        assert httpx.get(server.url + "/ready").json()["status"] == "ready"
        shop = make_shop(ServerDatabase(db_url, server.url))
        before = scrape(server.url, **auth)
        with shop.mapi() as c:
            for n in range(3):
                assert c.pay(f"E-{n}", shop.code(), "10.00", "USD", "Tea").ok
            assert c.pay("E-poor", shop.code(), "2000.00", "USD", "Bike").error == "BUYER_BALANCE_NOT_ENOUGH"
            assert c.pay("E-big", shop.code(), "400.00", "USD", "Kettle").status == "WAIT_BUYER_PAY"
            assert c.query("E-0").status == "TRADE_SUCCESS"
            assert c.query("E-1").status == "TRADE_SUCCESS"
            assert c.refund("E-0", "E-0-R", "2.50", "USD").ok
        biz = {"out_trade_no": "O-1", "scene": "bar_code", "auth_code": shop.code(), "subject": "Tea"}
        assert shop.open().call("alipay.trade.pay", {**biz, "total_amount": "3.00"}).code == "10000"
        assert shop.antom().pay("A-1", shop.code(), 500, "USD").result == ("S", "SUCCESS")
        # An unknown partner is logged (mapi_error): that line must carry the id this request was sent with.
        unknown = {"service": MAPI_PAY, "partner": "2088000000000009", "sign_type": "MD5", "sign": "x"}
        r = httpx.post(server.url + "/gateway.do", data=unknown, headers={"x-request-id": rid})
        assert r.headers["x-request-id"] == rid
        cli_json(db_url, "settle", "run")

        # Each scrape is answered by whichever process accepts it: every one must show the same sums.
        scrapes = [scrape(server.url, **auth) for _ in range(6)]
        after = scrapes[0]
        assert all(counters(s) == counters(after) for s in scrapes[1:])

        def moved(name: str, **labels: str) -> float:
            return delta(after, before, name, **labels)

        assert moved("tillpay_pay_answers_total", dialect="mapi", outcome="success", code="SUCCESS") == 3
        assert (
            moved(
                "tillpay_pay_answers_total", dialect="mapi", outcome="failed", code="BUYER_BALANCE_NOT_ENOUGH"
            )
            == 1
        )
        assert (
            moved("tillpay_pay_answers_total", dialect="mapi", outcome="waiting", code="WAIT_BUYER_PAY") == 1
        )
        assert (
            moved("tillpay_pay_answers_total", dialect="mapi", outcome="rejected", code="ILLEGAL_PARTNER")
            == 1
        )
        assert moved("tillpay_pay_answers_total", dialect="openapi", outcome="success", code="10000") == 1
        assert moved("tillpay_pay_answers_total", dialect="antom", outcome="success", code="SUCCESS") == 1
        assert moved("tillpay_http_requests_total", dialect="mapi", service=MAPI_PAY, status="200") == 6
        query = "alipay.acquire.overseas.query"
        assert moved("tillpay_http_requests_total", dialect="mapi", service=query, status="200") == 2
        refund = "alipay.acquire.overseas.spot.refund"
        assert moved("tillpay_http_requests_total", dialect="mapi", service=refund, status="200") == 1
        assert moved("tillpay_http_request_duration_seconds_count", dialect="mapi", service=refund) == 1
        assert value(after, "tillpay_risk_decisions_total", verdict="ALLOW", rule="default") == 5
        assert value(after, "tillpay_risk_decisions_total", verdict="DECLINE", rule="balance") == 1
        assert value(after, "tillpay_confirmations_waiting") == 1
        assert value(after, "tillpay_settlement_runs_total") == 1
        assert value(after, "tillpay_settlement_last_run_timestamp_seconds") > 0
        assert value(after, "tillpay_database_up") == 1

        # The pool gauges are each live process's pool, summed: with every process answering, all of them.
        per_process = 1 if db_url.startswith("sqlite") else 10  # store/engine.py's pool sizes
        for _ in range(200):
            httpx.get(server.url + "/health")  # a new connection each: the processes take turns accepting
            pool = value(scrape(server.url, **auth), "tillpay_db_pool_size")
            if pool == workers * per_process:
                break
        assert pool == workers * per_process
    finally:
        out = server.stop()
    lines = [line for line in out.splitlines() if "event='mapi_error'" in line and "2088000000000009" in line]
    assert lines and all(f"request_id='{rid}'" in line for line in lines), out[-3000:]
    audit = cli(db_url, "audit", check=False)
    assert audit.returncode == 0, audit.stdout


def _server_processes(supervisor: int) -> set[int]:
    """The uvicorn worker processes under ``tillpay serve --workers N`` (multiprocessing spawns them)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something true; fails after a minute (a start-up, not a measurement)."""
    deadline = time.monotonic() + 60
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def _pool_files(metrics_dir: Path) -> set[int]:
    """The processes whose pool gauges are in the sums."""
    return {int(f.stem.rsplit("_", 1)[1]) for f in metrics_dir.glob("gauge_livesum_*.db")}


def _two(supervisor: int) -> set[int] | None:
    found = _server_processes(supervisor)
    return found if len(found) == 2 else None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_killed_server_process_keeps_its_counts_and_leaves_the_pool_sum(db_url: str) -> None:
    server = Served(db_url, "--workers", "2")
    try:
        first: set[int] = _wait_for("two server processes", lambda: _two(server.proc.pid))
        environ = Path(f"/proc/{min(first)}/environ").read_bytes().split(b"\0")
        metrics_dir = Path(
            next(v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")).split(b"=", 1)[1].decode()
        )
        for _ in range(200):  # until both processes have answered (SQLite: a pool of one connection each)
            httpx.get(server.url + "/health")
            if value(scrape(server.url), "tillpay_db_pool_size") == 2:
                break
        before = scrape(server.url)
        assert value(before, "tillpay_db_pool_size") == 2
        health = {"dialect": "health", "service": "/health", "status": "200"}
        counted = value(before, "tillpay_http_requests_total", **health)

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _wait_for("a replacement process", lambda: _server_processes(server.proc.pid) - first)
        sent = 0
        for _ in range(200):  # until every live process has answered something, and the sums show it
            assert httpx.get(server.url + "/health").status_code == 200
            sent += 1
            after = scrape(server.url)
            live = _server_processes(server.proc.pid)
            if (
                len(live) == 2
                and _pool_files(metrics_dir) == live
                and value(after, "tillpay_db_pool_size") == 2
            ):
                break
        # A dead process's counts stay in the sums (a counter never goes back) ...
        assert value(after, "tillpay_http_requests_total", **health) == counted + sent
        # ... and its pool is no longer counted: the live processes', one connection each. (uvicorn may have
        # replaced a slow-starting replacement too: every dead process is left out, not just the victim.)
        assert value(after, "tillpay_db_pool_size") == 2
        assert _pool_files(metrics_dir) == live and victim not in live
        assert (metrics_dir / f"counter_{victim}.db").exists()
    finally:
        server.stop()
    assert not metrics_dir.exists()  # tillpay serve removes its metrics directory when it stops
