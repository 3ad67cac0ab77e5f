"""The test clock API and a test merchant's test files over real HTTP, signed like the settlement API."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import factories as f
from conftest import LiveServer
from tillpay.protocols.mapi import signing
from tillpay.services import merchants, payments, wallets
from tillpay.services.audit import audit
from tillpay.services.payments import PayCommand
from tillpay.services.platform import Platform


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(db_url, settlement_dir=str(tmp_path / "settlements"))
    try:
        yield s
    finally:
        s.stop()
    assert not s.run(audit)


@pytest.fixture
def shops(server: LiveServer) -> dict[str, Any]:
    """A live merchant, its test merchant, and one sandbox payment at the test merchant."""

    async def go(p: Platform) -> dict[str, Any]:
        live = (await f.merchant(p, "USD")).merchant
        test = (await merchants.test_merchant_of(p, live.partner_id)).merchant
        _, device = await wallets.add_user(
            p, login_id="dev@sandbox.test", currency="USD", pin="123456", sandbox=True
        )
        await wallets.fund(p, "dev@sandbox.test", 100_000, "sbx-1", sandbox=True)
        out = await payments.pay(
            p,
            PayCommand(
                merchant=test,
                partner_trans_id="T-1",
                code=await wallets.current_code(p, device),
                price_amount=1234,
                price_currency="USD",
                settle_currency="USD",
                subject="Goods",
                dialect="mapi",
            ),
        )
        return {"live": live, "test": test, "trade_no": out.payment.trade_no}

    return server.run(go)  # type: ignore[no-any-return]


def signed(service: str, partner: Any, **params: str) -> dict[str, str]:
    q = {
        "service": service,
        "partner": partner.partner_id,
        "timestamp": str(int(time.time() * 1000)),
        **params,
    }
    q["sign"] = signing.sign_request(q, sign_type="MD5", md5_key=partner.md5_key)
    q["sign_type"] = "MD5"
    return q


def test_a_till_moves_its_test_clock_and_downloads_the_test_files(
    server: LiveServer, shops: dict[str, Any]
) -> None:
    test = shops["test"]
    shown = httpx.post(server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", test))
    assert shown.status_code == 200 and shown.json()["offset_seconds"] == 0
    assert shown.headers["x-tillpay-mode"] == "test"

    moved = httpx.post(
        server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", test, advance="3d")
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["offset_seconds"] == 3 * 86400 and body["mode"] == "test"
    [batch] = body["settlement"]["batches"]
    assert batch["payment_count"] == 1 and batch["payout_status"] == "test-paid"

    listed = httpx.get(server.url + "/settlement/files", params=signed("tillpay.settlement.files", test))
    assert listed.status_code == 200 and listed.headers["x-tillpay-mode"] == "test"
    files = listed.json()["files"]
    assert {x["kind"] for x in files} == {"transaction", "settlement", "payouts"} and all(
        x["test"] for x in files
    )
    tx = next(x for x in files if x["kind"] == "transaction")
    got = httpx.get(
        server.url + "/settlement/download",
        params=signed("tillpay.settlement.download", test, name=tx["name"]),
    )
    assert got.status_code == 200 and shops["trade_no"] in got.text
    assert hashlib.sha256(got.content).hexdigest() == tx["sha256"] == got.headers["x-content-sha256"]


def test_a_live_merchant_cannot_move_a_clock_nor_see_test_files(
    server: LiveServer, shops: dict[str, Any]
) -> None:
    live, test = shops["live"], shops["test"]
    httpx.post(server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", test, advance="3d"))
    refused = httpx.post(
        server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", live, advance="2h")
    )
    assert refused.status_code == 400 and "real time" in refused.json()["message"]
    assert "x-tillpay-mode" not in refused.headers
    listed = httpx.get(server.url + "/settlement/files", params=signed("tillpay.settlement.files", live))
    assert listed.status_code == 200 and listed.json()["files"] == []
    name = f"test/2026-11-26/{test.partner_id}/TEST_{test.partner_id}_transaction_20261126_USD.txt"
    got = httpx.get(
        server.url + "/settlement/download", params=signed("tillpay.settlement.download", live, name=name)
    )
    assert got.status_code == 404


def test_the_clock_api_needs_a_valid_signature_and_a_forward_duration(
    server: LiveServer, shops: dict[str, Any]
) -> None:
    test = shops["test"]
    q = signed("tillpay.sandbox.clock", test, advance="2h")
    q["advance"] = "5d"  # changed after signing
    assert httpx.post(server.url + "/sandbox/clock", params=q).status_code == 401
    for bad in ("-2h", "0m", "soon"):
        r = httpx.post(
            server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", test, advance=bad)
        )
        assert r.status_code == 400
    signed_for_files = signed("tillpay.settlement.files", test)
    assert httpx.post(server.url + "/sandbox/clock", params=signed_for_files).status_code == 400
    shown = httpx.post(server.url + "/sandbox/clock", params=signed("tillpay.sandbox.clock", test))
    assert shown.json()["offset_seconds"] == 0
