"""``/metrics`` of a real ``tillpay serve`` (one process, and two summed), moved by pays, queries, refunds
and a settlement run sent through the project's clients; request ids in its log lines."""

from __future__ import annotations

import asyncio
import secrets
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
